"""The fast check of forms never accepts a schema that jsonschema's draft-7 metaschema refuses."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import validators

from flowdeck_engine.documents import metaschema
from flowdeck_engine.documents.metaschema import plainly_valid

DRAFT7 = validators.Draft7Validator(
    validators.Draft7Validator.META_SCHEMA, format_checker=validators.Draft7Validator.FORMAT_CHECKER
)
KEYWORDS = [*sorted(validators.Draft7Validator.META_SCHEMA["properties"]), "writeOnly", "x-custom", "$defs"]
TYPES = ["array", "boolean", "integer", "null", "number", "object", "string", "any", "", "Integer"]
PATTERNS = ["^a+$", "[0-9]{3}", "(a)\\1", "(?<=x)y", "(", "[", "a{2,1}", "\\", ".*"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, 2.5, -1.0, 1e300]),
    st.sampled_from(TYPES + PATTERNS + ["x", "#", "http://json-schema.org/draft-07/schema#"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYWORDS + TYPES + PATTERNS), inner, max_size=3),
    ),
    max_leaves=12,
)


def schemas() -> st.SearchStrategy[Any]:
    """Objects keyed mostly by metaschema keywords, with values that are often (not always) right."""
    return st.recursive(
        st.one_of(st.booleans(), st.just({})),
        lambda inner: st.one_of(
            st.dictionaries(
                st.sampled_from(KEYWORDS),
                st.one_of(
                    inner,
                    values,
                    st.lists(inner, max_size=3),
                    st.dictionaries(st.sampled_from(["a", "b", *PATTERNS]), inner, max_size=3),
                    st.sampled_from(TYPES),
                    st.lists(st.sampled_from(TYPES), max_size=3),
                    st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
                ),
                max_size=4,
            ),
        ),
        max_leaves=16,
    )


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schemas())
def test_plainly_valid_implies_valid(schema: Any) -> None:
    if plainly_valid(schema):
        assert DRAFT7.is_valid(schema), schema


def test_every_keyword_of_the_metaschema_is_known() -> None:
    assert set(metaschema._KEYWORDS) == set(validators.Draft7Validator.META_SCHEMA["properties"])


def test_common_forms_are_plainly_valid() -> None:
    form = {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean"},
            "amount": {"type": "number", "minimum": 0, "maximum": 1_000_000, "multipleOf": 0.01},
            "comment": {"type": ["string", "null"], "maxLength": 2000, "pattern": "^[^<>]*$"},
            "category": {"enum": ["travel", "meals"], "default": "travel"},
            "items": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
            "tags": {"type": "array", "items": [{"type": "string"}, True], "additionalItems": False},
        },
        "patternProperties": {"^x-": {"type": "string"}},
        "dependencies": {"amount": ["category"], "comment": {"required": ["approved"]}},
        "required": ["approved"],
        "additionalProperties": False,
        "if": {"properties": {"approved": {"const": False}}},
        "then": {"required": ["comment"]},
        "allOf": [{"minProperties": 1}],
    }
    assert metaschema.AVAILABLE
    assert plainly_valid(form) is True
    assert DRAFT7.is_valid(form)


def test_doubtful_forms_are_left_to_jsonschema() -> None:
    for form in (
        {"maxLength": 2.0},  # valid in draft 7 (an integral float), but not plainly so
        {"maxLength": -1},
        {"maxLength": True},
        {"type": "any"},
        {"type": []},
        {"type": ["string", "string"]},
        {"required": ["a", "a"]},
        {"items": []},
        {"allOf": []},
        {"pattern": "("},
        {"patternProperties": {"(": {}}},
        {"properties": {"a": 1}},
        {"dependencies": {"a": [1]}},
        {"multipleOf": 0},
        {"not": None},
        [],
    ):
        assert plainly_valid(form) is None, form
