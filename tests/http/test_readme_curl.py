"""Every curl command of the README's "HTTP gateway" section, run against a real server.

The section's ``console`` blocks are read as a script: ``$ `` lines are commands, the
lines after one are its expected output. ``<name>`` in expected output matches any
value; a command ending in `` &`` runs in the background (an event stream, a request
waiting for its reply). ``<id>`` in a command is the ``id:`` of the last event a
background stream printed. Output lines holding JSON are compared as JSON.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

from dispatchio import BasicMessageListener, MessageDispatcher

pytestmark = pytest.mark.anyio
README = Path(__file__).resolve().parents[2] / "README.md"
SHOWN_BASE = "http://127.0.0.1:8080"
PROMPT = 10.0
_WILD = re.compile(r"<[a-z]+>")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Step:
    def __init__(self, command: str) -> None:
        self.background = command.endswith(" &")
        self.command = command.removesuffix(" &")
        self.expected: list[str] = []


def gateway_steps() -> list[Step]:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## HTTP gateway\n", 1)[1].split("\n## ", 1)[0]
    steps: list[Step] = []
    for block in re.findall(r"```console\n(.*?)```", section, flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            else:
                steps[-1].expected.append(line)
    return steps


def _json_match(expected: Any, actual: Any) -> bool:
    if isinstance(expected, str) and _WILD.fullmatch(expected):
        return True
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(_json_match(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_json_match(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def line_matches(expected: str, actual: str) -> bool:
    brace = expected.find("{")
    if brace >= 0:
        head, body = expected[:brace], expected[brace:]
        if not actual.startswith(head):
            return False
        try:
            return _json_match(json.loads(body), json.loads(actual[brace:]))
        except ValueError:
            return False
    parts = _WILD.split(expected)
    wild = _WILD.findall(expected)
    pattern = re.escape(parts[0]) + "".join(
        ".+" + re.escape(p) for _, p in zip(wild, parts[1:], strict=True)
    )
    return re.fullmatch(pattern, actual) is not None


class Running:
    """A background command: its output is read lazily, line by line."""

    def __init__(self, step: Step, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self.step = step
        self.process = process
        self.stream = TextReceiveStream(process.stdout)
        self.buffer = ""
        self.matched = 0

    async def line(self) -> str:
        while "\n" not in self.buffer:
            try:
                self.buffer += await self.stream.receive()
            except anyio.EndOfStream:
                if not self.buffer:
                    raise
                self.buffer += "\n"  # curl prints no newline after a JSON body
        line, _, self.buffer = self.buffer.partition("\n")
        return line

    async def advance(self, until: int, names: dict[str, str]) -> None:
        """Read output until ``until`` expected lines matched; remember ``id:`` values."""
        while self.matched < until:
            expected = self.step.expected[self.matched]
            actual = await self.line()
            assert line_matches(expected, actual), (self.step.command, expected, actual)
            if expected == "id: <id>":
                names["id"] = actual.removeprefix("id: ")
            self.matched += 1


@pytest.fixture
async def server() -> AsyncIterator[str]:
    """The README's server: the greeter on an ``http://`` listener (the transport's own)."""
    greeter = BasicMessageListener("greeter")
    greeter.add_rule(type="hello", callback=lambda m: f"hello, {m.content}!")
    dispatcher = MessageDispatcher("server", listen=["http://127.0.0.1:0"])
    dispatcher.register(greeter)
    async with dispatcher:
        yield dispatcher.listen_urls[0]


def test_every_curl_line_of_the_readme_is_a_step() -> None:
    # Nothing outside the gateway section's console blocks escapes the test below.
    shown = [
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if re.match(r"\s*\$?\s*curl\s", line)
    ]
    assert [line.removeprefix("$ ") for line in shown] == [
        step.command + (" &" if step.background else "") for step in gateway_steps()
    ]
    commands = " ".join(line for line in shown)
    for shown_path in ("/v1/events?", "/v1/messages/<id>/reply", "/v1/directory", "?wait="):
        assert shown_path in commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_every_readme_curl_command_works_as_shown(server: str) -> None:
    steps = gateway_steps()
    assert len(steps) >= 6
    assert all(step.command.startswith("curl ") for step in steps)
    names: dict[str, str] = {}
    background: list[Running] = []
    try:
        with anyio.fail_after(PROMPT * 3):
            for step in steps:
                if "<id>" in step.command:
                    # The id comes from the stream: read it up to its next event's id.
                    for running in background:
                        if "id: <id>" in running.step.expected[running.matched :]:
                            stop = running.step.expected.index("id: <id>", running.matched)
                            await running.advance(stop + 1, names)
                command = step.command.replace(SHOWN_BASE, server).replace(
                    "<id>", names["id"] if "<id>" in step.command else ""
                )
                if step.background:
                    process = await anyio.open_process(["bash", "-c", "exec " + command])
                    running = Running(step, process)
                    background.append(running)
                    if "" in step.expected:  # wait for the first event (the stream is up)
                        await running.advance(step.expected.index("") + 1, names)
                    continue
                result = await anyio.run_process(["bash", "-c", command], check=False)
                assert result.returncode == 0, (command, result.stderr)
                lines = result.stdout.decode().splitlines()
                assert len(lines) == len(step.expected), (command, lines)
                for expected, actual in zip(step.expected, lines, strict=True):
                    assert line_matches(expected, actual), (command, expected, actual)
            for running in background:
                wanted = len(running.step.expected)
                while wanted and running.step.expected[wanted - 1] == "":
                    wanted -= 1
                await running.advance(wanted, names)
    finally:
        for running in background:
            if running.process.returncode is None:
                running.process.kill()
            with anyio.CancelScope(shield=True):
                await running.process.wait()
                await running.process.aclose()


def test_line_matching_wildcards() -> None:
    assert line_matches('{"id":"<id>","n":1}', '{"id":"99","n":1}')
    assert not line_matches('{"id":"<id>","n":1}', '{"id":"99","n":2}')
    assert line_matches("id: <id>", "id: 123")
    assert not line_matches("event: ready", "event: message")
