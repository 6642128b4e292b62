"""Property-based run of schemathesis over the service's OpenAPI schema: no request makes a 5xx,
and answers conform to the documented status codes, content types and schemas.

Bounded (max_examples per operation) so it stays a few seconds on the tiny predictor. The admin
token is sent, so registry writes are exercised too (on a temp registry).
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pickwise.api.http.app import create_app
from pickwise.api.http.settings import ServiceSettings
from tests.api_support import TOKEN, copy_models

MAX_EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, tiny_predictor):
    registry = copy_models(tmp_path_factory.mktemp("schemathesis") / "registry")
    app = create_app(registry, predictor=tiny_predictor,
                     settings=ServiceSettings(admin_token=TOKEN, sync_plan_limit=50, job_plan_limit=100))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = [("POST", "/v1/select"), ("POST", "/v1/predict"), ("POST", "/v1/plan"), ("POST", "/v1/plans"), ("GET", "/v1/plans/{job_id}"),
              ("DELETE", "/v1/plans/{job_id}"),
              ("GET", "/v1/models"), ("GET", "/v1/models/{name}"), ("POST", "/v1/models"),
              ("PUT", "/v1/models/{name}"), ("DELETE", "/v1/models/{name}"), ("GET", "/healthz"), ("GET", "/readyz"),
              ("GET", "/metrics"),
              # the gateway; these models have no endpoint, so nothing is forwarded anywhere
              ("POST", "/openai/v1/chat/completions"), ("GET", "/openai/v1/models"),
              ("GET", "/openai/v1/models/{model}"),
              ("POST", "/v1/feedback"), ("GET", "/v1/outcomes/stats")]


def test_every_operation_is_covered(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


# Explicit hypothesis loop rather than schemathesis' pytest plugin: the plugin's lazy fixture
# loader does not work with this pytest version ('Function' object has no attribute '_nodeid').
# Negative cases (bodies that break the schema) exist only for operations that take a body.
CASES = [(GenerationMode.POSITIVE, m, p) for m, p in OPERATIONS] + [
    (GenerationMode.NEGATIVE, m, p) for m, p in OPERATIONS if m == "POST"]


@pytest.mark.parametrize("mode, method, path", CASES)
def test_no_server_errors_and_documented_answers(api_schema, mode, method, path):
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def run(case):
        case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS)

    run()
