"""The published JSON Schema: generated from the Structs, committed, and fresh."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
import yaml

from flowdeck_engine.documents import SCHEMA_PATH, document_schema
from flowdeck_engine.documents.schema import render_schema

from .conftest import EXAMPLES, INVALID, ROOT


def test_the_committed_schema_is_fresh() -> None:
    assert SCHEMA_PATH.read_text() == render_schema(), (
        "the published schema is stale: regenerate it with `.venv/bin/python -m flowdeck_engine.documents > "
        "libs/engine/src/flowdeck_engine/documents/workflow-document.schema.json`"
    )


def test_the_schema_regenerates_from_the_command_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "flowdeck_engine.documents"], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout == SCHEMA_PATH.read_text() and out.stderr == ""


def test_the_schema_is_a_valid_2020_12_schema() -> None:
    schema = document_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$defs"]["HumanStepSpec"]["additionalProperties"] is False


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_examples_satisfy_the_schema(path: object) -> None:
    jsonschema.Draft202012Validator(document_schema()).validate(yaml.safe_load(path.read_text()))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "name",
    [
        "unknown-field.yaml",
        "bad-duration.yaml",
        "unknown-kind.yaml",
        "version-not-semver.yaml",
        "bad-context-path.yaml",
    ],
)
def test_the_schema_rejects_what_the_structure_check_rejects(name: str) -> None:
    validator = jsonschema.Draft202012Validator(document_schema())
    assert not validator.is_valid(yaml.safe_load((INVALID / name).read_text()))


def test_the_schema_file_is_json() -> None:
    assert json.loads(SCHEMA_PATH.read_text())["title"] == "Flowdeck workflow document"
