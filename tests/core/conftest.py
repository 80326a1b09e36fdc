"""Fixtures for the core tests: a fresh dispatcher with a fresh plugin manager per test."""

from __future__ import annotations

import pytest

from dispatchio import MessageDispatcher, PluginManager, make_plugin_manager


@pytest.fixture
def plugins() -> PluginManager:
    """A plugin manager of this test's own, with no installed plugins loaded."""
    return make_plugin_manager(load_entrypoints=False)


@pytest.fixture
def dispatcher(plugins: PluginManager) -> MessageDispatcher:
    """A dispatcher that is not running yet (enter it with ``async with``)."""
    return MessageDispatcher("test-process", reply_timeout=5.0, plugins=plugins)
