"""The card-dealing phase of a game, with asynchronous messages (letters).

A dealer and a table of players are listeners on one `MessageDispatcher`:

1. The dealer asks the whole table (the group ``"table"``) for a new game and
   *gathers* one "ready" reply from every player.
2. The dealer deals the cards, one letter per card, each addressed to one player
   (``destination=<player>``, ``source="dealer"``). Every player answers, and the
   answer travels back letter style: it arrives at the dealer's own listener as a
   response message (``is_response=True``), where one of the dealer's rules
   prints it.
3. The dealer gathers every player's hand from the table and prints it, sorted.

Filtering rules in action: every player has a *content* rule
(``content={"card.suit": "hearts"}``) so the hearts lover can remark on hearts, and a
``where=`` predicate that spots aces; the dealer uses ``where=`` to tell answers apart
from returned letters.

Run::

    python examples/card_dealer.py [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import argparse
import dataclasses
import random
from typing import Any

import anyio

from dispatchio import BasicMessageListener, Message, MessageDispatcher

RANKS = ("2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K", "A")
SUITS = ("clubs", "diamonds", "hearts", "spades")
SYMBOLS = {"clubs": "♣", "diamonds": "♦", "hearts": "♥", "spades": "♠"}
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")

TABLE = "table"  # the group every player subscribes to
DEALER = "dealer"  # the dealer's listener ID: replies to its letters come back here


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
    """A player: a listener whose filtering table routes each kind of message."""

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

    # A plain callback's return value is the reply: it goes back to the sender.
    def on_new_game(self, message: Message) -> str:
        self.hand.clear()
        return "ready"

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

    def on_show_hand(self, message: Message) -> list[Card]:
        return list(self.hand)


class Dealer(BasicMessageListener):
    """The dealer: sends the letters, and receives the players' answers to them."""

    def __init__(self, dispatcher: MessageDispatcher) -> None:
        super().__init__(DEALER)
        self.dispatcher = dispatcher
        self.outstanding = 0  # answers still due for the current round
        self.round_done = anyio.Event()
        self.failures: list[str] = []
        # Answers to the dealer's letters arrive here as response messages. A returned
        # letter (one carrying an error) goes to the second rule.
        self.add_rule(
            type="deal",
            where=lambda m: m.is_response and m.error is None,
            callback=self.on_dealt,
        )
        self.add_rule(where=lambda m: m.error is not None, callback=self.on_returned)

    def on_dealt(self, answer: Message) -> None:
        card, size = answer.content["card"], answer.content["hand_size"]
        print(f"{answer.source} -> {DEALER}: got {card} (hand: {size})")
        self.answered()

    def on_returned(self, letter: Message) -> None:
        # Not expected in this game; shown because real letters do get lost.
        print(f"{DEALER}: letter {letter.type!r} to {letter.source} came back: {letter.error}")
        self.failures.append(str(letter.error))
        self.answered()

    def answered(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self.round_done.set()

    async def play(self, deck: list[Card], cards_each: int) -> dict[str, list[Card]]:
        dispatcher = self.dispatcher
        players = [str(p) for p in dispatcher.subscribers(TABLE)]

        # 1. A group message, and every subscriber's reply gathered.
        print(f"{DEALER} -> {TABLE}: new game ({len(players)} players)")
        replies = await dispatcher.gather(
            Message("new-game", {"players": len(players)}, source=DEALER, group=TABLE),
            timeout=1.0,
        )
        for reply in replies:
            print(f"{reply.source} -> {DEALER}: {reply.content}")

        # 2. One letter per card, round by round. `send` returns at once; the answers
        #    arrive at this listener's `on_dealt` rule.
        for round_number in range(1, cards_each + 1):
            print(f"-- round {round_number}")
            self.outstanding = len(players)
            self.round_done = anyio.Event()
            for player in players:
                card = deck.pop()
                print(f"{DEALER} -> {player}: {card}")
                await dispatcher.send(
                    Message(
                        "deal",
                        {"card": card},
                        source=DEALER,
                        destination=player,
                        response_required=True,  # no answer within 1 s: a "timeout" letter
                    ),
                    reply_timeout=1.0,
                )
            with anyio.fail_after(2.0):
                await self.round_done.wait()
            if self.failures:
                raise SystemExit(f"{len(self.failures)} card(s) were not delivered")

        # 3. Everybody shows their hand.
        print(f"{DEALER} -> {TABLE}: show your hands")
        hands = await dispatcher.gather(
            Message("show-hand", source=DEALER, group=TABLE), timeout=1.0
        )
        return {str(reply.source): reply.content for reply in hands}


async def main_async(players: int, cards_each: int, seed: int | None) -> None:
    dispatcher = MessageDispatcher("card-table", reply_timeout=1.0)
    dealer = Dealer(dispatcher)
    dispatcher.register(dealer)
    for index in range(players):
        name = NAMES[index] if index < len(NAMES) else f"player{index + 1}"
        dispatcher.register(Player(name, loves_hearts=index == 0))
        dispatcher.subscribe(TABLE, name)

    deck = new_deck(random.Random(seed))
    async with dispatcher:
        hands = await dealer.play(deck, cards_each)

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
    anyio.run(main_async, args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
