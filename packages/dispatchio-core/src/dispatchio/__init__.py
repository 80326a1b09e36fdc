"""dispatchio: send messages to listener IDs and groups, in-process or across processes.

The public API lives here; the modules starting with ``_`` are private.
"""

from dispatchio._basic import Action, BasicMessageListener, Rule
from dispatchio._dispatcher import MessageDispatcher, get_dispatcher
from dispatchio._errors import (
    DeliveryError,
    DispatcherNotRunningError,
    DispatchError,
    DuplicateListenerError,
    HandlerError,
    InvalidMessageError,
    MessageTooLargeError,
    OutboxFullError,
    PeerLostError,
    ReplyTimeoutError,
    SyncSendError,
    TransportConfigError,
    TransportError,
    UndeliverableError,
    error_from_message,
)
from dispatchio._listener import MessageListener
from dispatchio._message import DEFERRED, UNHANDLED, ListenerId, Message, Reply
from dispatchio._observers import DispatcherStats
from dispatchio._plugins import (
    PluginInfo,
    PluginLoadWarning,
    PluginManager,
    default_plugin_manager,
    hookimpl,
    make_plugin_manager,
)
from dispatchio._thread import DispatcherThread

__version__ = "0.1.0"

__all__ = [
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
