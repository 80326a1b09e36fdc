"""The cards, the deck and the players' card rules shared by ``card_dealer.py`` and
``card_dealer_sync.py`` (the two examples differ in how the messages travel, not in the cards).

Not an example by itself: the examples import it as ``from _cards import ...`` (a script's own
folder is on ``sys.path``).
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


class CardPlayer(BasicMessageListener):
    """What every player does with a dealt card: keep it in ``hand`` and answer with it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.hand: list[Card] = []

    def add_deal_rules(self, *, loves_hearts: bool) -> None:
        """The rules for a "deal" message, tried in order; the first that matches handles it."""
        if loves_hearts:
            # A content rule: matches a "deal" whose content["card"].suit is "hearts".
            self.add_rule(type="deal", content={"card.suit": "hearts"}, callback=self.on_heart)
        # A predicate rule: any test on the message at all.
        self.add_rule(type="deal", where=is_ace, callback=self.on_ace)
        self.add_rule(type="deal", callback=self.on_card)

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


def player_name(index: int) -> str:
    """The name of the player at ``index``: from NAMES, then ``player<N>``."""
    return NAMES[index] if index < len(NAMES) else f"player{index + 1}"


def print_hands(
    dispatcher: MessageDispatcher, hands: dict[str, list[Card]], deck: list[Card]
) -> None:
    """The summary lines: one ``HAND`` line per player, then the ``DEALT`` total."""
    print("== hands")
    dealt = [card for hand in hands.values() for card in hand]
    for player in dispatcher.subscribers(TABLE):
        print(f"HAND {player}: {show(hands[str(player)])}")
    print(f"DEALT {len(dealt)} cards, {len(set(dealt))} distinct, {len(deck)} left in the deck")


def parse_args(description: str | None) -> argparse.Namespace:
    """The options both card dealers take: ``--players``, ``--cards`` and ``--seed``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--players", type=int, default=4, help="number of players (default 4)")
    parser.add_argument("--cards", type=int, default=5, help="cards per player (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed (default random)")
    args = parser.parse_args()
    if args.players < 1 or args.cards < 1 or args.players * args.cards > 52:
        parser.error("need players >= 1, cards >= 1 and players * cards <= 52")
    return args
