"""Without a secret, a hello claiming a linked process's ID cannot cut that process off."""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from dispatchio import Message
from dispatchio.testing._peers import open_peers
from dispatchio_tcp._handshake import PREFIX, decode_body, decode_prefix
from tests.tcp._tcp_support import raw_connect, raw_hello

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_an_impostor_hello_is_refused_and_a_genuine_restart_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with anyio.fail_after(30):
        async with open_peers(  # noqa: SIM117 (the bound covers opening the peers)
            url="tcp://127.0.0.1:0",
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
                await beta.call("listener", listener="echo", behaviour="echo")
                await alpha.wait_for_listener("slow", timeout=10)
                result: list[Message] = []

                async def ask() -> None:
                    result.append(await alpha.request(Message("ask", 1, destination="slow")))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    await beta.event("deferred")
                    # The impostor: a raw hello claiming "beta" with another incarnation.
                    with caplog.at_level(logging.WARNING, logger="dispatchio.tcp"):
                        async with await raw_connect(alpha.listen_urls[0]) as stream:
                            await stream.send(raw_hello("beta"))
                            reader = BufferedByteReceiveStream(stream)
                            size = decode_prefix(await reader.receive_exactly(PREFIX.size))
                            decode_body(await reader.receive_exactly(size))
                            # No verdict, no link: the connection is closed.
                            with pytest.raises((anyio.IncompleteRead, anyio.EndOfStream)):
                                await reader.receive_exactly(1)
                    assert any(
                        "claims to be process 'beta'" in m and "set a secret" in m
                        for m in caplog.messages
                    )
                    # The real beta kept its link: its request is still pending, answered now.
                    assert result == []
                    assert "beta" in alpha.peers
                    await beta.call("release", listener="slow", content="genuine")
                assert result[0].content == "genuine"

                # A genuine restart (the old process killed, a new incarnation) is accepted.
                beta.kill()
                reborn = await peers.spawn("beta")
                await reborn.call("listener", listener="echo2", behaviour="echo")
                await alpha.wait_for_listener("echo2", timeout=10)
                reply = await alpha.request(Message("ping", "back", destination="echo2"))
                assert reply.content == "back"
