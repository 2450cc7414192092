"""Benchmark of issue 16: building a named environment whose packages are all in the cache,
and session create from a warm pool in a non-default environment.

Run with `bash bench/run.sh environments`. The package index is a local mirror this script
serves (the wheels of tabulate, six and a package it makes), so the figures measure o16n, not
the network. A warm-up round of builds fills the caches; the measured round builds other locks
of the same files. Side by side in the same run: the same environment made the usual way,
`python -m venv` and `pip install` from the same index with pip's cache warm.
Targets: session create in a non-default environment p50 <= 5 ms; the build is reported.
"""

import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from common import Server, call, login, report, summary_ms

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDS = int(os.environ.get("BENCH_BUILDS", "10"))
CREATES = int(os.environ.get("BENCH_CREATES", "200"))
MIRRORED = ["tabulate==0.9.0", "six==1.17.0"]


def mirror(root):
    """A PEP 503 index in `root/simple`: the mirrored wheels (fetched once into the cache, as
    an organisation's mirror holds them) and bench-pkg 1.0..BUILDS made here."""
    cache = os.path.expanduser("~/.cache/o16n/bench-wheels")
    os.makedirs(cache, exist_ok=True)
    for requirement in MIRRORED:
        name = requirement.split("==")[0]
        if not any(wheel.startswith(name + "-") for wheel in os.listdir(cache)):
            subprocess.run([os.environ["O16N_BENCH_PYTHON"], "-m", "pip", "download", "-q",
                            "--no-deps", "-d", cache, requirement], check=True)
        target = os.path.join(root, "simple", name)
        os.makedirs(target, exist_ok=True)
        for wheel in os.listdir(cache):
            if wheel.startswith(name + "-"):
                shutil.copy(os.path.join(cache, wheel), target)
    maker = os.path.join(HERE, "..", "tests", "fixtures", "environments", "make_wheel.py")
    for version in range(1, BUILDS + 1):
        subprocess.run([sys.executable, maker, "bench-pkg", "%d.0" % version,
                        os.path.join(root, "simple", "bench-pkg")], check=True, stdout=subprocess.DEVNULL)


def serve(root):
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=root)
    http.server.SimpleHTTPRequestHandler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d/simple/" % server.server_address[1]


def wait_built(connection, token, name):
    while True:
        _, body = call(connection, "GET", "/environments/" + name, token)
        if body["state"] in ("Ready", "Failed"):
            assert body["state"] == "Ready", body
            return body
        time.sleep(0.002)


def warm_requirements(version):
    """What the warm-up builds ask for: they put every file into the caches."""
    return MIRRORED + ["bench-pkg==%d.0" % version]


def measured_requirements(version):
    """What the measured builds ask for: other locks than the warm-up's (so each is a real
    build, not a build the node already has), every file in the caches."""
    return MIRRORED[1:] + ["bench-pkg==%d.0" % version]


def o16n_builds(server, token):
    """Time from POST to Ready of each measured build, after the warm-up filled uv's cache."""
    connection = server.connection()
    builds = []
    for phase, requirements in (("warm", warm_requirements), ("bench", measured_requirements)):
        for version in range(1, BUILDS + 1):
            name = "%s-%d" % (phase, version)
            started = time.perf_counter()
            status, body = call(connection, "POST", "/environments/" + name, token,
                                {"runtimeType": "Python", "requirements": "\n".join(requirements(version))})
            assert status == 201, body
            wait_built(connection, token, name)
            if phase == "bench":
                builds.append(time.perf_counter() - started)
    return summary_ms(builds)


def pip_builds(python, index_url, scratch):
    """The same environments made with `python -m venv` and pip from the same index, after
    the same warm-up filled pip's cache."""
    builds = []
    cache = os.path.join(scratch, "pip-cache")
    for phase, requirements in (("warm", warm_requirements), ("bench", measured_requirements)):
        for version in range(1, BUILDS + 1):
            target = os.path.join(scratch, "venv-%s-%d" % (phase, version))
            started = time.perf_counter()
            subprocess.run([python, "-m", "venv", "--without-pip", target], check=True)
            subprocess.run([python, "-m", "pip", "--python", os.path.join(target, "bin", "python"),
                            "install", "-q", "--disable-pip-version-check", "--no-deps",
                            "--cache-dir", cache, "--index-url", index_url] + requirements(version),
                           check=True)
            if phase == "bench":
                builds.append(time.perf_counter() - started)
    return summary_ms(builds)


def environment_pool(server, token, name):
    _, status = call(server.connection(), "GET", "/status", token)
    runtimes = status["components"]["runtimes"]["components"]
    pools = runtimes.get("environmentPools", {}).get("components", {})
    return pools.get(name, {}).get("details", {})


def session_creates(server, token, count, environment):
    connection = server.connection()
    creates = []
    for _ in range(count):
        deadline = time.monotonic() + 120
        while environment_pool(server, token, environment).get("idle", 0) < 2:
            assert time.monotonic() < deadline, "the environment's pool did not warm up"
            time.sleep(0.02)
        started = time.perf_counter()
        status, body = call(connection, "POST", "/sessions", token,
                            {"runtimeType": "Python", "environment": environment})
        creates.append(time.perf_counter() - started)
        assert status == 201, body
        call(connection, "DELETE", "/sessions/" + body["sessionId"], token)
    return summary_ms(creates)


def main():
    python = os.environ["O16N_BENCH_PYTHON"]
    with tempfile.TemporaryDirectory() as scratch:
        index_root = os.path.join(scratch, "index")
        mirror(index_root)
        index, index_url = serve(index_root)
        data_dir = os.path.join(scratch, "data")
        os.makedirs(data_dir)
        server = Server(data_dir, {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": python,
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "0",
            "O16N_ENVIRONMENTS__PYTHON_INDEX_URL": index_url,
            "O16N_ENVIRONMENTS__POOL_SIZE": "2",
        })
        try:
            token = login(server)
            o16n = o16n_builds(server, token)
            # The first session creates the environment's pool on the node; then it stays warm.
            connection = server.connection()
            status, body = call(connection, "POST", "/sessions", token,
                                {"runtimeType": "Python", "environment": "bench-1"})
            assert status == 201, body
            call(connection, "DELETE", "/sessions/" + body["sessionId"], token)
            create = session_creates(server, token, CREATES, "bench-1")
        finally:
            server.stop()
            index.shutdown()
        index, index_url = serve(index_root)
        try:
            pip = pip_builds(python, index_url, scratch)
        finally:
            index.shutdown()

    report("Environments (o16n release build, 2 cores, a local package index)", [
        ("build an environment whose packages are cached: POST to Ready, p50 / p99 (o16n: uv, sandboxed)",
         "%.0f / %.0f ms (n=%d)" % (o16n["p50_ms"], o16n["p99_ms"], o16n["n"])),
        ("the same with python -m venv + pip install, pip's cache warm, p50 / p99",
         "%.0f / %.0f ms (n=%d)" % (pip["p50_ms"], pip["p99_ms"], pip["n"])),
        ("session create from a warm pool in a non-default environment, p50 / p99 (target p50 5 ms)",
         "%.2f / %.2f ms (n=%d)" % (create["p50_ms"], create["p99_ms"], create["n"])),
    ])


if __name__ == "__main__":
    main()
