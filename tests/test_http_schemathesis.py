"""Schemathesis against the running daemon's `/openapi.json`: generated requests (valid and
invalid) for every operation must never get a 5xx, and every answer must match the document
(status code, content type, headers, body schema).

The daemon runs on its own event loop in a thread: schemathesis sends blocking requests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from gateway.app import Gateway
from gateway.http.api import HttpApi
from gateway.keys import create_key
from tests.test_http_harness import daemon_config

EXAMPLES_PER_OPERATION = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, API key) of a daemon running in a background thread."""
    tmp_path: Path = tmp_path_factory.mktemp("schemathesis")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="daemon", daemon=True)
    thread.start()
    # Generous limits: the fuzzer sends far more than a customer would.
    config = daemon_config(
        tmp_path,
        http={"requests_per_second": 100_000.0, "messages_per_second": 100_000.0},
        otp={"max_sends": 100, "prefix_max_sends": 0},
    )

    async def start() -> tuple[Gateway, str]:
        gateway = Gateway(config)
        await gateway.start()
        minted = await create_key(
            gateway.message_store, "fuzz", scopes=["messages", "otp", "optouts", "inbound"]
        )
        return gateway, minted.secret

    gateway, secret = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    api = gateway.http_api
    assert isinstance(api, HttpApi)
    try:
        yield api.url, secret
    finally:
        asyncio.run_coroutine_threadsafe(gateway.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_every_operation_conforms_to_the_openapi_document(daemon: tuple[str, str]) -> None:
    base_url, secret = daemon
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {secret}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        conforms()
