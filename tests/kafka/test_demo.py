"""examples/card_dealer_kafka.py: the card dealer across three OS processes over Kafka.

The demo runs once (cached) in a subprocess against the session's broker (``--broker``);
the tests read its lines.
"""

from __future__ import annotations

import re

from dispatchio_kafka import LocalBroker
from tests._examples import VALID_CARDS, run_example


def run_demo(broker: LocalBroker) -> str:
    return run_example("card_dealer_kafka.py", "--seed", "7", "--broker", broker.bootstrap)


def hands(output: str) -> dict[str, list[str]]:
    found = re.findall(r"^HAND (\S+): (.*)$", output, flags=re.MULTILINE)
    return {player: cards.split() for player, cards in found}


def test_each_player_gets_five_distinct_valid_cards(broker: LocalBroker) -> None:
    dealt = hands(run_demo(broker))
    every_card = [card for cards in dealt.values() for card in cards]

    assert sorted(dealt) == ["alice", "bob"]
    assert all(len(cards) == 5 for cards in dealt.values()), dealt
    assert set(every_card) <= VALID_CARDS
    assert len(set(every_card)) == 10


def test_each_player_process_exits_0_after_the_quit_message(broker: LocalBroker) -> None:
    assert re.findall(r"^EXIT (\S+) (-?\d+)$", run_demo(broker), flags=re.MULTILINE) == [
        ("alice", "0"),
        ("bob", "0"),
    ]


def test_same_seed_deals_the_same_hands_as_the_in_process_dealer(broker: LocalBroker) -> None:
    in_process = run_example("card_dealer.py", "--players", "2", "--seed", "7")

    assert hands(run_demo(broker)) == hands(in_process)


def test_it_starts_its_own_broker_when_none_is_given() -> None:
    output = run_example("card_dealer_kafka.py", "--seed", "3", "--players", "1", "--cards", "2")

    assert "launcher: started a tansu broker on 127.0.0.1:" in output
    assert re.findall(r"^EXIT (\S+) (-?\d+)$", output, flags=re.MULTILINE) == [("alice", "0")]
