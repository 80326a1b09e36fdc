"""Protected mode: an http:// listener beyond loopback needs a token, or an explicit insecure."""

from __future__ import annotations

from functools import partial

import anyio
import pytest

from dispatchio import TransportConfigError
from dispatchio.testing import RecordingHandler
from dispatchio.transport import PeerHello
from dispatchio_http import HttpsTransport, HttpTransport
from tests._transport_support import tls_contexts

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize(
    "url", ["http://0.0.0.0:0", "http://[::]:0", "http://192.0.2.1:0", "http://example.invalid:0"]
)
async def test_listening_beyond_loopback_without_a_token_is_refused_before_binding(
    url: str,
) -> None:
    transport = HttpTransport()
    with pytest.raises(TransportConfigError) as caught:
        # 192.0.2.1 is no address of this machine: binding it would fail otherwise.
        await transport.serve(RecordingHandler(), PeerHello("a", 1, ()), listen=[url])
    text = str(caught.value)
    assert text.startswith(f"refusing to listen on {url!r}: beyond loopback")
    assert 'token="..."' in text
    assert "https://" in text
    assert "insecure=True" in text


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(lambda: HttpTransport(token="t0ken", gateway=False), id="token"),
        pytest.param(lambda: HttpTransport(insecure=True, gateway=False), id="insecure"),
        pytest.param(
            lambda: HttpsTransport(ssl_context=tls_contexts()[0], gateway=False), id="https"
        ),
    ],
)
async def test_a_token_tls_or_insecure_allows_listening_on_every_interface(
    transport: object,
) -> None:
    made = transport()  # type: ignore[operator]
    scheme = made.scheme
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            urls = await tg.start(
                partial(
                    made.serve,
                    RecordingHandler(),
                    PeerHello("a", 1, ()),
                    listen=[f"{scheme}://0.0.0.0:0"],
                )
            )
            assert urls
            await made.aclose()


async def test_loopback_needs_no_token() -> None:
    made = HttpTransport(gateway=False)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            assert await tg.start(
                partial(
                    made.serve,
                    RecordingHandler(),
                    PeerHello("a", 1, ()),
                    listen=["http://localhost:0"],
                )
            )
            await made.aclose()
