"""Benchmark of issue 4: one row per request through a scikit-learn LogisticRegression on
iris, served by o16n and by `mlflow models serve` with the same model, side by side.

Run with `bash bench/run.sh services`. Load comes from wrk on the same machine. Targets at
16 concurrent requests: o16n at least 2x MLflow's throughput and at most a quarter of its p99;
at 1 concurrent request p50 at most 1 ms above the model's own predict time; no latency floor
near 40 ms at 1 to 4 concurrent requests. Metrics cost nothing visible: throughput with metrics
on is at least 0.97x of a server with them off (paired runs), and a scrape of /metrics with 100
services published and consumed takes at most 10 ms (p95).
"""

import http.client
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time

from common import Server, call, login, report

DURATION = os.environ.get("BENCH_DURATION", "10s")
CONCURRENCY = [1, 4, 16]
FEATURES = {"sl": 5.1, "sw": 3.5, "pl": 1.4, "pw": 0.2}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wrk(url, body, headers, connections, workdir, method="POST"):
    script = pathlib.Path(workdir) / "request.lua"
    lines = ['wrk.method = "%s"' % method]
    if body is not None:
        lines.append("wrk.body = %s" % json.dumps(body))
    lines += ['wrk.headers["%s"] = "%s"' % (name, value) for name, value in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = str(min(connections, 2))
    output = subprocess.run(
        ["wrk", "-t", threads, "-c", str(connections), "-d", DURATION, "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout
    if "Non-2xx" in output:
        raise RuntimeError("wrk saw errors:\n" + output)

    def latency(label):
        match = re.search(r"^\s+%s\s+([\d.]+)(us|ms|s)" % label, output, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
    }


METRICS_OFF = {"O16N_METRICS__ENABLED": "false"}
METRICS_ROUNDS = 3


def metrics_cost(on, off, body, workdir, connections=16):
    """Throughput with metrics on over metrics off, `on` and `off` being (url, headers) of two
    servers: the median of paired runs, each pair back to back (alternating which goes first)
    so that the machine's drift cancels out. Returns the ratio and the pair it came from."""
    pairs = []
    for round_ in range(METRICS_ROUNDS):
        order = [on, off] if round_ % 2 == 0 else [off, on]
        figures = [wrk(url, body, headers, connections, workdir)["rps"] for url, headers in order]
        on_rps, off_rps = figures if round_ % 2 == 0 else figures[::-1]
        pairs.append((on_rps / off_rps, on_rps, off_rps))
    pairs.sort()
    return pairs[len(pairs) // 2]


def scrape_times(server, token, count=100):
    """Publishes and consumes `count` small services, then times 50 scrapes of /metrics."""
    connection = server.connection()
    for i in range(count):
        status, body = call(connection, "POST", "/services/metric%03d/v1" % i, token, {
            "runtimeType": "Python", "code": "y = x",
            "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
            "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
        })
        assert status == 201, body
        status, body = call(connection, "POST", "/api/metric%03d/v1" % i, token, {"x": i})
        assert status == 200, body
    times = []
    for _ in range(50):
        start = time.perf_counter()
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read()
        times.append((time.perf_counter() - start) * 1000)
        assert response.status == 200 and b"metric099" in text
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.95) - 1], len(text)


def publish_o16n(server, token, model_bytes):
    connection = server.connection()
    _, session = call(connection, "POST", "/sessions", token, {"runtimeType": "Python"})
    session = session["sessionId"]
    connection.request("POST", "/sessions/%s/workspace/model" % session, body=model_bytes,
                       headers={"Authorization": "Bearer " + token, "Content-Type": "application/octet-stream"})
    assert connection.getresponse().read() is not None
    _, snapshot = call(connection, "POST", "/sessions/%s/snapshot" % session, token, {"name": None})
    definition = {
        "snapshotId": snapshot["snapshotId"],
        "runtimeType": "Python",
        "initCode": "import numpy as np",
        "code": "prediction = int(model.predict(np.array([[sl, sw, pl, pw]]))[0])",
        "inputParameterDefinitions": [{"name": name, "type": "numeric"} for name in FEATURES],
        "outputParameterDefinitions": [{"name": "prediction", "type": "integer"}],
    }
    status, body = call(connection, "POST", "/services/iris/v1", token, definition)
    assert status == 201, body
    call(connection, "DELETE", "/sessions/" + session, token)
    for _ in range(50):
        status, result = call(connection, "POST", "/api/iris/v1", token, FEATURES)
        assert status == 200 and result["success"] and result["outputParameters"]["prediction"] == 0, result


def start_mlflow_model(python_bin, model_dir, port, body):
    """Starts `mlflow models serve` and waits until it answers `body` with 200."""
    bin_dir = pathlib.Path(python_bin).parent
    # MLflow starts uvicorn by name, so its environment's bin directory must be on PATH.
    environment = dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ.get("PATH", "")))
    process = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", str(model_dir), "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            if response.status == 200:
                assert json.loads(answer)["predictions"] == [0], answer
                return process
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("mlflow models serve did not start")


def start_mlflow(python_bin, model_dir, port):
    body = json.dumps({"dataframe_split": {"columns": list(FEATURES), "data": [list(FEATURES.values())]}})
    return start_mlflow_model(python_bin, model_dir, port, body), body


def main():
    o16n_python = os.environ["O16N_BENCH_PYTHON"]
    mlflow_python = os.environ["O16N_BENCH_MLFLOW_PYTHON"]
    with tempfile.TemporaryDirectory() as workdir:
        trained = json.loads(subprocess.run([mlflow_python, str(pathlib.Path(__file__).parent / "train_iris.py"), workdir],
                                            capture_output=True, text=True, check=True).stdout)
        results = {"o16n": {}, "mlflow": {}}

        o16n_env = {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": o16n_python,
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "2",
        }
        server = Server(pathlib.Path(workdir) / "o16n-data", o16n_env)
        quiet = Server(pathlib.Path(workdir) / "o16n-quiet", dict(o16n_env, **METRICS_OFF))
        try:
            token, quiet_token = login(server), login(quiet)
            model = (pathlib.Path(workdir) / "model.dill").read_bytes()
            publish_o16n(server, token, model)
            publish_o16n(quiet, quiet_token, model)
            url = "http://%s:%d/api/iris/v1" % (server.host, server.port)
            headers = {"Content-Type": "application/json", "Authorization": "Bearer " + token}
            for connections in CONCURRENCY:
                results["o16n"][connections] = wrk(url, json.dumps(FEATURES), headers, connections, workdir)
            quiet_url = "http://%s:%d/api/iris/v1" % (quiet.host, quiet.port)
            quiet_headers = dict(headers, Authorization="Bearer " + quiet_token)
            results["metrics"] = metrics_cost((url, headers), (quiet_url, quiet_headers), json.dumps(FEATURES), workdir)
            results["scrape"] = scrape_times(server, token)
        finally:
            server.stop()
            quiet.stop()

        port = free_port()
        mlflow, body = start_mlflow(mlflow_python, pathlib.Path(workdir) / "mlflow-model", port)
        try:
            url = "http://127.0.0.1:%d/invocations" % port
            for connections in CONCURRENCY:
                results["mlflow"][connections] = wrk(url, body, {"Content-Type": "application/json"}, connections, workdir)
        finally:
            mlflow.terminate()
            mlflow.wait(timeout=30)

    rows = [("model's own predict(), one row, p50", "%.3f ms" % trained["predict_p50_ms"])]
    for connections in CONCURRENCY:
        for name in ("o16n", "mlflow"):
            figures = results[name][connections]
            rows.append(("%s, %2d concurrent: req/s, p50, p99" % (name, connections),
                         "%8.0f   %7.2f ms   %7.2f ms" % (figures["rps"], figures["p50_ms"], figures["p99_ms"])))
    o16n16, mlflow16 = results["o16n"][16], results["mlflow"][16]
    throughput_ratio = o16n16["rps"] / mlflow16["rps"]
    p99_ratio = o16n16["p99_ms"] / mlflow16["p99_ms"]
    overhead = results["o16n"][1]["p50_ms"] - trained["predict_p50_ms"]
    floor = max(results["o16n"][c]["p50_ms"] for c in (1, 4))
    rows += [
        ("16 concurrent: o16n / MLflow throughput (target >= 2)", "%.2fx" % throughput_ratio),
        ("16 concurrent: o16n / MLflow p99 (target <= 0.25)", "%.2f" % p99_ratio),
        ("1 concurrent: o16n p50 minus predict() (target <= 1 ms)", "%.3f ms" % overhead),
        ("1-4 concurrent: worst o16n p50 (no floor near 40 ms)", "%.2f ms" % floor),
    ]
    metrics_ratio, metrics_on, metrics_off = results["metrics"]
    scrape_p50, scrape_p95, scrape_bytes = results["scrape"]
    rows += [
        ("16 concurrent: metrics on / off, median of %d pairs (target >= 0.97)" % METRICS_ROUNDS,
         "%.3f (%.0f vs %.0f req/s)" % (metrics_ratio, metrics_on, metrics_off)),
        ("/metrics with 100 services: p50, p95 (target p95 <= 10 ms)",
         "%.2f ms   %.2f ms   (%d bytes)" % (scrape_p50, scrape_p95, scrape_bytes)),
    ]
    report("Services: LogisticRegression on iris, one row per request (2 cores, wrk on the same machine)", rows)
    met = (throughput_ratio >= 2 and p99_ratio <= 0.25 and overhead <= 1 and floor < 20
           and metrics_ratio >= 0.97 and scrape_p95 <= 10)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
