"""A flood of silent connections against a live ``http://`` child: a good peer still gets in."""

from __future__ import annotations

import contextlib
from pathlib import Path

import anyio
import pytest

from dispatchio.testing._peers import open_peers
from tests._transport_support import rss_kib, served_within_a_second
from tests.http._hostile import connect

pytestmark = pytest.mark.anyio

_SILENT = 1000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiohttp has no trio support


def sockets(pid: int) -> int:
    """Sockets process ``pid`` holds open (from /proc; Linux)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed since it was listed
            count += fd.readlink().name.startswith("socket:")
    return count


async def test_a_good_peer_is_served_within_a_second_despite_1000_silent_connections(
    tmp_path: Path,
) -> None:
    with anyio.fail_after(30):
        async with open_peers(
            url="http://127.0.0.1:0",
            transport_options={},
            backend="asyncio",
            directory=tmp_path,
            heartbeat_interval=1.0,
            heartbeat_tolerance=3,
            reply_timeout=5.0,
        ) as peers:
            child = await peers.spawn("srv", connect=[])
            await child.call("listener", listener="echo", behaviour="echo")
            pid = child.process.pid
            async with contextlib.AsyncExitStack() as stack:
                before, held = rss_kib(pid), sockets(pid)
                for _ in range(_SILENT):  # connected, never a byte sent (header_timeout 5 s)
                    await stack.enter_async_context(await connect(child.urls[0]))
                # Each command is a trip through the child's event loop, which accepts
                # a batch of the connections waiting in its backlog meanwhile.
                while sockets(pid) < held + _SILENT:
                    await child.call("wait_listener", listener="echo")
                after = rss_kib(pid)
                print(
                    f"\n{_SILENT} silent connections to http://: child RSS {before} KiB ->"
                    f" {after} KiB, {(after - before) * 1024 / _SILENT:.0f} bytes per connection"
                )
                await served_within_a_second(list(child.urls))
