"""Reading document text: what JSON and YAML may hold, and what they may not."""

from __future__ import annotations

import json

import pytest
import yaml

from flowdeck_engine.documents import check_document, syntax_for, validate_document
from flowdeck_engine.documents.limits import DEFAULT_LIMITS
from flowdeck_engine.documents.source import parse_text

from .conftest import minimal


def codes(text: str | bytes, syntax: str = "yaml") -> list[tuple[str, str]]:
    return [(p.code, p.pointer) for p in check_document(text, syntax=syntax)]  # type: ignore[arg-type]


def test_yaml_keeps_date_like_values_and_keys_as_text() -> None:
    tree, problems = parse_text("a: 2026-01-01\non: yes\n1: x\nn: 0x10\nf: 1.5\nz: ~\n", "yaml", DEFAULT_LIMITS)
    assert problems == []
    assert tree == {"a": "2026-01-01", "on": True, "1": "x", "n": 16, "f": 1.5, "z": None}


def test_yaml_explicit_tags() -> None:
    tree, _ = parse_text("a: !!str 12\nb: !!int '7'\n", "yaml", DEFAULT_LIMITS)
    assert tree == {"a": "12", "b": 7}
    assert ("value.not_json", "/x") in codes("x: !!timestamp 2026-01-01\n")
    assert codes("x: !!set {a, b}\n") == [("value.not_json", "/x")]
    assert codes("x: !!python/object:os.system {}\n") == [("value.not_json", "/x")]
    assert codes("x: !!python/name:os.system ''\n") == [("document.syntax", "")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [("type.invalid", "")]),
        ("[1, 2]", [("type.invalid", "")]),
        ("a: &x 1\nb: *x\n", [("document.yaml_alias", "/b")]),
        ("a:\n  - &x {k: 1}\n  - <<: *x\n", [("document.yaml_alias", "/a/1/<<")]),
        ("? [a, b]\n: c\n", [("document.syntax", "")]),
        ("a: 1\na: 2\n", [("document.duplicate_key", "/a")]),
        ("a: b: c\n", [("document.syntax", "")]),
    ],
)
def test_yaml_oddities(text: str, expected: list[tuple[str, str]]) -> None:
    found = codes(text)
    assert found[: len(expected)] == expected


def test_yaml_syntax_errors_say_where() -> None:
    (problem,) = check_document("format: [a\nname: x\n", syntax="yaml")
    assert problem.message.startswith("invalid YAML at line 2 column")


def test_json_oddities() -> None:
    assert codes(b"\xff\xfe{}", "json") == [("document.syntax", "")]
    assert ("value.not_finite", "/a") in codes('{"a": 1e999}', "json")
    assert ("value.not_finite", "/a") in codes('{"a": -Infinity}', "json")
    assert ("document.duplicate_key", "/a~1b~0/x") in codes('{"a/b~": {"x": 1, "x": 2}}', "json")
    assert codes('{"a": 1' + "0" * 5000 + "}", "json") == [("document.syntax", "")]
    assert codes("{\x00}", "json") == [("value.nul", "")]
    assert ("value.nul", "/a\x00") in codes('{"a\\u0000": 1}', "json")
    assert codes("[" * 5000 + "]" * 5000, "json") == [("limit.depth", "")]


def test_a_byte_order_mark_is_fine() -> None:
    assert validate_document("\ufeff" + json.dumps(minimal())).name == "minimal"
    assert validate_document(("\ufeff" + yaml.safe_dump(minimal())).encode(), syntax="yaml").name == "minimal"


@pytest.mark.parametrize(
    ("name", "syntax"), [("a.json", "json"), ("a.YAML", "yaml"), ("dir/b.yml", "yaml"), ("a.txt", None)]
)
def test_syntax_by_suffix(name: str, syntax: str | None) -> None:
    assert syntax_for(name) == syntax
