"""Benchmark of issue 5: an R glm on iris, one row per request, served by o16n (a pool of 2
R workers) and by plumber (Debian's r-cran-plumber) in one R process, side by side; and R
session creation from a warm pool.

Run with `bash bench/run.sh r`. Targets: at 16 concurrent, at least 2x plumber's throughput
with p99 at most 60 ms; at 1 concurrent no latency floor near 40 ms; R session create p50 at
most 5 ms.
"""

import http.client
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from common import Server, call, login, report, session_creates
from services import free_port, wrk

CONCURRENCY = [1, 4, 16]
FEATURES = {"sl": 6.3, "sw": 2.9, "pl": 5.6, "pw": 1.8}
MODEL = ("model <- suppressWarnings(glm(I(Species == 'virginica') ~ Sepal.Length + Sepal.Width + "
         "Petal.Length + Petal.Width, family = binomial, data = iris))")
PREDICT = ("unname(predict(model, data.frame(Sepal.Length = sl, Sepal.Width = sw, Petal.Length = pl, "
           "Petal.Width = pw), type = 'response'))")

PLUMBER_API = MODEL + """

#* @post /predict
#* @serializer unboxedJSON
function(sl, sw, pl, pw) {
  sl <- as.numeric(sl); sw <- as.numeric(sw); pl <- as.numeric(pl); pw <- as.numeric(pw)
  list(p = %s)
}
""" % PREDICT


def start_plumber(workdir, port):
    api = pathlib.Path(workdir) / "plumber.R"
    api.write_text(PLUMBER_API)
    process = subprocess.Popen(
        ["Rscript", "--vanilla", "-e", "pr <- plumber::plumb('%s'); pr$run(host = '127.0.0.1', port = %d)" % (api, port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/predict", body=json.dumps(FEATURES), headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            if response.status == 200:
                json.loads(response.read())
                return process
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("plumber did not start")


def main():
    results = {"o16n": {}, "plumber": {}}
    with tempfile.TemporaryDirectory() as workdir:
        server = Server(pathlib.Path(workdir) / "o16n-data", {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": os.environ["O16N_BENCH_PYTHON"],
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "0",
            "O16N_RUNTIME__R__INITIAL_SIZE": "2",
            "O16N_RUNTIME__R__MAX_SERVICE_WORKERS": "2",
        })
        try:
            token = login(server)
            connection = server.connection()
            create = session_creates(server, token, 100, "R")
            definition = {
                "runtimeType": "R",
                "initCode": MODEL,
                "code": "p <- " + PREDICT,
                "inputParameterDefinitions": [{"name": name, "type": "numeric"} for name in FEATURES],
                "outputParameterDefinitions": [{"name": "p", "type": "numeric"}],
            }
            status, body = call(connection, "POST", "/services/irisglm/v1", token, definition)
            assert status == 201, body
            for _ in range(20):
                status, result = call(connection, "POST", "/api/irisglm/v1", token, FEATURES)
                assert status == 200 and result["success"], result
            o16n_p = result["outputParameters"]["p"]
            url = "http://%s:%d/api/irisglm/v1" % (server.host, server.port)
            headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
            for connections in CONCURRENCY:
                results["o16n"][connections] = wrk(url, json.dumps(FEATURES), headers, connections, workdir)
        finally:
            server.stop()

        port = free_port()
        plumber = start_plumber(workdir, port)
        try:
            url = "http://127.0.0.1:%d/predict" % port
            for connections in CONCURRENCY:
                results["plumber"][connections] = wrk(url, json.dumps(FEATURES), {"Content-Type": "application/json"}, connections, workdir)
        finally:
            plumber.terminate()
            plumber.wait(timeout=30)

    rows = [
        ("R session create from a warm pool, p50 / p99 (target p50 5 ms)", "%.2f / %.2f ms" % (create["p50_ms"], create["p99_ms"])),
        ("prediction for the test row (both servers)", "%.4f" % o16n_p),
    ]
    for connections in CONCURRENCY:
        for name in ("o16n", "plumber"):
            figures = results[name][connections]
            rows.append(("%s, %2d concurrent: req/s, p50, p99" % (name, connections),
                         "%8.0f   %7.2f ms   %7.2f ms" % (figures["rps"], figures["p50_ms"], figures["p99_ms"])))
    ratio = results["o16n"][16]["rps"] / results["plumber"][16]["rps"]
    rows += [
        ("16 concurrent: o16n / plumber throughput (target >= 2)", "%.2fx" % ratio),
        ("16 concurrent: o16n p99 (target <= 60 ms)", "%.2f ms" % results["o16n"][16]["p99_ms"]),
        ("1 concurrent: o16n p50 (no floor near 40 ms)", "%.2f ms" % results["o16n"][1]["p50_ms"]),
    ]
    report("R services: glm on iris, one row per request (2 cores, wrk on the same machine)", rows)
    met = ratio >= 2 and results["o16n"][16]["p99_ms"] <= 60 and results["o16n"][1]["p50_ms"] < 20 and create["p50_ms"] <= 5
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
