"""The handshake codec and proofs: unit checks and hypothesis fuzzing."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatchio_tcp._handshake import (
    ACCEPT,
    MAX_HELLO,
    PREFIX,
    REJECT,
    HandshakeError,
    Hello,
    arbitrates,
    decode_hello,
    encode_hello,
    make_proof,
    verdict,
)

FUZZ = settings(max_examples=1000, deadline=None, database=None)

HELLO = Hello("dealer", 42, ("tcp://127.0.0.1:7400",), bytes(range(16)), False)
OTHER = Hello("player", 7, (), bytes(16), True)


def test_a_hello_round_trips() -> None:
    assert decode_hello(encode_hello(HELLO)) == HELLO


def test_an_integer_process_id_round_trips() -> None:
    hello = HELLO._replace(process=17)
    assert decode_hello(encode_hello(hello)) == hello


def test_wrong_magic_is_refused() -> None:
    data = b"HTTP" + encode_hello(HELLO)[4:]
    with pytest.raises(HandshakeError, match="not a dispatchio tcp peer"):
        decode_hello(data)


def test_another_version_is_refused() -> None:
    data = encode_hello(HELLO)
    data = data[:4] + (2).to_bytes(2, "big") + data[6:]
    with pytest.raises(HandshakeError, match="protocol version 2 is not supported"):
        decode_hello(data)


def test_a_hello_over_the_size_cap_is_refused_when_encoding() -> None:
    hello = HELLO._replace(urls=("tcp://x:1" * 50,) * 10)
    with pytest.raises(HandshakeError, match=f"exceeds {MAX_HELLO}"):
        encode_hello(hello)


def test_a_boolean_incarnation_is_refused() -> None:
    body = json.dumps(
        {"process": "p", "incarnation": True, "urls": [], "nonce": "00" * 16, "auth": False}
    ).encode()
    with pytest.raises(HandshakeError, match="'incarnation'"):
        decode_hello(PREFIX.pack(b"DSPT", 1, len(body)) + body)


def test_a_short_nonce_is_refused() -> None:
    body = json.dumps(
        {"process": "p", "incarnation": 1, "urls": [], "nonce": "00", "auth": False}
    ).encode()
    with pytest.raises(HandshakeError, match="'nonce'"):
        decode_hello(PREFIX.pack(b"DSPT", 1, len(body)) + body)


def test_proofs_verify_only_with_the_same_secret_role_and_nonces() -> None:
    proof = make_proof("s", HELLO, OTHER, prover_dialed=True)
    assert proof == make_proof("s", HELLO, OTHER, prover_dialed=True)
    assert proof != make_proof("t", HELLO, OTHER, prover_dialed=True)
    assert proof != make_proof("s", HELLO, OTHER, prover_dialed=False)
    assert proof != make_proof("s", OTHER, HELLO, prover_dialed=True)
    assert proof != make_proof(
        "s", HELLO, OTHER._replace(nonce=bytes([1] * 16)), prover_dialed=True
    )
    # An HMAC-SHA256 digest whatever the secret's length: the secret is never sent.
    assert len(proof) == 32
    assert len(make_proof("s" * 1000, HELLO, OTHER, prover_dialed=True)) == 32


_ids = st.one_of(st.text(min_size=1, max_size=40), st.integers(min_value=-(2**63), max_value=2**63))
_hellos = st.builds(
    Hello,
    process=_ids,
    incarnation=st.integers(min_value=0, max_value=2**64),
    urls=st.lists(st.text(max_size=40), max_size=5).map(tuple),
    nonce=st.binary(min_size=16, max_size=16),
    auth=st.booleans(),
)


@FUZZ
@given(hello=_hellos)
def test_any_hello_round_trips(hello: Hello) -> None:
    assert decode_hello(encode_hello(hello)) == hello


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_never_raise_anything_but_handshake_error(data: bytes) -> None:
    with contextlib.suppress(HandshakeError):
        decode_hello(data)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bodies_behind_a_valid_prefix_only_raise_handshake_error(data: bytes) -> None:
    with contextlib.suppress(HandshakeError):
        decode_hello(PREFIX.pack(b"DSPT", 1, len(data)) + data)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "process": _json,
            "incarnation": _json,
            "urls": _json,
            "nonce": _json | st.binary(max_size=20).map(bytes.hex),
            "auth": _json,
        },
    )
)
def test_malformed_json_hellos_only_raise_handshake_error(fields: dict[str, object]) -> None:
    body = json.dumps(fields).encode()
    if len(body) > MAX_HELLO - PREFIX.size:
        return
    with contextlib.suppress(HandshakeError):
        decode_hello(PREFIX.pack(b"DSPT", 1, len(body)) + body)


def test_exactly_one_side_of_a_pair_arbitrates_comparing_ids_as_strings() -> None:
    assert (arbitrates("a", "b"), arbitrates("b", "a")) == (True, False)
    assert (arbitrates(10, "9"), arbitrates("9", 10)) == (True, False)  # "10" < "9"


def test_the_link_already_there_wins_unless_the_peer_restarted() -> None:
    assert verdict(None, 7) == ACCEPT  # no link yet
    assert verdict(7, 7) == REJECT  # a duplicate of the link to that incarnation
    assert verdict(6, 7) == ACCEPT  # a restart: the new link replaces the old one
