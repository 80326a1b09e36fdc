"""A browser page talks with a Python listener through the HTTP gateway.

The program runs one dispatcher and one aiohttp server on 127.0.0.1 that serves

* ``/``: the chat page (``http_chat.html``, plain HTML with ``fetch`` and ``EventSource``),
* ``/api/v1/...``: the gateway, and ``/api/``: the gateway's status page.

The page opens an event stream as listener ``"browser"``, so it appears in the
dispatcher's directory like any Python listener. The Python listener ``"bot"`` waits for
it, then *requests* it (``dispatcher.request``, the same call as for a Python listener):
the question shows up on the page, and the answer typed there is the reply, which the
program prints (``REPLY <content>``). The page can also send to the bot with
``POST /api/v1/messages?wait=5`` and show the bot's answer.

Needs ``dispatchio-http``. Run::

    python examples/http_chat.py [--port 8080]

and open the printed URL in a browser.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import anyio
from aiohttp import web

from dispatchio import BasicMessageListener, DispatchError, Message, MessageDispatcher
from dispatchio_http import HttpOptions
from dispatchio_http._gateway import install_gateway

PAGE = Path(__file__).with_name("http_chat.html")


def make_bot() -> BasicMessageListener:
    """The Python side: answers the page's "chat" messages."""
    bot = BasicMessageListener("bot")
    bot.add_rule(type="chat", callback=lambda m: f"bot heard: {m.content}")
    return bot


async def ask_the_browser(dispatcher: MessageDispatcher) -> None:
    """Each time a page connects as "browser", ask it a question and print the answer."""
    while True:
        # Polled: without a transport, wait_for_listener does not see local registrations.
        while "browser" not in dispatcher.listeners:
            await anyio.sleep(0.1)
        question = Message("question", "What is your name?", destination="browser", source="bot")
        try:
            reply = await dispatcher.request(question, timeout=300)
        except DispatchError as exc:  # the page closed, or nobody answered in time
            print(f"NO REPLY {type(exc).__name__}", flush=True)
        else:
            print(f"REPLY {reply.content}", flush=True)
        while "browser" in dispatcher.listeners:  # one question per visit
            await anyio.sleep(0.2)


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE)


async def main(host: str, port: int) -> None:
    dispatcher = MessageDispatcher("chat-server")
    dispatcher.register(make_bot())
    app = web.Application()
    app.router.add_get("/", page)
    async with dispatcher:
        install_gateway(app, prefix="/api", dispatcher=dispatcher, options=HttpOptions())
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            print(f"CHAT http://{bound_host}:{bound_port}/", flush=True)
            print(f"STATUS http://{bound_host}:{bound_port}/api/", flush=True)
            await ask_the_browser(dispatcher)
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, args.host, args.port)
