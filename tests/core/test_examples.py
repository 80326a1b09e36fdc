"""The sample programs in examples/ run, exit 0, and show the behaviour they describe.

Each program runs once per set of arguments (cached) in a subprocess; the tests read its
machine-checkable summary lines (``HAND``, ``DEALT``, ``ORDER``, ``REPLY``, ``TIMEOUT``,
``LETTER``, ``STATS``).
"""

from __future__ import annotations

import re

from tests._examples import VALID_CARDS, run_example


def hands(output: str) -> dict[str, list[str]]:
    """The ``HAND <player>: <card> <card> ...`` lines, as player -> cards."""
    found = re.findall(r"^HAND (\S+): (.*)$", output, flags=re.MULTILINE)
    return {player: cards.split() for player, cards in found}


def order(output: str, part: str) -> list[str]:
    """The events of an ``ORDER <part>: <event> <event> ...`` line."""
    match = re.search(rf"^ORDER {re.escape(part)}: (.*)$", output, flags=re.MULTILINE)
    assert match is not None, f"no ORDER {part} line in:\n{output}"
    return match.group(1).split()


def assert_five_valid_distinct_cards_to_each_of_four_players(dealt: dict[str, list[str]]) -> None:
    """``dealt`` (from `hands`) gives four named players five cards each, 20 distinct cards."""
    assert list(dealt) == ["alice", "bob", "carol", "dave"]
    assert all(len(cards) == 5 for cards in dealt.values()), dealt
    every_card = [card for cards in dealt.values() for card in cards]
    assert set(every_card) <= VALID_CARDS
    assert len(set(every_card)) == 20


# ----------------------------------------------------------------------------- card dealer


def test_card_dealer_deals_five_valid_distinct_cards_to_each_of_four_players() -> None:
    dealt = hands(run_example("card_dealer.py", "--seed", "7"))
    assert_five_valid_distinct_cards_to_each_of_four_players(dealt)


def test_card_dealer_prints_the_dealt_total() -> None:
    output = run_example("card_dealer.py", "--seed", "7")

    assert "DEALT 20 cards, 20 distinct, 32 left in the deck" in output


def test_card_dealer_players_answer_every_card_letter_style() -> None:
    output = run_example("card_dealer.py", "--seed", "7")

    sent = re.findall(r"^dealer -> (\w+): (\S+)$", output, flags=re.MULTILINE)
    answered = re.findall(r"^(\w+) -> dealer: got (\S+) \(hand: \d+\)$", output, flags=re.MULTILINE)
    assert len(sent) == 20
    assert sorted(answered) == sorted(sent)


# Seed 19 deals alice (the hearts lover) 2♥ 8♥ A♥, and aces to bob and carol.
SEED_WITH_HEARTS_AND_ACES = "19"


def test_card_dealer_content_rule_remarks_on_each_heart_alice_gets() -> None:
    output = run_example("card_dealer.py", "--seed", SEED_WITH_HEARTS_AND_ACES)

    alice_hearts = [card for card in hands(output)["alice"] if card.endswith("♥")]
    assert len(alice_hearts) == 3
    assert output.count("alice: (whispers) a heart") == 3
    assert "(whispers)" not in output.replace("alice: (whispers)", "")


def test_card_dealer_where_rule_remarks_on_each_ace_except_one_the_hearts_rule_took() -> None:
    output = run_example("card_dealer.py", "--seed", SEED_WITH_HEARTS_AND_ACES)

    # The hearts rule comes first in alice's table, so it, not the ace rule, takes A♥.
    assert "A♥" in hands(output)["alice"]
    aces = [card for cards in hands(output).values() for card in cards if card.startswith("A")]
    assert output.count("(grins) an ace!") == len(aces) - 1 == 2
    assert "alice: (grins)" not in output


def test_card_dealer_honours_players_and_cards_options() -> None:
    dealt = hands(run_example("card_dealer.py", "--players", "3", "--cards", "7", "--seed", "1"))

    assert list(dealt) == ["alice", "bob", "carol"]
    assert all(len(cards) == 7 for cards in dealt.values())
    assert len({card for cards in dealt.values() for card in cards}) == 21


def test_card_dealer_is_deterministic_for_a_seed() -> None:
    first = run_example("card_dealer.py", "--seed", "7")
    # Different arguments (the same game), so the cache runs the program a second time.
    again = run_example("card_dealer.py", "--seed", "7", "--players", "4")

    assert hands(first) == hands(again)


# ------------------------------------------------------------------------ card dealer sync


def test_card_dealer_sync_deals_five_valid_distinct_cards_to_each_of_four_players() -> None:
    dealt = hands(run_example("card_dealer_sync.py", "--seed", "7"))
    assert_five_valid_distinct_cards_to_each_of_four_players(dealt)


def test_card_dealer_sync_answers_each_card_right_after_it_is_dealt() -> None:
    lines = run_example("card_dealer_sync.py", "--seed", "7").splitlines()

    deals = [i for i, line in enumerate(lines) if re.match(r"dealer -> \w+: \S+$", line)]
    assert len(deals) == 20
    for i in deals:
        player, card = lines[i].removeprefix("dealer -> ").split(": ")
        answer = next(line for line in lines[i + 1 :] if not line.startswith("  "))
        assert answer.startswith(f"{player} -> dealer: got {card} (hand: ")


def test_card_dealer_sync_deals_the_same_hands_as_the_async_dealer() -> None:
    sync_hands = hands(run_example("card_dealer_sync.py", "--seed", "11"))
    async_hands = hands(run_example("card_dealer.py", "--seed", "11"))

    assert sync_hands == async_hands


# ------------------------------------------------------------------------------- blocking


def test_blocking_example_non_blocking_messages_start_before_earlier_ones_end() -> None:
    events = order(run_example("blocking_message_example.py"), "non-blocking")

    starts = [events.index(f"start:arm.move-{n}") for n in (1, 2, 3)]
    ends = [events.index(f"end:arm.move-{n}") for n in (1, 2, 3)]
    assert starts == sorted(starts)
    assert max(starts) < min(ends)


def test_blocking_example_holds_later_messages_until_the_blocking_one_is_handled() -> None:
    events = order(run_example("blocking_message_example.py"), "blocking")

    calibrated = events.index("end:arm.calibrate")
    assert events.index("start:arm.calibrate") < calibrated
    assert events.index("start:arm.move-4") > calibrated
    assert events.index("start:arm.move-5") > calibrated


def test_blocking_example_does_not_hold_another_destination() -> None:
    events = order(run_example("blocking_message_example.py"), "blocking")

    assert events.index("start:gripper.open") < events.index("end:arm.calibrate")


# ------------------------------------------------------------------------------- deferred


def test_deferred_example_deferred_callback_answers_after_the_approval() -> None:
    lines = run_example("deferred_reply_example.py").splitlines()

    reply = lines.index("REPLY alice <- expenses: laptop approved by manager")
    assert lines.index("manager -> expenses: approve the laptop") < reply


def test_deferred_example_queue_consumer_replies_to_every_order_in_order() -> None:
    output = run_example("deferred_reply_example.py")

    replies = re.findall(r"^REPLY (table-\d) <- kitchen: (.*)$", output, flags=re.MULTILINE)
    assert replies == [
        ("table-1", "soup is ready"),
        ("table-2", "pasta is ready"),
        ("table-3", "cake is ready"),
    ]


def test_deferred_example_request_without_reply_times_out() -> None:
    output = run_example("deferred_reply_example.py")

    assert "TIMEOUT request: no reply to 'ping' from 'black-hole' within 0.1 s" in output


def test_deferred_example_letter_without_reply_comes_back_as_timeout() -> None:
    output = run_example("deferred_reply_example.py")

    match = re.search(r"^LETTER alice <- 'hello' came back: (.*)$", output, flags=re.MULTILINE)
    assert match is not None, output
    assert match.group(1).startswith("timeout: ")


def test_deferred_example_counts_the_late_reply_as_dropped() -> None:
    output = run_example("deferred_reply_example.py")

    assert "STATS timeouts=2 late_replies=1" in output
