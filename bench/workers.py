"""Benchmark of issue 19: warm workers forked from a template against workers spawned one by one.

Run with `bash bench/run.sh workers`. For each runtime (Python with numpy, pandas, scikit-learn
and dill imported; R with jsonlite), with workers forked (the default) and spawned
(`fork_workers = false`), side by side in one run:
- memory: a pool of 16 idle workers against a pool of 1, both sandboxed as in production; the
  PSS of every process below the server (the template and its bubblewrap; each worker, its
  keeper, or its bubblewrap and init), from /proc/*/smaps_rollup; the cost of a worker beyond
  the first is (PSS with 16 - PSS with 1) / 15;
- adding a worker to a pool: a session takes the pool's only idle worker and the time until
  the pool has an idle worker again is measured (the server starts one at once), p50 and p99.
Issue 19's targets, for workers forked from a warmed template: at most 30 MiB PSS per worker
beyond the first and at most 50 ms p50 to add one.
"""

import os
import tempfile
import time

from common import Server, call, descendants, login, percentile, pool, report

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "10"))
LARGE_POOL = 16


TARGET_MIB = 30
TARGET_MS = 50


def server_for(data_dir, runtime, size, fork):
    """A server whose pool of `runtime` keeps `size` warm workers (the other runtime none),
    forked from a template or spawned."""
    other = "r" if runtime == "python" else "python"
    return Server(data_dir, {
        "O16N_RUNTIME__PYTHON__EXECUTABLE": os.environ["O16N_BENCH_PYTHON"],
        "O16N_RUNTIME__%s__INITIAL_SIZE" % runtime.upper(): str(size),
        "O16N_RUNTIME__%s__MAX_SIZE" % runtime.upper(): str(max(size, 8) + 2),
        "O16N_RUNTIME__%s__FORK_WORKERS" % runtime.upper(): "true" if fork else "false",
        "O16N_RUNTIME__%s__INITIAL_SIZE" % other.upper(): "0",
    })


def wait_idle(server, token, runtime, wanted):
    """Waits until the pool has `wanted` idle workers; returns when it saw them."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if pool(server, token, runtime).get("idle", 0) >= wanted:
            return time.perf_counter()
        time.sleep(0.002)
    raise RuntimeError("the %s pool did not warm up" % runtime)


def pss_kib(server_pid):
    """The PSS of every process below the server, in KiB."""
    total = 0
    for pid in descendants(server_pid):
        try:
            with open("/proc/%s/smaps_rollup" % pid) as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def pool_memory(runtime, size, fork):
    with tempfile.TemporaryDirectory() as data_dir:
        server = server_for(data_dir, runtime, size, fork)
        try:
            token = login(server)
            wait_idle(server, token, runtime, size)
            # Let the workers settle (imports done, first collections run) before reading.
            time.sleep(2)
            return pss_kib(server.process.pid)
        finally:
            server.stop()


def add_times(runtime, fork):
    """Times a pool of one takes to have an idle worker again after a session took it."""
    with tempfile.TemporaryDirectory() as data_dir:
        server = server_for(data_dir, runtime, 1, fork)
        try:
            token = login(server)
            connection = server.connection()
            samples = []
            for _ in range(ROUNDS):
                wait_idle(server, token, runtime, 1)
                status, body = call(connection, "POST", "/sessions", token,
                                    {"runtimeType": "Python" if runtime == "python" else "R"})
                assert status == 201, body
                taken = time.perf_counter()
                ready = wait_idle(server, token, runtime, 1)
                samples.append(ready - taken)
                call(connection, "DELETE", "/sessions/" + body["sessionId"], token)
            return samples
        finally:
            server.stop()


def main():
    rows = []
    missed = []
    for runtime in ("python", "r"):
        for fork in (True, False):
            how = "forked" if fork else "spawned"
            one = pool_memory(runtime, 1, fork)
            many = pool_memory(runtime, LARGE_POOL, fork)
            beyond_first = (many - one) / (LARGE_POOL - 1) / 1024
            rows.append(("%s %s: PSS of a pool of 1 / of %d (MiB)" % (runtime, how, LARGE_POOL),
                         "%.1f / %.1f" % (one / 1024, many / 1024)))
            rows.append(("%s %s: PSS per worker beyond the first (MiB)" % (runtime, how),
                         "%.1f" % beyond_first))
            samples = add_times(runtime, fork)
            p50 = percentile(samples, 0.5) * 1000
            rows.append(("%s %s: adding a worker, p50 / p99 (ms)" % (runtime, how), "%.0f / %.0f" % (
                p50, percentile(samples, 0.99) * 1000)))
            if fork and (beyond_first > TARGET_MIB or p50 > TARGET_MS):
                missed.append(runtime)
    report("Warm workers, forked from a template and spawned (targets when forked: <= %d MiB "
           "beyond the first, <= %d ms p50)" % (TARGET_MIB, TARGET_MS), rows)
    if missed:
        print("targets missed: " + ", ".join(missed))


if __name__ == "__main__":
    main()
