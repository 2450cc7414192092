"""Benchmark of issue 3: session creation from a warm pool, a trivial execute over HTTP, the
memory of an idle pooled Python worker, and the CPU an idle server with warm workers uses.

Run with `bash bench/run.sh sessions`. Targets: create p50 <= 5 ms and p99 <= 20 ms; execute
p50 <= 1 ms; an idle server uses under 2% of a core (a busy loop would use 100%); memory is
reported (RSS and PSS).
"""

import os
import sys
import tempfile
import time

from common import Server, call, descendants, login, report, session_creates, summary_ms, wait_for_idle

CREATES = int(os.environ.get("BENCH_CREATES", "200"))
EXECUTES = int(os.environ.get("BENCH_EXECUTES", "2000"))
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE_SECONDS", "3"))


def cpu_seconds(pid):
    """User and system CPU time of a process so far, from /proc."""
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields; fields[0] is the 3rd.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_memory(server_pid):
    """RSS and PSS (kB) of the server's idle Python workers, from /proc. Sandboxed workers are
    not the server's children but further descendants (bubblewrap and its init come between)."""
    figures = []
    for pid in descendants(server_pid):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as cmdline:
                argv = cmdline.read().split(b"\0")
            # bubblewrap's own command line names the worker script too; only the interpreter
            # is a worker.
            is_worker = b"python" in os.path.basename(argv[0]) and any(
                arg.endswith(b"o16n_worker.py") for arg in argv)
        except OSError:
            continue
        if is_worker:
            values = {}
            with open("/proc/%s/smaps_rollup" % pid) as rollup:
                for line in rollup:
                    key, _, rest = line.partition(":")
                    if key in ("Rss", "Pss"):
                        values[key] = int(rest.split()[0])
            figures.append(values)
    return figures


def main():
    python = os.environ["O16N_BENCH_PYTHON"]
    with tempfile.TemporaryDirectory() as data_dir:
        server = Server(data_dir, {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": python,
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "2",
        })
        try:
            token = login(server)
            connection = server.connection()
            wait_for_idle(server, token, 2)

            memory = worker_memory(server.process.pid)
            before = cpu_seconds(server.process.pid)
            time.sleep(IDLE_SECONDS)
            idle_share = (cpu_seconds(server.process.pid) - before) / IDLE_SECONDS

            create = session_creates(server, token, CREATES)

            wait_for_idle(server, token, 2)
            _, body = call(connection, "POST", "/sessions", token, {"runtimeType": "Python"})
            session = body["sessionId"]
            executes = []
            for index in range(EXECUTES + 100):
                started = time.perf_counter()
                status, result = call(connection, "POST", "/sessions/%s/execute" % session, token, {"code": "x = 1"})
                elapsed = time.perf_counter() - started
                assert status == 200 and result["success"], result
                if index >= 100:  # warm-up
                    executes.append(elapsed)
        finally:
            server.stop()

    execute = summary_ms(executes)
    report("Sessions (o16n release build, 2 cores, client on the same machine)", [
        ("session create from a warm pool, p50 / p99 (target 5 / 20 ms)", "%.2f / %.2f ms (n=%d)" % (create["p50_ms"], create["p99_ms"], create["n"])),
        ("execute `x = 1` over HTTP, p50 / p99 (target p50 1 ms)", "%.3f / %.3f ms (n=%d)" % (execute["p50_ms"], execute["p99_ms"], execute["n"])),
        ("idle server with 2 warm workers, CPU (target < 2% of a core)", "%.2f%% of a core over %.0f s" % (idle_share * 100, IDLE_SECONDS)),
    ] + [
        ("idle pooled Python worker %d (numpy, pandas, sklearn, dill)" % (index + 1), "RSS %.1f MB, PSS %.1f MB" % (m["Rss"] / 1024, m["Pss"] / 1024))
        for index, m in enumerate(memory)
    ])
    failed = (create["p50_ms"] > 5 or create["p99_ms"] > 20 or execute["p50_ms"] > 1
              or idle_share > 0.02)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
