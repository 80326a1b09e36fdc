"""Packaging, entry point, options and URL parsing of dispatchio-tcp."""

from __future__ import annotations

import pydoc
import re
import ssl
import subprocess
import sys

import pytest

import dispatchio_tcp
from dispatchio import TransportConfigError, make_plugin_manager
from dispatchio.transport import resolve_transport
from dispatchio_tcp import TcpOptions, TcpTransport
from dispatchio_tcp._options import parse_url


def test_public_names_are_pinned_and_sorted() -> None:
    assert dispatchio_tcp.__all__ == ["TcpOptions", "TcpTransport"]


def test_help_of_tcp_options_shows_every_option_with_its_description_and_default() -> None:
    rendered = pydoc.render_doc(TcpOptions, renderer=pydoc.TextDoc())
    lines = (line.removeprefix(" |") for line in rendered.splitlines())
    text = " ".join(" ".join(lines).split())
    head = text[: text.index("Method resolution order")]  # before pydantic's own members
    for name, info in TcpOptions.model_fields.items():
        assert f"{name}: " in head
        assert f"= {info.default!r}" in head
        assert " ".join((info.description or "").split()) in head
    assert head.index("secret: ") < head.index("Shared secret every peer")


def test_tcp_transport_documents_itself_in_the_transport_template() -> None:
    doc = TcpTransport.__doc__ or ""
    sections = [
        re.search(rf"^    {name}", doc, re.MULTILINE)
        for name in ("Features:", "URL format:", r"Options \(`TcpOptions`", "Limitations:")
    ]
    assert all(sections)
    assert "module docstring" not in doc
    assert "_transport" not in doc


def test_the_entry_point_registers_the_tcp_scheme_lazily() -> None:
    assert make_plugin_manager().transports()["tcp"] == "dispatchio_tcp._transport:TcpTransport"


def test_importing_the_plugin_module_does_not_import_the_transport() -> None:
    code = (
        "import sys, dispatchio_tcp._plugin\n"
        "assert 'dispatchio_tcp._transport' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_resolve_transport_builds_a_tcp_transport_with_url_options() -> None:
    transport = resolve_transport(
        "tcp://127.0.0.1:7400?max_frame_size=65536", make_plugin_manager()
    )
    assert isinstance(transport, TcpTransport)
    assert transport.options.max_frame_size == 65536


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(TransportConfigError, match="max_frame_sise"):
        TcpTransport(max_frame_sise=1)


def test_options_are_validated() -> None:
    with pytest.raises(TransportConfigError, match="reconnect_max"):
        TcpTransport(reconnect_min=3, reconnect_max=1)


def test_the_secret_is_not_in_the_repr_of_the_options() -> None:
    assert "hunter2" not in repr(TcpOptions.model_validate({"secret": "hunter2"}))


def test_a_server_only_ssl_context_cannot_dial() -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with pytest.raises(TransportConfigError, match="set ssl_client_context"):
        TcpTransport(ssl_context=server)


def test_every_option_has_a_description() -> None:
    assert all(f.description for f in TcpOptions.model_fields.values())


@pytest.mark.parametrize(
    ("url", "listening", "expected"),
    [
        ("tcp://127.0.0.1:7400", False, ("127.0.0.1", 7400)),
        ("tcp://[::1]:7400", False, ("::1", 7400)),
        ("tcp://:7400", False, ("127.0.0.1", 7400)),
        ("tcp://", True, ("127.0.0.1", 0)),
        ("tcp://localhost", True, ("localhost", 0)),
    ],
)
def test_urls_are_parsed(url: str, listening: bool, expected: tuple[str, int]) -> None:
    assert parse_url(url, listening=listening) == expected


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:1", "is not a tcp:// URL"),
        ("tcp://127.0.0.1", "missing port"),
        ("tcp://127.0.0.1:port", "Port could not be cast"),
        ("tcp://127.0.0.1:99999", "out of range"),
        ("tcp://127.0.0.1:1/path", "has no path"),
    ],
)
def test_malformed_urls_are_refused(url: str, error: str) -> None:
    with pytest.raises(TransportConfigError, match=error):
        parse_url(url, listening=False)
