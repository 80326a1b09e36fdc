"""Without a token, a hello claiming a linked process's ID cannot cut that process off."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest

from dispatchio import Message
from dispatchio.testing._peers import open_peers
from tests.http._hostile import peer_hello, peer_upgrade

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_impostor_hello_is_refused_and_a_genuine_restart_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(30):
        async with open_peers(  # noqa: SIM117 (the bound covers opening the peers)
            url="http://127.0.0.1:0",
            transport_options={},
            backend="asyncio",
            directory=tmp_path,
            heartbeat_interval=1.0,
            heartbeat_tolerance=3,
            reply_timeout=20.0,
        ) as peers:
            async with peers.dispatcher("alpha") as alpha:
                beta = await peers.spawn("beta")
                await beta.call("listener", listener="slow", behaviour="defer")
                await alpha.wait_for_listener("slow", timeout=10)
                result: list[Message] = []

                async def ask() -> None:
                    result.append(await alpha.request(Message("ask", 1, destination="slow")))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    await beta.event("deferred")
                    with caplog.at_level(logging.WARNING, logger="dispatchio.http"):
                        status, head, stream = await peer_upgrade(
                            alpha.listen_urls[0], peer_hello("beta")
                        )
                        await stream.aclose()
                    assert status == 409
                    assert b"claimed" in head
                    assert any(
                        "claims to be process 'beta'" in m and "set a token" in m
                        for m in caplog.messages
                    )
                    assert result == []
                    assert "beta" in alpha.peers
                    await beta.call("release", listener="slow", content="genuine")
                assert result[0].content == "genuine"

                beta.kill()
                reborn = await peers.spawn("beta")
                await reborn.call("listener", listener="echo2", behaviour="echo")
                await alpha.wait_for_listener("echo2", timeout=10)
                reply = await alpha.request(Message("ping", "back", destination="echo2"))
                assert reply.content == "back"
