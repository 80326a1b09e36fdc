"""The card-dealing phase of a game, with synchronous messages only (phone calls).

The same game as ``card_dealer.py``, but every message goes through
`MessageDispatcher.send_sync`: the receiving handler runs inside the call and its
return value comes straight back, like calling a function. There is no event loop
at all: no ``async``, no ``await``, no ``anyio.run``.

* A group ``send_sync`` (``group="table"``) calls every subscriber in turn and returns
  the list of their replies, in subscription order.
* A ``send_sync`` to one player (``destination=<player>``) returns that player's reply.

Synchronous sends reach plain callbacks only (an ``async def`` rule would raise
`dispatchio.SyncSendError`), and only listeners in this process.

Run::

    python examples/card_dealer_sync.py [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from typing import Any

from dispatchio import BasicMessageListener, Message, MessageDispatcher

RANKS = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K", "A")
SUITS = ("clubs", "diamonds", "hearts", "spades")
SYMBOLS = {"clubs": "♣", "diamonds": "♦", "hearts": "♥", "spades": "♠"}
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")

TABLE = "table"  # the group every player subscribes to
DEALER = "dealer"  # the dealer's ID, written on every message as its source


@dataclasses.dataclass(frozen=True)
class Card:
    """One playing card. Rules can look inside it: ``content={"card.suit": ...}``."""

    suit: str
    rank: str

    def sort_key(self) -> tuple[int, int]:
        return SUITS.index(self.suit), RANKS.index(self.rank)

    def __str__(self) -> str:
        return f"{self.rank}{SYMBOLS[self.suit]}"


def new_deck(rng: random.Random) -> list[Card]:
    """A full 52-card deck, shuffled."""
    deck = [Card(suit, rank) for suit in SUITS for rank in RANKS]
    rng.shuffle(deck)
    return deck


def show(cards: list[Card]) -> str:
    return " ".join(str(card) for card in sorted(cards, key=Card.sort_key))


def is_ace(message: Message) -> bool:
    """A ``where=`` predicate: is the card in this "deal" message an ace?"""
    card: Card = message.content["card"]
    return card.rank == "A"


class Player(BasicMessageListener):
    """A player: a listener whose filtering table routes each kind of message.

    Every callback is a plain function, so it can answer `send_sync`. A reply to a group
    message names the player, because a group ``send_sync`` returns bare reply values.
    """

    def __init__(self, name: str, *, loves_hearts: bool = False) -> None:
        super().__init__(name)
        self.hand: list[Card] = []
        # Rules are tried in order; the first one that matches handles the message.
        self.add_rule(type="new-game", callback=self.on_new_game)
        if loves_hearts:
            # A content rule: matches a "deal" whose content["card"].suit is "hearts".
            self.add_rule(type="deal", content={"card.suit": "hearts"}, callback=self.on_heart)
        # A predicate rule: any test on the message at all.
        self.add_rule(type="deal", where=is_ace, callback=self.on_ace)
        self.add_rule(type="deal", callback=self.on_card)
        self.add_rule(type="show-hand", callback=self.on_show_hand)

    def on_new_game(self, message: Message) -> dict[str, Any]:
        self.hand.clear()
        return {"player": self.id, "status": "ready"}

    def on_heart(self, message: Message) -> dict[str, Any]:
        print(f"  {self.id}: (whispers) a heart, my favourite suit!")
        return self.on_card(message)

    def on_ace(self, message: Message) -> dict[str, Any]:
        print(f"  {self.id}: (grins) an ace!")
        return self.on_card(message)

    def on_card(self, message: Message) -> dict[str, Any]:
        card: Card = message.content["card"]
        self.hand.append(card)
        return {"card": card, "hand_size": len(self.hand)}

    def on_show_hand(self, message: Message) -> dict[str, Any]:
        return {"player": self.id, "hand": list(self.hand)}


def deal(dispatcher: MessageDispatcher, deck: list[Card], cards_each: int) -> dict[str, list[Card]]:
    """The dealer's side. It needs no listener of its own: every reply is a return value."""
    players = [str(p) for p in dispatcher.subscribers(TABLE)]

    # 1. A group call: the list of every subscriber's reply.
    print(f"{DEALER} -> {TABLE}: new game ({len(players)} players)")
    replies = dispatcher.send_sync(
        Message("new-game", {"players": len(players)}, source=DEALER, group=TABLE)
    )
    for reply in replies:
        print(f"{reply['player']} -> {DEALER}: {reply['status']}")

    # 2. One call per card: the player's answer is the return value, right away.
    for round_number in range(1, cards_each + 1):
        print(f"-- round {round_number}")
        for player in players:
            card = deck.pop()
            print(f"{DEALER} -> {player}: {card}")
            answer = dispatcher.send_sync(
                Message("deal", {"card": card}, source=DEALER, destination=player)
            )
            print(f"{player} -> {DEALER}: got {answer['card']} (hand: {answer['hand_size']})")

    # 3. Everybody shows their hand.
    print(f"{DEALER} -> {TABLE}: show your hands")
    hands = dispatcher.send_sync(Message("show-hand", source=DEALER, group=TABLE))
    return {str(reply["player"]): reply["hand"] for reply in hands}


def play(players: int, cards_each: int, seed: int | None) -> None:
    dispatcher = MessageDispatcher("card-table")
    for index in range(players):
        name = NAMES[index] if index < len(NAMES) else f"player{index + 1}"
        dispatcher.register(Player(name, loves_hearts=index == 0))
        dispatcher.subscribe(TABLE, name)

    deck = new_deck(random.Random(seed))
    hands = deal(dispatcher, deck, cards_each)

    print("== hands")
    dealt = [card for hand in hands.values() for card in hand]
    for player in dispatcher.subscribers(TABLE):
        print(f"HAND {player}: {show(hands[str(player)])}")
    print(f"DEALT {len(dealt)} cards, {len(set(dealt))} distinct, {len(deck)} left in the deck")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--players", type=int, default=4, help="number of players (default 4)")
    parser.add_argument("--cards", type=int, default=5, help="cards per player (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed (default random)")
    args = parser.parse_args()
    if args.players < 1 or args.cards < 1 or args.players * args.cards > 52:
        parser.error("need players >= 1, cards >= 1 and players * cards <= 52")
    return args


def main() -> None:
    args = parse_args()
    play(args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
