"""Form patterns match in linear time (RE2): a tenant's ``^(a+)+$`` cannot stall an API process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from jsonschema import Draft7Validator, Draft202012Validator

from flowdeck_engine.documents.patterns import install, search, unsupported_patterns

EVIL = "^(a+)+$"
SLOW = "a" * 40 + "b"  # about 2**40 steps for Python's backtracking re


@pytest.mark.parametrize(
    ("schema", "instance", "errors"),
    [
        ({"type": "string", "pattern": EVIL}, SLOW, 1),
        ({"type": "object", "patternProperties": {EVIL: {"type": "string"}}}, {SLOW: 1}, 0),
        ({"type": "object", "patternProperties": {EVIL: {}}, "additionalProperties": False}, {SLOW: 1}, 1),
        ({"type": "object", "patternProperties": {EVIL: {}}, "unevaluatedProperties": False}, {SLOW: 1}, 1),
        ({"type": "object", "propertyNames": {"pattern": EVIL}}, {SLOW: 1}, 1),
    ],
    ids=["pattern", "patternProperties", "additionalProperties", "unevaluatedProperties", "propertyNames"],
)
def test_a_catastrophic_pattern_is_answered_at_once(schema: dict[str, object], instance: object, errors: int) -> None:
    # In a child process with a deadline: with Python's re this would run for hours, not fail.
    validate = (
        f"Draft202012Validator(json.loads({json_literal(schema)})).iter_errors(json.loads({json_literal(instance)}))"
    )
    code = (
        "import json\n"
        "from flowdeck_engine.documents.patterns import install\n"
        "install()\n"
        "from jsonschema import Draft202012Validator\n"
        f"print(len(list({validate})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == errors  # the key or value does not match the pattern


def json_literal(value: object) -> str:
    import json

    return repr(json.dumps(value))


def test_patterns_keep_their_meaning() -> None:
    install()
    form = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{3}-\\d+$"}}}
    assert Draft202012Validator(form).is_valid({"code": "ABC-12"})
    assert not Draft202012Validator(form).is_valid({"code": "abc-12"})
    groups = {"type": "object", "patternProperties": {"^x-": {"type": "integer"}}, "additionalProperties": False}
    assert Draft7Validator(groups).is_valid({"x-a": 1})
    assert not Draft7Validator(groups).is_valid({"x-a": "1"})
    assert not Draft7Validator(groups).is_valid({"y": 1})
    assert search("b+", "abbc") is not None and search("^b", "abc") is None


def test_patterns_re2_cannot_run_are_found_in_forms() -> None:
    form = {
        "properties": {
            "a": {"pattern": "(a)\\1"},
            "pattern": {"type": "string"},  # a property named "pattern" is not a pattern
            "b": {"default": {"pattern": "(?=x)"}},  # nor is data
        },
        "patternProperties": {"(?<=y)z": {"pattern": "ok"}},
    }
    assert sorted(unsupported_patterns(form, "/form")) == [
        ("/form/patternProperties/(?<=y)z", "(?<=y)z"),
        ("/form/properties/a/pattern", "(a)\\1"),
    ]
    assert search("(a)\\1", "aa") is not None  # Flowdeck's own schema only: tenants' are refused at upload
