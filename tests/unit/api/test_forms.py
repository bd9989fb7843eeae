"""Task forms are checked in the dialect the upload checked them in (``$schema``, else draft 7)."""

from __future__ import annotations

import subprocess
import sys

from flowdeck_api.domain.tasks.service import form_errors

PAIR = {"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}  # a tuple in draft 7
DEPENDS = {"type": "object", "dependencies": {"card": ["billing_address"]}}  # draft 7's keyword


def test_a_form_without_schema_reads_as_draft_7() -> None:
    assert form_errors({"type": "object", "properties": {"pair": PAIR}}, {"pair": ["a", 1]}) == []
    (error,) = form_errors({"type": "object", "properties": {"pair": PAIR}}, {"pair": ["a", "b"]})
    assert (error["code"], error["pointer"]) == ("form.type", "/pair/1")
    (missing,) = form_errors(DEPENDS, {"card": "4111"})
    assert missing["code"] == "form.dependencies"


def test_a_form_naming_2020_12_reads_as_2020_12() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "prefixItems": [{"type": "string"}, {"type": "integer"}],
    }
    assert form_errors(schema, ["a", 1]) == []  # type: ignore[arg-type]
    (error,) = form_errors(schema, ["a", "b"])  # type: ignore[arg-type]
    assert (error["code"], error["pointer"]) == ("form.type", "/1")


def test_the_task_service_matches_tenant_patterns_in_linear_time() -> None:
    # In a child process with a deadline: with Python's backtracking re this would run for hours.
    code = (
        "from flowdeck_api.domain.tasks.service import form_errors\n"
        "schema = {'type': 'object', 'properties': {'code': {'type': 'string', 'pattern': '^(a+)+$'}}}\n"
        "print(len(form_errors(schema, {'code': 'a' * 64 + '!'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
