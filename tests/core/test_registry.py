"""The dispatcher's registry of listeners and group subscriptions, and its constructor."""

from __future__ import annotations

from typing import Any

import pytest

from dispatchio import (
    BasicMessageListener,
    DuplicateListenerError,
    Message,
    MessageDispatcher,
    MessageListener,
    PluginManager,
    UndeliverableError,
    default_plugin_manager,
    get_dispatcher,
)


class Referee(MessageListener):
    """A listener whose ID is a class attribute."""

    id = "referee"

    def handle_message_sync(self, message: Message) -> Any:
        return "whistle"

    async def handle_message(self, message: Message) -> Any:
        return "whistle"


# ---------------------------------------------------------------- register


def test_register_returns_the_listener_and_lists_it(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("a")
    assert dispatcher.register(listener) is listener
    assert dispatcher.listeners == {"a": listener}


def test_register_accepts_int_id(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener(7)
    dispatcher.register(listener)
    assert dispatcher.listeners == {7: listener}


def test_register_duplicate_id_of_another_listener_raises(dispatcher: MessageDispatcher) -> None:
    first = dispatcher.register(BasicMessageListener("a"))
    with pytest.raises(DuplicateListenerError, match="'a'"):
        dispatcher.register(BasicMessageListener("a"))
    assert dispatcher.listeners == {"a": first}


def test_registering_same_listener_twice_is_harmless(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("a")
    dispatcher.register(listener)
    assert dispatcher.register(listener) is listener
    assert dispatcher.listeners == {"a": listener}


def test_register_listener_without_id_raises_value_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(ValueError, match="no id"):
        dispatcher.register(BasicMessageListener())


@pytest.mark.parametrize("bad_id", [True, 1.5, ("a",)], ids=["bool", "float", "tuple"])
def test_register_listener_with_non_int_or_str_id_raises_type_error(
    dispatcher: MessageDispatcher, bad_id: Any
) -> None:
    with pytest.raises(TypeError, match="int or a str"):
        dispatcher.register(BasicMessageListener(bad_id))


def test_register_non_listener_raises_type_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(TypeError, match="MessageListener"):
        dispatcher.register(object())  # type: ignore[arg-type]


def test_listener_with_class_attribute_id_can_be_registered(
    dispatcher: MessageDispatcher,
) -> None:
    referee = dispatcher.register(Referee())
    assert dispatcher.listeners == {"referee": referee}
    assert dispatcher.send_sync(Message("foul", destination="referee")) == "whistle"


def test_listeners_property_is_a_copy(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    snapshot = dispatcher.listeners
    snapshot.clear()
    assert list(dispatcher.listeners) == ["a"]


# ---------------------------------------------------------------- unregister


def test_unregister_by_listener_removes_it(dispatcher: MessageDispatcher) -> None:
    listener = dispatcher.register(BasicMessageListener("a"))
    dispatcher.unregister(listener)
    assert dispatcher.listeners == {}


def test_unregister_by_id_removes_it(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    dispatcher.unregister("a")
    assert dispatcher.listeners == {}


def test_unregistered_listener_no_longer_receives(dispatcher: MessageDispatcher) -> None:
    listener = BasicMessageListener("a")
    listener.add_rule(callback=lambda m: 1)
    dispatcher.register(listener)
    dispatcher.unregister("a")
    with pytest.raises(UndeliverableError, match="no listener 'a'"):
        dispatcher.send_sync(Message("x", destination="a"))


def test_unregistered_id_can_be_registered_again(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    dispatcher.unregister("a")
    replacement = dispatcher.register(BasicMessageListener("a"))
    assert dispatcher.listeners == {"a": replacement}


def test_unregister_unknown_raises_key_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(KeyError, match="nobody"):
        dispatcher.unregister("nobody")


def test_unregister_removes_group_subscriptions(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    dispatcher.register(BasicMessageListener("b"))
    for group in ("g1", "g2"):
        dispatcher.subscribe(group, "a")
    dispatcher.subscribe("g2", "b")
    dispatcher.unregister("a")
    assert dispatcher.subscribers("g1") == []
    assert dispatcher.subscribers("g2") == ["b"]


# ---------------------------------------------------------------- subscribe


def test_subscribe_by_listener_or_id(dispatcher: MessageDispatcher) -> None:
    a = dispatcher.register(BasicMessageListener("a"))
    dispatcher.register(BasicMessageListener("b"))
    dispatcher.subscribe("g", a)
    dispatcher.subscribe("g", "b")
    assert dispatcher.subscribers("g") == ["a", "b"]


def test_subscribers_are_in_subscription_order(dispatcher: MessageDispatcher) -> None:
    for lid in ("c", "a", "b"):
        dispatcher.register(BasicMessageListener(lid))
        dispatcher.subscribe("g", lid)
    assert dispatcher.subscribers("g") == ["c", "a", "b"]


def test_subscribing_twice_is_harmless(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    dispatcher.subscribe("g", "a")
    dispatcher.subscribe("g", "a")
    assert dispatcher.subscribers("g") == ["a"]


def test_subscribers_of_unknown_group_is_empty(dispatcher: MessageDispatcher) -> None:
    assert dispatcher.subscribers("nowhere") == []


def test_subscribe_unregistered_listener_raises_key_error(dispatcher: MessageDispatcher) -> None:
    with pytest.raises(KeyError, match="ghost"):
        dispatcher.subscribe("g", "ghost")


def test_subscribe_listener_object_that_is_not_registered_raises_key_error(
    dispatcher: MessageDispatcher,
) -> None:
    with pytest.raises(KeyError, match="ghost"):
        dispatcher.subscribe("g", BasicMessageListener("ghost"))


def test_unsubscribe_removes_only_that_listener(dispatcher: MessageDispatcher) -> None:
    for lid in ("a", "b"):
        dispatcher.register(BasicMessageListener(lid))
        dispatcher.subscribe("g", lid)
    dispatcher.unsubscribe("g", "a")
    assert dispatcher.subscribers("g") == ["b"]
    assert set(dispatcher.listeners) == {"a", "b"}


def test_unsubscribe_not_subscribed_raises_key_error(dispatcher: MessageDispatcher) -> None:
    dispatcher.register(BasicMessageListener("a"))
    with pytest.raises(KeyError, match="not subscribed"):
        dispatcher.unsubscribe("g", "a")


# ---------------------------------------------------------------- constructor and default


@pytest.mark.usefixtures("fresh_defaults")
def test_get_dispatcher_returns_the_same_instance_twice() -> None:
    first = get_dispatcher()
    assert get_dispatcher() is first
    assert first.plugins is default_plugin_manager()
    assert first.plugins.list_name_plugin() == []  # the empty site_dir: no plugin loaded


def test_process_id_true_raises_type_error(plugins: PluginManager) -> None:
    with pytest.raises(TypeError, match="process_id"):
        MessageDispatcher(process_id=True, plugins=plugins)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan")], ids=["zero", "negative", "nan"])
def test_reply_timeout_not_positive_raises_value_error(
    plugins: PluginManager, timeout: float
) -> None:
    with pytest.raises(ValueError, match="reply_timeout"):
        MessageDispatcher(reply_timeout=timeout, plugins=plugins)


NUMERIC = ["reply_timeout", "heartbeat_interval", "heartbeat_tolerance", "max_message_size"]


@pytest.mark.parametrize("name", NUMERIC)
@pytest.mark.parametrize("value", ["1", True, None], ids=["str", "bool", "none"])
def test_numeric_argument_of_another_type_raises_type_error_naming_it(
    plugins: PluginManager, name: str, value: object
) -> None:
    kind = r"(a number \(int or float\)|an int)"
    with pytest.raises(TypeError, match=rf"^{name} must be {kind}, got {value!r}$"):
        MessageDispatcher(plugins=plugins, **{name: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["heartbeat_tolerance", "max_message_size"])
def test_count_argument_that_is_a_float_raises_type_error_naming_it(
    plugins: PluginManager, name: str
) -> None:
    with pytest.raises(TypeError, match=f"^{name} must be an int, got 2.5$"):
        MessageDispatcher(plugins=plugins, **{name: 2.5})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NUMERIC)
def test_numeric_argument_not_positive_raises_value_error_naming_it(
    plugins: PluginManager, name: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name} must be > 0, got 0$"):
        MessageDispatcher(plugins=plugins, **{name: 0})  # type: ignore[arg-type]


def test_default_process_id_is_a_str_unique_per_dispatcher(plugins: PluginManager) -> None:
    one = MessageDispatcher(plugins=plugins)
    two = MessageDispatcher(plugins=plugins)
    assert isinstance(one.process_id, str)
    assert one.process_id != two.process_id


def test_new_dispatcher_is_not_running(dispatcher: MessageDispatcher) -> None:
    assert dispatcher.running is False
    assert dispatcher.listeners == {}


# ---------------------------------------------------------------- directory()


def test_directory_of_a_lone_dispatcher_lists_its_listeners_and_groups(
    dispatcher: MessageDispatcher,
) -> None:
    import json

    for lid in ("alice", 7, "bob"):
        dispatcher.register(BasicMessageListener(lid))
    dispatcher.subscribe(3, 7)
    dispatcher.subscribe("team", "bob")
    dispatcher.subscribe("team", "alice")
    directory = dispatcher.directory()
    assert directory == {
        "process": dispatcher.process_id,
        "processes": [
            {
                "process": dispatcher.process_id,
                "local": True,
                "urls": [],
                "listeners": ["alice", 7, "bob"],
                "groups": [
                    {"group": 3, "members": [7]},
                    {"group": "team", "members": ["bob", "alice"]},
                ],
            }
        ],
    }
    assert json.loads(json.dumps(directory)) == directory  # int group IDs survive as ints


def test_directory_is_a_snapshot_later_changes_do_not_alter(
    dispatcher: MessageDispatcher,
) -> None:
    dispatcher.register(BasicMessageListener("alice"))
    dispatcher.subscribe("team", "alice")
    directory = dispatcher.directory()
    dispatcher.register(BasicMessageListener("bob"))
    dispatcher.subscribe("team", "bob")
    local = directory["processes"][0]
    assert (local["listeners"], local["groups"]) == (
        ["alice"],
        [{"group": "team", "members": ["alice"]}],
    )
