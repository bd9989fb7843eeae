"""Checks of a parsed document as plain JSON: depth, NUL characters, non-finite numbers,
unpaired surrogates, values that JSON cannot hold, keys given twice, objects given twice."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from flowdeck_engine.documents.errors import DocumentProblem
from flowdeck_engine.documents.pointers import escape
from flowdeck_engine.documents.source import KeyedTwice

if TYPE_CHECKING:
    from flowdeck_engine.documents.limits import DocumentLimits


def tree_problems(tree: Any, limits: DocumentLimits) -> list[DocumentProblem]:
    """Every problem of ``tree`` as a JSON value (iterative: any depth and size is safe; an object
    met twice, as Python callers can build, is reported and not walked again)."""
    problems: list[DocumentProblem] = []
    if not isinstance(tree, (dict, list)):
        return problems
    seen = {id(tree)}
    stack: list[tuple[Any, str, int]] = [(tree, "", 1)]
    while stack:
        node, pointer, depth = stack.pop()

        def add(code: str, message: str, key: Any, pointer: str = pointer) -> None:
            problems.append(DocumentProblem(code, message, f"{pointer}/{escape(key)}"))

        if type(node) is KeyedTwice:
            for key in node.duplicates:
                add("document.duplicate_key", f"key {key!r} appears more than once", key)
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is str:
                if "\x00" in value:
                    add("value.nul", "the string contains a NUL character", key)
                if not value.isascii() and not _encodes(value):
                    add("value.surrogate", "the string holds an unpaired surrogate", key)
            elif kind is float:
                if not math.isfinite(value):
                    add("value.not_finite", "NaN and infinite numbers are not allowed", key)
            elif kind is dict or kind is list or kind is KeyedTwice:
                if depth >= limits.max_depth:
                    add("limit.depth", f"nested deeper than {limits.max_depth} levels", key)
                elif id(value) in seen:
                    add("value.repeated", "the same object appears twice", key)
                else:
                    seen.add(id(value))
                    stack.append((value, f"{pointer}/{escape(key)}", depth + 1))
            elif kind is not int and kind is not bool and value is not None:
                add("value.not_json", f"a value of type {kind.__name__} is not a JSON value", key)
            if type(key) is str:
                if "\x00" in key:
                    add("value.nul", "the key contains a NUL character", key)
                if not key.isascii() and not _encodes(key):
                    add("value.surrogate", "the key holds an unpaired surrogate", key)
            elif isinstance(node, dict):
                problems.append(DocumentProblem("value.not_json", f"the key {key!r} is not a string", pointer))
    return problems


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
