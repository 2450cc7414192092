"""A service's generated Swagger 2.0 document validates, and a client generated from it
(bravado builds one at run time) logs in and consumes the service."""

import copy

import requests
from bravado.client import SwaggerClient
from bravado.requests_client import RequestsClient
from swagger_spec_validator.validator20 import validate_spec


def publish(server, token):
    definition = {
        "code": "total = a + b\nlabel = 'sum'",
        "description": "adds two numbers",
        "operationId": "add",
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": "a", "type": "numeric"}, {"name": "b", "type": "integer"}],
        "outputParameterDefinitions": [{"name": "total", "type": "numeric"}, {"name": "label", "type": "character"}],
    }
    response = requests.post(server.url + "/services/adder/1.0", json=definition, headers={"Authorization": "Bearer " + token})
    assert response.status_code == 201, response.text


def test_the_service_swagger_validates_and_a_generated_client_works(server):
    token = server.token()
    publish(server, token)
    document_url = server.url + "/api/adder/1.0/swagger.json"
    document = requests.get(document_url, headers={"Authorization": "Bearer " + token}).json()

    # The validator annotates the document it checks; the generated client gets a clean copy.
    validate_spec(copy.deepcopy(document), spec_url=document_url)

    generated = SwaggerClient.from_spec(document, origin_url=document_url, http_client=RequestsClient(), config={"use_models": False})
    login = generated.User.login(loginRequest={"username": "admin", "password": "Admin-Pass-1"}).response().result
    bearer = {"headers": {"Authorization": "Bearer " + login["access_token"]}}
    result = generated.adder.add(WebServiceParameters={"a": 1.5, "b": 2}, _request_options=bearer).response().result
    assert result["success"] is True
    assert result["outputParameters"] == {"total": 3.5, "label": "sum"}


def test_the_core_api_description_validates(server):
    document_url = server.url + "/swagger.json"
    document = requests.get(document_url).json()
    validate_spec(copy.deepcopy(document), spec_url=document_url)
    assert document["paths"]["/login"]["post"]["operationId"] == "login"
