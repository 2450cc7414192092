"""Shared helpers of the o16n benchmarks: start a server, log in, time requests, summarise.

Only the standard library is used, so the benchmark driver needs nothing installed.
"""

import http.client
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/o16n/target"))
# Another build (an earlier commit's, to compare before and after) can be named explicitly.
BINARY = pathlib.Path(os.environ.get("O16N_BENCH_BINARY") or TARGET / "release" / "o16n")
ADMIN_PASSWORD = "Bench-Pass-1"


class Server:
    """A release `o16n serve` on a free port with its own data directory."""

    def __init__(self, data_dir, env=None, role="onebox"):
        environment = dict(os.environ, O16N_ADMIN_PASSWORD=ADMIN_PASSWORD, RUST_LOG="warn")
        environment.update(env or {})
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--role", role, "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=environment,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            raise RuntimeError("the server did not start: %r" % line)
        host, port = line[len("listening on http://"):].rsplit(":", 1)
        self.host, self.port = host, int(port)

    def connection(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def call(connection, method, path, token=None, body=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    payload = json.dumps(body) if body is not None else None
    connection.request(method, path, body=payload, headers=headers)
    response = connection.getresponse()
    data = response.read()
    return response.status, (json.loads(data) if data else None)


def login(server):
    status, body = call(server.connection(), "POST", "/login", body={"username": "admin", "password": ADMIN_PASSWORD})
    assert status == 200, body
    return body["access_token"]


def pool(server, token, runtime="python"):
    """A runtime pool's figures from `/status`, on a one-box server or on a web node with one
    compute node."""
    _, status = call(server.connection(), "GET", "/status", token)
    components = status["components"]
    if "runtimes" in components:
        return components["runtimes"]["components"][runtime]["details"]
    (node,) = components["backends"]["components"].values()
    return node["components"][runtime]["details"]


def wait_for_idle(server, token, wanted, runtime="python"):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if pool(server, token, runtime).get("idle", 0) >= wanted:
            return
        time.sleep(0.05)
    raise RuntimeError("the %s pool did not warm up" % runtime)


def session_creates(server, token, count, runtime="Python"):
    """Times `count` session creates from a warm pool: before each, the pool is given time to
    replace the worker the last one took, as in steady use. Returns the summary."""
    connection = server.connection()
    creates = []
    for _ in range(count):
        wait_for_idle(server, token, 2, runtime.lower())
        started = time.perf_counter()
        status, body = call(connection, "POST", "/sessions", token, {"runtimeType": runtime})
        creates.append(time.perf_counter() - started)
        assert status == 201, body
        call(connection, "DELETE", "/sessions/" + body["sessionId"], token)
    return summary_ms(creates)


def descendants(root_pid):
    """The pids of every process below `root_pid`, from /proc."""
    children = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % pid) as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        children.setdefault(parent, []).append(int(pid))
    found, pending = [], [root_pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def percentile(samples, fraction):
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary_ms(samples):
    return {
        "n": len(samples),
        "p50_ms": round(percentile(samples, 0.50) * 1000, 3),
        "p99_ms": round(percentile(samples, 0.99) * 1000, 3),
        "mean_ms": round(statistics.fmean(samples) * 1000, 3),
    }


def report(title, rows):
    print("\n" + title)
    print("-" * len(title))
    for name, value in rows:
        print("  %-52s %s" % (name, value))
    sys.stdout.flush()
