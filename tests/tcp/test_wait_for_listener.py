"""Waiting for a listener when nothing listens at the ``connect=`` URL: the error says so."""

from __future__ import annotations

import logging
import socket

import anyio
import pytest

from dispatchio import MessageDispatcher, make_plugin_manager
from tests.tcp._tcp_support import watching_logs


@pytest.mark.anyio
async def test_wait_for_listener_with_no_server_names_the_url_tried_and_its_last_error() -> None:
    # A bound socket that never listens: connecting is refused, and no other process can
    # take the port while the test runs.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{placeholder.getsockname()[1]}"
        dispatcher = MessageDispatcher(
            "client", connect=[url], plugins=make_plugin_manager(), reply_timeout=5.0
        )
        with anyio.fail_after(5):
            async with watching_logs() as logs, dispatcher:
                # The transport logs a failed dial just before it reports it to the core.
                await logs.wait_for(f"dialing {url} failed", logging.DEBUG)
                with pytest.raises(TimeoutError) as caught:
                    await dispatcher.wait_for_listener("greeter", timeout=0.05)
    text = str(caught.value)
    assert text.startswith(
        f"no process has a listener 'greeter' within 0.05 s; connect= URLs: {url} (last error: "
    )
    assert "(ConnectionRefusedError: " in text  # the error behind anyio's summary
    assert text.endswith("); connected processes: none")


@pytest.mark.anyio
async def test_wait_for_listener_before_any_dial_failed_says_none_has_yet() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{placeholder.getsockname()[1]}"
        dispatcher = MessageDispatcher(
            "client", connect=[url], plugins=make_plugin_manager(), reply_timeout=5.0
        )
        with anyio.fail_after(5):
            async with dispatcher:
                # No await between start and the wait's check: no dial has run yet.
                with pytest.raises(TimeoutError) as caught:
                    await dispatcher.wait_for_listener("greeter", timeout=0.05)
    assert str(caught.value).startswith(
        f"no process has a listener 'greeter' within 0.05 s; connect= URLs: {url}"
    )
