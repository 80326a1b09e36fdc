"""The card-dealing phase of a game across three OS processes, over TCP on loopback.

The same game as ``card_dealer.py``, but the dealer and each player run in their own
process. One script plays every part:

* Run without ``--role`` it is the *launcher*: it runs the dealer's dispatcher, listening
  on ``tcp://127.0.0.1:0`` (a free port, read back from ``dispatcher.listen_urls``), and
  starts one child process of this same script per player. It relays the children's
  output (their lines are indented and start with their name).
* ``--role player --name alice --join tcp://...`` is a player: a dispatcher that connects
  to the dealer's URL, registers the player's listener and subscribes it to the group
  ``"table"``, then serves until the dealer's ``"quit"`` message.

The listeners are written exactly as in one process; only the dispatchers are told where
to listen and whom to join. The dealer waits for the whole table with
``wait_for_subscribers``, then gathers "ready", deals one letter per card, gathers the
hands, and finally gathers a "bye" from every player before they exit.

Messages between processes travel as JSON, so a card crosses as plain data
(``{"suit": "spades", "rank": "7"}``), not as a ``Card``: the dispatcher rejects content
that cannot cross when it is sent. Each side turns the dict back into a ``Card`` to print
it.

Needs ``dispatchio-tcp`` (the ``tcp://`` transport). Run::

    python examples/card_dealer_tcp.py [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import anyio

from _cards import TABLE, Card, CardPlayer, show
from _players import add_game_options, check_game_options, host_game
from card_dealer import DEALER, Dealer
from dispatchio import Message, MessageDispatcher

DEALER_PROCESS = "dealer-process"  # the dealer's process ID
PLAYER_PATIENCE = 30.0  # a player left alone this long (dealer gone) gives up


def as_data(card: Card) -> dict[str, str]:
    """A card as JSON data, the form in which it crosses processes."""
    return dataclasses.asdict(card)


def is_ace(message: Message) -> bool:
    """A ``where=`` predicate: is the card (as data) in this "deal" message an ace?"""
    return bool(message.content["card"]["rank"] == "A")


# ----------------------------------------------------------------------------- a player


class RemotePlayer(CardPlayer):
    """A player in its own process: `CardPlayer` with cards as JSON data on the wire."""

    def __init__(self, name: str, *, loves_hearts: bool) -> None:
        super().__init__(name)
        self.done = anyio.Event()
        self.add_rule(type="new-game", callback=self.on_new_game)
        # The deal rules of _cards.CardPlayer.add_deal_rules, for a card that is a dict:
        # the content rule works on dicts as it does on attributes.
        if loves_hearts:
            self.add_rule(type="deal", content={"card.suit": "hearts"}, callback=self.on_heart)
        self.add_rule(type="deal", where=is_ace, callback=self.on_ace)
        self.add_rule(type="deal", callback=self.on_card)
        self.add_rule(type="show-hand", callback=self.on_show_hand)
        self.add_rule(type="quit", callback=self.on_quit)

    def on_new_game(self, message: Message) -> str:
        self.hand.clear()
        print(f"  {self.id}: new game ({message.content['players']} players), ready")
        return "ready"

    def on_card(self, message: Message) -> dict[str, Any]:
        card = Card(**message.content["card"])
        self.hand.append(card)
        print(f"  {self.id}: got {card} from {message.source} (process {message.process})")
        return {"card": as_data(card), "hand_size": len(self.hand)}

    def on_show_hand(self, message: Message) -> list[dict[str, str]]:
        print(f"  {self.id}: my hand is {show(self.hand)}")
        return [as_data(card) for card in self.hand]

    def on_quit(self, message: Message) -> str:
        print(f"  {self.id}: leaving the table")
        self.done.set()  # run_player leaves `async with dispatcher:`, and the process exits
        return "bye"


async def run_player(name: str, join: str, loves_hearts: bool) -> None:
    dispatcher = MessageDispatcher(f"{name}-process", connect=[join], reply_timeout=2.0)
    player = RemotePlayer(name, loves_hearts=loves_hearts)
    # Registered and subscribed before the dispatcher starts, as in one process; the
    # dealer's process learns of both when the connection comes up.
    dispatcher.register(player)
    dispatcher.subscribe(TABLE, player)
    print(f"  {name}: pid {os.getpid()}, process {dispatcher.process_id!r} joins {join}")
    async with dispatcher:
        try:
            await dispatcher.wait_for_peer(DEALER_PROCESS, timeout=10)
        except TimeoutError:
            raise SystemExit(f"{name}: no dealer at {join}") from None
        with anyio.fail_after(PLAYER_PATIENCE):
            await player.done.wait()
    print(f"  {name}: bye")


# ----------------------------------------------------------------------------- the dealer


class RemoteDealer(Dealer):
    """`card_dealer.Dealer`, dealing to players it only knows by their replies."""

    def __init__(self, dispatcher: MessageDispatcher, table_size: int) -> None:
        super().__init__(dispatcher)
        self.table_size = table_size

    def on_dealt(self, answer: Message) -> None:
        card, size = Card(**answer.content["card"]), answer.content["hand_size"]
        print(f"{answer.source} -> {DEALER}: got {card} (hand: {size})")
        self.answered()

    async def play(self, deck: list[Card], cards_each: int) -> dict[str, list[Card]]:
        dispatcher = self.dispatcher
        # The players are in other processes: `dispatcher.subscribers()` lists local ones
        # only, so the table is whoever answers the group's "new-game".
        print(f"{DEALER} -> {TABLE}: new game ({self.table_size} players)")
        replies = await dispatcher.gather(
            Message("new-game", {"players": self.table_size}, source=DEALER, group=TABLE),
            timeout=2.0,
        )
        for reply in replies:
            print(f"{reply.source} -> {DEALER}: {reply.content} (process {reply.process})")
        players = sorted(str(reply.source) for reply in replies)

        for round_number in range(1, cards_each + 1):
            print(f"-- round {round_number}")
            self.outstanding = len(players)
            self.round_done = anyio.Event()
            for player in players:
                card = deck.pop()
                print(f"{DEALER} -> {player}: {card}")
                letter = Message(
                    "deal",
                    {"card": as_data(card)},  # JSON data: a Card would not cross
                    source=DEALER,
                    destination=player,
                    response_required=True,
                )
                await dispatcher.send(letter, reply_timeout=2.0)
            with anyio.fail_after(4.0):
                await self.round_done.wait()
            if self.failures:
                raise SystemExit(f"{len(self.failures)} card(s) were not delivered")

        print(f"{DEALER} -> {TABLE}: show your hands")
        hands = await dispatcher.gather(
            Message("show-hand", source=DEALER, group=TABLE), timeout=2.0
        )
        return {str(r.source): [Card(**card) for card in r.content] for r in hands}


# ----------------------------------------------------------------------------- the launcher


async def run_dealer(players: int, cards_each: int, seed: int | None) -> None:
    dispatcher = MessageDispatcher(DEALER_PROCESS, listen=["tcp://127.0.0.1:0"], reply_timeout=2.0)
    dealer = RemoteDealer(dispatcher, players)
    dispatcher.register(dealer)
    async with dispatcher:
        url = dispatcher.listen_urls[0]
        print(f"{DEALER}: pid {os.getpid()}, process {dispatcher.process_id!r} listens on {url}")
        await host_game(
            dispatcher,
            dealer.play,
            script=__file__,
            join=url,
            players=players,
            cards_each=cards_each,
            seed=seed,
            table_timeout=10,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_game_options(parser)
    args = parser.parse_args()
    check_game_options(parser, args)
    if args.role == "player":
        anyio.run(run_player, args.name, args.join, args.loves_hearts)
    else:
        anyio.run(run_dealer, args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
