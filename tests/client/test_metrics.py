"""/metrics read by the Prometheus client's own parser: request counts by route template,
service stages, dedicated and shared pools of a real compute node, and the bearer token."""

import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import Server


def samples(url, headers=None):
    response = requests.get(url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found, name, **labels):
    matching = [v for found_labels, v in found.get(name, []) if all(found_labels.get(k) == v2 for k, v2 in labels.items())]
    assert matching, "no %s with %s in %s" % (name, labels, sorted(found))
    return sum(matching)


def test_metrics_parse_and_show_routes_stages_and_pools_of_the_compute_nodes(cluster):
    token = cluster.token()
    auth = {"Authorization": "Bearer " + token}
    definition = {
        "code": "y = x * 2",
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
    }
    assert requests.post(cluster.url + "/services/calc/v1", json=definition, headers=auth).status_code == 201
    pooled = requests.post(cluster.url + "/services/calc/v1/pool", json={"InitialPoolSize": 1, "MaxPoolSize": 2}, headers=auth)
    assert pooled.status_code == 200, pooled.text
    deadline = time.monotonic() + 60
    while requests.get(cluster.url + "/services/calc/v1/pool", headers=auth).json()[0]["Status"] != "Success":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    for x in range(5):
        answer = requests.post(cluster.url + "/api/calc/v1", json={"x": x}, headers=auth)
        assert answer.json()["outputParameters"] == {"y": 2.0 * x}

    found = samples(cluster.url)
    assert value(found, "o16n_http_requests_total", route="/api/{name}/{version}", method="POST", status="200") == 5
    assert not any(labels.get("route", "").startswith("/api/calc") for labels, _ in found["o16n_http_requests_total"])
    for stage in ("queue", "load", "execute", "hop", "total"):
        assert value(found, "o16n_service_request_duration_seconds_count", service="calc", version="v1", stage=stage) == 5
    assert value(found, "o16n_service_requests_total", service="calc", version="v1", outcome="success") == 5
    assert value(found, "o16n_logins_total", provider="local", outcome="success") >= 1
    assert value(found, "o16n_build_info") == 1

    node = requests.get(cluster.url + "/computenodes", headers=auth)
    assert node.status_code == 200
    [(labels, up)] = found["o16n_compute_node_up"]
    assert up == 1 and labels["node"].startswith("http://127.0.0.2:")
    workers = {labels["state"]: v for labels, v in found["o16n_pool_workers"] if labels["pool"] == "calc/v1"}
    assert workers["idle"] + workers["busy"] >= 1 and workers["starting"] == 0
    assert value(found, "o16n_pool_max_workers", pool="calc/v1", runtime="Python") == 2
    # The requests never touched the shared Python pool: it started at most its warm worker
    # (which may still be starting) and none of its workers is busy.
    assert value(found, "o16n_worker_starts_total", pool="shared", runtime="Python") <= 1
    assert value(found, "o16n_pool_workers", pool="shared", runtime="Python", state="busy") == 0
    assert value(found, "o16n_worker_starts_total", pool="calc/v1", runtime="Python") >= 1
    assert value(found, "o16n_pool_waiting_requests", pool="shared", runtime="Python") == 0


def test_metrics_can_require_a_bearer_token(tmp_path):
    import os
    server = Server(os.environ["O16N_BINARY"], str(tmp_path), env={"O16N_METRICS__BEARER_TOKEN": "scrape-secret"})
    try:
        refused = requests.get(server.url + "/metrics")
        assert refused.status_code == 401
        assert "message" in refused.json()
        assert requests.get(server.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        found = samples(server.url, {"Authorization": "Bearer scrape-secret"})
        assert value(found, "o16n_compute_node_up", node="local") == 1
    finally:
        server.stop()
