"""A browser page talks with a Python listener through the HTTP gateway.

The program runs two servers on 127.0.0.1:

* the dispatcher's own HTTP transport, ``listen=["http://127.0.0.1:<gateway port>/api"]``:
  the gateway under ``/api/v1/`` and the status page at ``/api/``, exactly what any
  ``http://`` listener serves;
* a small aiohttp app on another port that serves only the chat page
  (``http_chat.html``, plain HTML with ``fetch`` and ``EventSource``).

The page and the gateway are on different origins, so the transport is told to answer
CORS for the page's origin (``cors_origins``); a page from any other origin is refused.

The page opens an event stream as listener ``"browser"``, so it appears in the directory
like any Python listener. The Python listener ``"bot"`` waits for it, then *requests* it
(``dispatcher.request``, the same call as for a Python listener): the question shows up
on the page, and the answer typed there is the reply, which the program prints
(``REPLY <content>``). The page can also send to the bot with
``POST /api/v1/messages?wait=5`` and show the bot's answer.

Needs ``dispatchio-http``. Run::

    python examples/http_chat.py [--port 8080] [--gateway-port 8081]

and open the printed CHAT URL in a browser.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import socket
from pathlib import Path

import anyio
from aiohttp import web

from dispatchio import BasicMessageListener, DispatchError, Message, MessageDispatcher

PAGE = Path(__file__).with_name("http_chat.html")
#: Where the page's ``<meta name="gateway">`` says the gateway's API is.
PLACEHOLDER = 'content="GATEWAY"'


def make_bot() -> BasicMessageListener:
    """The Python side: answers the page's "chat" messages."""
    bot = BasicMessageListener("bot")
    bot.add_rule(type="chat", callback=lambda m: f"bot heard: {m.content}")
    return bot


async def ask_the_browser(dispatcher: MessageDispatcher) -> None:
    """Each time a page connects as "browser", ask it a question and print the answer."""
    while True:
        # Polled: wait_for_listener wakes on remote directory changes, and the page's
        # stream registers "browser" in this very process.
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


def page_app(api: str) -> web.Application:
    """The app that serves the chat page, told where the gateway's API is."""
    body = PAGE.read_text(encoding="utf-8").replace(
        PLACEHOLDER, f'content="{html.escape(api, quote=True)}"'
    )

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return app


async def main(host: str, port: int, gateway_port: int) -> None:
    # The page's socket is bound first: its origin must be known to the transport.
    page_sock = socket.create_server((host, port))
    page_origin = f"http://{host}:{page_sock.getsockname()[1]}"
    dispatcher = MessageDispatcher(
        "chat-server",
        listen=[f"http://{host}:{gateway_port}/api"],
        transport_options={"http": {"cors_origins": [page_origin]}},
    )
    dispatcher.register(make_bot())
    async with dispatcher:
        (gateway,) = dispatcher.listen_urls
        runner = web.AppRunner(page_app(f"{gateway}/v1/"), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, page_sock).start()
            print(f"CHAT {page_origin}/", flush=True)
            print(f"STATUS {gateway}/", flush=True)
            await ask_the_browser(dispatcher)
        finally:
            await runner.cleanup()
            page_sock.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="the page's; 0 picks a free one")
    parser.add_argument("--gateway-port", type=int, default=8081, help="0 picks a free one")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main, args.host, args.port, args.gateway_port)
