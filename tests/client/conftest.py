"""Fixtures for the client-side tests: a real o16n server (the binary `scripts/test.sh` built)
on a free port with a fresh data directory, and the official client's one compatibility fix.
"""

import json
import os
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

ADMIN_PASSWORD = "Admin-Pass-1"


def install_function_beget_shim():
    """Replaces the client's `function_beget`, which builds the consume method with the code
    object constructor of Python <= 3.7 and fails on newer interpreters. The replacement only
    builds the same local method (named after the operationId, taking the inputs positionally
    or by name, forwarding `{name: value}` to `Service._consume`); it sends nothing itself.
    Nothing else of the client is changed.
    """
    import azureml.common.utils
    import azureml.deploy.server.service

    def function_beget(fn, fn_name, fn_args, doc=""):
        names = list(fn_args[1:])

        def consume(self, *args, **kwargs):
            values = dict(zip(names, args))
            values.update(kwargs)
            return self._consume(values)

        consume.__name__ = fn_name
        consume.__doc__ = doc
        return consume

    azureml.common.utils.function_beget = function_beget
    azureml.deploy.server.service.function_beget = function_beget


install_function_beget_shim()


class Server:
    def __init__(self, binary, data_dir, role="onebox", bind="127.0.0.1", env=None):
        self.binary = binary
        self.data_dir = data_dir
        environment = dict(
            os.environ,
            O16N_ADMIN_PASSWORD=ADMIN_PASSWORD,
            O16N_RUNTIME__PYTHON__EXECUTABLE=os.environ["O16N_TEST_PYTHON"],
            O16N_RUNTIME__PYTHON__INITIAL_SIZE="1",
            O16N_RUNTIME__R__INITIAL_SIZE="0",
            RUST_LOG="warn",
        )
        environment.update(env or {})
        self.environment = environment
        self.process = subprocess.Popen(
            [binary, "serve", "--role", role, "--bind", bind, "--port", "0", "--data-dir", data_dir],
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        line = self.process.stdout.readline().strip()
        assert line.startswith("listening on "), line
        self.url = line[len("listening on "):]

    def token(self, user="admin", password=ADMIN_PASSWORD):
        response = requests.post(self.url + "/login", json={"username": user, "password": password})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def add_user(self, name, role, password):
        subprocess.run(
            [self.binary, "admin", "user", "add", name, "--role", role, "--data-dir", self.data_dir],
            input=password + "\n",
            text=True,
            check=True,
            capture_output=True,
            env=self.environment,
        )

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def server():
    binary = os.environ["O16N_BINARY"]
    with tempfile.TemporaryDirectory() as data_dir:
        running = Server(binary, data_dir)
        try:
            yield running
        finally:
            running.stop()


CLUSTER_SECRET = "client-tests-cluster-secret"


@pytest.fixture
def cluster():
    """A web node and a compute node (on 127.0.0.2, standing for another machine) sharing a
    throwaway PostgreSQL database; the fixture yields the web node, which clients talk to."""
    binary = os.environ["O16N_BINARY"]
    admin_url = os.environ.get("O16N_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    database = "o16n_client_%s" % uuid.uuid4().hex
    subprocess.run(["psql", admin_url, "-qc", 'CREATE DATABASE "%s"' % database], check=True)
    url = admin_url.rsplit("/", 1)[0] + "/" + database
    nodes = []
    try:
        with tempfile.TemporaryDirectory() as compute_dir, tempfile.TemporaryDirectory() as web_dir:
            compute = Server(binary, compute_dir, role="compute", bind="127.0.0.2",
                             env={"O16N_CLUSTER__SECRET": CLUSTER_SECRET})
            nodes.append(compute)
            web = Server(binary, web_dir, role="web", env={
                "O16N_CLUSTER__SECRET": CLUSTER_SECRET,
                "O16N_DATABASE__URL": url,
                "O16N_CLUSTER__COMPUTE_NODES": json.dumps([compute.url]),
            })
            nodes.append(web)
            token = web.token()
            deadline = time.monotonic() + 60
            while True:
                status = requests.get(web.url + "/status", headers={"Authorization": "Bearer " + token}).json()
                if status["statusCode"] == "pass":
                    break
                assert time.monotonic() < deadline, status
                time.sleep(0.1)
            yield web
    finally:
        for node in reversed(nodes):
            node.stop()
        subprocess.run(["psql", admin_url, "-qc", 'DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % database], check=True)
