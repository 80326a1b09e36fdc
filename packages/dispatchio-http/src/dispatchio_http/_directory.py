"""The mesh directory as JSON data, and the lookups the gateway makes in it."""

from __future__ import annotations

from typing import Any

from dispatchio import ListenerId, MessageDispatcher

__all__ = ["directory", "listener_taken", "reachable"]


def directory(dispatcher: MessageDispatcher) -> dict[str, Any]:
    """Every process, listener and group the dispatcher knows (`MessageDispatcher.directory`)."""
    return dispatcher.directory()


def listener_taken(snapshot: dict[str, Any], listener_id: ListenerId) -> ListenerId | None:
    """The process that has ``listener_id`` in ``snapshot``, or None."""
    for process in snapshot["processes"]:
        if listener_id in process["listeners"]:
            return process["process"]  # type: ignore[no-any-return]
    return None


def reachable(snapshot: dict[str, Any], destination: ListenerId | None, group: Any) -> bool:
    """Whether some listener in ``snapshot`` would receive a message so addressed."""
    for process in snapshot["processes"]:
        if group is None:
            if destination in process["listeners"]:
                return True
        elif any(g["group"] == group and g["members"] for g in process["groups"]):
            return True
    return False
