"""Schemathesis against the gateway's own OpenAPI document, on a real server.

Generated requests, valid and invalid, for every operation but the event stream (which
stays open by design): the answers conform to the document (status codes, content
types, schemas), no 5xx appears other than the documented 502/503/504, and the process
keeps serving afterwards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import requests
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from dispatchio import DEFERRED, BasicMessageListener, Message, MessageDispatcher

from ._gateway_support import serve_gateway

#: Generated cases per operation and mode (negative ones where there is input to spoil).
POSITIVE = 120
NEGATIVE = 80
DOCUMENTED_5XX = {502, 503, 504}


def _raise(message: Message) -> None:
    raise RuntimeError("boom")


@asynccontextmanager
async def gateway() -> AsyncIterator[str]:
    dispatcher = MessageDispatcher("fuzzed", reply_timeout=5)
    for lid, callback in (
        ("echo", lambda m: m.content),
        ("boom", _raise),
        ("slow", lambda m: DEFERRED),
    ):
        listener = BasicMessageListener(lid)
        listener.add_rule(callback=callback)
        dispatcher.register(listener)
        dispatcher.subscribe("all", listener)
    async with dispatcher, serve_gateway(dispatcher, max_body_size=65536) as base:
        yield base


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    # The server runs on an event loop in another thread: schemathesis calls are blocking.
    with (
        start_blocking_portal("asyncio") as portal,
        portal.wrap_async_context_manager(gateway()) as url,
    ):
        yield url


def _operations(base: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document is valid
        operations.append(result.ok())
    return [op for op in operations if op.path != "/v1/events"]


def test_fuzzed_requests_conform_and_never_fail_the_server(base: str) -> None:
    operations = _operations(base)
    assert len(operations) >= 5  # schemathesis leaves out the document itself
    session = requests.Session()
    seen: dict[int, int] = {}

    for operation in operations:
        raw = operation.definition.raw
        modes = [(GenerationMode.POSITIVE, POSITIVE)]
        if raw.get("parameters") or raw.get("requestBody"):  # else nothing can be invalid
            modes.append((GenerationMode.NEGATIVE, NEGATIVE))
        for mode, count in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=count,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call(base_url=base, session=session, timeout=10)
                status = response.status_code
                seen[status] = seen.get(status, 0) + 1
                assert status < 500 or status in DOCUMENTED_5XX, (case, response.text)
                case.validate_response(
                    response,
                    checks=[
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ],
                )

            fuzz()

    assert sum(seen.values()) >= 300, seen
    # Still serving, and still right.
    health = session.get(f"{base}/v1/health", timeout=5)
    assert health.json() == {"status": "ok"}
    reply = session.post(
        f"{base}/v1/messages?wait=2",
        json={"type": "t", "destination": "echo", "content": [1]},
        timeout=5,
    )
    assert reply.status_code == 200
    assert reply.json()["content"] == [1]
