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

The cards, the deck and the players' card rules are in ``_cards.py`` (shared with
``card_dealer.py``).

Run::

    python examples/card_dealer_sync.py [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import random
from typing import Any

from _cards import TABLE, Card, CardPlayer, new_deck, parse_args, player_name, print_hands
from dispatchio import Message, MessageDispatcher

DEALER = "dealer"  # the dealer's ID, written on every message as its source


class Player(CardPlayer):
    """A player: a listener whose filtering table routes each kind of message.

    Every callback is a plain function, so it can answer `send_sync`. A reply to a group
    message names the player, because a group ``send_sync`` returns bare reply values.
    """

    def __init__(self, name: str, *, loves_hearts: bool = False) -> None:
        super().__init__(name)
        # Rules are tried in order; the first one that matches handles the message.
        self.add_rule(type="new-game", callback=self.on_new_game)
        # "deal": a content rule for hearts (if loves_hearts), a where= rule for aces, then
        # any other card (see CardPlayer.add_deal_rules in _cards.py).
        self.add_deal_rules(loves_hearts=loves_hearts)
        self.add_rule(type="show-hand", callback=self.on_show_hand)

    def on_new_game(self, message: Message) -> dict[str, Any]:
        self.hand.clear()
        return {"player": self.id, "status": "ready"}

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
        name = player_name(index)
        dispatcher.register(Player(name, loves_hearts=index == 0))
        dispatcher.subscribe(TABLE, name)

    deck = new_deck(random.Random(seed))
    hands = deal(dispatcher, deck, cards_each)

    print_hands(dispatcher, hands, deck)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else None)
    play(args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
