"""Packaging, entry point, options, URL parsing and topic names of dispatchio-kafka."""

from __future__ import annotations

import pytest

import dispatchio_kafka
from dispatchio import TransportConfigError
from dispatchio._plugins import make_plugin_manager
from dispatchio.transport import resolve_transport
from dispatchio_kafka import KafkaOptions, KafkaTransport
from dispatchio_kafka._envelope import (
    EnvelopeError,
    decode_inbound,
    decode_member,
    encode_member,
    inbox_topic,
    is_letter,
    members_topic,
    record_prefix,
    topic_part,
)
from dispatchio_kafka._transport import parse_url
from tests._imports import loaded_after


def test_public_names_are_pinned_and_sorted() -> None:
    assert dispatchio_kafka.__all__ == [
        "KafkaOptions",
        "KafkaTransport",
        "LocalBroker",
        "local_broker",
    ]


def test_the_entry_point_registers_the_kafka_scheme_lazily() -> None:
    registered = make_plugin_manager().transports()["kafka"]
    assert registered == "dispatchio_kafka._transport:KafkaTransport"


def test_importing_dispatchio_and_the_plugin_does_not_import_kafka() -> None:
    statements = (
        "import dispatchio, dispatchio_kafka, dispatchio_kafka._plugin\n"
        "dispatchio.default_plugin_manager().transports()"
    )
    assert loaded_after(statements, ["kafka", "dispatchio_kafka._transport"]) == []


def test_resolve_transport_builds_a_kafka_transport_with_url_options() -> None:
    transport = resolve_transport(
        "kafka://127.0.0.1:9092/shop?durable_for=60&fetch_max_wait_ms=1", make_plugin_manager()
    )
    assert isinstance(transport, KafkaTransport)
    assert (transport.options.durable_for, transport.options.fetch_max_wait_ms) == (60.0, 1)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("tcp://127.0.0.1:9092/ns", "not a kafka:// URL"),
        ("kafka:///ns", "host:port"),
        ("kafka://127.0.0.1/ns", "host:port"),
        ("kafka://127.0.0.1:99999/ns", "host:port"),
        ("kafka://127.0.0.1:9092,/ns", "host:port"),
        ("kafka://127.0.0.1:9092", "namespace"),
        ("kafka://127.0.0.1:9092/a.b", "namespace may hold only"),
        ("kafka://127.0.0.1:9092/" + "n" * 101, "longer than 100"),
    ],
)
def test_bad_urls_are_refused_saying_why(url: str, complaint: str) -> None:
    with pytest.raises(TransportConfigError, match=complaint):
        parse_url(url)


def test_a_url_with_several_brokers() -> None:
    assert parse_url("kafka://k1:9092,k2:9093/prod") == (("k1:9092", "k2:9093"), "prod")


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(TransportConfigError, match="durable_fro"):
        KafkaTransport(durable_fro=1)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("durable_for", -1),
        ("durable_for", float("inf")),
        ("acks", 2),
        ("security_protocol", "TLS"),
        ("sasl_mechanism", "MD5"),
        ("max_frame_size", 1 << 30),
    ],
)
def test_bad_option_values_are_refused(option: str, value: object) -> None:
    with pytest.raises(TransportConfigError, match=option):
        KafkaTransport(None, **{option: value})


def test_security_settings_pass_through_and_secrets_stay_out_of_repr() -> None:
    options = KafkaOptions(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="svc",
        sasl_plain_password="hunter2",
        ssl_cafile="/etc/ca.pem",
    )
    transport = KafkaTransport(options)
    transport._join("kafka://k1:9092/prod")
    assert "hunter2" not in repr(options)
    assert transport.options.sasl_plain_password == "hunter2"


def test_query_options_of_a_connect_url_apply() -> None:
    transport = KafkaTransport()
    transport._join("kafka://127.0.0.1:9092/shop?durable_for=0")
    assert transport.options.durable_for == 0


def test_a_second_namespace_is_refused() -> None:
    transport = KafkaTransport()
    transport._join("kafka://127.0.0.1:9092/shop")
    transport._join("kafka://127.0.0.1:9092/shop")  # the same again is harmless
    with pytest.raises(TransportConfigError, match="one namespace each"):
        transport._join("kafka://127.0.0.1:9092/other")


def test_topic_names_are_injective_and_legal() -> None:
    ids: list[str | int] = ["dealer", "a.b", "a_2eb", "a b", "é", 5, "5", "_i5"]
    parts = [topic_part(pid) for pid in ids]
    assert len(set(parts)) == len(ids)
    legal = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    assert all(set(inbox_topic("ns", pid)) <= legal for pid in ids)
    assert inbox_topic("ns", "dealer") == "dispatchio.ns.p.dealer"
    assert members_topic("ns") == "dispatchio.ns.members"
    long = inbox_topic("ns", "x" * 300)
    assert len(long) <= 249
    assert long.startswith("dispatchio.ns.p._h")


def test_an_envelope_round_trips() -> None:
    value = record_prefix("b", 42) + b'[0,"ping",1,"m",null,"echo",null,"b",1,null]' + b"}"
    inbound = decode_inbound(value, 1 << 20)
    assert (inbound.process, inbound.incarnation) == ("b", 42)
    assert inbound.frame == b'[0,"ping",1,"m",null,"echo",null,"b",1,null]'


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not JSON"),
        (b'{"v":1,"process":"b","incarn', "not JSON"),
        (b"[0]", "JSON object"),
        (b'{"v":2,"process":"b","incarnation":1,"frame":[5]}', "version"),
        (b'{"v":true,"process":"b","incarnation":1,"frame":[5]}', "version"),
        (b'{"v":1,"process":["b"],"incarnation":1,"frame":[5]}', "process"),
        (b'{"v":1,"process":"","incarnation":1,"frame":[5]}', "process"),
        (b'{"v":1,"process":"b","incarnation":-1,"frame":[5]}', "incarnation"),
        (b'{"v":1,"process":"b","incarnation":"1","frame":[5]}', "incarnation"),
        (b'{"v":1,"process":"b","incarnation":1,"frame":{}}', "frame"),
        (b'{"v":1,"process":"b","incarnation":1,"frame":["x"]}', "frame"),
        (b'{"v":1,"process":"b","incarnation":1,"frame":[0,"' + b"x" * 5000 + b'"]}', "limit"),
    ],
)
def test_hostile_values_are_refused_saying_why(value: bytes | None, complaint: str) -> None:
    with pytest.raises(EnvelopeError, match=complaint):
        decode_inbound(value, 4096)


def test_a_member_record_round_trips() -> None:
    value = encode_member("b", 7, up=True, urls=("kafka://k:1/ns",), durable_for=60)
    member = decode_member(value)
    assert member == ("b", 7, True, ("kafka://k:1/ns",), 60.0)
    with pytest.raises(EnvelopeError, match="durable_for"):
        decode_member(value.replace(b'"durable_for":60', b'"durable_for":-1'))


def test_an_envelope_names_the_receivers_incarnation_when_known() -> None:
    frame = b'[0,"ping",1,"m",null,"echo",null,"b",1,null]'
    inbound = decode_inbound(record_prefix("b", 42, to=7) + frame + b"}", 1 << 20)
    assert (inbound.process, inbound.incarnation, inbound.to) == ("b", 42, 7)
    assert inbound.frame == frame
    assert decode_inbound(record_prefix("b", 42) + frame + b"}", 1 << 20).to is None
    slow = b'{"v":1,"to":7,"process":"b","incarnation":42,"frame":[5]}'
    assert decode_inbound(slow, 1 << 20).to == 7
    with pytest.raises(EnvelopeError, match="to must be"):
        decode_inbound(b'{"v":1,"process":"b","incarnation":1,"to":"x","frame":[5]}', 4096)


def test_only_a_letter_is_for_a_later_incarnation() -> None:
    assert is_letter(b'[0,"ping",1,"m","src","echo",null,"b",1,null]')  # awaits a reply
    assert is_letter(b'[0,"note",1,"m",null,"sink",null,"b",0,null]')
    assert not is_letter(b'[0,"ping",1,"m","echo","src",null,"a",2,null]')  # a response
    assert not is_letter(b"[5]")  # a heartbeat
    assert not is_letter(b"[0,")  # not JSON
