"""Benchmark of scale-out: the one-box server against a web node with one compute node (another
process, reached over the internal API), side by side in one run.

Run with `bash bench/run.sh cluster`. Measured for each: the Python LogisticRegression service
of the services benchmark at 1 and 16 concurrent requests, and session creation from a warm
pool. Targets: at 1 concurrent request the remote p50 is at most 0.5 ms above one-box; at 16 the
remote throughput is at least 0.7x one-box; session creation through a web node p50 <= 5 ms.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import uuid

from common import Server, login, report, session_creates
from sandbox import TRAIN
from services import FEATURES, publish_o16n, wrk

CREATES = int(os.environ.get("BENCH_CREATES", "200"))
SECRET = "bench-cluster-secret"
POSTGRES = os.environ.get("O16N_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def measure(server, workdir, model):
    token = login(server)
    figures = {"create": session_creates(server, token, CREATES)}
    publish_o16n(server, token, model.read_bytes())
    url = "http://%s:%d/api/iris/v1" % (server.host, server.port)
    headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
    for connections in (1, 16):
        figures[connections] = wrk(url, json.dumps(FEATURES), headers, connections, workdir)
    return figures


def main():
    python = os.environ["O16N_BENCH_PYTHON"]
    pools = {
        "O16N_RUNTIME__PYTHON__EXECUTABLE": python,
        "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "2",
        "O16N_RUNTIME__R__INITIAL_SIZE": "0",
    }
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        work = pathlib.Path(workdir)
        model = work / "model.dill"
        subprocess.run([python, "-c", TRAIN, str(model)], check=True)

        onebox = Server(work / "onebox", pools)
        try:
            results["one-box"] = measure(onebox, workdir, model)
        finally:
            onebox.stop()

        database = "o16n_bench_%s" % uuid.uuid4().hex
        subprocess.run(["psql", POSTGRES, "-qc", 'CREATE DATABASE "%s"' % database], check=True)
        compute = web = None
        try:
            compute = Server(work / "compute", dict(pools, O16N_CLUSTER__SECRET=SECRET), role="compute")
            web = Server(work / "web", {
                "O16N_CLUSTER__SECRET": SECRET,
                "O16N_DATABASE__URL": POSTGRES.rsplit("/", 1)[0] + "/" + database,
                "O16N_CLUSTER__COMPUTE_NODES": json.dumps(["http://%s:%d" % (compute.host, compute.port)]),
            }, role="web")
            results["web + compute"] = measure(web, workdir, model)
        finally:
            for node in (web, compute):
                if node is not None:
                    node.stop()
            subprocess.run(["psql", POSTGRES, "-qc", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % database], check=True)

    rows = []
    for name, figures in results.items():
        rows += [
            ("%s: session create from a warm pool, p50 / p99" % name,
             "%.2f / %.2f ms" % (figures["create"]["p50_ms"], figures["create"]["p99_ms"])),
            ("%s: LR service, 1 concurrent: req/s, p50, p99" % name,
             "%.0f, %.3f ms, %.3f ms" % (figures[1]["rps"], figures[1]["p50_ms"], figures[1]["p99_ms"])),
            ("%s: LR service, 16 concurrent: req/s, p50, p99" % name,
             "%.0f, %.2f ms, %.2f ms" % (figures[16]["rps"], figures[16]["p50_ms"], figures[16]["p99_ms"])),
        ]
    local, remote = results["one-box"], results["web + compute"]
    added = remote[1]["p50_ms"] - local[1]["p50_ms"]
    ratio = remote[16]["rps"] / local[16]["rps"]
    rows += [
        ("1 concurrent: remote p50 minus one-box p50 (target <= 0.5 ms)", "%.3f ms" % added),
        ("16 concurrent: remote / one-box throughput (target >= 0.7)", "%.2f" % ratio),
        ("session create through a web node, p50 (target <= 5 ms)", "%.2f ms" % remote["create"]["p50_ms"]),
    ]
    report("Scale-out: one-box against a web node + a compute node (release build, 2 cores, wrk on the same machine)", rows)
    met = added <= 0.5 and ratio >= 0.7 and remote["create"]["p50_ms"] <= 5
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
