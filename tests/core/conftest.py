"""Fixtures for the core tests: a fresh dispatcher with a fresh plugin manager per test."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

import dispatchio._plugins
from dispatchio import (
    BasicMessageListener,
    Message,
    MessageDispatcher,
    PluginManager,
    get_dispatcher,
    make_plugin_manager,
)
from tests.core._helpers import SENDER, Streams, open_streams
from tests.core._plugin_dists import MODULE_NAMES


@pytest.fixture
def plugins() -> PluginManager:
    """A plugin manager of this test's own, with no installed plugins loaded."""
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def dispatcher(plugins: PluginManager) -> MessageDispatcher:
    """A dispatcher that is not running yet (enter it with ``async with``)."""
    return MessageDispatcher("test-process", reply_timeout=5.0, plugins=plugins)


@pytest.fixture
def streams() -> Iterator[Streams]:
    """An unbounded memory stream of messages, ``(send, receive)``."""
    with open_streams() as pair:
        yield pair


@pytest.fixture
def inbox(dispatcher: MessageDispatcher) -> Iterator[MemoryObjectReceiveStream[Message]]:
    """Register listener "sender"; every message it receives lands on this stream."""
    with open_streams() as (send, receive):
        sender = BasicMessageListener(SENDER)
        sender.add_rule(queue=send)
        dispatcher.register(sender)
        yield receive


@pytest.fixture
def site_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty directory on ``sys.path``, and the only place plugins are discovered from.

    Plugins installed in the environment running the tests (a transport package, say) are
    hidden, so the tests see exactly the distributions they write. Plugin modules imported
    from the directory are forgotten afterwards.
    """
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates the import caches

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [
            entry_point
            for dist in importlib.metadata.distributions(path=[str(tmp_path)])
            for entry_point in dist.entry_points
            if entry_point.group == group
        ]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    yield tmp_path
    for name in MODULE_NAMES:
        sys.modules.pop(name, None)


@pytest.fixture
def fresh_defaults(site_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No process-wide plugin manager or dispatcher yet; both are forgotten after the test.

    Built within the test, they see only the plugins written to ``site_dir`` (none unless
    the test writes some), never whatever happens to be installed.
    """
    monkeypatch.setattr(dispatchio._plugins, "_default", None)
    monkeypatch.setattr(sys.modules[get_dispatcher.__module__], "_default", None)
