"""``GET /openapi.json`` against the server it describes: schemathesis generates requests for
every operation from the document and sends them to a real uvicorn server (echo backend, an
in-memory store); no answer may be a 5xx, and every 2xx must match its response schema."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from tests.stubs.memchat_server import Running

from memchat.backends.fake import EchoBackend
from memchat.core import Budget

ROUTES = {  # every route build_server makes, by path and methods
    "/v1/chat/completions": {"post"}, "/v1/responses": {"post"},
    "/v1/responses/{rid}": {"get", "delete"}, "/v1/tokenize": {"post"},
    "/v1/tokenize/count": {"post"}, "/v1/models": {"get"}, "/openapi.json": {"get"},
    "/v1/conversations": {"get", "post"},
    "/v1/conversations/{cid}": {"get", "post", "patch", "delete"},
    "/v1/conversations/{cid}/fork": {"post"}, "/v1/conversations/{cid}/messages": {"get"},
    "/v1/conversations/{cid}/messages/{mid}": {"delete"},
    "/v1/conversations/{cid}/messages/{mid}/pin": {"post", "delete"},
    "/v1/conversations/{cid}/context": {"get"},
    "/v1/conversations/{cid}/items": {"get", "post"},
    "/v1/conversations/{cid}/items/{iid}": {"get", "delete"},
}  # fmt: skip


@pytest.fixture(scope="module")
def served() -> Iterator[Running]:
    with Running(EchoBackend(), budget=Budget(2000, 100)) as r:
        yield r


def test_the_document_covers_every_route(served: Running) -> None:
    doc = httpx.get(f"http://127.0.0.1:{served.port}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert {p: set(ops) for p, ops in doc["paths"].items()} == ROUTES
    app_paths = {getattr(r, "path", None) for r in served.server.config.app.routes}
    assert app_paths == set(ROUTES)


def test_no_server_errors_and_2xx_answers_match_their_schemas(served: Running) -> None:
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{served.port}/openapi.json")
    checks = [not_a_server_error, response_schema_conformance]
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=50, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=checks)

        run()
