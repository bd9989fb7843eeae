"""The published JSON Schema of workflow documents, generated from the Structs.

The committed copy is ``workflow-document.schema.json`` beside this module, in the installed
package too (``importlib.resources.files("flowdeck_engine.documents")`` /
``"workflow-document.schema.json"``); a test fails when it is stale. Regenerate it from the repository root with::

    .venv/bin/python -m flowdeck_engine.documents \
        > libs/engine/src/flowdeck_engine/documents/workflow-document.schema.json
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Final

import msgspec

from flowdeck_engine.documents.model import FORMAT, WorkflowDocument

SCHEMA_PATH: Final = Path(__file__).with_name("workflow-document.schema.json")
"""Where the committed schema lives."""
SCHEMA_ID: Final = f"urn:flowdeck:schema:{FORMAT}"


def document_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of :class:`WorkflowDocument`."""
    schema = msgspec.json.schema(WorkflowDocument)
    for definition in schema["$defs"].values():
        if "description" in definition:
            definition["description"] = inspect.cleandoc(definition["description"])
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Flowdeck workflow document",
        **schema,
    }


def render_schema() -> str:
    """The schema as the committed file holds it."""
    return json.dumps(document_schema(), indent=2, ensure_ascii=False) + "\n"
