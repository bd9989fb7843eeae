r"""Tenants' regular expressions run in linear time: form patterns match with RE2.

A form's ``pattern`` and ``patternProperties`` (which ``additionalProperties`` and
``unevaluatedProperties`` consult too) are written by a tenant and matched against what users
submit. Python's backtracking ``re`` takes exponential time on patterns like ``^(a+)+$``, and
would block an API process, every tenant's requests with it. jsonschema calls ``re.search`` for
all of them; :func:`install` points those calls at RE2, whose matching is linear in the input
(the process that validates submissions against forms calls it: the API's task service).

Patterns RE2 cannot compile (backreferences, lookaround) are refused in tenants' forms at upload
(:func:`unsupported_patterns`), so every tenant pattern runs on RE2. Only such patterns fall back
to ``re``: those of Flowdeck's own document schema (its durations use a lookahead, with bounded
repeats). RE2's classes are ASCII (``\d`` is ``[0-9]``), as ECMA-262's, which JSON Schema names.
"""

from __future__ import annotations

import functools
import re
import sys
from typing import TYPE_CHECKING, Any

import re2  # type: ignore[import-untyped]

from flowdeck_engine.documents.pointers import escape

if TYPE_CHECKING:
    from collections.abc import Iterator

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_JSONSCHEMA_MODULES = ("jsonschema._keywords", "jsonschema._utils", "jsonschema._legacy_keywords")
_SKIP = frozenset({"const", "default", "enum", "examples"})
"""Keywords whose values are data, not schemas: a ``pattern`` key inside them is not a pattern."""


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> Any:
    """The RE2 program of ``pattern``, or None when RE2 cannot compile it."""
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error:
        return None


def search(pattern: str, string: str, flags: int = 0) -> Any:
    """``re.search`` in linear time: the first match of ``pattern`` in ``string`` (None: none);
    ``re`` itself for flags or a pattern RE2 cannot compile (never a tenant's: see above)."""
    program = None if flags else _compiled(pattern)
    return re.search(pattern, string, flags) if program is None else program.search(string)


class _LinearRe:
    """The ``re`` that jsonschema's keyword modules see: :func:`search` on RE2, the rest as ``re``."""

    search = staticmethod(search)

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)


LINEAR_RE = _LinearRe()


def install() -> None:
    """Make jsonschema's ``pattern``, ``patternProperties``, ``additionalProperties`` and
    ``unevaluatedProperties`` match with RE2 (idempotent)."""
    for name in _JSONSCHEMA_MODULES:
        __import__(name)
        module = sys.modules[name]
        if not hasattr(module, "re"):
            raise RuntimeError(f"{name} no longer imports re: check how this jsonschema matches patterns")
        module.re = LINEAR_RE  # type: ignore[attr-defined]


def unsupported_patterns(schema: Any, pointer: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(pointer, pattern)`` of ``schema`` that RE2 cannot compile."""
    if isinstance(schema, dict):
        for key, value in schema.items():
            at = f"{pointer}/{escape(str(key))}"
            if key == "pattern" and isinstance(value, str):
                if _compiled(value) is None:
                    yield at, value
            elif key == "patternProperties" and isinstance(value, dict):
                for pattern, sub in value.items():
                    where = f"{at}/{escape(pattern)}"
                    if _compiled(pattern) is None:
                        yield where, pattern
                    yield from unsupported_patterns(sub, where)
            elif key not in _SKIP:
                yield from unsupported_patterns(value, at)
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from unsupported_patterns(item, f"{pointer}/{i}")


__all__ = ["LINEAR_RE", "install", "search", "unsupported_patterns"]
