"""Thespian actor used by the peer benchmark (kept in its own importable module,
because Thespian locates actor classes by module and name)."""

from __future__ import annotations

from typing import Any

from thespian.actors import Actor


class EchoActor(Actor):  # type: ignore[misc]
    """Replies to every message with the message itself."""

    def receiveMessage(self, message: Any, sender: Any) -> None:
        if isinstance(message, int):
            self.send(sender, message)
