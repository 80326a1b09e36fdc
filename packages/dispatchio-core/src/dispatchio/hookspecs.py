"""The hooks a dispatchio plugin can implement.

A plugin is a module or object with functions named after these specs, marked with
`dispatchio.hookimpl`, and published under the ``dispatchio`` entry-point group::

    [project.entry-points.dispatchio]
    my_plugin = "my_package._plugin"

Every hook is synchronous and is called with keyword arguments; a plugin may accept
any subset of the parameters. Hooks never change how a message is routed: transport
hooks only *register* things, and observation hooks only *watch*. An observation hook
that raises is logged and ignored.

Cost: a dispatcher checks at construction (and when it starts) whether any plugin
implements an observation hook. When none does, observing costs one attribute test per
message; call `MessageDispatcher.refresh_hooks` after registering an observer later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from dispatchio._dispatcher import MessageDispatcher
    from dispatchio._listener import MessageListener
    from dispatchio._message import Message

hookspec = pluggy.HookspecMarker("dispatchio")

#: The ``register`` callback given to `dispatchio_register_transports`: call it with a
#: URL scheme (e.g. ``"tcp"``) and a ``"module:ClassName"`` string naming the transport
#: class, which is imported only when a dispatcher first uses that scheme.
RegisterTransport = Callable[[str, str], None]


@hookspec
def dispatchio_register_transports(register: RegisterTransport) -> None:
    """Register the transports this plugin provides, by URL scheme.

    Fires when a plugin manager is asked for its transports (the first time a dispatcher
    resolves a URL, or when ``dispatchio plugins`` lists them). Call
    ``register(scheme, "module:ClassName")`` once per scheme; the module is not imported
    here, so a plugin module must stay cheap to import. Two plugins registering the same
    scheme is an error reported when the transports are collected.
    """


@hookspec
def dispatchio_message_sent(dispatcher: MessageDispatcher, message: Message) -> None:
    """A message was accepted by ``send_sync``, ``send``, ``request`` or ``gather``.

    Fires after the dispatcher assigned ``id`` and ``process`` and validated the message,
    before any handler runs.
    """


@hookspec
def dispatchio_message_delivered(
    dispatcher: MessageDispatcher, message: Message, listener: MessageListener
) -> None:
    """A message is about to be handed to a registered listener.

    Fires once per receiving listener (so once per subscriber for a group), just before
    its handler runs, in the thread and task that runs the handler.
    """


@hookspec
def dispatchio_message_returned(dispatcher: MessageDispatcher, message: Message) -> None:
    """A letter came back to its sender's listener with ``error`` set.

    ``message`` is the returned letter (``is_response=True``, the original ``id``); its
    ``error`` says why: ``undeliverable``, ``timeout``, ``handler_error``, ``peer_lost``
    or ``outbox_full``.
    """


@hookspec
def dispatchio_reply_timed_out(dispatcher: MessageDispatcher, message: Message) -> None:
    """No reply to ``message`` arrived within its reply timeout.

    Fires for ``request`` and for ``send`` with ``response_required=True`` (not for
    ``gather``, whose timeout is how it normally ends), before the sender is told.
    """


@hookspec
def dispatchio_handler_failed(
    dispatcher: MessageDispatcher,
    message: Message,
    listener: MessageListener | None,
    error: Exception,
) -> None:
    """A handler raised ``error`` while handling ``message`` on the asynchronous path.

    ``listener`` is the registered listener the message was for (None if it has since
    been unregistered). Exceptions from ``send_sync`` handlers reach the caller instead.
    """


@hookspec
def dispatchio_message_unmatched(
    dispatcher: MessageDispatcher, message: Message, listener: MessageListener | None
) -> None:
    """A listener declined ``message``: none of its rules matched (it returned UNHANDLED)."""
