"""A fast answer to "is this form a valid draft-7 JSON Schema?" for the forms tenants write.

Checking a form against its dialect's metaschema with jsonschema costs ~0.3 ms (a validator
object per keyword, a ``$ref`` lookup per subschema): a document at the limits has 40 forms, a
third of its whole check. :func:`plainly_valid` walks a form once and says True only when every
keyword the draft-7 metaschema constrains holds a value it plainly accepts: a string where a
string goes, a non-negative ``int`` for a length, a subschema (an object or a boolean) where a
schema goes, and so on. Anything else (a float for a length, a non-``dict`` mapping, an
unusual type) is None: "not sure", and the caller asks jsonschema, which also words the problem.
So the answer is never True where jsonschema's would be False; a property test checks that.

The metaschema's ``regex`` format is checked as jsonschema checks it (``re.compile``). Its
``uri`` and ``uri-reference`` formats are only checked by jsonschema when optional packages are
installed: then no form takes this path (:data:`AVAILABLE` is False).
"""

from __future__ import annotations

import re
from typing import Any, Final

from jsonschema import validators

_FORMATS: Final = frozenset(validators.Draft7Validator.FORMAT_CHECKER.checkers)
AVAILABLE: Final = not {"uri", "uri-reference", "iri", "iri-reference"} & _FORMATS
"""Whether :func:`plainly_valid` may answer True with this installation of jsonschema."""
_CHECKS_REGEX: Final = "regex" in _FORMATS

_SIMPLE_TYPES: Final = frozenset({"array", "boolean", "integer", "null", "number", "object", "string"})
_STRING: Final = 1
_BOOLEAN: Final = 2
_NUMBER: Final = 3
_POSITIVE: Final = 4  # a number > 0 (multipleOf)
_COUNT: Final = 5  # a non-negative integer
_ARRAY: Final = 6  # any array
_ANY: Final = 7
_SCHEMA: Final = 8
_SCHEMAS: Final = 9  # a non-empty array of schemas
_SCHEMA_MAP: Final = 10  # an object of schemas
_STRINGS: Final = 11  # an array of unique strings
_PATTERN: Final = 12  # a string that compiles as a regex
_PATTERN_MAP: Final = 13  # an object of schemas keyed by regexes
_ITEMS: Final = 14  # a schema or a non-empty array of schemas
_DEPENDENCIES: Final = 15  # an object of schemas or arrays of unique strings
_TYPE: Final = 16  # a simple type or a non-empty array of unique simple types

_KEYWORDS: Final[dict[str, int]] = {
    "$id": _STRING,
    "$schema": _STRING,
    "$ref": _STRING,
    "$comment": _STRING,
    "title": _STRING,
    "description": _STRING,
    "default": _ANY,
    "readOnly": _BOOLEAN,
    "examples": _ARRAY,
    "multipleOf": _POSITIVE,
    "maximum": _NUMBER,
    "exclusiveMaximum": _NUMBER,
    "minimum": _NUMBER,
    "exclusiveMinimum": _NUMBER,
    "maxLength": _COUNT,
    "minLength": _COUNT,
    "pattern": _PATTERN,
    "additionalItems": _SCHEMA,
    "items": _ITEMS,
    "maxItems": _COUNT,
    "minItems": _COUNT,
    "uniqueItems": _BOOLEAN,
    "contains": _SCHEMA,
    "maxProperties": _COUNT,
    "minProperties": _COUNT,
    "required": _STRINGS,
    "additionalProperties": _SCHEMA,
    "definitions": _SCHEMA_MAP,
    "properties": _SCHEMA_MAP,
    "patternProperties": _PATTERN_MAP,
    "dependencies": _DEPENDENCIES,
    "propertyNames": _SCHEMA,
    "const": _ANY,
    "enum": _ARRAY,
    "type": _TYPE,
    "format": _STRING,
    "contentMediaType": _STRING,
    "contentEncoding": _STRING,
    "if": _SCHEMA,
    "then": _SCHEMA,
    "else": _SCHEMA,
    "allOf": _SCHEMAS,
    "anyOf": _SCHEMAS,
    "oneOf": _SCHEMAS,
    "not": _SCHEMA,
}
"""What the draft-7 metaschema asks of each keyword's value (other keywords are free)."""


def plainly_valid(schema: Any) -> bool | None:
    """True when ``schema`` is plainly a valid draft-7 schema; None when jsonschema must decide.

    Iterative (a stack of subschemas), so any nesting is safe.
    """
    if not AVAILABLE:
        return None
    todo = [schema]
    while todo:
        node = todo.pop()
        if node is True or node is False:
            continue
        if type(node) is not dict:
            return None
        for key, value in node.items():
            rule = _KEYWORDS.get(key) if type(key) is str else None
            if rule is None or rule == _ANY:
                continue
            t = type(value)
            if rule == _STRING:
                ok = t is str
            elif rule == _SCHEMA:
                ok = t is dict or t is bool
                if t is dict:
                    todo.append(value)
            elif rule == _COUNT:
                ok = t is int and value >= 0
            elif rule == _SCHEMA_MAP:
                ok = t is dict and _schemas(value.values(), todo)
            elif rule == _TYPE:
                ok = (t is str and value in _SIMPLE_TYPES) or (
                    t is list
                    and len(value) > 0
                    and all(type(v) is str and v in _SIMPLE_TYPES for v in value)
                    and len(set(value)) == len(value)
                )
            elif rule == _STRINGS:
                ok = _strings(value)
            elif rule == _NUMBER:
                ok = t is int or t is float
            elif rule == _BOOLEAN:
                ok = t is bool
            elif rule == _ARRAY:
                ok = t is list
            elif rule == _PATTERN:
                ok = t is str and _compiles(value)
            elif rule == _ITEMS:
                ok = (t is dict or t is bool) if t is not list else len(value) > 0
                if ok:
                    ok = _schemas(value if t is list else (value,), todo)
            elif rule == _SCHEMAS:
                ok = t is list and len(value) > 0 and _schemas(value, todo)
            elif rule == _POSITIVE:
                ok = (t is int or t is float) and value > 0
            elif rule == _PATTERN_MAP:
                ok = t is dict and all(type(k) is str and _compiles(k) for k in value)
                ok = ok and _schemas(value.values(), todo)
            else:  # _DEPENDENCIES
                ok = t is dict and all(_strings(v) if type(v) is list else _schemas((v,), todo) for v in value.values())
            if not ok:
                return None
    return True


def _schemas(values: Any, todo: list[Any]) -> bool:
    """Whether each value can be a schema (an object or a boolean); the objects are queued."""
    for value in values:
        t = type(value)
        if t is dict:
            todo.append(value)
        elif t is not bool:
            return False
    return True


def _strings(value: Any) -> bool:
    return type(value) is list and all(type(v) is str for v in value) and len(set(value)) == len(value)


def _compiles(pattern: str) -> bool:
    if not _CHECKS_REGEX:
        return True
    try:
        re.compile(pattern)
    except Exception:  # jsonschema decides what such a pattern means
        return False
    return True
