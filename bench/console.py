"""Benchmark of issue 18: the web console's pages with 1,000 services published.

Run with `bash bench/run.sh console`. A release server gets 1,000 Python services (published
through the API; none is run), one signed-in console user, and each page is fetched in turn
over one keep-alive connection. Target: every page under 100 ms (p99) with 1,000 services.
"""

import os
import tempfile
import time
import urllib.parse

from common import ADMIN_PASSWORD, Server, call, login, report, summary_ms

SERVICES = int(os.environ.get("BENCH_SERVICES", "1000"))
FETCHES = int(os.environ.get("BENCH_FETCHES", "100"))
TARGET_MS = 100.0


def publish(server, token):
    connection = server.connection()
    for index in range(SERVICES):
        status, body = call(connection, "POST", "/services/svc-%04d/v1" % index, token, {
            "runtimeType": "Python",
            "description": "service number %d of the console benchmark" % index,
            "code": "y = x + %d" % index,
            "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
            "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
        })
        assert status == 201, body


def console_cookie(server):
    """Signs in with the console's form and returns its cookies."""
    connection = server.connection()
    form = urllib.parse.urlencode({"username": "admin", "password": ADMIN_PASSWORD})
    connection.request("POST", "/console/login", body=form, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    assert response.status == 303, response.status
    cookies = [value.split(";", 1)[0] for name, value in response.getheaders() if name.lower() == "set-cookie"]
    return "; ".join(cookies)


def fetch_times(server, cookie, path):
    connection = server.connection()
    samples, size = [], 0
    for _ in range(FETCHES):
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookie})
        response = connection.getresponse()
        body = response.read()
        samples.append(time.perf_counter() - started)
        assert response.status == 200, (path, response.status, body[:200])
        size = len(body)
    return summary_ms(samples), size


def main():
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": os.environ["O16N_BENCH_PYTHON"],
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "1",
            "O16N_RUNTIME__R__INITIAL_SIZE": "0",
        })
        try:
            token = login(server)
            publish(server, token)
            cookie = console_cookie(server)
            rows = []
            worst = 0.0
            for name, path in [
                ("services list (all %d)" % SERVICES, "/console/services"),
                ("services search (q=svc-05)", "/console/services?q=svc-05"),
                ("service page", "/console/services/svc-0500/v1"),
                ("sessions", "/console/sessions"),
                ("snapshots", "/console/snapshots"),
                ("batches", "/console/batches"),
                ("cluster", "/console/cluster"),
            ]:
                summary, size = fetch_times(server, cookie, path)
                worst = max(worst, summary["p99_ms"])
                rows.append((name, "p50 %.2f ms, p99 %.2f ms, %d kB" % (
                    summary["p50_ms"], summary["p99_ms"], size // 1024)))
            rows.append(("slowest page p99 (target <= %d ms)" % TARGET_MS, "%.2f ms" % worst))
            report("o16n console pages, %d services, %d fetches each" % (SERVICES, FETCHES), rows)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
