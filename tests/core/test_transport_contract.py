"""Choosing a transport by URL scheme through the plugins, and validating its options."""

from __future__ import annotations

import anyio
import pytest

from dispatchio import MessageDispatcher, PluginManager, TransportConfigError, hookimpl
from dispatchio.hookspecs import RegisterTransport
from dispatchio.transport import describe_error, resolve_transport
from tests.core._memory_transport import MemoryTransport


class MemoryPlugin:
    @hookimpl
    def dispatchio_register_transports(self, register: RegisterTransport) -> None:
        register("mem", "tests.core._memory_transport:MemoryTransport")
        register("broken", "tests.core._no_such_module:Transport")


@pytest.fixture
def with_memory(plugins: PluginManager) -> PluginManager:
    plugins.register(MemoryPlugin())
    return plugins


def test_the_url_scheme_picks_the_registered_transport(with_memory: PluginManager) -> None:
    transport = resolve_transport("mem://x?max_frame_size=4096", with_memory)
    anyio.run(transport.aclose)
    assert isinstance(transport, MemoryTransport)
    assert transport.options.max_frame_size == 4096


def test_an_unknown_scheme_lists_the_installed_ones_and_suggests_a_close_one(
    with_memory: PluginManager,
) -> None:
    with pytest.raises(TransportConfigError, match=r"'mme'.*installed: broken, mem.*'mem'"):
        resolve_transport("mme://x", with_memory)


def test_a_url_without_a_scheme_is_refused(with_memory: PluginManager) -> None:
    with pytest.raises(TransportConfigError, match="has no scheme"):
        resolve_transport("127.0.0.1:7400", with_memory)


def test_a_transport_that_cannot_be_imported_is_named(with_memory: PluginManager) -> None:
    with pytest.raises(TransportConfigError, match="'broken' transport"):
        resolve_transport("broken://x", with_memory)


def test_an_unknown_option_is_named(with_memory: PluginManager) -> None:
    with pytest.raises(TransportConfigError, match="max_frame_sise"):
        resolve_transport("mem://x?max_frame_sise=4096", with_memory)


def test_a_bad_option_value_is_named(with_memory: PluginManager) -> None:
    with pytest.raises(TransportConfigError, match="max_frame_size"):
        resolve_transport("mem://x", with_memory, {"max_frame_size": 10})


@pytest.mark.anyio
async def test_starting_a_dispatcher_with_an_unknown_scheme_raises_transport_config_error(
    with_memory: PluginManager,
) -> None:
    dispatcher = MessageDispatcher("p", listen=["tpc://127.0.0.1:0"], plugins=with_memory)
    with anyio.fail_after(5), pytest.raises(TransportConfigError, match="tpc"):
        async with dispatcher:
            pass
    assert not dispatcher.running


def test_listen_takes_a_list_of_urls_not_a_string(with_memory: PluginManager) -> None:
    with pytest.raises(TypeError, match="list of URLs"):
        MessageDispatcher("p", listen="tcp://127.0.0.1:0", plugins=with_memory)


class _Group(Exception):
    """Shaped like an exception group (``ExceptionGroup`` is not a builtin on 3.10)."""

    def __init__(self, *exceptions: BaseException) -> None:
        super().__init__("multiple connection attempts failed")
        self.exceptions = exceptions


def _raised_from(cause: BaseException) -> OSError:
    try:
        raise OSError("All connection attempts failed") from cause
    except OSError as exc:
        return exc


def test_describe_error_shows_the_errors_a_summary_was_raised_from() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert describe_error(_raised_from(refused)) == (
        "OSError: All connection attempts failed"
        " (ConnectionRefusedError: [Errno 111] Connection refused)"
    )
    group = _Group(refused, TimeoutError())
    assert describe_error(_raised_from(group)) == (
        "OSError: All connection attempts failed"
        " (ConnectionRefusedError: [Errno 111] Connection refused; TimeoutError)"
    )
    assert describe_error(ValueError()) == "ValueError"
