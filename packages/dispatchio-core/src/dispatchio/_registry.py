"""The listeners of this process, the groups they joined, and news of changes.

`Registry` owns three plain dicts that the dispatcher's parts read directly on their
hot paths (a dict lookup, never a call): ``listeners``, ``groups`` and ``members``.
Only the registry writes them. Every change is reported to ``on_change`` (the mesh
subscribes to tell other processes) with one of the four change codes below.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from dispatchio._errors import DuplicateListenerError
from dispatchio._listener import MessageListener
from dispatchio._message import ListenerId

#: Directory change codes, as they travel in DELTA frames (one character each).
REGISTERED: Final = "r"
UNREGISTERED: Final = "u"
SUBSCRIBED: Final = "s"
UNSUBSCRIBED: Final = "x"

#: ``on_change(code, listener_id, group)``; ``group`` is None for (un)registration.
ChangeCallback = Callable[[str, ListenerId, "ListenerId | None"], None]


class Registry:
    """Listeners by ID and group membership, for one dispatcher."""

    __slots__ = ("groups", "listeners", "members", "on_change")

    def __init__(self) -> None:
        self.listeners: dict[ListenerId, MessageListener] = {}
        self.groups: dict[ListenerId, dict[ListenerId, MessageListener]] = {}
        # Snapshot per group, rebuilt on (un)subscribe, so a send iterates a tuple that a
        # handler (un)subscribing cannot change under it.
        self.members: dict[ListenerId, tuple[tuple[ListenerId, MessageListener], ...]] = {}
        self.on_change: ChangeCallback | None = None

    def register(self, listener: MessageListener) -> MessageListener:
        """See `MessageDispatcher.register`."""
        if not isinstance(listener, MessageListener):
            raise TypeError(f"expected a MessageListener, got {listener!r}")
        lid = listener.id
        if lid is None:
            raise ValueError(f"{listener!r} has no id, so it cannot be registered")
        if not isinstance(lid, (int, str)) or isinstance(lid, bool):
            raise TypeError(f"a listener id must be an int or a str, got {lid!r}")
        existing = self.listeners.get(lid)
        if existing is not None:
            if existing is listener:
                return listener
            raise DuplicateListenerError(f"a listener with id {lid!r} is already registered")
        self.listeners[lid] = listener
        if self.on_change is not None:
            self.on_change(REGISTERED, lid, None)
        return listener

    def unregister(self, listener: MessageListener | ListenerId) -> None:
        """See `MessageDispatcher.unregister`."""
        lid = id_of(listener)
        if lid not in self.listeners:
            raise KeyError(f"no listener with id {lid!r} is registered")
        del self.listeners[lid]
        for group in [g for g, members in self.groups.items() if lid in members]:
            self._remove_member(group, lid)
        if self.on_change is not None:
            self.on_change(UNREGISTERED, lid, None)

    def subscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """See `MessageDispatcher.subscribe`."""
        lid = id_of(listener)
        registered = self.listeners.get(lid)
        if registered is None:
            raise KeyError(f"no listener with id {lid!r} is registered")
        members = self.groups.setdefault(group, {})
        members[lid] = registered
        self.members[group] = tuple(members.items())
        if self.on_change is not None:
            self.on_change(SUBSCRIBED, lid, group)

    def unsubscribe(self, group: ListenerId, listener: MessageListener | ListenerId) -> None:
        """See `MessageDispatcher.unsubscribe`."""
        lid = id_of(listener)
        if lid not in self.groups.get(group, ()):
            raise KeyError(f"listener {lid!r} is not subscribed to group {group!r}")
        self._remove_member(group, lid)
        if self.on_change is not None:
            self.on_change(UNSUBSCRIBED, lid, group)

    def _remove_member(self, group: ListenerId, lid: ListenerId) -> None:
        members = self.groups[group]
        del members[lid]
        if members:
            self.members[group] = tuple(members.items())
        else:
            del self.groups[group]
            del self.members[group]


def id_of(listener: MessageListener | ListenerId) -> ListenerId:
    """The ID of a listener given itself or its ID."""
    if isinstance(listener, MessageListener):
        if listener.id is None:
            raise ValueError(f"{listener!r} has no id")
        return listener.id
    return listener
