"""Tests of the tenant condition evaluator (flowdeck_engine.conditions).

Conditions are hostile input: besides the semantics, these tests hold an attack corpus that
must be rejected at compile time, evaluation-time failures that must surface as the evaluator's
own error without running user code, and a property-based fuzz.
"""

from __future__ import annotations

import ast
import copy
import gc
import inspect
import threading
import time
import tracemalloc
from collections import defaultdict
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdeck_engine import conditions
from flowdeck_engine.conditions import DEFAULT_LIMITS, Condition, ConditionLimits, compile_condition
from flowdeck_engine.exceptions import (
    ConditionError,
    ConditionEvaluationError,
    ConditionLimitError,
    ConditionSyntaxError,
    ValidationError,
    WorkflowsError,
)

FUZZ_EXAMPLES = 10_000
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_SECONDS_PER_CONDITION = 1.0
"""A bound against blow-ups (exponential parsing, huge powers), not a speed goal: typical compiles
take tens of microseconds (``bench/documents_validate.py``), and a loaded CI machine must not flake."""
FUZZ_MAX_SECONDS = [0.0]  # the slowest compile + evaluate seen by the fuzz tests


def evaluate(source: str, data: dict[str, Any] | None = None) -> Any:
    return compile_condition(source).evaluate({} if data is None else data)


# ---------------------------------------------------------------------------------------------
# Positive semantics


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        # the litestar-workflows examples
        ("context.get('score') >= 80", {"score": 80}, True),
        ("context.get('score') >= 80", {"score": 79.5}, False),
        ("context.get('approved') and context['amount'] < 5000", {"approved": True, "amount": 10}, True),
        ("context.get('approved') and context['amount'] < 5000", {"approved": False, "amount": 1}, False),
        ("context.get('region', 'eu') in ['eu', 'us']", {}, True),
        ("context.get('region', 'eu') in ['eu', 'us']", {"region": "apac"}, False),
        ("not context.get('flagged')", {}, True),
        ("not context.get('flagged')", {"flagged": True}, False),
        ("context['order']['total'] * 2 > 100", {"order": {"total": 50.5}}, True),
        # chained comparisons
        ("1 < context['x'] <= 3", {"x": 3}, True),
        ("1 < context['x'] <= 3", {"x": 4}, False),
        ("0 <= context['x'] < 10 != context['y']", {"x": 5, "y": 10}, False),
        ("'a' < context['s'] < 'c'", {"s": "b"}, True),
        ("context['x'] == context['y'] == 1", {"x": 1, "y": 1.0}, True),
        # and / or return an operand, like Python
        ("context.get('a') or 'default'", {}, "default"),
        ("context.get('a') or 'default'", {"a": "set"}, "set"),
        ("context.get('a') and 'yes'", {"a": 0}, 0),
        ("context.get('a') and context.get('b') and 3", {"a": 1, "b": "x"}, 3),
        ("context.get('a') or context.get('b') or 0", {}, 0),
        # lazy: the right side is not evaluated
        ("False and (1 / 0)", {}, False),
        ("True or (1 / 0)", {}, True),
        ("context.get('missing') and context['missing']['deeper'] > 1", {}, None),
        ("1 > 2 > context['none'] + 1", {}, False),
        # missing keys read as None; defaults
        ("context.get('missing')", {}, None),
        ("context['missing']", {}, None),
        ("context.get('missing', 42)", {}, 42),
        ("context.get('missing', -1.5)", {}, -1.5),
        ("context.get('present', 42)", {"present": None}, None),
        ("context.get('missing', [1, 'a'])", {}, [1, "a"]),
        ("context['d']['missing']", {"d": {}}, None),
        ("context['items'][5]", {"items": [1]}, None),
        # nested subscripts
        ("context['a']['b']['c']", {"a": {"b": {"c": "deep"}}}, "deep"),
        ("context.get('items')[0]", {"items": ["first", "second"]}, "first"),
        ("context.get('items')[-1]", {"items": ["first", "second"]}, "second"),
        ("context['rows'][1]['id'] == 7", {"rows": [{"id": 1}, {"id": 7}]}, True),
        ("context.get('items', [10, 20])[1]", {}, 20),
        # in / not in
        ("context['x'] in [1, 2, 3]", {"x": 2}, True),
        ("context['x'] not in [1, 2, 3]", {"x": 2}, False),
        ("context['x'] in (1, 'a', None)", {}, True),
        ("context['x'] in []", {"x": 1}, False),
        ("context['x'] in [1, 2]", {"x": [1]}, False),
        ("context['x'] not in [1, 2]", {"x": {"a": 1}}, True),
        # type-aware equality: bool is not a number
        ("True == 1", {}, False),
        ("context['x'] == 1", {"x": True}, False),
        ("context['x'] != 0", {"x": False}, True),
        ("context['x'] in [1]", {"x": True}, False),
        ("context['x'] in [True]", {"x": 1}, False),
        ("context['x'] in [1]", {"x": 1.0}, True),
        ("context['x'] == 2", {"x": 2.0}, True),
        ("context['x'] == None", {}, True),
        ("context['x'] == [1, 'a']", {"x": [1, "a"]}, True),
        ("context['x'] == [1, 1]", {"x": [1, True]}, False),
        ("context['x'] == context['y']", {"x": {"a": [1, {"b": None}]}, "y": {"a": [1.0, {"b": None}]}}, True),
        ("context['x'] == context['y']", {"x": {"a": 1}, "y": {"a": True}}, False),
        ("context['x'] == context['y']", {"x": {"a": 1}, "y": {"b": 1}}, False),
        ("context['x'] == 'a'", {"x": ["a"]}, False),
        # arithmetic
        ("context['a'] + context['b'] * 2 - 1", {"a": 1, "b": 3}, 6),
        ("7 / 2", {}, 3.5),
        ("7 // 2", {}, 3),
        ("-7 // 2", {}, -4),
        ("7 % 3", {}, 1),
        ("-7 % 3", {}, 2),
        ("7.5 % 2", {}, 1.5),
        ("-context['a']", {"a": 2}, -2),
        ("+context['a']", {"a": 2.5}, 2.5),
        ("--5", {}, 5),
        ("-(-5)", {}, 5),
        ("context['a'] * 1000000000000000 <= 1e15", {"a": 1}, True),
        # literals and not
        ("None", {}, None),
        ("True", {}, True),
        ("'text'", {}, "text"),
        ("not 0", {}, True),
        ("not []", {}, True),
        ("not context['l']", {"l": [0]}, False),
        ("[1, 2]", {}, [1, 2]),
        ("0x1F == 31", {}, True),
        ("1_000 == 1000", {}, True),
        # unicode
        ("context.get('name') == 'Zoë'", {"name": "Zoë"}, True),
        ("context.get('größe') > 1", {"größe": 2}, True),
        ("context['ключ'] == '值'", {"ключ": "值"}, True),
        # identifiers are NFKC-normalised by the parser: fullwidth letters name the same things
        ("\uff43ontext.get('a') == 1", {"a": 1}, True),
        ("context.\uff47\uff45\uff54('a') == 1", {"a": 1}, True),
        # whitespace and comments
        ("  context.get('a')  ", {"a": 1}, 1),
        ("(context.get('a')  # a comment\n  > 0)", {"a": 1}, True),
    ],
)
def test_semantics(source: str, data: dict[str, Any], expected: Any) -> None:
    result = evaluate(source, data)
    assert result == expected
    assert type(result) is type(expected)


def test_test_returns_truthiness() -> None:
    condition = compile_condition("context.get('a') or context.get('b')")
    assert condition.test({"a": 0, "b": "x"}) is True
    assert condition.test({"a": 0, "b": ""}) is False
    assert condition.test({}) is False


def test_condition_is_immutable_and_reusable() -> None:
    condition = compile_condition("context.get('score') >= 80")
    assert isinstance(condition, Condition)
    assert condition.source == "context.get('score') >= 80"
    assert "score" in repr(condition)
    with pytest.raises(AttributeError):
        condition.source = "True"
    with pytest.raises(AttributeError):
        del condition.source
    assert [condition.test({"score": s}) for s in (79, 80, 81)] == [False, True, True]


def test_condition_is_thread_safe() -> None:
    condition = compile_condition("context['n'] % 2 == 0 and context['n'] * 3 > 10")
    errors: list[str] = []

    def work(offset: int) -> None:
        for n in range(offset, offset + 2000):
            if condition.test({"n": n}) != (n % 2 == 0 and n * 3 > 10):
                errors.append(f"wrong result for {n}")

    threads = [threading.Thread(target=work, args=(i * 2000,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_mapping_types() -> None:
    condition = compile_condition("context['a'] == 1 and context.get('b', 2) == 2")
    assert condition.test(MappingProxyType({"a": 1}))
    assert condition.test(defaultdict(int, {"a": 1}))


def test_defaultdict_is_not_filled_by_reads() -> None:
    data: defaultdict[str, Any] = defaultdict(list, {"d": defaultdict(list)})
    assert evaluate("context['missing'] == None and context['d']['x'] == None", data) is True
    assert dict(data) == {"d": {}}


def test_evaluate_returns_a_copy() -> None:
    data = {"items": [1, {"a": [2]}], "t": (1, 2)}
    result = evaluate("context['items']", data)
    assert result == [1, {"a": [2]}]
    result[1]["a"].append(3)
    assert data == {"items": [1, {"a": [2]}], "t": (1, 2)}
    assert evaluate("context['t']", data) == [1, 2]
    default = compile_condition("context.get('x', [1])")
    first = default.evaluate({})
    first.append(2)
    assert default.evaluate({}) == [1]


def test_subclasses_of_json_types_are_copied_without_running_their_code() -> None:
    calls: list[str] = []

    class Text(str):
        def __eq__(self, other: object) -> bool:
            calls.append("eq")
            return True

        def __hash__(self) -> int:
            calls.append("hash")
            return 0

        def __str__(self) -> str:
            calls.append("str")
            return "other"

    class Number(int):
        def __int__(self) -> int:
            calls.append("int")
            return 0

        def __ge__(self, other: object) -> bool:
            calls.append("ge")
            return False

    class Dict(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            calls.append("getitem")
            return "x"

        def get(self, key: str, default: Any = None) -> Any:
            calls.append("get")
            return "x"

        def items(self) -> Any:
            calls.append("items")
            return iter(())

    class List(list[Any]):
        def __getitem__(self, index: Any) -> Any:
            calls.append("getitem")
            return "x"

        def __len__(self) -> int:
            calls.append("len")
            return 99

        def __iter__(self) -> Any:
            calls.append("iter")
            return iter(())

    data = {
        "s": Text("a"),
        "n": Number(90),
        "d": Dict({"k": "v", Text("key"): 1}),
        "l": List([1, 2]),
    }
    calls.clear()  # building the dict hashed the Text key
    assert evaluate("context['s'] == 'a' and context['s'] != 'b'", data) is True
    assert type(evaluate("context['s']", data)) is str
    assert evaluate("context['n'] >= 80", data) is True
    assert evaluate("context['d']['k'] == 'v' and context['l'][1] == 2", data) is True
    assert evaluate("context['l'][5]", data) is None
    assert evaluate("context['d']", data) == {"k": "v", "key": 1}
    assert evaluate("context['l']", data) == [1, 2]
    assert calls == []


# ---------------------------------------------------------------------------------------------
# Attack corpus: every entry is rejected at compile time

SYNTAX = ConditionSyntaxError
LIMIT = ConditionLimitError

ATTACKS: list[tuple[str, type[ConditionSyntaxError]]] = [
    # introspection
    ("context.__class__", SYNTAX),
    ("().__class__.__bases__[0].__subclasses__()", SYNTAX),
    ("().__class__.__base__.__subclasses__()[0]", SYNTAX),
    ("context.get.__globals__", SYNTAX),
    ("context.get.__self__", SYNTAX),
    ("getattr(context, 'x')", SYNTAX),
    ("__import__('os')", SYNTAX),
    ("__import__('os').system('id')", SYNTAX),
    ("[c for c in ().__class__.__base__.__subclasses__()]", SYNTAX),
    ("context.get('a').__class__", SYNTAX),
    ("context['a'].__class__.__mro__", SYNTAX),
    ("context.get('a')['b'].__dict__", SYNTAX),
    ("open", SYNTAX),
    ("open('/etc/passwd')", SYNTAX),
    ("eval", SYNTAX),
    ("eval('1')", SYNTAX),
    ("exec('1')", SYNTAX),
    ("compile('1', '', 'eval')", SYNTAX),
    ("globals()", SYNTAX),
    ("vars(context)", SYNTAX),
    ("type(context)", SYNTAX),
    ("__builtins__", SYNTAX),
    ("\uff45\uff56\uff41\uff4c('1')", SYNTAX),  # fullwidth 'eval', NFKC-normalised by the parser
    ("\uff43ontext.__class__", SYNTAX),  # fullwidth 'context'
    ("context.\uff47et.__globals__", SYNTAX),
    # side effects
    ("context.update({'a': 1})", SYNTAX),
    ("context.set('a', 1)", SYNTAX),
    ("context.pop('a')", SYNTAX),
    ("context.setdefault('a', 1)", SYNTAX),
    ("context.data.clear()", SYNTAX),
    ("context.clear()", SYNTAX),
    ("context.get('a').append(1)", SYNTAX),
    ("(x := 1)", SYNTAX),
    ("(context := 1)", SYNTAX),
    ("context.get('a', context.update({}))", SYNTAX),
    ("context.get('a', context.pop('b'))", SYNTAX),
    ("context.get(context.pop('b'))", SYNTAX),
    ("context[context.pop('b')]", SYNTAX),
    # CPU
    ("9**9**9", SYNTAX),
    ("10**100000", SYNTAX),
    ("context.get('a') ** 2", SYNTAX),
    ("2 << 10000", SYNTAX),
    ("1 >> 1", SYNTAX),
    ("'a' * 10**9", SYNTAX),
    ("'a' * 1000000000", SYNTAX),
    ("[1] * 10**9", SYNTAX),
    ("[1] * 1000000000", SYNTAX),
    ("(1,) * 1000000000", SYNTAX),
    ("'a' + 'b'", SYNTAX),
    ("9" * 31, LIMIT),
    ("9" * 31 + " > context.get('a')", LIMIT),
    ("-" + "9" * 100, LIMIT),
    ("0x" + "f" * 200, LIMIT),
    ("1e400 > 0", LIMIT),
    ("1" * 999, LIMIT),
    # memory / format tricks
    ("'{:>999999999}'.format(1)", SYNTAX),
    ("'{0:>999999999}'.format(context.get('a'))", SYNTAX),
    ("f'{1:>99999999}'", SYNTAX),
    ("f'{context}'", SYNTAX),
    ("'%999999999d' % 1", SYNTAX),
    ("'%s' % context.get('a')", SYNTAX),
    ("'x' * 2", SYNTAX),
    # parser depth
    ("(" * 201 + "1" + ")" * 201, SYNTAX),
    ("-(" * 100 + "1" + ")" * 100, LIMIT),
    ("-" * 5000 + "1", LIMIT),
    ("-" * 999 + "1", LIMIT),
    ("not " * 400 + "True", LIMIT),
    ("not " * 240 + "True", LIMIT),
    ("[" * 100 + "]" * 100, LIMIT),
    ("[" * 10 + "]" * 10, SYNTAX),
    ("context['a']" + "['b']" * 40, LIMIT),
    ("context.get('a') == " + "1 + " * 100 + "1", LIMIT),
    ("x" * 1001, LIMIT),
    ("context.get('a')" + " " * 1000, LIMIT),
    (" and ".join(["True"] * 300), LIMIT),
    (" and ".join(["context.get('a')"] * 300), LIMIT),
    ("[" + ", ".join(["1"] * 101) + "]", LIMIT),
    # semantics
    ("lambda: 1", SYNTAX),
    ("(lambda: context)()", SYNTAX),
    ("[x for x in [1]]", SYNTAX),
    ("{x for x in [1]}", SYNTAX),
    ("{x: 1 for x in [1]}", SYNTAX),
    ("any(x for x in [1])", SYNTAX),
    ("context['a'][1:2]", SYNTAX),
    ("context['a'][::-1]", SYNTAX),
    ("context['a'][:]", SYNTAX),
    ("{'a': 1}", SYNTAX),
    ("{}", SYNTAX),
    ("{1, 2}", SYNTAX),
    ("context.get('a') in {1, 2}", SYNTAX),
    ("[*context.get('a')]", SYNTAX),
    ("context.get(*['a'])", SYNTAX),
    ("context.get(**{'key': 'a'})", SYNTAX),
    ("1 if context.get('a') else 2", SYNTAX),
    ("context.get('a') is None", SYNTAX),
    ("context.get('a') is not None", SYNTAX),
    ("b'abc'", SYNTAX),
    ("context.get('a') == b'abc'", SYNTAX),
    ("1j", SYNTAX),
    ("...", SYNTAX),
    ("context.get('a') @ context.get('b')", SYNTAX),
    ("1 & 2", SYNTAX),
    ("1 | 2", SYNTAX),
    ("1 ^ 2", SYNTAX),
    ("~1", SYNTAX),
    ("(1).real", SYNTAX),
    ("'abc'.upper()", SYNTAX),
    ("'abc'[0]", SYNTAX),
    ("[1, 2][0]", SYNTAX),
    ("context", SYNTAX),
    ("context == 1", SYNTAX),
    ("not context", SYNTAX),
    ("context.get", SYNTAX),
    ("context.get('a').get('b')", SYNTAX),
    ("context.get('a')()", SYNTAX),
    ("context.get(some_name)", SYNTAX),
    ("context.get(1)", SYNTAX),
    ("context.get()", SYNTAX),
    ("context.get('a', 'b', 'c')", SYNTAX),
    ("context.get('a', default=1)", SYNTAX),
    ("context.get(key='a')", SYNTAX),
    ("context.get('a', context.get('b'))", SYNTAX),
    ("context.get('a', {})", SYNTAX),
    ("context[some_name]", SYNTAX),
    ("context[context.get('k')]", SYNTAX),
    ("context['a' + 'b']", SYNTAX),
    ("context[0]", SYNTAX),
    ("context['a'][True]", SYNTAX),
    ("context['a'][1.5]", SYNTAX),
    ("context['a', 'b']", SYNTAX),
    ("context['a'][None]", SYNTAX),
    ("context.get('a') in context.get('b')", SYNTAX),
    ("context.get('a') in 'abc'", SYNTAX),
    ("context.get('a') in [context.get('b')]", SYNTAX),
    ("context.get('a') in [[1]]", SYNTAX),
    ("None < 1", SYNTAX),
    ("context.get('a') >= None", SYNTAX),
    ("context.get('a') < [1]", SYNTAX),
    ("'5' < 3", SYNTAX),
    ("True > context.get('a')", SYNTAX),
    ("-'a'", SYNTAX),
    ("-None", SYNTAX),
    ("+True", SYNTAX),
    ("None + 1", SYNTAX),
    ("x", SYNTAX),
    ("self", SYNTAX),
    ("a.b", SYNTAX),
    ("await context", SYNTAX),
    ("(yield)", SYNTAX),
    ("1; 2", SYNTAX),
    ("import os", SYNTAX),
    ("a = 1", SYNTAX),
    ("", SYNTAX),
    ("   ", SYNTAX),
    ("# only a comment", SYNTAX),
    ("context.get('a'", SYNTAX),
    ("'\\N{NO SUCH NAME}'", SYNTAX),
    ("1\x00", SYNTAX),
    ("'\ud800'", SYNTAX),  # a lone surrogate cannot be encoded for the parser
]


@pytest.mark.parametrize(("source", "expected"), ATTACKS, ids=[repr(s[:40]) for s, _ in ATTACKS])
def test_attack_is_rejected_at_compile_time(source: str, expected: type[ConditionSyntaxError]) -> None:
    start = time.perf_counter()
    with pytest.raises(ConditionSyntaxError) as excinfo:
        compile_condition(source)
    assert time.perf_counter() - start < MAX_SECONDS_PER_CONDITION
    assert type(excinfo.value) is expected, excinfo.value.reason
    assert excinfo.value.source == source
    assert excinfo.value.reason
    assert excinfo.value.detail.startswith("invalid condition: ")


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("open('x')", "function calls other than context.get"),
        ("context.__class__", "attribute access is not allowed"),
        ("context.update({'a': 1})", "function calls other than context.get"),
        ("9**9", "**"),
        ("2 << 1", "shift"),
        ("1 & 1", "bitwise"),
        ("f'{1}'", "f-strings"),
        ("[c for c in [1]]", "comprehensions"),
        ("lambda: 1", "lambda"),
        ("(x := 1)", ":="),
        ("1 if 1 else 2", "conditional expressions"),
        ("context['a'][1:2]", "slices"),
        ("{'a': 1}", "dict literals"),
        ("{1}", "set literals"),
        ("[*context.get('a')]", "starred"),
        ("context.get('a') is None", "'is'"),
        ("b'x'", "bytes"),
        ("context", "'context' can only be used"),
        ("eval", "unknown name 'eval'"),
        ("context.get('a', 'b', 'c')", "a key and an optional default"),
        ("context.get('a', default=1)", "keyword"),
        ("context.get(k)", "must be a string literal"),
        ("context.get('a') in context.get('b')", "literal list"),
        ("'%d' % 1", "needs numbers"),
        ("9" * 31, "digits"),
        ("x" * 1001, "longer than 1000 characters"),
        ("not " * 40 + "1", "nested deeper than 32"),
        ("context.get('a", "syntax error"),
    ],
)
def test_rejection_reasons_name_the_construct(source: str, fragment: str) -> None:
    with pytest.raises(ConditionSyntaxError) as excinfo:
        compile_condition(source)
    assert fragment in excinfo.value.reason


def test_redundant_parentheses_are_harmless() -> None:
    # Parentheses add no AST node; CPython itself refuses more than 200 levels (see ATTACKS).
    assert compile_condition("(" * 200 + "1" + ")" * 200).evaluate({}) == 1


def test_limits_are_configurable() -> None:
    assert ConditionLimits() == DEFAULT_LIMITS
    with pytest.raises(ConditionLimitError):
        compile_condition("context.get('a') in [1, 2, 3]", ConditionLimits(max_list=2))
    with pytest.raises(ConditionLimitError):
        compile_condition("context.get('abcdef')", ConditionLimits(max_string=5))
    with pytest.raises(ConditionLimitError):
        compile_condition("123 > 0", ConditionLimits(max_int_digits=2))
    with pytest.raises(ConditionLimitError):
        compile_condition("context.get('a') == 1", ConditionLimits(max_length=10))
    # node count, with the length cap out of the way
    big = ConditionLimits(max_length=100_000)
    with pytest.raises(ConditionLimitError, match="syntax nodes"):
        compile_condition(" and ".join(["context.get('a')"] * 300), big)
    with pytest.raises(ConditionSyntaxError):
        compile_condition("1" * 5000, big)  # CPython's own int-literal limit; still a syntax error
    with pytest.raises(ValidationError, match="max_depth"):
        ConditionLimits(max_depth=0)
    with pytest.raises(ValidationError, match="max_operand"):
        ConditionLimits(max_operand=float("inf"))


def test_string_literal_cap() -> None:
    assert compile_condition("'" + "a" * 900 + "' == context.get('a')").test({"a": "a" * 900})
    with pytest.raises(ConditionLimitError, match="string literal"):
        compile_condition("'" + "a" * 50 + "'", ConditionLimits(max_string=49))


def test_non_string_source() -> None:
    with pytest.raises(ConditionSyntaxError):
        compile_condition(None)  # type: ignore[arg-type]
    with pytest.raises(ConditionSyntaxError):
        compile_condition(b"True")  # type: ignore[arg-type]


def test_exception_hierarchy() -> None:
    assert issubclass(ConditionLimitError, ConditionSyntaxError)
    assert issubclass(ConditionSyntaxError, ValidationError)
    assert issubclass(ConditionSyntaxError, ConditionError)
    assert issubclass(ConditionEvaluationError, ConditionError)
    assert issubclass(ConditionError, WorkflowsError)


def test_attack_corpus_memory_is_flat() -> None:
    sources = [source for source, _ in ATTACKS]
    tracemalloc.start()
    try:
        for source in sources:
            with pytest.raises(ConditionSyntaxError):
                compile_condition(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


# ---------------------------------------------------------------------------------------------
# Evaluation-time errors

SECRET = "s3cr3t-Value-Do-Not-Leak"


@pytest.mark.parametrize(
    ("source", "data", "fragment"),
    [
        ("context.get('score') >= 80", {}, "cannot compare None with int"),
        ("context.get('score') >= 80", {"score": "95"}, "cannot compare str with int"),
        ("context.get('score') >= 80", {"score": True}, "cannot compare bool with int"),
        ("context.get('score') < context.get('limit')", {"score": [1], "limit": [2]}, "list"),
        ("context.get('a') > context.get('b')", {"a": {}, "b": 1}, "dict"),
        ("context['a'] * context['b']", {"a": 10**300, "b": 10**300}, "exceeds the limit"),
        ("context['a'] * context['b']", {"a": 10**10, "b": 10**10}, "result of * exceeds"),
        ("context['a'] + 1", {"a": 1e16}, "exceeds the limit"),
        ("-context['a']", {"a": 10**20}, "exceeds the limit"),
        ("context['a'] / context['b']", {"a": 1e10, "b": 1e-300}, "exceeds the limit"),
        ("context['a'] / context['b']", {"a": 1, "b": 0}, "division by zero"),
        ("context['a'] // context['b']", {"a": 1, "b": 0.0}, "division by zero"),
        ("context['a'] % context['b']", {"a": 1, "b": 0}, "division by zero"),
        ("1 / 0", {}, "division by zero"),
        ("context['a'] + 1", {"a": "1"}, "cannot apply + to str and int"),
        ("context['a'] + context['b']", {"a": "x", "b": "y"}, "str and str"),
        ("context['a'] * 2", {"a": [1]}, "list and int"),
        ("context['a'] + 1", {"a": True}, "bool and int"),
        ("-context['a']", {"a": None}, "unary -"),
        ("context['a'] == 1", {"a": float("nan")}, "not finite"),
        ("context['a'] > 1", {"a": float("inf")}, "not finite"),
        ("context['a'] == 1", {"a": {1, 2}}, "unsupported type set"),
        ("context['a'] == 1", {"a": b"bytes"}, "unsupported type bytes"),
        ("context['a'] == 1", {"a": 1j}, "unsupported type complex"),
        ("context['a'] == 1", {"a": {"k": [object()]}}, "unsupported type object"),
        ("context['a'] == 1", {"a": {1: "int key"}}, "not a string"),
        ("context['a']['b']", {}, "cannot index None"),
        ("context['a']['b']", {"a": "text"}, "cannot index str"),
        ("context['a'][0]", {"a": 5}, "cannot index int"),
        ("context['a'][0]", {"a": {"0": 1}}, "cannot index a dict with an int"),
        ("context['a']['b']", {"a": [1]}, "cannot index a list with a str"),
        ("context.get('a', 1)['b']", {}, "cannot index int"),
        ("context['a']['b']", {"a": object()}, "cannot index unsupported type object"),
    ],
)
def test_evaluation_errors(source: str, data: dict[str, Any], fragment: str) -> None:
    condition = compile_condition(source)
    with pytest.raises(ConditionEvaluationError) as excinfo:
        condition.evaluate(data)
    assert fragment in excinfo.value.reason
    assert excinfo.value.source == source
    with pytest.raises(ConditionEvaluationError):
        condition.test(data)


@pytest.mark.parametrize(
    "source",
    [
        "context.get('secret') >= 80",
        "context.get('secret') + 1",
        "context['secret']['x']",
        "context['secret'][0]",
        "-context.get('secret')",
        "context['nested'] > 1",
        "context['bad'] == 1",
    ],
)
def test_messages_never_echo_context_values(source: str) -> None:
    data = {"secret": SECRET, "nested": {"k": SECRET, SECRET: [SECRET]}, "bad": {SECRET: {1, 2}}}
    with pytest.raises(ConditionEvaluationError) as excinfo:
        compile_condition(source).evaluate(data)
    error = excinfo.value
    assert SECRET not in str(error)
    assert SECRET not in error.reason
    assert SECRET not in repr(error.args)
    assert error.__cause__ is None


class Recorder:
    """A hostile context value: every dunder records that it was called."""

    calls: list[str] = []

    def _record(name: str) -> Any:  # type: ignore[misc]
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            Recorder.calls.append(name)
            return True

        return method

    for _name in (
        "__eq__",
        "__ne__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__add__",
        "__radd__",
        "__sub__",
        "__rsub__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__mod__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__bool__",
        "__len__",
        "__getitem__",
        "__iter__",
        "__contains__",
        "__index__",
        "__int__",
        "__float__",
        "__str__",
        "__repr__",
        "__format__",
        "__hash__",
        "__copy__",
        "__deepcopy__",
        "__reduce_ex__",
        "__instancecheck__",
        "__getattr__",
    ):
        locals()[_name] = _record(_name)
    del _name

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        Recorder.calls.append("__class__")
        return dict


@pytest.mark.parametrize(
    "source",
    [
        "context.get('obj') == 1",
        "context.get('obj') != 1",
        "context.get('obj') > 1",
        "context.get('obj') <= 'a'",
        "context.get('obj') + 1",
        "1 * context.get('obj')",
        "context.get('obj') / 2",
        "-context.get('obj')",
        "not context.get('obj')",
        "context.get('obj') and 1",
        "context.get('obj') or 1",
        "context.get('obj') in [1, 'a']",
        "context.get('obj') not in [1]",
        "context['obj']['x']",
        "context['obj'][0]",
        "context['obj']",
        "context['wrapped']",
        "context['wrapped'][0] == 1",
        "context['wrapped'][0]['k']",
        "context['obj'] == context['obj']",
    ],
)
def test_user_objects_are_never_called(source: str) -> None:
    Recorder.calls.clear()
    data = {"obj": Recorder(), "wrapped": [Recorder()], "by_key": {"k": Recorder()}}
    with pytest.raises(ConditionEvaluationError) as excinfo:
        compile_condition(source).evaluate(data)
    assert Recorder.calls == []
    assert "Recorder" in excinfo.value.reason


def test_deeply_nested_context_value_is_an_evaluation_error() -> None:
    deep: list[Any] = []
    for _ in range(10_000):
        deep = [deep]
    data: dict[str, Any] = {"deep": deep, "mapping": {}}
    node: dict[str, Any] = data["mapping"]
    for _ in range(10_000):
        node["k"] = {}
        node = node["k"]
    for source in ("context.get('deep') == []", "context['deep']", "context['mapping']", "not context['deep']"):
        with pytest.raises(ConditionEvaluationError, match="nested deeper"):
            compile_condition(source).evaluate(data)
    # reading a shallow part of a deep value is fine (only what is read is copied)
    assert evaluate("context['mapping']['k']['k']['x'] == None", data) is True
    assert evaluate("context['mapping']['k']['k']['k'] != None", {"mapping": {"k": {"k": {"k": {}}}}}) is True


def test_cyclic_context_value_is_an_evaluation_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ConditionEvaluationError, match="nested deeper"):
        evaluate("context['c'] == []", {"c": cycle})


def test_huge_context_value() -> None:
    big = list(range(1_000_000))
    start = time.perf_counter()
    assert evaluate("context['big'][999999] == 999999", {"big": big}) is True
    assert time.perf_counter() - start < MAX_SECONDS_PER_CONDITION
    with pytest.raises(ConditionEvaluationError, match="more than 100000 items"):
        evaluate("context['big'] == []", {"big": big})


def test_unexpected_errors_are_wrapped() -> None:
    class Exploding(dict[str, Any]):
        pass

    class BadMapping:
        def get(self, key: str, default: Any = None) -> Any:
            raise RecursionError("deep")

    class WeirdMapping:
        def get(self, key: str, default: Any = None) -> Any:
            raise KeyError(SECRET)

    condition = compile_condition("context.get('a') == 1")
    for data in (None, 5, BadMapping(), WeirdMapping()):
        with pytest.raises(ConditionEvaluationError, match="internal error") as excinfo:
            condition.evaluate(data)  # type: ignore[arg-type]
        assert SECRET not in str(excinfo.value)
    assert condition.evaluate(Exploding(a=1)) is True


# ---------------------------------------------------------------------------------------------
# Non-mutation


def test_evaluation_never_mutates_the_input() -> None:
    data: dict[str, Any] = {
        "a": 1,
        "b": [1, 2, {"c": [3, 4]}],
        "d": {"e": {"f": "g"}, "h": None},
        "t": (1, (2, 3)),
        "s": "text",
    }
    before = copy.deepcopy(data)
    sources = [
        "context['a'] + 1 > 1",
        "context['b']",
        "context['b'][2]['c'][0] == 3",
        "context.get('d')",
        "context['d']['e']['f'] in ['g']",
        "context['missing'] == None",
        "context.get('x', [1, 2])",
        "context['t'][1] == [2, 3]",
        "not context['s'] or context['b'] == context['d']",
    ]
    for source in sources:
        result = compile_condition(source).evaluate(data)
        if isinstance(result, list):
            result.append("mutated")
        elif isinstance(result, dict):
            result["mutated"] = True
    assert data == before


def test_module_never_calls_eval_exec_or_compile() -> None:
    tree = ast.parse(inspect.getsource(conditions))
    forbidden = {"eval", "exec", "compile", "__import__"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            assert name not in forbidden, f"line {node.lineno} calls {name}"
        if isinstance(node, ast.Name):
            assert node.id not in forbidden, f"line {node.lineno} references {node.id}"


# ---------------------------------------------------------------------------------------------
# Property-based fuzz

CONTEXT_KEYS = ["a", "b", "c", "items", "x"]

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats()
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from([*CONTEXT_KEYS, "0"]) | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=12,
)
CONTEXTS = st.dictionaries(st.sampled_from(CONTEXT_KEYS), JSON_VALUES, max_size=5)

VALID_LEAVES = [
    # reads
    "context.get('a')",
    "context['b']",
    "context.get('c', 0)",
    "context.get('x', [1, 'a'])",
    "context['a']['b']",
    "context['a'][0]",
    "context.get('items')[0]",
    "context['items'][-1]['a']",
    # literals, including out-of-range ones
    "0",
    "1",
    "-1",
    "2.5",
    "1e15",
    "1e308",
    "1e309",
    "9" * 30,
    "9" * 40,
    "'a'",
    "''",
    "'zoë'",
    "True",
    "False",
    "None",
    "[1, 2, 'a']",
    "(True,)",
    "[]",
]
FORBIDDEN_LEAVES = [
    "context",
    "open",
    "__class__",
    "context.__class__",
    "b'x'",
    "f'{1}'",
    "1j",
    "...",
    "{}",
    "{1}",
    "lambda: 1",
    "x",
    "context.get",
    "context.update({})",
]
LEAVES = [*VALID_LEAVES, *FORBIDDEN_LEAVES]
BINARY = ["+", "-", "*", "/", "//", "%", "==", "!=", "<", "<=", ">", ">=", "and", "or"]
BINARY_FORBIDDEN = ["**", "<<", ">>", "&", "|", "^", "@", "is", "is not", "if 1 else", ":="]
TOKENS = [
    *LEAVES,
    *BINARY,
    *BINARY_FORBIDDEN,
    "in",
    "not in",
    "not",
    "~",
    ".",
    ",",
    ":",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "__class__",
    "__subclasses__()",
    "lambda",
    "for",
    "=",
    "'",
    "10**100",
]


def _binary(parts: tuple[str, str, str, bool]) -> str:
    left, op, right, parenthesise = parts
    text = f"{left} {op} {right}"
    return f"({text})" if parenthesise else text


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(BINARY * 4 + BINARY_FORBIDDEN), children, st.booleans()).map(_binary),
        st.tuples(st.sampled_from(["not ", "-", "+", "~", "- -"]), children).map("".join),
        st.tuples(
            children,
            st.sampled_from([" in ", " not in "]),
            st.sampled_from(["[1, 'a', None]", "[]", "(True, 2.0)", "context.get('a')", "'abc'"]),
        ).map("".join),
        children.map(lambda s: f"({s})"),
        st.tuples(children, st.sampled_from(["[0]", "['a']", "[-1]", ".real", "()", "[1:2]"])).map("".join),
    )


# Mostly valid leaves, so that many sources compile and get evaluated; forbidden ones mixed in.
GRAMMAR = st.recursive(st.sampled_from(VALID_LEAVES * 4 + FORBIDDEN_LEAVES), _extend, max_leaves=16)
TOKEN_SOUP = st.tuples(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=25), st.sampled_from([" ", ""])).map(
    lambda parts: parts[1].join(parts[0])
)


def _compile_or_none(source: str) -> Condition | None:
    try:
        return compile_condition(source)
    except ConditionError:
        return None


def _evaluate_or_error(condition: Condition, context: dict[str, Any]) -> tuple[Any, Exception | None]:
    try:
        return condition.evaluate(context), None
    except ConditionEvaluationError as exc:
        return None, exc


def _seconds(source: str, context: dict[str, Any] | None) -> float:
    """Wall-clock time of compile (+ evaluate when ``context`` is given), GC paused."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        condition = _compile_or_none(source)
        if condition is not None and context is not None:
            _evaluate_or_error(condition, context)
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def _check(source: str, data: st.DataObject) -> None:
    """Compile ``source``; if it compiles, evaluate it against a drawn context.

    Only the evaluator's own errors may come out, and each compile + evaluate must be fast. The
    context is drawn only for sources that compile, which keeps the fuzz cheap.
    """
    condition = _compile_or_none(source)  # anything but a ConditionError fails the test
    context = None
    if condition is not None:
        context = data.draw(CONTEXTS, label="context")
        before = copy.deepcopy(context)
        result, error = _evaluate_or_error(condition, context)
        if error is not None:
            assert isinstance(error, ConditionEvaluationError)
            assert error.source == source
        else:
            assert result is None or type(result) in (bool, int, float, str, list, dict)
        assert repr(context) == repr(before)  # repr: NaN != NaN
    # On a shared machine one measurement can catch a pause that is not the input's fault; an
    # input is slow only if its best of three runs is slow.
    elapsed = min(_seconds(source, context) for _ in range(3))
    FUZZ_MAX_SECONDS[0] = max(FUZZ_MAX_SECONDS[0], elapsed)
    assert elapsed < MAX_SECONDS_PER_CONDITION, f"{elapsed:.3f}s for {source!r}"


@FUZZ_SETTINGS
@given(source=st.text(), data=st.data())
def test_fuzz_arbitrary_text(source: str, data: st.DataObject) -> None:
    _check(source, data)


@FUZZ_SETTINGS
@given(source=GRAMMAR | TOKEN_SOUP, data=st.data())
def test_fuzz_grammar(source: str, data: st.DataObject) -> None:
    _check(source, data)
