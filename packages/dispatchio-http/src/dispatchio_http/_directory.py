"""The mesh directory as JSON data, and the lookups the gateway makes in it."""

from __future__ import annotations

from typing import Any

from dispatchio import ListenerId, MessageDispatcher

__all__ = ["directory", "listener_taken", "reachable"]


def directory(dispatcher: MessageDispatcher) -> dict[str, Any]:
    """Every process, listener and group the dispatcher knows, itself included.

    The shape of `MessageDispatcher.directory`: ``{"process": id, "processes": [{"process":
    id, "local": bool, "urls": [...], "listeners": [...], "groups": [{"group": g,
    "members": [...]}]}]}``.
    """
    public = getattr(dispatcher, "directory", None)
    if public is not None:
        return public()  # type: ignore[no-any-return]
    return _directory_fallback(dispatcher)


def _directory_fallback(dispatcher: MessageDispatcher) -> dict[str, Any]:
    # TODO(gateway): delete once MessageDispatcher.directory() is on main; until then this
    # reads the mesh's private state the same way that method will.
    mesh: Any = getattr(dispatcher, "_mesh", None)
    me = dispatcher.process_id
    groups: dict[ListenerId, list[ListenerId]] = {}
    for group in list(getattr(dispatcher, "_members", {})):
        groups[group] = dispatcher.subscribers(group)
    processes = [
        {
            "process": me,
            "local": True,
            "urls": list(dispatcher.listen_urls),
            "listeners": list(dispatcher.listeners),
            "groups": [{"group": g, "members": m} for g, m in groups.items()],
        }
    ]
    if mesh is not None:
        for process, peer in mesh.peers.items():
            members = mesh.members.get(process)
            processes.append(
                {
                    "process": process,
                    "local": False,
                    "urls": list(members[1]) if members else list(peer.hello.urls),
                    "listeners": list(peer.listeners),
                    "groups": [
                        {"group": g, "members": list(m)} for g, m in peer.groups.items() if m
                    ],
                }
            )
    return {"process": me, "processes": processes}


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
