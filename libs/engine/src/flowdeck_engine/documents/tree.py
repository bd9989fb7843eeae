"""Checks of a parsed document as plain JSON: depth, NUL characters, non-finite numbers,
unpaired surrogates, values that JSON cannot hold, keys given twice."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from flowdeck_engine.documents.errors import DocumentProblem
from flowdeck_engine.documents.pointers import escape
from flowdeck_engine.documents.source import KeyedTwice

if TYPE_CHECKING:
    from flowdeck_engine.documents.limits import DocumentLimits


def tree_problems(tree: Any, limits: DocumentLimits) -> list[DocumentProblem]:
    """Every problem of ``tree`` as a JSON value (iterative: any depth and size is safe)."""
    problems: list[DocumentProblem] = []
    add = problems.append
    if not isinstance(tree, (dict, list)):
        return problems
    seen = {id(tree)}
    stack: list[tuple[Any, str, int]] = [(tree, "", 1)]
    while stack:
        node, pointer, depth = stack.pop()
        if isinstance(node, dict):
            if type(node) is KeyedTwice:
                for key in node.duplicates:
                    add(
                        DocumentProblem(
                            "document.duplicate_key", f"key {key!r} appears more than once", f"{pointer}/{escape(key)}"
                        )
                    )
            items: Any = node.items()
        else:
            items = enumerate(node)
        for key, value in items:
            kind = type(value)
            if kind is str:
                if not value.isascii():
                    _check_text(value, pointer, key, add)
                if "\x00" in value:
                    add(DocumentProblem("value.nul", "the string contains a NUL character", f"{pointer}/{escape(key)}"))
            elif kind is float:
                if not math.isfinite(value):
                    add(
                        DocumentProblem(
                            "value.not_finite", "NaN and infinite numbers are not allowed", f"{pointer}/{escape(key)}"
                        )
                    )
            elif kind is dict or kind is list or kind is KeyedTwice:
                child = f"{pointer}/{escape(key)}"
                if depth >= limits.max_depth:
                    add(DocumentProblem("limit.depth", f"nested deeper than {limits.max_depth} levels", child))
                elif id(value) in seen:
                    add(DocumentProblem("value.repeated", "the same object appears twice", child))
                else:
                    seen.add(id(value))
                    stack.append((value, child, depth + 1))
            elif kind is not int and kind is not bool and value is not None:
                message = f"a value of type {kind.__name__} is not a JSON value"
                add(DocumentProblem("value.not_json", message, f"{pointer}/{escape(key)}"))
            if type(key) is str:
                if "\x00" in key or not key.isascii():
                    _check_key(key, pointer, add)
            elif isinstance(node, dict):
                add(DocumentProblem("value.not_json", f"the key {key!r} is not a string", pointer))
    return problems


def _check_text(value: str, pointer: str, key: Any, add: Any) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        add(DocumentProblem("value.surrogate", "the string holds an unpaired surrogate", f"{pointer}/{escape(key)}"))


def _check_key(key: str, pointer: str, add: Any) -> None:
    where = f"{pointer}/{escape(key)}"
    if "\x00" in key:
        add(DocumentProblem("value.nul", "the key contains a NUL character", where))
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        add(DocumentProblem("value.surrogate", "the key holds an unpaired surrogate", where))
