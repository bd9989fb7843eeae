"""`flowdeck validate FILE…` and the entry-point discovery of `flowdeck` commands."""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from flowdeck_engine import cli

from .conftest import EXAMPLES, INVALID


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_valid_files_exit_0_and_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "validate", *map(str, sorted(EXAMPLES.glob("*.yaml"))))
    assert (status, out, err) == (0, "", "")


def test_problems_are_printed_like_a_compiler_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    form = str(INVALID / "form-invalid.yaml")
    syntax = str(INVALID / "syntax-error.json")
    status, out, err = run(capsys, "validate", form, str(EXAMPLES / "expense-approval.yaml"), syntax)
    assert status == 1
    assert out.splitlines() == [
        f"{form}:/steps/1/form/properties/amount/type: form is not a valid JSON Schema: "
        "'money' is not valid under any of the given schemas [form.invalid]",
        f"{syntax}: invalid JSON at line 49 column 1: Expecting ',' delimiter [document.syntax]",
    ]
    assert err == "2 of 3 file(s) have problems\n"


def test_output_survives_unpaired_surrogates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"\\ud800": 1}')
    status, out, _ = run(capsys, "validate", str(path))
    assert status == 1 and "/\\ud800: the key holds an unpaired surrogate [value.surrogate]" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["validate"], "the following arguments are required: FILE"),
        (["validate", "missing.yaml"], "missing.yaml: cannot read"),
        (["validate", "notes.txt"], "notes.txt: not a .json, .yaml or .yml file"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == "" and message in err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "validate" in out and "check workflow documents" in out


class Hello:
    help = "say hello"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--name", default="world")

    def run(self, args: argparse.Namespace) -> int:
        print(f"hello {args.name}")
        return 3


HELLO = Hello()


def test_commands_come_from_the_entry_point_group(capsys: pytest.CaptureFixture[str], monkeypatch: Any) -> None:
    points = [
        EntryPoint("hello", f"{__name__}:HELLO", cli.GROUP),
        EntryPoint("broken", "no_such_module_anywhere:X", cli.GROUP),
        EntryPoint("validate", "flowdeck_engine.documents.command:VALIDATE", cli.GROUP),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: [p for p in points if p.group == group])
    assert run(capsys, "hello", "--name", "Ada") == (3, "hello Ada\n", "")  # only the command run is loaded
    status, out, err = run(capsys, "--help")
    assert status == 0 and "hello" in out and "say hello" in out
    assert "cannot load the command 'broken'" in err


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("flowdeck")
    result = subprocess.run([script, "validate", str(INVALID / "no-exit.yaml")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stdout.count("[step.no_exit]") == 2
