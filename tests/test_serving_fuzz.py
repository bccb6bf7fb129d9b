"""Property-based: inputs generated from the server's own OpenAPI never produce a 5xx or kill it.

Schemathesis derives valid and invalid requests for every endpoint from /openapi.json and sends
them over HTTP to a real `promoter serve` process; the example budget keeps the run bounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from .conftest import Server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzzed_server(registered_digits: Path) -> Iterator[Server]:
    running = Server(registered_digits, "--model-uri", "models:/digits/1", "--max-request-inputs", "64")
    running.wait_ready()
    yield running
    assert running.client.get("/healthz").status_code == 200, "the server died under fuzzing"
    assert running.stop()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_input_produces_a_server_error(fuzzed_server: Server, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the server's OpenAPI is invalid: {result}"
        operations.append(result.ok())
    assert len(operations) >= 10  # every endpoint of the server is exercised

    fuzzed = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: Any) -> None:
            case.call_and_validate(base_url=fuzzed_server.url, checks=[not_a_server_error])

        try:
            call()
        except Unsatisfiable:
            # nothing to make invalid: an endpoint without body or parameters (e.g. GET /healthz)
            assert mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET"
            continue
        fuzzed.add(f"{operation.method.upper()} {operation.path}")
    assert {"POST /predict", "POST /v2/models/{name}/infer"} <= fuzzed
