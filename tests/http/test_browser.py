"""A real browser (headless Chromium, driven by Playwright) on the gateway.

Chromium comes from Debian's ``chromium`` package; Playwright only drives it
(``executable_path``), it never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

from tests._examples import EXAMPLES

pytestmark = pytest.mark.anyio
INSTALL = "apt-get install chromium (Debian's package; run as root)"
PROMPT = 20.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def chromium() -> str:
    path = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if path is None:
        pytest.skip(f"Chromium is not installed: {INSTALL}")
    return path


def origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Lines:
    """The example's stdout, line by line."""

    def __init__(self, process: anyio.abc.Process) -> None:
        assert process.stdout is not None
        self._stream = TextReceiveStream(process.stdout)
        self._buffer = ""

    async def expect(self, prefix: str) -> str:
        while True:
            line, newline, rest = self._buffer.partition("\n")
            if newline:
                self._buffer = rest
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
                continue
            self._buffer += await self._stream.receive()


@pytest.fixture
async def chat() -> AsyncIterator[tuple[anyio.abc.Process, Lines]]:
    process = await anyio.open_process(
        [sys.executable, str(EXAMPLES / "http_chat.py"), "--port", "0", "--gateway-port", "0"],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield process, Lines(process)
    finally:
        process.kill()
        with anyio.CancelScope(shield=True):
            await process.wait()
            await process.aclose()


async def test_page_answers_a_python_request_and_the_status_page_shows_it(
    chat: tuple[anyio.abc.Process, Lines], tmp_path: Path
) -> None:
    executable = chromium()
    from playwright.async_api import async_playwright

    _, lines = chat
    with anyio.fail_after(PROMPT):
        page_url = await lines.expect("CHAT ")
        status_url = await lines.expect("STATUS ")
        # The page and the gateway (the dispatcher's own http:// listener) are on two
        # origins: the page's fetch and EventSource calls pass the transport's CORS guard.
        assert origin(page_url) != origin(status_url)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=executable, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                page = await browser.new_page()
                await page.goto(page_url)
                # The bot's request arrives over EventSource ...
                await page.get_by_text("What is your name?").wait_for()
                await page.fill("#answer", "Ada")
                await page.click("#send-answer")
                # ... and the typed answer is the reply the Python listener receives.
                assert await lines.expect("REPLY ") == "Ada"
                await page.locator("#answer-form").wait_for(state="hidden")  # answered once
                # fetch() the other way: the page asks the bot and shows its answer.
                await page.fill("#chat", "hello")
                await page.click("#send-chat")
                await page.get_by_text("bot heard: hello").wait_for()

                status = await browser.new_page(viewport={"width": 1100, "height": 700})
                await status.goto(status_url)
                await status.get_by_text("live, updated").wait_for()  # the script polled
                text = await status.inner_text("body")
                shot = tmp_path / "status-page.png"
                await status.screenshot(path=str(shot), full_page=True)
            finally:
                await browser.close()
    assert "chat-server" in text
    assert "browser" in text  # the page's listener, still connected
    assert "bot" in text
    assert shot.stat().st_size > 10_000
    print(f"status page screenshot: {shot}")
