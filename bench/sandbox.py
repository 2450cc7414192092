"""Benchmark of the worker sandbox: the same server with the sandbox off and on, side by side in
one run.

Run with `bash bench/run.sh sandbox`. Measured for each: session creation from a warm pool
(targets with the sandbox on: p50 <= 5 ms, p99 <= 20 ms), the throughput of the Python
LogisticRegression service at 1 and 16 concurrent requests (target: sandboxed >= 0.9x of
unsandboxed at 16), and the cost of starting one worker: a cold Python worker (interpreter,
numpy, pandas, scikit-learn and dill imported) from request to ready, and the sandbox's own
part of it, bubblewrap's namespaces and the limits around a program that does nothing.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

from common import Server, call, login, report, session_creates, summary_ms
from services import FEATURES, publish_o16n, wrk

CREATES = int(os.environ.get("BENCH_CREATES", "200"))
COLD_STARTS = int(os.environ.get("BENCH_COLD_STARTS", "8"))
BARE_STARTS = int(os.environ.get("BENCH_BARE_STARTS", "200"))

TRAIN = """
import sys, dill
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
X, y = load_iris(return_X_y=True)
open(sys.argv[1], "wb").write(dill.dumps(LogisticRegression(max_iter=1000).fit(X, y)))
"""


def server_for(data_dir, python, sandboxed, initial_size):
    return Server(data_dir, {
        "O16N_RUNTIME__PYTHON__EXECUTABLE": python,
        "O16N_RUNTIME__PYTHON__INITIAL_SIZE": str(initial_size),
        "O16N_RUNTIME__SANDBOX__ENABLED": "true" if sandboxed else "false",
    })


def cold_starts(server, token):
    """Session creation with no warm worker: the request waits for a worker to start."""
    connection = server.connection()
    starts = []
    for _ in range(COLD_STARTS):
        started = time.perf_counter()
        status, body = call(connection, "POST", "/sessions", token, {"runtimeType": "Python"})
        starts.append(time.perf_counter() - started)
        assert status == 201, body
        call(connection, "DELETE", "/sessions/" + body["sessionId"], token)
    return summary_ms(starts)


def bare_starts(sandboxed, workdir):
    """Starts `true` as the server would start a worker, without and with the sandbox."""
    scratch = pathlib.Path(workdir) / "bare"
    scratch.mkdir(exist_ok=True)
    os.chown(scratch, 2_000_000_123, 2_000_000_123)
    limits = [shutil.which("prlimit"), "--as=2147483648", "--nproc=256", "--fsize=1073741824", "--nofile=1024", "--"]
    if sandboxed:
        command = [shutil.which("bwrap"), "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net",
                   "--new-session", "--die-with-parent", "--ro-bind", "/usr", "/usr",
                   "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
                   "--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp",
                   "--bind", str(scratch), "/home/o16n", "--chdir", "/home/o16n", "--"] + limits + [
                   shutil.which("setpriv"), "--reuid=2000000123", "--regid=2000000123", "--clear-groups",
                   "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--", "/usr/bin/true"]
    else:
        command = limits + ["/usr/bin/true"]
    samples = []
    for _ in range(BARE_STARTS):
        started = time.perf_counter()
        subprocess.run(command, check=True, env={"PATH": "/usr/bin:/bin"})
        samples.append(time.perf_counter() - started)
    return summary_ms(samples)


def main():
    python = os.environ["O16N_BENCH_PYTHON"]
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        model = pathlib.Path(workdir) / "model.dill"
        subprocess.run([python, "-c", TRAIN, str(model)], check=True)
        for sandboxed in (False, True):
            name = "on" if sandboxed else "off"
            figures = results[name] = {}
            server = server_for(pathlib.Path(workdir) / ("data-" + name), python, sandboxed, 2)
            try:
                token = login(server)
                figures["create"] = session_creates(server, token, CREATES)
                publish_o16n(server, token, model.read_bytes())
                url = "http://%s:%d/api/iris/v1" % (server.host, server.port)
                headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
                for connections in (1, 16):
                    figures[connections] = wrk(url, json.dumps(FEATURES), headers, connections, workdir)
            finally:
                server.stop()
            server = server_for(pathlib.Path(workdir) / ("cold-" + name), python, sandboxed, 0)
            try:
                figures["cold"] = cold_starts(server, login(server))
            finally:
                server.stop()
            figures["bare"] = bare_starts(sandboxed, workdir)

    off, on = results["off"], results["on"]
    rows = []
    for name, figures in (("sandbox off", off), ("sandbox on", on)):
        rows += [
            ("%s: session create from a warm pool, p50 / p99" % name,
             "%.2f / %.2f ms" % (figures["create"]["p50_ms"], figures["create"]["p99_ms"])),
            ("%s: LR service, 1 concurrent: req/s, p50" % name,
             "%.0f, %.2f ms" % (figures[1]["rps"], figures[1]["p50_ms"])),
            ("%s: LR service, 16 concurrent: req/s, p50, p99" % name,
             "%.0f, %.2f ms, %.2f ms" % (figures[16]["rps"], figures[16]["p50_ms"], figures[16]["p99_ms"])),
            ("%s: cold Python worker (imports included), request to ready, p50" % name,
             "%.0f ms" % figures["cold"]["p50_ms"]),
            ("%s: start of a program that does nothing, p50 / p99" % name,
             "%.2f / %.2f ms" % (figures["bare"]["p50_ms"], figures["bare"]["p99_ms"])),
        ]
    ratio = on[16]["rps"] / off[16]["rps"]
    rows += [
        ("sandboxed / unsandboxed throughput at 16 concurrent (target >= 0.9)", "%.2f" % ratio),
        ("cost of the sandbox per worker start (bare start, p50 difference)",
         "%.2f ms" % (on["bare"]["p50_ms"] - off["bare"]["p50_ms"])),
    ]
    report("Worker sandbox: off and on in one run (release build, 2 cores, wrk on the same machine)", rows)
    met = ratio >= 0.9 and on["create"]["p50_ms"] <= 5 and on["create"]["p99_ms"] <= 20
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
