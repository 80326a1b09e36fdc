"""Protected mode: listening beyond loopback needs a secret or TLS, or an explicit insecure."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from dispatchio import MessageDispatcher, TransportConfigError, make_plugin_manager
from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello
from dispatchio_tcp import TcpOptions, TcpTransport

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url", ["tcp://0.0.0.0:0", "tcp://[::]:0", "tcp://192.0.2.1:0", "tcp://example.invalid:0"]
)
async def test_listening_beyond_loopback_without_a_secret_or_tls_is_refused_before_binding(
    url: str,
) -> None:
    transport = TcpTransport()
    with pytest.raises(TransportConfigError) as caught:
        # 192.0.2.1 is no address of this machine: binding it would fail otherwise.
        await transport.serve(RecordingHandler(), PeerHello("a", 1, ()), listen=[url])
    text = str(caught.value)
    assert text.startswith(f"refusing to listen on {url!r}: beyond loopback")
    assert 'secret="..."' in text
    assert "ssl_context=" in text
    assert "insecure=True" in text


@pytest.mark.parametrize("url", ["tcp://127.0.0.1:0", "tcp://localhost:0"])
async def test_loopback_needs_no_secret(url: str) -> None:
    await _serves(TcpTransport(), url)


@pytest.mark.parametrize("options", [{"secret": "s3cret"}, {"insecure": True}])
async def test_a_secret_or_insecure_allows_listening_on_every_interface(
    options: dict[str, object],
) -> None:
    await _serves(TcpTransport(TcpOptions.model_validate(options)), "tcp://0.0.0.0:0")


async def test_a_dispatcher_listening_beyond_loopback_without_a_secret_says_how_to_fix_it() -> None:
    dispatcher = MessageDispatcher(
        "open", listen=["tcp://0.0.0.0:0"], plugins=make_plugin_manager()
    )
    with anyio.fail_after(5), pytest.raises(TransportConfigError, match="insecure=True"):
        async with dispatcher:
            pass


async def _serves(transport: TcpTransport, url: str) -> None:
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            urls = await tg.start(
                partial(transport.serve, RecordingHandler(), PeerHello("a", 1, ()), listen=[url])
            )
            assert urls
            await transport.aclose()
