"""The official Python client of the reference server, `azureml-model-management-sdk`,
against the real o16n server: the whole publish, consume, redeploy and delete flow."""

import json

import numpy as np
import pandas as pd
import requests
from azureml.deploy import DeployClient
from azureml.deploy.server import MLServer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from conftest import ADMIN_PASSWORD


def init():
    global factor
    factor = 2.0


def score(n, flag, s, f, vec, mat, df):
    global n_out, flag_out, s_out, vec_out, mat_out, df_out, seen, species
    import numpy as np

    n_out = n * 10
    flag_out = not flag
    s_out = s.upper()
    vec_out = vec * 2
    mat_out = mat.T
    df_out = df.assign(c=df["a"] + df["b"])
    seen = ",".join(type(value).__name__ for value in (n, flag, s, f, vec, mat, df))
    species = int(model.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))[0])
    with open("report.txt", "w") as report:
        report.write("hello " + s)
    print("conformance-console-marker")
    return f * factor


def score_v2(n, flag, s, f, vec, mat, df):
    return f * factor + 100


INPUTS = {"n": int, "flag": bool, "s": str, "f": float, "vec": np.array, "mat": np.matrix, "df": pd.DataFrame}
OUTPUTS = {
    "answer": float,
    "n_out": int,
    "flag_out": bool,
    "s_out": str,
    "vec_out": np.array,
    "mat_out": np.matrix,
    "df_out": pd.DataFrame,
    "seen": str,
    "species": int,
}


def trained_model():
    iris = load_iris()
    return LogisticRegression(max_iter=1000).fit(iris.data, iris.target)


def test_the_official_client_publishes_consumes_redeploys_and_deletes(server):
    publish_consume_redeploy_delete(server)


def test_the_official_client_flow_works_against_a_web_node_of_a_cluster(cluster):
    publish_consume_redeploy_delete(cluster)
    run_list_read_cancel_batches(cluster)


def publish_consume_redeploy_delete(server, credentials=("admin", ADMIN_PASSWORD)):
    client = DeployClient(server.url, use=MLServer, auth=credentials)
    model = trained_model()

    service = client.deploy_service(
        "svc",
        version="v1.0.0",
        description="client conformance service",
        code_fn=score,
        init_fn=init,
        inputs=INPUTS,
        outputs=OUTPUTS,
        models={"model": model},
        artifacts=["report.txt"],
    )

    listed = client.list_services("svc")
    assert [entry["version"] for entry in listed] == ["v1.0.0"]
    assert listed[0]["description"] == "client conformance service"
    assert listed[0]["myPermissionOnService"] == "read/write"
    fetched = client.get_service("svc", version="v1.0.0")

    args = (7, True, "abc", 1.5, np.array([1.0, 2.5]), np.matrix([[1, 2], [3, 4]]), pd.DataFrame({"a": [1, 2], "b": [10, 20]}))
    for target in (service, fetched):
        result = target.score(*args)
        assert result.error in (None, ""), result.error
        assert result.output("answer") == 3.0
        assert result.output("n_out") == 70
        assert result.output("flag_out") is False
        assert result.output("s_out") == "ABC"
        assert result.output("vec_out").tolist() == [2.0, 5.0]
        assert result.output("mat_out").tolist() == [[1, 3], [2, 4]]
        assert result.output("df_out").to_dict("list") == {"a": [1, 2], "b": [10, 20], "c": [11, 22]}
        assert result.output("seen") == "int,bool,str,float,ndarray,matrix,DataFrame"
        assert result.output("species") == int(model.predict(np.array([[5.1, 3.5, 1.4, 0.2]]))[0])
        assert "conformance-console-marker" in result.console_output
        assert result.artifact("report.txt", decode=True) == b"hello abc"

    document = json.loads(service.swagger())
    assert document["swagger"] == "2.0"
    assert document["info"]["title"] == "svc"
    assert document["paths"]["/api/svc/v1.0.0"]["post"]["operationId"] == "score"

    redeployed = client.redeploy_service(
        "svc", version="v1.0.0", code_fn=score_v2, init_fn=init, inputs=INPUTS, outputs={"answer": float}, models={"model": model}
    )
    # The client names the method after the new code_fn, and the PATCH updated the operationId.
    assert redeployed.score_v2(*args).output("answer") == 103.0

    unversioned = client.deploy_service("svc2", code_str="y = x * 2", inputs={"x": float}, outputs={"y": float})
    assert unversioned.consume(21.0).output("y") == 42.0
    # Without a version the server assigned one; "the latest" is the last listed.
    assert client.get_service("svc2").capabilities()["version"] == unversioned.capabilities()["version"]

    assert client.delete_service("svc", version="v1.0.0") is True
    token = server.token(*credentials)
    response = requests.post(server.url + "/api/svc/v1.0.0", json={}, headers={"Authorization": "Bearer " + token})
    assert response.status_code == 404
    assert client.list_services("svc") == []
    # The client deletes its snapshots and sessions after publishing: nothing is left over.
    headers = {"Authorization": "Bearer " + token}
    assert requests.get(server.url + "/snapshots", headers=headers).json() == []
    assert requests.get(server.url + "/sessions", headers=headers).json() == []


def test_the_official_client_runs_lists_reads_and_cancels_batches(server):
    run_list_read_cancel_batches(server)


def run_list_read_cancel_batches(server):
    import time

    client = DeployClient(server.url, use=MLServer, auth=("admin", ADMIN_PASSWORD))
    service = client.deploy_service(
        "batcher",
        version="v1",
        code_str="import time\ntime.sleep(delay)\ny = x * 2\nopen('out.txt', 'w').write(str(y))",
        inputs={"x": float, "delay": float},
        outputs={"y": float},
        artifacts=["out.txt"],
    )

    batch = service.batch(pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "delay": [0.0] * 4}), parallel_count=2).start()
    for _ in range(300):
        results = batch.results()
        if results.state.lower() == "complete":
            break
        time.sleep(0.1)
    assert results.total_item_count == 4 and results.completed_item_count == 4
    assert [results.execution(i).output("y") for i in range(4)] == [2.0, 4.0, 6.0, 8.0]
    assert batch.list_artifacts(2) == ["out.txt"]
    assert batch.artifact(2, "out.txt") == b"6.0"
    assert batch.execution_id in service.list_batch_executions()

    slow = service.batch([{"x": 1.0, "delay": 0.5}] * 20, parallel_count=1).start()
    slow.cancel()
    assert slow.execution_id not in service.list_batch_executions()
