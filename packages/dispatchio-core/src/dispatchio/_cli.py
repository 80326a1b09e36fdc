"""The ``dispatchio`` console command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``dispatchio`` command; return its exit status."""
    parser = argparse.ArgumentParser(prog="dispatchio", description="dispatchio tools")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("plugins", help="list installed plugins and what they register")
    args = parser.parse_args(argv)
    if args.command == "plugins":
        return _plugins()
    return 2  # pragma: no cover - argparse rejects unknown commands first


def _plugins() -> int:
    from dispatchio._plugins import make_plugin_manager

    infos = make_plugin_manager().describe()
    if not infos:
        print("no dispatchio plugins installed")
        return 0
    for info in infos:
        origin = f"{info.distribution} {info.version}" if info.distribution else "(not installed)"
        print(f"{info.name}  [{origin}]")
        print(f"  transports: {', '.join(info.transports) or '-'}")
        print(f"  hooks:      {', '.join(info.hooks) or '-'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
