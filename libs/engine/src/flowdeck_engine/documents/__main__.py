"""``python -m flowdeck_engine.documents``: print the document JSON Schema (see the schema module)."""

from __future__ import annotations

import sys

from flowdeck_engine.documents.schema import render_schema

sys.stdout.write(render_schema())
