"""The answers to bad consumption: wrong types, missing inputs, failing code, unknown
services, and changes by someone who does not own the service."""

import requests


def publish(server, token, name, code, inputs, outputs, version="v1"):
    definition = {
        "code": code,
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": n, "type": t} for n, t in inputs],
        "outputParameterDefinitions": [{"name": n, "type": t} for n, t in outputs],
    }
    response = requests.post("%s/services/%s/%s" % (server.url, name, version), json=definition, headers={"Authorization": "Bearer " + token})
    assert response.status_code == 201, response.text


def consume(server, token, name, body, version="v1"):
    return requests.post("%s/api/%s/%s" % (server.url, name, version), json=body, headers={"Authorization": "Bearer " + token})


def test_consumption_errors_get_the_documented_answers(server):
    token = server.token()
    publish(server, token, "calc", "y = x * 2\nif x < 0: raise ValueError('negative input')", [("x", "numeric")], [("y", "numeric")])

    wrong_type = consume(server, token, "calc", {"x": "abc"})
    assert wrong_type.status_code == 400
    assert "`x`" in wrong_type.json()["message"]

    missing = consume(server, token, "calc", {})
    assert missing.status_code == 400
    assert "`x`" in missing.json()["message"] and "missing" in missing.json()["message"]

    failing = consume(server, token, "calc", {"x": -1})
    assert failing.status_code == 200
    assert failing.json()["success"] is False
    assert "ValueError: negative input" in failing.json()["errorMessage"]

    assert consume(server, token, "calc", {"x": 2}).json()["outputParameters"] == {"y": 4.0}
    assert consume(server, token, "nosuch", {"x": 2}).status_code == 404

    server.add_user("reader1", "Reader", "Reader-Pass-1")
    server.add_user("writer1", "Contributor", "Writer-Pass-1")
    reader, writer = server.token("reader1", "Reader-Pass-1"), server.token("writer1", "Writer-Pass-1")
    assert consume(server, reader, "calc", {"x": 3}).json()["outputParameters"] == {"y": 6.0}
    for other in (reader, writer):
        headers = {"Authorization": "Bearer " + other}
        deleted = requests.delete(server.url + "/services/calc/v1", headers=headers)
        assert deleted.status_code == 403, deleted.text
        patched = requests.patch(server.url + "/services/calc/v1", json={"code": "y = 0"}, headers=headers)
        assert patched.status_code == 403
    assert consume(server, token, "calc", {"x": 2}).json()["outputParameters"] == {"y": 4.0}
