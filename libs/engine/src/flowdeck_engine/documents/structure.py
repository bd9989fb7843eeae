"""The structural check of a parsed document against the Structs, reporting every problem.

msgspec stops at the first error, so this walks the tree along ``msgspec.inspect`` type
information instead: wrong types, unknown and missing fields, unknown step kinds and action types,
and broken constraints (lengths, ranges, patterns, choices) are all reported, each with a pointer.
A constraint's problem code comes from its ``Meta(extra={"code": ...})`` (``value.invalid``
otherwise). A tree without problems here converts with ``msgspec.convert``.
"""

from __future__ import annotations

import difflib
import functools
import re
from typing import TYPE_CHECKING, Any, Final

import msgspec.inspect as mi

from flowdeck_engine.documents.errors import DocumentProblem
from flowdeck_engine.documents.pointers import escape

if TYPE_CHECKING:
    from collections.abc import Callable

_JSON_NAMES: Final = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}
_TYPE_INFO: dict[type[Any], Any] = {}
_FIELDS: dict[type[Any], dict[str, Any]] = {}
_EXPECTED: Final[dict[type[Any], str]] = {
    mi.StrType: "a string",
    mi.IntType: "an integer",
    mi.FloatType: "a number",
    mi.BoolType: "a boolean",
    mi.ListType: "an array",
    mi.DictType: "an object",
    mi.StructType: "an object",
    mi.NoneType: "null",
}


def structure_problems(tree: Any, root: type[Any]) -> list[DocumentProblem]:
    """Every structural problem of ``tree`` as a value of the Struct type ``root``."""
    problems: list[DocumentProblem] = []
    _check(tree, _type_info(root), "", problems.append)
    return problems


def _type_info(root: type[Any]) -> Any:
    info = _TYPE_INFO.get(root)
    if info is None:
        info = _TYPE_INFO[root] = mi.type_info(root)
    return info


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _got(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


def _check(value: Any, t: Any, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    code = "value.invalid"
    if type(t) is mi.Metadata:
        if t.extra:
            code = t.extra.get("code", code)
        t = t.type
    kind = type(t)
    if kind is mi.AnyType:
        return
    if kind is mi.UnionType:
        _union(value, t, pointer, add)
    elif kind is mi.StructType:
        _struct(value, t, pointer, add)
    elif kind is mi.StrType:
        if type(value) is not str:
            add(_type_problem("a string", value, pointer))
        else:
            _string(value, t, code, pointer, add)
    elif kind is mi.IntType or kind is mi.FloatType:
        if type(value) is not int and (kind is mi.IntType or type(value) is not float):
            add(_type_problem(_EXPECTED[kind], value, pointer))
        else:
            _number(value, t, code, pointer, add)
    elif kind is mi.BoolType:
        if type(value) is not bool:
            add(_type_problem("a boolean", value, pointer))
    elif kind is mi.LiteralType:
        if value not in t.values or type(value) is not type(t.values[0]):
            choices = ", ".join(repr(v) for v in t.values)
            add(DocumentProblem(code, f"{_show(value)} is not one of {choices}", pointer))
    elif kind is mi.ListType:
        _list(value, t, code, pointer, add)
    elif kind is mi.DictType:
        _dict(value, t, code, pointer, add)
    elif kind is mi.NoneType:
        if value is not None:
            add(_type_problem("null", value, pointer))
    else:  # pragma: no cover - the Structs use no other types
        raise TypeError(f"unsupported type information {t!r}")


def _type_problem(expected: str, value: Any, pointer: str) -> DocumentProblem:
    return DocumentProblem("type.invalid", f"expected {expected}, got {_got(value)}", pointer)


def _string(value: str, t: Any, code: str, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    if t.min_length is not None and len(value) < t.min_length:
        add(
            DocumentProblem(
                code, "must not be empty" if t.min_length == 1 else f"shorter than {t.min_length} characters", pointer
            )
        )
    elif t.max_length is not None and len(value) > t.max_length:
        add(DocumentProblem(code, f"longer than {t.max_length} characters", pointer))
    elif t.pattern is not None and _regex(t.pattern).search(value) is None:
        add(DocumentProblem(code, f"{_show(value)} does not match {t.pattern}", pointer))


def _number(value: float, t: Any, code: str, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    if (t.ge is not None and value < t.ge) or (t.gt is not None and value <= t.gt):
        add(DocumentProblem(code, f"{value} is less than {t.ge if t.ge is not None else t.gt}", pointer))
    elif (t.le is not None and value > t.le) or (t.lt is not None and value >= t.lt):
        add(DocumentProblem(code, f"{value} is more than {t.le if t.le is not None else t.lt}", pointer))


def _list(value: Any, t: Any, code: str, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    if type(value) is not list:
        add(_type_problem("an array", value, pointer))
        return
    if t.min_length is not None and len(value) < t.min_length:
        add(
            DocumentProblem(
                code, "must not be empty" if t.min_length == 1 else f"fewer than {t.min_length} items", pointer
            )
        )
    item = t.item_type
    for i, element in enumerate(value):
        _check(element, item, f"{pointer}/{i}", add)


def _dict(value: Any, t: Any, code: str, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    if not isinstance(value, dict):
        add(_type_problem("an object", value, pointer))
        return
    if t.min_length is not None and len(value) < t.min_length:
        add(DocumentProblem(code, "must not be empty", pointer))
    for key, element in value.items():
        where = f"{pointer}/{escape(key)}"
        _check(key, t.key_type, where, add)
        _check(element, t.value_type, where, add)


def _union(value: Any, t: Any, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    members = [m for m in t.types if type(m) is not mi.NoneType]
    if value is None and len(members) < len(t.types):
        return
    if len(members) == 1:
        _check(value, members[0], pointer, add)
        return
    if not isinstance(value, dict):  # the other unions are of tagged Structs
        add(_type_problem("an object", value, pointer))
        return
    tag_field = members[0].tag_field
    where = f"{pointer}/{tag_field}"
    if tag_field not in value:
        add(DocumentProblem("field.missing", f"required field {tag_field!r} is missing", where))
        return
    tag = value[tag_field]
    for member in members:
        if member.tag == tag and type(tag) is str:
            _struct(value, member, pointer, add)
            return
    choices = ", ".join(repr(m.tag) for m in members)
    add(DocumentProblem("kind.unknown", f"unknown {tag_field} {_show(tag)}: expected one of {choices}", where))


def _struct(value: Any, t: Any, pointer: str, add: Callable[[DocumentProblem], None]) -> None:
    if not isinstance(value, dict):
        add(_type_problem("an object", value, pointer))
        return
    fields = _fields(t)
    for key in value:
        if key not in fields and key != t.tag_field:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            add(DocumentProblem("field.unknown", f"unknown field {_show(key)}{hint}", f"{pointer}/{escape(key)}"))
    for name, field in fields.items():
        where = f"{pointer}/{name}"
        if name in value:
            _check(value[name], field.type, where, add)
        elif field.required:
            meta = field.type
            code = (meta.extra or {}).get("code", "field.missing") if type(meta) is mi.Metadata else "field.missing"
            add(DocumentProblem(code, f"required field {name!r} is missing", where))


def _fields(t: Any) -> dict[str, Any]:
    return _fields_of(t.cls)


def _fields_of(cls: type[Any]) -> dict[str, Any]:
    fields = _FIELDS.get(cls)
    if fields is None:
        fields = _FIELDS[cls] = {f.encode_name: f for f in _type_info(cls).fields}
    return fields


@functools.cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
