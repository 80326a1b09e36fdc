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

The cards, the deck and the players' card rules are in ``_cards.py`` (shared with
``card_dealer_sync.py``).

Run::

    python examples/card_dealer.py [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import random

import anyio

from _cards import TABLE, Card, CardPlayer, new_deck, parse_args, player_name, print_hands
from dispatchio import BasicMessageListener, Message, MessageDispatcher

DEALER = "dealer"  # the dealer's listener ID: replies to its letters come back here


class Player(CardPlayer):
    """A player: a listener whose filtering table routes each kind of message."""

    def __init__(self, name: str, *, loves_hearts: bool = False) -> None:
        super().__init__(name)
        # Rules are tried in order; the first one that matches handles the message.
        self.add_rule(type="new-game", callback=self.on_new_game)
        # "deal": a content rule for hearts (if loves_hearts), a where= rule for aces, then
        # any other card (see CardPlayer.add_deal_rules in _cards.py).
        self.add_deal_rules(loves_hearts=loves_hearts)
        self.add_rule(type="show-hand", callback=self.on_show_hand)

    # A plain callback's return value is the reply: it goes back to the sender.
    def on_new_game(self, message: Message) -> str:
        self.hand.clear()
        return "ready"

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
        name = player_name(index)
        dispatcher.register(Player(name, loves_hearts=index == 0))
        dispatcher.subscribe(TABLE, name)

    deck = new_deck(random.Random(seed))
    async with dispatcher:
        hands = await dealer.play(deck, cards_each)

    print_hands(dispatcher, hands, deck)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0] if __doc__ else None)
    anyio.run(main_async, args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
