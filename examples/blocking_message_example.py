"""Blocking and non-blocking messages.

A robot "arm" handles each command with an ``async def`` rule that takes a while
(it awaits ``anyio.sleep``, standing in for moving a motor). While a handler awaits,
the dispatcher keeps delivering other messages.

* Part 1, non-blocking: three moves are sent one after the other. All three start
  before the first one finishes; their handlers run interleaved.
* Part 2, blocking: a ``blocking=True`` "calibrate" is sent, then two more moves.
  The moves are *held* until calibrate has been handled, so the arm's trace is in
  strict order. A message to a different destination (the "gripper") is not held:
  it runs while the arm calibrates.

Every line of the trace is also collected, and each part ends with a summary line
``ORDER <part>: start:arm.move-1 ... end:arm.move-1 ...`` listing the events in the
order they happened.

Run::

    python examples/blocking_message_example.py
"""

from __future__ import annotations

import anyio

from dispatchio import BasicMessageListener, Message, MessageDispatcher


class Trace:
    """Records "start:<device>.<command>" and "end:..." events; lets the program wait for ends."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.clock = anyio.current_time()
        self._expected_ends = 0
        self._done = anyio.Event()

    def log(self, event: str, who: str, name: str, detail: str = "") -> None:
        elapsed_ms = (anyio.current_time() - self.clock) * 1000
        print(f"[{elapsed_ms:5.0f} ms] {who:>7}: {event:<5} {name} {detail}".rstrip())
        self.events.append(f"{event}:{who}.{name}")
        if event == "end" and sum(e.startswith("end:") for e in self.events) >= self._expected_ends:
            self._done.set()

    def begin(self, part: str, expected_ends: int) -> None:
        print(f"== {part}")
        self.events = []
        self.clock = anyio.current_time()
        self._expected_ends = expected_ends
        self._done = anyio.Event()

    async def finish(self, part: str) -> None:
        with anyio.fail_after(2.0):
            await self._done.wait()
        print(f"ORDER {part}: {' '.join(self.events)}")


class Device(BasicMessageListener):
    """A robot part: each command takes ``content["ms"]`` milliseconds to carry out."""

    def __init__(self, name: str, trace: Trace) -> None:
        super().__init__(name)
        self.trace = trace
        self.add_rule(callback=self.carry_out)  # ``async def``: an async callback rule

    async def carry_out(self, message: Message) -> None:
        command, ms = message.content["command"], message.content["ms"]
        blocking = " (blocking)" if message.blocking else ""
        self.trace.log("start", str(self.id), command, f"{ms} ms{blocking}")
        await anyio.sleep(ms / 1000)  # the motor moves; other messages keep flowing
        self.trace.log("end", str(self.id), command)


async def command(
    dispatcher: MessageDispatcher, device: str, name: str, ms: int, *, blocking: bool = False
) -> None:
    """Send a command and return at once (``send`` never waits for the handler)."""
    print(f"{'':>10}   send -> {device}: {name}{' [blocking]' if blocking else ''}")
    await dispatcher.send(
        Message(
            "command",
            {"command": name, "ms": ms},
            source="controller",
            destination=device,
            blocking=blocking,
        )
    )


async def main_async() -> None:
    dispatcher = MessageDispatcher("robot")
    trace = Trace()
    dispatcher.register(Device("arm", trace))
    dispatcher.register(Device("gripper", trace))

    async with dispatcher:
        # Part 1: non-blocking. The longest move is sent first, yet every move starts
        # at once and the shortest finishes first.
        trace.begin("non-blocking", expected_ends=3)
        await command(dispatcher, "arm", "move-1", 60)
        await command(dispatcher, "arm", "move-2", 40)
        await command(dispatcher, "arm", "move-3", 20)
        await trace.finish("non-blocking")

        # Part 2: blocking. move-4 and move-5 wait for calibrate to be handled; the
        # gripper, another destination, does not.
        trace.begin("blocking", expected_ends=4)
        await command(dispatcher, "arm", "calibrate", 50, blocking=True)
        await command(dispatcher, "arm", "move-4", 20)
        await command(dispatcher, "arm", "move-5", 10)
        await command(dispatcher, "gripper", "open", 10)
        await trace.finish("blocking")


def main() -> None:
    anyio.run(main_async)


if __name__ == "__main__":
    main()
