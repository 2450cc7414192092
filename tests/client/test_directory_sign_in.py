"""The official client with directory sign-in: its whole publish/consume/redeploy/delete flow
as an LDAP user of a real slapd, and its token-string path (`auth='<token>'`, the way Azure AD
tokens obtained elsewhere reach it) with a token of an OpenID Connect provider that the test
itself plays, serving its discovery document and keys on loopback.
"""

import json
import os
import pathlib
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from azureml.deploy import DeployClient
from azureml.deploy.server import MLServer
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import Server

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "ldap"))
from slapd import start_slapd  # noqa: E402
from test_official_client import publish_consume_redeploy_delete

ROLES = {
    "O16N_AUTH__ROLES__OWNER": '["Administrators"]',
    "O16N_AUTH__ROLES__CONTRIBUTOR": '["Developers", "Quality"]',
    "O16N_AUTH__ROLES__READER": '["App developers"]',
}


@pytest.fixture
def slapd():
    """The fixture directory on plain LDAP (the Rust tests cover LDAP-S and StartTLS)."""
    with tempfile.TemporaryDirectory() as directory:
        process, url = start_slapd(directory)
        try:
            yield url
        finally:
            process.kill()
            process.wait()


def start_server(data_dir, env):
    return Server(os.environ["O16N_BINARY"], data_dir, env=dict(ROLES, **env))


def test_the_official_client_flow_passes_with_an_ldap_user(slapd):
    with tempfile.TemporaryDirectory() as data_dir:
        server = start_server(data_dir, {
            "O16N_AUTH__LDAP__ENABLED": "true",
            "O16N_AUTH__LDAP__URL": slapd,
            "O16N_AUTH__LDAP__QUERY_USER_DN": "cn=query,dc=example,dc=org",
            "O16N_AUTH__LDAP__QUERY_USER_PASSWORD": "Query-Pass-1",
            "O16N_AUTH__LDAP__SEARCH_BASE": "dc=example,dc=org",
            "O16N_AUTH__LDAP__SEARCH_FILTER": "(uid={0})",
        })
        try:
            # bob is a Contributor through his Developers group.
            publish_consume_redeploy_delete(server, ("bob", "Bob-Pass-1"))
            # A wrong password is the 401 the client raises on.
            with pytest.raises(Exception) as refused:
                DeployClient(server.url, use=MLServer, auth=("bob", "wrong"))
            assert "401" in str(refused.value)
        finally:
            server.stop()


class Provider:
    """An OpenID Connect provider: discovery document and key set over HTTP, RS256 tokens."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        public.update(kid="k1", alg="RS256", use="sig")
        keys = {"keys": [public]}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": provider.issuer, "jwks_uri": provider.issuer + "/keys"}
                elif self.path == "/keys":
                    body = keys
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = "http://127.0.0.1:%d" % self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def token(self, upn, groups):
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": "o16n-api", "upn": upn, "groups": groups,
                  "iat": now, "nbf": now - 5, "exp": now + 600}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})

    def stop(self):
        self.http.shutdown()


def test_the_official_client_takes_a_provider_token_as_a_string():
    provider = Provider()
    try:
        with tempfile.TemporaryDirectory() as data_dir:
            server = start_server(data_dir, {
                "O16N_AUTH__OIDC__ENABLED": "true",
                "O16N_AUTH__OIDC__AUTHORITY": provider.issuer,
                "O16N_AUTH__OIDC__AUDIENCE": "o16n-api",
            })
            try:
                jane = DeployClient(server.url, use=MLServer,
                                    auth=provider.token("jane@corp.example", ["Developers"]))
                service = jane.deploy_service("triple", version="v1", code_str="y = x * 3",
                                              inputs={"x": float}, outputs={"y": float})
                assert service.consume(14.0).output("y") == 42.0

                reader = DeployClient(server.url, use=MLServer,
                                      auth=provider.token("rita@corp.example", ["App developers"]))
                assert reader.get_service("triple", version="v1").consume(2.0).output("y") == 6.0
                assert [entry["versionPublishedBy"] for entry in reader.list_services("triple")] == ["jane@corp.example"]
                with pytest.raises(Exception) as refused:
                    reader.delete_service("triple", version="v1")
                assert "403" in str(refused.value)

                assert jane.delete_service("triple", version="v1") is True
            finally:
                server.stop()
    finally:
        provider.stop()
