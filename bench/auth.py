"""Benchmark of directory sign-in: logins through LDAP (a real slapd on loopback, loaded with
the test fixture's users and groups) beside local logins, and the cost of authenticated
requests made with an LDAP user's token beside a local user's, on the same server in one run.

Run with `bash bench/run.sh auth`. Targets: an LDAP login at most 20 ms p50; requests with an
LDAP user's token no slower than with a local user's (ratio >= 0.97 at 16 concurrent, the
median of paired runs).
"""

import os
import sys
import tempfile
import time

from common import ROOT, ADMIN_PASSWORD, Server, call, report, summary_ms

sys.path.insert(0, str(ROOT / "tests" / "fixtures" / "ldap"))
from slapd import start_slapd  # noqa: E402
from services import wrk

LOGINS = int(os.environ.get("BENCH_LOGINS", "300"))
ROUNDS = 3


def time_logins(server, username, password):
    connection = server.connection()
    samples, token = [], None
    for _ in range(LOGINS):
        started = time.perf_counter()
        status, body = call(connection, "POST", "/login", body={"username": username, "password": password})
        samples.append(time.perf_counter() - started)
        assert status == 200, body
        token = body["access_token"]
    return summary_ms(samples), token


def main():
    with tempfile.TemporaryDirectory() as ldap_dir, tempfile.TemporaryDirectory() as data_dir, \
            tempfile.TemporaryDirectory() as workdir:
        slapd, url = start_slapd(ldap_dir)
        server = Server(data_dir, {
            "O16N_RUNTIME__PYTHON__EXECUTABLE": os.environ["O16N_BENCH_PYTHON"],
            "O16N_RUNTIME__PYTHON__INITIAL_SIZE": "0",
            "O16N_RUNTIME__R__INITIAL_SIZE": "0",
            "O16N_AUTH__LOCAL__ADMIN_ENABLED": "true",
            "O16N_AUTH__LDAP__ENABLED": "true",
            "O16N_AUTH__LDAP__URL": url,
            "O16N_AUTH__LDAP__QUERY_USER_DN": "cn=query,dc=example,dc=org",
            "O16N_AUTH__LDAP__QUERY_USER_PASSWORD": "Query-Pass-1",
            "O16N_AUTH__LDAP__SEARCH_BASE": "dc=example,dc=org",
            "O16N_AUTH__ROLES__OWNER": '["Administrators"]',
        })
        try:
            ldap_login, ldap_token = time_logins(server, "alice", "Alice-Pass-1")
            local_login, local_token = time_logins(server, "admin", ADMIN_PASSWORD)
            report("Login, %d sequential (one connection)" % LOGINS, [
                ("LDAP user (service bind, search, groups, user bind)", ldap_login),
                ("local user (argon2)", local_login),
                ("LDAP p50 target <= 20 ms", "met" if ldap_login["p50_ms"] <= 20 else "MISSED"),
            ])

            # Both users are Owners, so the request does the same work for each.
            target = "http://%s:%d/services" % (server.host, server.port)
            pairs = []
            for round_ in range(ROUNDS):
                order = [("ldap", ldap_token), ("local", local_token)]
                if round_ % 2:
                    order.reverse()
                figures = {name: wrk(target, None, {"Authorization": "Bearer " + token}, 16, workdir, method="GET")
                           for name, token in order}
                pairs.append((figures["ldap"]["rps"] / figures["local"]["rps"], figures))
            pairs.sort(key=lambda pair: pair[0])
            ratio, figures = pairs[len(pairs) // 2]
            report("GET /services at 16 concurrent, median of %d paired runs" % ROUNDS, [
                ("LDAP user's token", figures["ldap"]),
                ("local user's token", figures["local"]),
                ("LDAP / local throughput (target >= 0.97)", round(ratio, 3)),
            ])
        finally:
            server.stop()
            slapd.kill()
            slapd.wait()


if __name__ == "__main__":
    main()
