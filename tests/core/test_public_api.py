"""The public API of ``dispatchio``: its names, its exception tree, and a light import."""

from __future__ import annotations

import pytest

import dispatchio
from dispatchio import (
    DeliveryError,
    DispatcherNotRunningError,
    DispatchError,
    DuplicateListenerError,
    HandlerError,
    InvalidMessageError,
    ReplyTimeoutError,
    SyncSendError,
    UndeliverableError,
)
from tests._imports import loaded_after

# Pinned on purpose: changing the public API must change this list too.
EXPECTED_ALL = [
    "DEFERRED",
    "UNHANDLED",
    "Action",
    "BasicMessageListener",
    "DeliveryError",
    "DispatchError",
    "DispatcherNotRunningError",
    "DispatcherStats",
    "DispatcherThread",
    "DuplicateListenerError",
    "HandlerError",
    "InvalidMessageError",
    "ListenerId",
    "Message",
    "MessageDispatcher",
    "MessageListener",
    "MessageTooLargeError",
    "OutboxFullError",
    "PeerLostError",
    "PluginInfo",
    "PluginLoadWarning",
    "PluginManager",
    "Reply",
    "ReplyTimeoutError",
    "Rule",
    "SyncSendError",
    "TransportConfigError",
    "TransportError",
    "UndeliverableError",
    "__version__",
    "default_plugin_manager",
    "error_from_message",
    "get_dispatcher",
    "hookimpl",
    "make_plugin_manager",
]

REQUIRED_BY_THE_ISSUE = [
    "Message",
    "MessageDispatcher",
    "MessageListener",
    "BasicMessageListener",
    "DEFERRED",
    "DispatchError",
    "UndeliverableError",
    "ReplyTimeoutError",
    "SyncSendError",
    "HandlerError",
    "DuplicateListenerError",
]


def _isort_style(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE, then CamelCase, then everything else."""
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    assert dispatchio.__all__ == sorted(dispatchio.__all__, key=_isort_style)


def test_all_equals_the_pinned_list() -> None:
    assert dispatchio.__all__ == EXPECTED_ALL


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_name_in_all_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from dispatchio import {name}", namespace)
    assert namespace[name] is getattr(dispatchio, name)


@pytest.mark.parametrize("name", REQUIRED_BY_THE_ISSUE)
def test_required_name_is_public(name: str) -> None:
    assert name in dispatchio.__all__


@pytest.mark.parametrize(
    "cls",
    [
        InvalidMessageError,
        DuplicateListenerError,
        DispatcherNotRunningError,
        SyncSendError,
        DeliveryError,
        UndeliverableError,
        ReplyTimeoutError,
        HandlerError,
    ],
)
def test_every_exception_is_a_dispatch_error(cls: type[Exception]) -> None:
    assert issubclass(cls, DispatchError)


@pytest.mark.parametrize("cls", [UndeliverableError, ReplyTimeoutError, HandlerError])
def test_delivery_failures_are_delivery_errors(cls: type[Exception]) -> None:
    assert issubclass(cls, DeliveryError)


def test_reply_timeout_error_is_a_timeout_error() -> None:
    assert issubclass(ReplyTimeoutError, TimeoutError)


def test_invalid_message_error_is_a_value_error() -> None:
    assert issubclass(InvalidMessageError, ValueError)


def test_dispatch_error_is_an_exception() -> None:
    assert issubclass(DispatchError, Exception)


def test_importing_dispatchio_imports_no_transport_or_trio() -> None:
    assert loaded_after("import dispatchio", ["aiohttp", "kafka", "trio"]) == []
