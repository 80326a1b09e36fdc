"""The launcher's side of the card games that run each player in its own process.

``card_dealer_tcp.py`` and ``card_dealer_kafka.py`` differ only in where the dispatchers
meet; starting the player processes, relaying their output, playing the game with them
and checking how they exited is the same, and lives here.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

from _cards import TABLE, Card, new_deck, player_name, show
from dispatchio import Message, MessageDispatcher

HIDDEN = argparse.SUPPRESS  # options for the child processes, not shown by --help


def add_game_options(parser: argparse.ArgumentParser) -> None:
    """The options of both scripts: the game's for a person, the player's for the launcher."""
    parser.add_argument("--players", type=int, default=2, help="number of players (default 2)")
    parser.add_argument("--cards", type=int, default=5, help="cards per player (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed (default random)")
    # The launcher passes these to the player processes it starts.
    parser.add_argument("--role", choices=["dealer", "player"], default="dealer", help=HIDDEN)
    parser.add_argument("--name", help=HIDDEN)
    parser.add_argument("--join", help=HIDDEN)
    parser.add_argument("--loves-hearts", action="store_true", help=HIDDEN)


def check_game_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error for options that make no game."""
    if args.role == "player" and not (args.name and args.join):
        parser.error("--role player needs --name and --join")
    if not 1 <= args.players <= 10 or args.cards < 1 or args.players * args.cards > 52:
        parser.error("need 1 <= players <= 10, cards >= 1 and players * cards <= 52")


async def relay(stream: ByteReceiveStream) -> None:
    """Print a child's output, line by line, as it arrives."""
    pending = ""
    async for chunk in TextReceiveStream(stream, encoding="utf-8"):
        *lines, pending = (pending + chunk).split("\n")
        for line in lines:
            print(line, flush=True)
    if pending:
        print(pending, flush=True)


async def start_player(script: str, name: str, url: str, loves_hearts: bool) -> Process:
    """Start ``script`` as player ``name``, joining ``url``, its output piped to us."""
    command = [sys.executable, "-u", script, "--role", "player", "--name", name, "--join", url]
    if loves_hearts:
        command.append("--loves-hearts")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return await anyio.open_process(command, stdout=subprocess.PIPE, stderr=None, env=env)


def print_hands(hands: dict[str, list[Card]], deck: list[Card]) -> None:
    """The summary lines, as `_cards.print_hands` (whose table is local subscribers)."""
    print("== hands")
    for player, hand in sorted(hands.items()):
        print(f"HAND {player}: {show(hand)}")
    dealt = [card for hand in hands.values() for card in hand]
    print(f"DEALT {len(dealt)} cards, {len(set(dealt))} distinct, {len(deck)} left in the deck")


async def host_game(
    dispatcher: MessageDispatcher,
    play: Callable[[list[Card], int], Awaitable[dict[str, list[Card]]]],
    *,
    script: str,
    join: str,
    players: int,
    cards_each: int,
    seed: int | None,
    table_timeout: float,
) -> None:
    """Start ``players`` processes of ``script`` (joining ``join``), play, send them home.

    ``dispatcher`` is the dealer's, running; ``play(deck, cards_each)`` deals from a deck
    shuffled with ``seed`` and returns the hands. Raises `SystemExit` naming the players
    whose process failed; a player still running when this returns or fails is killed.
    """
    names = [player_name(index) for index in range(players)]
    deck = new_deck(random.Random(seed))
    children: list[Process] = []
    try:
        async with anyio.create_task_group() as relays:
            for index, name in enumerate(names):
                child = await start_player(script, name, join, loves_hearts=index == 0)
                children.append(child)
                assert child.stdout is not None
                relays.start_soon(relay, child.stdout)

            # Every player's process joined, and its listener subscribed to the table.
            await dispatcher.wait_for_subscribers(TABLE, len(names), timeout=table_timeout)
            hands = await play(deck, cards_each)
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
