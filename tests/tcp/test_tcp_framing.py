"""The frame decoder: unit checks and hypothesis fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dispatchio_tcp._framing import (
    ENDED,
    GOODBYE,
    HEADER,
    FrameDecoder,
    FrameError,
    encode_header,
    goodbye,
    split_frames,
)

FUZZ = settings(max_examples=1500, deadline=None, database=None)


def _encode(frames: list[bytes]) -> bytes:
    return b"".join(encode_header(len(f)) + f for f in frames)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def _decode(decoder: FrameDecoder, chunks: list[bytes]) -> list[bytes]:
    return [bytes(frame) for chunk in chunks for frame in decoder.feed(chunk)]


def test_whole_frames_in_one_chunk_are_all_yielded() -> None:
    frames = [b"a", b"", b"bc" * 100]
    assert _decode(FrameDecoder(1024), [_encode(frames)]) == frames


def test_a_frame_split_byte_by_byte_is_reassembled() -> None:
    data = _encode([b"hello", b"world"])
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert _decode(FrameDecoder(1024), chunks) == [b"hello", b"world"]


def test_a_frame_at_max_frame_size_passes() -> None:
    payload = bytes(range(256)) * 4
    assert _decode(FrameDecoder(1024), [_encode([payload])]) == [payload]


def test_a_length_over_max_frame_size_is_refused_from_the_header_alone() -> None:
    decoder = FrameDecoder(1024)
    with pytest.raises(FrameError, match="frame of 1025 bytes exceeds max_frame_size 1024"):
        _decode(decoder, [encode_header(1025)])


def test_a_huge_length_is_refused_before_allocating() -> None:
    decoder = FrameDecoder(1 << 20)
    before = decoder.capacity
    with pytest.raises(FrameError, match="exceeds max_frame_size"):
        _decode(decoder, [encode_header(GOODBYE - 1)])
    assert (decoder.capacity, decoder.finished) == (before, True)


def test_a_huge_length_split_from_its_header_is_refused_before_allocating() -> None:
    decoder = FrameDecoder(1 << 20)
    before = decoder.capacity
    header = encode_header(GOODBYE - 1)
    assert _decode(decoder, [header[:2]]) == []
    with pytest.raises(FrameError, match="exceeds max_frame_size"):
        _decode(decoder, [header[2:]])
    assert (decoder.capacity, decoder.finished) == (before, True)


def test_frames_before_a_bad_length_are_yielded_first() -> None:
    decoder = FrameDecoder(1024)
    seen: list[bytes] = []
    with pytest.raises(FrameError):  # noqa: PT012
        for frame in decoder.feed(_encode([b"one", b"two"]) + encode_header(5000)):
            seen.append(bytes(frame))
    assert seen == [b"one", b"two"]


def test_goodbye_finishes_the_stream() -> None:
    decoder = FrameDecoder(1024)
    assert _decode(decoder, [_encode([b"last"]) + goodbye()]) == [b"last"]
    assert decoder.finished


def test_data_after_goodbye_is_a_frame_error() -> None:
    decoder = FrameDecoder(1024)
    with pytest.raises(FrameError, match="after the end"):
        _decode(decoder, [goodbye(), b"\x00"])


def test_a_partial_frame_is_held_back() -> None:
    decoder = FrameDecoder(1024)
    assert _decode(decoder, [_encode([b"abcdef"])[:6]]) == []
    assert decoder.pending == 6


@FUZZ
@given(
    frames=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=7000), max_size=30),
)
def test_any_chunking_of_a_valid_stream_reproduces_its_frames(
    frames: list[bytes], cuts: list[int]
) -> None:
    decoder = FrameDecoder(300)
    data = _encode(frames)
    assert _decode(decoder, _split(data, cuts)) == frames
    assert decoder.pending == 0


@settings(
    FUZZ,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    frames=st.lists(
        st.integers(min_value=1, max_value=200_000).map(lambda n: bytes(range(256)) * (n // 256)),
        max_size=3,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=600_000), max_size=10),
)
def test_large_frames_split_anywhere_are_reassembled(frames: list[bytes], cuts: list[int]) -> None:
    decoder = FrameDecoder(200_000)
    assert _decode(decoder, _split(_encode(frames), cuts)) == frames


@FUZZ
@given(
    data=st.binary(max_size=2000),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_random_bytes_never_raise_anything_but_frame_error(data: bytes, cuts: list[int]) -> None:
    decoder = FrameDecoder(1024)
    try:
        for _ in _decode(decoder, _split(data, cuts)):
            pass
    except FrameError:
        assert decoder.finished


def test_split_frames_stops_at_an_incomplete_frame_saying_how_much_it_needs() -> None:
    data = _encode([b"one", b"three"])
    frames, pos, need, error = split_frames(data[:-2], 0, len(data) - 2, 1024)
    assert (frames, pos, need, error) == ([b"one"], 7, HEADER.size + 5, None)


def test_split_frames_reports_a_goodbye_only_as_the_last_thing() -> None:
    data = _encode([b"x"]) + goodbye()
    assert split_frames(data, 0, len(data), 1024) == ([b"x"], len(data), ENDED, None)
    frames, _, need, error = split_frames(data + b"!", 0, len(data) + 1, 1024)
    assert (frames, need) == ([b"x"], ENDED)
    assert isinstance(error, FrameError)
    assert "after the end" in str(error)


def test_split_frames_returns_the_frames_before_a_bad_length_and_the_error() -> None:
    data = _encode([b"ok"]) + encode_header(2000)
    frames, pos, need, error = split_frames(memoryview(data), 0, len(data), 1024)
    assert (frames, pos, need) == ([b"ok"], 6, ENDED)
    assert isinstance(error, FrameError)
    assert "frame of 2000 bytes exceeds max_frame_size 1024" in str(error)
