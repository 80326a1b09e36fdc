"""Waiting for a listener when nothing listens at the ``connect=`` URL: the error says so."""

from __future__ import annotations

import socket

import anyio
import pytest

from dispatchio import MessageDispatcher, make_plugin_manager


@pytest.mark.anyio
async def test_wait_for_listener_with_no_server_names_the_listener_and_the_url_tried() -> None:
    # A bound socket that never listens: connecting is refused, and no other process can
    # take the port while the test runs.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        url = f"tcp://127.0.0.1:{placeholder.getsockname()[1]}"
        dispatcher = MessageDispatcher(
            "client", connect=[url], plugins=make_plugin_manager(), reply_timeout=5.0
        )
        with anyio.fail_after(5):
            async with dispatcher:
                with pytest.raises(TimeoutError) as caught:
                    await dispatcher.wait_for_listener("greeter", timeout=0.3)
    assert str(caught.value) == (
        f"no process has a listener 'greeter' within 0.3 s; connect= URLs: {url};"
        " connected processes: none (is a process listening there? the transport logs why"
        " each attempt to connect failed, at DEBUG level)"
    )
