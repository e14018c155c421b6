"""Every guarded operation refuses every role its document does not name: a 403 problem, before the request is
read, whatever it carries. (The conformance runs call each operation only as the roles it names; this is
where the other roles are tried, on every operation of every service.)"""
import importlib

import pytest

from shared.config import ROLES
from tests.conftest import bearer, settings_for_test
from tests.support import operations, roles_allowed

SERVICES = ("intake", "routing", "hours", "notify")


@pytest.fixture(scope="module")
def clients(amqp_url, mongo_url):
    """Each service's web app (no worker: a refusal touches nothing a worker does)."""
    return {service: importlib.import_module(f"services.{service}.app").create_app(
        settings_for_test(service, amqp_url, mongo_url)).test_client() for service in SERVICES}


def placeholder(schema: dict) -> str:
    """A value of the parameter's type that names nothing."""
    if schema.get("type") == "integer":
        return str(schema.get("minimum", 0))
    return "0" * schema["minLength"] if schema.get("minLength", 1) > 1 else "nothing-here"


def refused(client, method: str, path: str, operation: dict, parameters: list[dict], role: str):
    # Path parameters get a value no resource has, and the body, of the documented type, is empty: the role alone
    # must decide.
    concrete = path
    for parameter in parameters:
        if parameter["in"] == "path":
            concrete = concrete.replace(f"{{{parameter['name']}}}", placeholder(parameter["schema"]))
    media_types = list(operation.get("requestBody", {}).get("content", {}))
    body = {"data": {}, "content_type": media_types[0]} if media_types[:1] == ["multipart/form-data"] else \
        {"json": {}} if media_types else {}
    return client.open(concrete, method=method, headers=bearer(role, dept="traffic-police", grid="lanshan-01"),
                       **body)


@pytest.mark.parametrize("service", SERVICES)
def test_each_operation_refuses_the_roles_it_does_not_name(clients, service):
    client = clients[service]
    document = client.get("/openapi.json").json
    tried = []
    for method, path, operation in operations(document):
        allowed = roles_allowed(operation)
        if allowed is None:
            continue
        parameters = operation.get("parameters", []) + document["paths"][path].get("parameters", [])
        for role in sorted(set(ROLES) - set(allowed)):
            answer = refused(client, method, path, operation, parameters, role)
            tried.append((method, path, role))
            assert (answer.status_code, answer.mimetype) == (403, "application/problem+json"), \
                (method, path, role, answer.status_code, answer.get_data(as_text=True)[:300])
    assert len(tried) > 10, tried  # the document names its roles as shared.auth writes them
