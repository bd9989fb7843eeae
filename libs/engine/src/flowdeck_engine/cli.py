"""``flowdeck``: Flowdeck's one command line.

Its subcommands come from the entry-point group ``flowdeck.commands``: each entry point's name is
the subcommand, its object a :class:`Command`. The engine registers ``validate``; other packages
add theirs in their ``pyproject.toml``::

    [project.entry-points."flowdeck.commands"]
    api = "flowdeck_api.cli:API"

Only the command being run is imported, so one broken or slow package does not hold up the others.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

GROUP: Final = "flowdeck.commands"


class Command(Protocol):
    """A subcommand of ``flowdeck``."""

    @property
    def help(self) -> str:
        """One line for ``flowdeck --help``."""
        ...

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its parser."""
        ...

    def run(self, args: argparse.Namespace) -> int:
        """Carry the command out; the exit status."""
        ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flowdeck`` with ``argv`` (``sys.argv[1:]`` when None); the exit status (2: usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    found = {point.name: point for point in entry_points(group=GROUP)}
    wanted = [args[0]] if args and args[0] in found else sorted(found)
    parser = argparse.ArgumentParser(prog="flowdeck", description="Flowdeck's command line.")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in wanted:
        command = _load(found[name])
        if command is not None:
            sub = commands.add_parser(name, help=command.help, description=command.help)
            command.configure(sub)
            sub.set_defaults(command=command)
    try:
        namespace = parser.parse_args(args)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    chosen: Command = namespace.command
    return chosen.run(namespace)


def _load(point: EntryPoint) -> Command | None:
    try:
        command: Command = point.load()
    except Exception as exc:  # a broken package must not take the other commands down
        print(f"flowdeck: cannot load the command {point.name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None
    return command


if __name__ == "__main__":
    sys.exit(main())
