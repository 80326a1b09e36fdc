"""The pure parts of the peer link: frames inside messages, and the hello, fuzzed."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatchio_http._frames import (
    BATCH_LIMIT,
    HEADER,
    FrameError,
    FrameReader,
    ReceiveBudget,
    batches,
    message_cap,
    split,
)
from dispatchio_http._handshake import (
    MAX_HELLO,
    VERSION,
    HandshakeError,
    Hello,
    decode_hello,
    encode_hello,
    make_proof,
)

MAX_FRAME = 4096


def _parts(frames: list[bytes]) -> list[bytes]:
    parts: list[bytes] = []
    for frame in frames:
        parts += (HEADER.pack(len(frame)), frame)
    return parts


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=MAX_FRAME), min_size=1, max_size=40))
def test_frames_packed_into_messages_come_back_whole_and_in_order(frames: list[bytes]) -> None:
    parts = _parts(frames)
    messages = list(batches(parts, sum(map(len, parts))))
    assert all(len(m) <= max(BATCH_LIMIT, MAX_FRAME + HEADER.size) for m in messages)
    assert [f for m in messages for f in split(m, MAX_FRAME)] == frames


def test_a_burst_past_the_batch_limit_is_cut_on_frame_boundaries() -> None:
    frames = [bytes([n]) * 60_000 for n in range(10)]
    parts = _parts(frames)
    messages = list(batches(parts, sum(map(len, parts))))
    assert len(messages) == 3  # 4 + 4 + 2 frames of ~60 KB under 256 KiB
    assert [f for m in messages for f in split(m, 65_536)] == frames


def test_a_frame_larger_than_a_message_is_cut_into_messages_and_reassembled() -> None:
    big = bytes(range(256)) * (3 * BATCH_LIMIT // 256 + 7)
    frames = [b"a", big, b"b"]
    parts = _parts(frames)
    messages = list(batches(parts, sum(map(len, parts))))
    assert [len(m) for m in messages] == [5, BATCH_LIMIT, BATCH_LIMIT, BATCH_LIMIT, 1796, 5]
    assert max(map(len, messages)) == message_cap() == BATCH_LIMIT
    budget = ReceiveBudget(4 * BATCH_LIMIT)
    reader = FrameReader(4 * BATCH_LIMIT, budget)
    assert [f for m in messages for f in reader.feed(m)] == frames
    assert budget.held == 0


@settings(max_examples=200)
@given(
    st.lists(
        st.one_of(st.binary(max_size=64), st.integers(BATCH_LIMIT - 8, 2 * BATCH_LIMIT + 8)),
        min_size=1,
        max_size=6,
    )
)
def test_frames_of_any_size_come_back_whole_and_in_order(sizes: list[bytes | int]) -> None:
    frames = [s if isinstance(s, bytes) else bytes([s % 251]) * s for s in sizes]
    parts = _parts(frames)
    messages = list(batches(parts, sum(map(len, parts))))
    assert all(0 < len(m) <= BATCH_LIMIT for m in messages)
    budget = ReceiveBudget(3 * BATCH_LIMIT)
    reader = FrameReader(3 * BATCH_LIMIT, budget)
    assert [f for m in messages for f in reader.feed(m)] == frames
    assert budget.held == 0


def test_a_large_frame_is_checked_from_its_first_message_and_against_the_budget() -> None:
    first = HEADER.pack(2 * BATCH_LIMIT) + bytes(BATCH_LIMIT - HEADER.size)
    with pytest.raises(FrameError, match="exceeds max_frame_size"):
        list(FrameReader(BATCH_LIMIT, ReceiveBudget(BATCH_LIMIT)).feed(first))
    budget = ReceiveBudget(BATCH_LIMIT + 10)
    kept, refused = FrameReader(4 * BATCH_LIMIT, budget), FrameReader(4 * BATCH_LIMIT, budget)
    assert list(kept.feed(first)) == []
    assert budget.held == BATCH_LIMIT - HEADER.size
    with pytest.raises(FrameError, match="max_receive_bytes"):
        list(refused.feed(first))
    with pytest.raises(FrameError, match="does not continue a frame missing"):
        list(kept.feed(bytes(BATCH_LIMIT + 5)))
    kept.release()
    kept.release()  # idempotent
    assert budget.held == 0


@settings(max_examples=3000)
@given(st.binary(max_size=600))
def test_any_bytes_split_into_frames_or_raise_frame_error(data: bytes) -> None:
    frames: list[bytes] = []
    with contextlib.suppress(FrameError):  # the frames before a fault still count
        frames.extend(split(data, 256))
    assert all(len(frame) <= 256 for frame in frames)
    assert sum(len(f) + HEADER.size for f in frames) <= len(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "holds no frame"),
        (b"\x00\x00", "holds no frame"),
        (HEADER.pack(5) + b"abc", "cut off by the end"),
        (HEADER.pack(1) + b"a" + b"\x00", "header is cut off"),
        (HEADER.pack(257) + bytes(257), "exceeds max_frame_size 256"),
    ],
)
def test_bad_messages_are_named(data: bytes, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        list(split(data, 256))


ids = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(min_size=1, max_size=50)
)


@settings(max_examples=500)
@given(
    ids,
    st.integers(min_value=0, max_value=2**63 - 1),
    st.lists(st.text(max_size=40), max_size=5),
    st.binary(min_size=16, max_size=16),
    st.one_of(st.just(b""), st.binary(min_size=32, max_size=32)),
)
def test_a_hello_round_trips(
    process: int | str, incarnation: int, urls: list[str], nonce: bytes, proof: bytes
) -> None:
    hello = Hello(process, incarnation, tuple(urls), nonce, proof)
    text = encode_hello(hello)
    assert text.isascii()
    assert decode_hello(text) == hello


@settings(max_examples=3000)
@given(
    st.one_of(st.text(max_size=300), st.builds(json.dumps, st.dictionaries(st.text(), st.none())))
)
def test_any_text_is_a_hello_or_a_handshake_error(text: str) -> None:
    try:
        hello = decode_hello(text)
    except HandshakeError:
        return
    assert isinstance(hello.incarnation, int)
    assert len(hello.nonce) == 16


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"v": VERSION + 1}, "protocol version"),
        ({"process": ""}, "empty or too long"),
        ({"process": True}, "'process' is missing or malformed"),
        ({"incarnation": "1"}, "'incarnation'"),
        ({"urls": [1]}, "'urls'"),
        ({"nonce": "zz"}, "'nonce' must be 16 bytes"),
        ({"proof": "00"}, "'proof' must be 32 bytes"),
    ],
)
def test_bad_hellos_are_named(change: dict[str, object], match: str) -> None:
    good = json.loads(encode_hello(Hello("p", 1, (), bytes(16))))
    with pytest.raises(HandshakeError, match=match):
        decode_hello(json.dumps({**good, **change}))


def test_missing_and_oversized_hellos_are_refused() -> None:
    with pytest.raises(HandshakeError, match="not a dispatchio peer"):
        decode_hello(None)
    with pytest.raises(HandshakeError, match="exceeds"):
        decode_hello("x" * (MAX_HELLO + 1))
    with pytest.raises(HandshakeError, match="exceeds"):
        encode_hello(Hello("p", 1, ("u" * 100,) * 60, bytes(16)))


def test_the_proof_binds_the_token_the_nonce_and_both_processes() -> None:
    dialer = Hello("a", 1, (), bytes(16))
    proof = make_proof("token", dialer, "b")
    assert len(proof) == 32
    assert make_proof("token", dialer, "b") == proof
    assert make_proof("other", dialer, "b") != proof
    assert make_proof("token", dialer._replace(nonce=b"\x01" * 16), "b") != proof
    assert make_proof("token", dialer._replace(process="c"), "b") != proof
    assert make_proof("token", dialer, "c") != proof
