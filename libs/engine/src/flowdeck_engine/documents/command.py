"""``flowdeck validate FILE…``: check workflow documents and print their problems like a compiler."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from flowdeck_engine.documents.source import syntax_for
from flowdeck_engine.documents.validation import check_document

if TYPE_CHECKING:
    import argparse

    from flowdeck_engine.documents.source import Syntax


class ValidateCommand:
    """Checks .json, .yaml and .yml documents; prints ``FILE:POINTER: message [code]`` per problem.

    Exit status: 0 when every file is valid, 1 when any has a problem, 2 on usage errors (a file
    that cannot be read, an unknown suffix). Platform action names are not checked (they depend
    on the deployment).
    """

    help = "check workflow documents (.json, .yaml, .yml) and print every problem"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        """Add the FILE arguments."""
        parser.add_argument("files", nargs="+", metavar="FILE", help="a workflow document")

    def run(self, args: argparse.Namespace) -> int:
        """Check each file in turn."""
        return validate_files(args.files, sys.stdout, sys.stderr)


def validate_files(names: list[str], out: TextIO, err: TextIO) -> int:
    """Check the files ``names``, printing problems to ``out`` and usage errors to ``err``."""
    sources: list[tuple[str, bytes, Syntax]] = []
    for name in names:
        syntax = syntax_for(name)
        if syntax is None:
            err.write(f"{name}: not a .json, .yaml or .yml file\n")
            continue
        try:
            sources.append((name, Path(name).read_bytes(), syntax))
        except OSError as exc:
            err.write(f"{name}: cannot read: {exc.strerror or exc}\n")
    if len(sources) < len(names):
        return 2
    failed = 0
    for name, raw, syntax in sources:
        problems = check_document(raw, syntax=syntax)
        failed += bool(problems)
        for problem in problems:
            where = f"{name}:{problem.pointer}" if problem.pointer else name
            line = f"{where}: {problem.message} [{problem.code}]\n"
            out.write(line.encode("utf-8", "backslashreplace").decode("utf-8"))
    if failed:
        err.write(f"{failed} of {len(sources)} file(s) have problems\n")
    return 1 if failed else 0


VALIDATE = ValidateCommand()
"""The ``validate`` command (the engine's entry in the ``flowdeck.commands`` group)."""
