"""Benchmark of hostile tenants against one release server (issue 28's figures): what a flood of
bad sign-ins does to an authenticated `GET /status`, and what a session printing 1 MiB lines
without end or writing gigabytes to `/dev/shm` does to the server's memory.

Run with `bash bench/run.sh hostile`. Targets: `GET /status` p99 under 50 ms while 400 bad
sign-ins arrive at once, most of them answered 429; the server's resident memory bounded
(growth under 64 MiB) while a session prints 1 MiB lines for `BENCH_CONSOLE_SECONDS` (60) and
tries to write 3 GiB to `/dev/shm`.
"""

import os
import tempfile
import threading
import time

from common import Server, call, login, report, summary_ms

FLOOD = 400
CONSOLE_SECONDS = float(os.environ.get("BENCH_CONSOLE_SECONDS", "60"))


def resident_mib(pid):
    with open("/proc/%d/status" % pid) as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def login_flood(server, token):
    outcomes = []
    lock = threading.Lock()

    def bad_login(index):
        status, _ = call(server.connection(), "POST", "/login",
                         body={"username": "nobody%d" % index, "password": "Wrong-Pass-1"})
        with lock:
            outcomes.append(status)

    before = resident_mib(server.process.pid)
    threads = [threading.Thread(target=bad_login, args=(index,)) for index in range(FLOOD)]
    for thread in threads:
        thread.start()
    latencies, connection = [], server.connection()
    while any(thread.is_alive() for thread in threads):
        started = time.perf_counter()
        status, _ = call(connection, "GET", "/status", token)
        latencies.append(time.perf_counter() - started)
        assert status == 200
        time.sleep(0.01)
    for thread in threads:
        thread.join()
    after = resident_mib(server.process.pid)
    status_figures = summary_ms(latencies)
    report("%d bad sign-ins at once, GET /status every 10 ms meanwhile" % FLOOD, [
        ("answered 429", outcomes.count(429)),
        ("answered 401 (password checked)", outcomes.count(401)),
        ("other answers", len(outcomes) - outcomes.count(429) - outcomes.count(401)),
        ("GET /status", status_figures),
        ("GET /status p99 target < 50 ms", "met" if status_figures["p99_ms"] < 50 else "MISSED"),
        ("server RSS before / after, MiB", "%.1f / %.1f" % (before, after)),
    ])


def memory_attacks(server, token):
    connection = server.connection()
    status, body = call(connection, "POST", "/sessions", token, {"runtimeType": "Python"})
    assert status == 201, body
    session = body["sessionId"]
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(resident_mib(server.process.pid))
            time.sleep(0.5)

    start = resident_mib(server.process.pid)
    sampler = threading.Thread(target=sample)
    sampler.start()
    deadline, executions, kept = time.monotonic() + CONSOLE_SECONDS, 0, 0
    while time.monotonic() < deadline:
        status, answer = call(connection, "POST", "/sessions/%s/execute" % session, token, {
            "code": "line = 'x' * (1024 * 1024)\nfor _ in range(64):\n    print(line)"})
        assert status == 200, answer
        executions += 1
        kept = max(kept, len(answer["consoleOutput"]))
    status, answer = call(connection, "POST", "/sessions/%s/execute" % session, token, {
        "code": "import os\nwritten = 0\ntry:\n    with open('/dev/shm/fill', 'wb') as f:\n"
                "        for _ in range(3 * 1024):\n            f.write(b'z' * (1024 * 1024))\n"
                "            written += 1\nexcept OSError as problem:\n    error = problem.strerror",
        "outputParameters": ["written", "error"]})
    assert status == 200, answer
    stop.set()
    sampler.join()
    outputs = {item["name"]: item["value"] for item in answer["outputParameters"]}
    report("One session: 1 MiB console lines for %.0f s, then 3 GiB to /dev/shm" % CONSOLE_SECONDS, [
        ("executions of 64 MiB of output each", executions),
        ("most console output kept of one execution, bytes", kept),
        ("/dev/shm: MiB written before the refusal", "%s (%s)" % (outputs["written"], outputs["error"])),
        ("server RSS at start / peak / end, MiB", "%.1f / %.1f / %.1f" % (start, max(samples), samples[-1])),
        ("RSS growth target < 64 MiB", "met" if max(samples) - start < 64 else "MISSED"),
    ])


def main():
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": os.environ["O16N_BENCH_PYTHON"],
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "1",
            "O16N_RUNTIME__R__INITIAL_SIZE": "0",
        })
        try:
            token = login(server)
            login_flood(server, token)
            memory_attacks(server, token)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
