"""examples/card_dealer_tcp.py: the card dealer across three OS processes over TCP.

The demo runs once per set of arguments (cached) in a subprocess; the tests read its
lines: ``<who>: pid <n>`` (each process prints its own), ``HAND``, ``DEALT`` and ``EXIT``.
"""

from __future__ import annotations

import re

from tests._examples import VALID_CARDS, run_example


def run_demo() -> str:
    return run_example("card_dealer_tcp.py", "--seed", "7")


def pids(output: str) -> dict[str, int]:
    """The ``<who>: pid <n>`` lines (the players' are indented), as who -> pid."""
    found = re.findall(r"^\s*(\S+): pid (\d+)\b", output, flags=re.MULTILINE)
    return {who: int(pid) for who, pid in found}


def hands(output: str) -> dict[str, list[str]]:
    """The ``HAND <player>: <card> <card> ...`` lines, as player -> cards."""
    found = re.findall(r"^HAND (\S+): (.*)$", output, flags=re.MULTILINE)
    return {player: cards.split() for player, cards in found}


def test_dealer_and_each_player_run_in_their_own_process() -> None:
    found = pids(run_demo())

    assert sorted(found) == ["alice", "bob", "dealer"]
    assert len(set(found.values())) == 3, found


def test_each_player_process_exits_0_after_the_quit_message() -> None:
    output = run_demo()

    assert re.findall(r"^EXIT (\S+) (-?\d+)$", output, flags=re.MULTILINE) == [
        ("alice", "0"),
        ("bob", "0"),
    ]


def test_each_player_gets_five_cards() -> None:
    dealt = hands(run_demo())

    assert sorted(dealt) == ["alice", "bob"]
    assert all(len(cards) == 5 for cards in dealt.values()), dealt


def test_the_ten_dealt_cards_are_valid_and_distinct() -> None:
    output = run_demo()
    every_card = [card for cards in hands(output).values() for card in cards]

    assert set(every_card) <= VALID_CARDS
    assert len(set(every_card)) == 10
    assert "DEALT 10 cards, 10 distinct, 42 left in the deck" in output


def test_players_see_each_card_arrive_from_the_dealer_process() -> None:
    output = run_demo()
    received = re.findall(
        r"^  (\S+): got (\S+) from dealer \(process dealer-process\)$", output, flags=re.MULTILINE
    )

    assert sorted(received) == sorted(
        (player, card) for player, cards in hands(output).items() for card in cards
    )


def test_same_seed_deals_the_same_hands_as_the_in_process_dealer() -> None:
    in_process = run_example("card_dealer.py", "--players", "2", "--seed", "7")

    assert hands(run_demo()) == hands(in_process)
