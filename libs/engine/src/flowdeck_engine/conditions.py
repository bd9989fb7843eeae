"""Safe evaluation of edge conditions written by tenants.

Conditions keep the litestar-workflows syntax (``context.get('score') >= 80``) but are hostile
input, so they are never handed to ``eval``. :func:`compile_condition` parses the source with
:func:`ast.parse`, checks the tree against a small whitelist and size caps, and turns it into a
tree of closures; :meth:`Condition.evaluate` then runs those closures against a mapping.

The language:

* literals: ``None``, ``True``/``False``, ints, finite floats and strings of capped size, and
  literal lists/tuples of those;
* reads: ``context.get('key')``, ``context.get('key', <literal>)`` and ``context['key']``,
  optionally followed by subscripts with a string or integer literal (``context['a']['b']``,
  ``context.get('items')[0]``). A missing key (or an index out of range) reads as ``None``;
* comparisons ``== != < <= > >=`` (chained too), ``in``/``not in`` against a literal list;
* ``and``/``or`` (lazy, returning an operand as in Python), ``not``, unary ``-``/``+``;
* arithmetic ``+ - * / // %`` on numbers, with operands and results capped.

Values read from the context are converted to a JSON copy (``None``, ``bool``, ``int``,
``float``, ``str``, ``list``, ``dict`` with string keys) before the expression sees them;
anything else is a :class:`~flowdeck_engine.exceptions.ConditionEvaluationError`, so a condition
can never run code of the objects it reads. Equality is type aware (``True != 1``) and ordering
is only defined between two numbers or two strings. Error messages name types, never values.
"""

from __future__ import annotations

import ast
import functools
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from flowdeck_engine.exceptions import (
    ConditionEvaluationError,
    ConditionLimitError,
    ConditionSyntaxError,
    ValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    _Fn = Callable[[Mapping[str, Any]], Any]
    _Test = Callable[[Any, Any], bool]

__all__ = ["DEFAULT_LIMITS", "Condition", "ConditionLimits", "compile_condition"]


@dataclass(frozen=True, slots=True)
class ConditionLimits:
    """Size caps applied when a condition is compiled and evaluated.

    ``max_length`` .. ``max_int_digits`` are checked at compile time (ConditionLimitError);
    ``max_operand``, ``max_value_depth`` and ``max_value_items`` at evaluation time
    (ConditionEvaluationError).
    """

    max_length: int = 1000
    """Characters of source."""
    max_nodes: int = 200
    """AST nodes (expression contexts such as ``Load`` are not counted)."""
    max_depth: int = 32
    """Nesting depth of the AST."""
    max_string: int = 1000
    """Characters in one string literal."""
    max_list: int = 100
    """Items in one literal list or tuple."""
    max_int_digits: int = 30
    """Decimal digits in one integer literal."""
    max_operand: float = 1e15
    """Largest absolute value allowed as an arithmetic operand or result."""
    max_value_depth: int = 64
    """Nesting depth of a list/dict read from the context."""
    max_value_items: int = 100_000
    """Items (list elements and dict entries, all levels) of one list/dict read from the context."""

    def __post_init__(self) -> None:
        for name in (
            "max_length",
            "max_nodes",
            "max_depth",
            "max_string",
            "max_list",
            "max_int_digits",
            "max_value_depth",
            "max_value_items",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValidationError(f"ConditionLimits.{name} must be a positive int")
        operand = self.max_operand
        if type(operand) not in (int, float) or not (math.isfinite(operand) and operand > 0):
            raise ValidationError("ConditionLimits.max_operand must be a positive finite number")


DEFAULT_LIMITS: Final = ConditionLimits()

_MISSING: Final = object()
_NOT_LITERAL: Final = object()
# Stand-ins for True/False inside membership sets, so that ``True in [1]`` is False.
_TRUE: Final = object()
_FALSE: Final = object()
_TYPE_NAME: Final[Any] = type.__dict__["__name__"]
_CONTEXT: Final = "context"


class Condition:
    """A compiled condition: immutable, reusable and safe to share between threads.

    Build one with :func:`compile_condition`.
    """

    __slots__ = ("_fn", "source")

    source: str
    _fn: _Fn

    def __init__(self, source: str, fn: _Fn) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError("Condition is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("Condition is immutable")

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def evaluate(self, data: Mapping[str, Any]) -> Any:
        """Return the value of the expression for ``data`` (the workflow context).

        The value is a JSON value (a fresh copy when it is a list or dict). Raises
        :class:`ConditionEvaluationError` for every failure; no other exception escapes.
        """
        try:
            return self._fn(data)
        except ConditionEvaluationError:
            raise
        except Exception as exc:  # a bug or an exotic mapping: never leak the original error
            reason = f"internal error ({_TYPE_NAME.__get__(type(exc), type)})"
            raise ConditionEvaluationError(self.source, reason) from None

    def test(self, data: Mapping[str, Any]) -> bool:
        """Return the truthiness of :meth:`evaluate` (what an edge uses to decide if it applies)."""
        return bool(self.evaluate(data))


def compile_condition(source: str, limits: ConditionLimits = DEFAULT_LIMITS) -> Condition:
    """Parse, check and compile a tenant's condition.

    Raises :class:`ConditionLimitError` when a size cap is exceeded and
    :class:`ConditionSyntaxError` when the source is not valid or uses anything outside the
    condition language. Surrounding whitespace is ignored. Compiled conditions are immutable,
    so the most recent few thousand are kept and shared (a definition's conditions are compiled
    when it is validated and again when its kernel is built).
    """
    if not isinstance(source, str):  # a tenant's document may put anything here
        raise ConditionSyntaxError("", "a condition must be a string")
    return _compile(source, limits)


@functools.lru_cache(maxsize=4096)
def _compile(source: str, limits: ConditionLimits) -> Condition:
    raw: object = source
    if not isinstance(raw, str):
        raise ConditionSyntaxError("", "a condition must be a string")
    if len(source) > limits.max_length:
        raise ConditionLimitError(source, f"longer than {limits.max_length} characters")
    text = source.strip()
    if not text:
        raise ConditionSyntaxError(source, "the condition is empty")
    try:
        tree = ast.parse(text, filename="<condition>", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, Warning) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) and exc.msg else "cannot be parsed"
        raise ConditionSyntaxError(source, f"syntax error: {detail}") from None
    _check_size(source, tree, limits)
    try:
        fn = _Compiler(source, limits).expr(tree.body)
    except RecursionError:
        raise ConditionLimitError(source, "nested too deeply") from None
    return Condition(source, fn)


def _check_size(source: str, tree: ast.Expression, limits: ConditionLimits) -> None:
    """Count nodes and measure depth, a level at a time (no recursion, no generators).

    Every AST node counts but expression contexts (``Load``): operators, ``keyword`` nodes and
    the like do. The node types of the condition language are taken apart by hand (the hot
    path); any other type through its ``_fields``.
    """
    max_depth = limits.max_depth
    max_nodes = limits.max_nodes
    nodes = 0
    depth = 0
    level: list[Any] = [tree]
    while level:
        if depth > max_depth:
            raise ConditionLimitError(source, f"nested deeper than {max_depth} levels")
        nodes += len(level)
        if nodes > max_nodes:
            raise ConditionLimitError(source, f"more than {max_nodes} syntax nodes")
        below: list[Any] = []
        append = below.append
        extend = below.extend
        for node in level:
            t = type(node)
            if t in _LEAVES:
                continue
            if t is _Compare:
                append(node.left)
                extend(node.ops)
                extend(node.comparators)
            elif t is _Call:
                append(node.func)
                extend(node.args)
                extend(node.keywords)
            elif t is _BoolOp:
                append(node.op)
                extend(node.values)
            elif t is _BinOp:
                append(node.left)
                append(node.op)
                append(node.right)
            elif t is _UnaryOp:
                append(node.op)
                append(node.operand)
            elif t is _Attribute or t is _Subscript:
                append(node.value)
                if t is _Subscript:
                    append(node.slice)
            elif t is _List or t is _Tuple:
                extend(node.elts)
            elif t is _Expression:
                append(node.body)
            else:
                for name in node._fields:
                    value = getattr(node, name, None)
                    if isinstance(value, ast.AST):
                        if not isinstance(value, ast.expr_context):
                            append(value)
                    elif isinstance(value, list):
                        extend(item for item in value if isinstance(item, ast.AST))
        level = below
        depth += 1


_Compare: Final = ast.Compare
_Call: Final = ast.Call
_BoolOp: Final = ast.BoolOp
_BinOp: Final = ast.BinOp
_UnaryOp: Final = ast.UnaryOp
_Attribute: Final = ast.Attribute
_Subscript: Final = ast.Subscript
_List: Final = ast.List
_Tuple: Final = ast.Tuple
_Expression: Final = ast.Expression
_Constant: Final = ast.Constant
_Name: Final = ast.Name
_LEAVES: Final[frozenset[type[ast.AST]]] = frozenset(
    {ast.Constant, ast.Name}
    | {op for base in (ast.operator, ast.cmpop, ast.boolop, ast.unaryop) for op in base.__subclasses__()}
)
"""Node types with no child nodes (a ``Name``'s only child is its expression context)."""
_SIGNS: Final = (ast.USub, ast.UAdd)
_SEQUENCES: Final = (ast.List, ast.Tuple)
_IDENTITY: Final = (ast.Is, ast.IsNot)
_MEMBERSHIP: Final = (ast.In, ast.NotIn)


# ---------------------------------------------------------------------------------------------
# Values


def _kind(value: Any) -> str:
    """Name the type of a value for messages (never the value itself, never user code)."""
    if value is None:
        return "None"
    t = type(value)
    if t is bool:
        return "bool"
    if t is int:
        return "int"
    if t is float:
        return "float"
    if t is str:
        return "str"
    if t is list or t is tuple:
        return "list"
    if t is dict:
        return "dict"
    for base, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), (dict, "dict")):
        if issubclass(t, base):
            return name
    if issubclass(t, (list, tuple)):
        return "list"
    return f"unsupported type {_TYPE_NAME.__get__(t, type)}"


def _container(t: type) -> str | None:
    """Return ``"d"`` for dicts, ``"l"`` for lists/tuples (subclasses too), else None."""
    if t is dict:
        return "d"
    if t is list or t is tuple:
        return "l"
    if issubclass(t, dict):
        return "d"
    if issubclass(t, (list, tuple)):
        return "l"
    return None


def _scalar(value: Any, fail: Callable[[str], ConditionEvaluationError]) -> Any:
    """Convert a non-container context value to an exact JSON scalar (no user code runs)."""
    t = type(value)
    if value is None or t is str or t is int or t is bool:
        return value
    if t is float:
        if math.isfinite(value):
            return value
        raise fail("the context holds a float that is not finite")
    # Subclasses: copy through the base type's own C implementation, never the subclass's.
    if issubclass(t, str):
        return str.__str__(value)
    if issubclass(t, int):
        return int.__int__(value)
    if issubclass(t, float):
        number = float.__float__(value)
        if math.isfinite(number):
            return number
        raise fail("the context holds a float that is not finite")
    raise fail(f"the context holds a value of {_kind(value)}")


def _to_json(value: Any, limits: ConditionLimits, fail: Callable[[str], ConditionEvaluationError]) -> Any:
    """Return a JSON copy of a value read from the context (iterative; depth and size capped)."""
    kind = _container(type(value))
    if kind is None:
        return _scalar(value, fail)
    max_depth = limits.max_value_depth
    budget = limits.max_value_items
    root: Any = {} if kind == "d" else []
    stack: list[tuple[Any, Any, int]] = [(value, root, 1)]
    count = 0
    while stack:
        src, dst, depth = stack.pop()
        pairs: Any
        if type(dst) is dict:
            pairs = dict.items(src)
        elif issubclass(type(src), list):
            pairs = enumerate(list.__iter__(src))
        else:
            pairs = enumerate(tuple.__iter__(src))
        for key, item in pairs:
            count += 1
            if count > budget:
                raise fail(f"a value read from the context has more than {budget} items")
            t = type(item)
            converted: Any
            if item is None or t is str or t is int or t is bool:
                converted = item
            else:
                sub = _container(t)
                if sub is None:
                    converted = _scalar(item, fail)
                else:
                    if depth >= max_depth:
                        raise fail(f"a value read from the context is nested deeper than {max_depth} levels")
                    converted = {} if sub == "d" else []
                    stack.append((item, converted, depth + 1))
            if type(dst) is dict:
                if type(key) is not str:
                    if not issubclass(type(key), str):
                        raise fail("the context holds a dict with a key that is not a string")
                    key = str.__str__(key)
                dst[key] = converted
            else:
                dst.append(converted)
    return root


def _step(value: Any, key: str | int, fail: Callable[[str], ConditionEvaluationError]) -> Any:
    """Index a raw context value by a literal key; a missing key or index reads as None."""
    kind = _container(type(value))
    if kind == "d":
        if type(key) is not str:
            raise fail("cannot index a dict with an int")
        return dict.get(value, key)
    if kind == "l":
        if type(key) is not int:
            raise fail("cannot index a list with a str")
        if issubclass(type(value), list):
            if -list.__len__(value) <= key < list.__len__(value):
                return list.__getitem__(value, key)
            return None
        if -tuple.__len__(value) <= key < tuple.__len__(value):
            return tuple.__getitem__(value, key)
        return None
    raise fail(f"cannot index {_kind(value)}")


def _eq(a: Any, b: Any) -> bool:
    """Type-aware equality of two JSON values: ``True != 1``, ``1 == 1.0``."""
    ta = type(a)
    tb = type(b)
    if ta is tb:
        if ta is list:
            return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
        if ta is dict:
            return a.keys() == b.keys() and all(_eq(a[k], b[k]) for k in a)
        return bool(a == b)
    if (ta is int and tb is float) or (ta is float and tb is int):
        return bool(a == b)
    return False


def _member_key(value: Any) -> Any:
    """Map a scalar to its key in a membership set (bools get stand-ins)."""
    if value is True:
        return _TRUE
    if value is False:
        return _FALSE
    return value


# ---------------------------------------------------------------------------------------------
# Compiler

_ORDERING: Final[dict[type[ast.cmpop], tuple[Callable[[Any, Any], Any], str]]] = {
    ast.Lt: (operator.lt, "<"),
    ast.LtE: (operator.le, "<="),
    ast.Gt: (operator.gt, ">"),
    ast.GtE: (operator.ge, ">="),
}

_ARITHMETIC: Final[dict[type[ast.operator], tuple[Callable[[Any, Any], Any], str]]] = {
    ast.Add: (operator.add, "+"),
    ast.Sub: (operator.sub, "-"),
    ast.Mult: (operator.mul, "*"),
    ast.Div: (operator.truediv, "/"),
    ast.FloorDiv: (operator.floordiv, "//"),
    ast.Mod: (operator.mod, "%"),
}

_FORBIDDEN_OPERATORS: Final[dict[type[ast.operator], str]] = {
    ast.Pow: "the ** operator is not allowed",
    ast.LShift: "shift operators are not allowed",
    ast.RShift: "shift operators are not allowed",
    ast.BitAnd: "bitwise operators are not allowed",
    ast.BitOr: "bitwise operators are not allowed",
    ast.BitXor: "bitwise operators are not allowed",
    ast.MatMult: "the @ operator is not allowed",
}

_FORBIDDEN_NODES: Final[dict[type[ast.AST], str]] = {
    ast.Attribute: "attribute access is not allowed (only context.get(...) calls)",
    ast.Call: "function calls other than context.get(...) are not allowed",
    ast.Lambda: "lambda expressions are not allowed",
    ast.IfExp: "conditional expressions (x if c else y) are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.Starred: "starred expressions are not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Slice: "slices are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
}


def _const(value: Any) -> _Fn:
    if type(value) is tuple:
        items = value

        def const_list(data: Mapping[str, Any]) -> Any:
            return list(items)

        return const_list

    def const(data: Mapping[str, Any]) -> Any:
        return value

    return const


def _literal_kind(value: Any) -> str:
    if type(value) is tuple:
        return "list"
    return _kind(value)


class _Compiler:
    """Turns a checked AST into closures. One instance per compile; not shared."""

    __slots__ = ("_fail_fn", "_int_bound", "limits", "source")

    def __init__(self, source: str, limits: ConditionLimits) -> None:
        self.source = source
        self.limits = limits
        self._int_bound: int = 10**limits.max_int_digits  # the smallest int with more digits than allowed
        self._fail_fn: Callable[[str], ConditionEvaluationError] | None = None

    # -- errors -----------------------------------------------------------------------------

    def _syntax(self, reason: str) -> ConditionSyntaxError:
        return ConditionSyntaxError(self.source, reason)

    def _limit(self, reason: str) -> ConditionLimitError:
        return ConditionLimitError(self.source, reason)

    def _fail(self) -> Callable[[str], ConditionEvaluationError]:
        """The error factory of this condition's evaluation failures (one per condition)."""
        fail = self._fail_fn
        if fail is None:
            source = self.source

            def fail(reason: str) -> ConditionEvaluationError:
                return ConditionEvaluationError(source, reason)

            self._fail_fn = fail
        return fail

    def _forbidden(self, node: ast.AST) -> ConditionSyntaxError:
        for cls, reason in _FORBIDDEN_NODES.items():
            if isinstance(node, cls):
                return self._syntax(reason)
        return self._syntax(f"{type(node).__name__} expressions are not allowed")

    # -- literals ---------------------------------------------------------------------------

    def _constant(self, value: object) -> Any:
        if value is None or value is True or value is False:
            return value
        t = type(value)
        if t is int:
            assert isinstance(value, int)
            if abs(value) >= self._int_bound:
                raise self._limit(f"an integer literal has more than {self.limits.max_int_digits} digits")
            return value
        if t is float:
            assert isinstance(value, float)
            if not math.isfinite(value):
                raise self._limit("a float literal is out of range")
            return value
        if t is str:
            assert isinstance(value, str)
            if len(value) > self.limits.max_string:
                raise self._limit(f"a string literal is longer than {self.limits.max_string} characters")
            return value
        if t is bytes:
            raise self._syntax("bytes literals are not allowed")
        if t is complex:
            raise self._syntax("complex number literals are not allowed")
        if value is Ellipsis:
            raise self._syntax("'...' is not allowed")
        raise self._syntax(f"constants of type {t.__name__} are not allowed")

    def _scalar_literal(self, node: ast.expr) -> Any:
        """Return the value of a scalar literal (``-5`` included) or ``_NOT_LITERAL``."""
        if isinstance(node, ast.Constant):
            return self._constant(node.value)
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, _SIGNS)
            and isinstance(node.operand, ast.Constant)
            and type(node.operand.value) in (int, float)
        ):
            number = self._constant(node.operand.value)
            return -number if isinstance(node.op, ast.USub) else number
        return _NOT_LITERAL

    def _literal(self, node: ast.expr) -> Any:
        """Return a scalar literal, a tuple for a literal list/tuple, or ``_NOT_LITERAL``."""
        if isinstance(node, _SEQUENCES):
            if len(node.elts) > self.limits.max_list:
                raise self._limit(f"a literal list has more than {self.limits.max_list} items")
            items = []
            for elt in node.elts:
                value = self._scalar_literal(elt)
                if value is _NOT_LITERAL:
                    if isinstance(elt, ast.Starred):
                        raise self._syntax("starred expressions are not allowed")
                    raise self._syntax("literal lists may only contain literal values")
                items.append(value)
            return tuple(items)
        return self._scalar_literal(node)

    # -- expressions ------------------------------------------------------------------------

    def expr(self, node: ast.expr) -> _Fn:
        """Compile one expression node."""
        t = type(node)  # the common node types first; none of these five is a literal
        if t is _Compare:
            return self._compare(node)  # type: ignore[arg-type]
        if t is _BoolOp:
            return self._boolop(node)  # type: ignore[arg-type]
        if t is _Call or t is _Subscript or t is _Name:
            return self._read(node)
        if t is _BinOp:
            return self._binop(node)  # type: ignore[arg-type]
        if t is _Constant:
            return _const(self._constant(node.value))  # type: ignore[attr-defined]
        value = self._literal(node)
        if value is not _NOT_LITERAL:
            return _const(value)
        if isinstance(node, ast.Compare):
            return self._compare(node)
        if isinstance(node, ast.BoolOp):
            return self._boolop(node)
        if isinstance(node, ast.UnaryOp):
            return self._unary(node)
        if isinstance(node, ast.BinOp):
            return self._binop(node)
        if isinstance(node, ast.Subscript | ast.Call | ast.Name):
            return self._read(node)
        raise self._forbidden(node)

    def _boolop(self, node: ast.BoolOp) -> _Fn:
        fns = tuple([self.expr(value) for value in node.values])
        if isinstance(node.op, ast.And):
            if len(fns) == 2:
                first, second = fns

                def and2(data: Mapping[str, Any]) -> Any:
                    return first(data) and second(data)

                return and2

            def and_n(data: Mapping[str, Any]) -> Any:
                result: Any = None
                for fn in fns:
                    result = fn(data)
                    if not result:
                        return result
                return result

            return and_n
        if len(fns) == 2:
            first, second = fns

            def or2(data: Mapping[str, Any]) -> Any:
                return first(data) or second(data)

            return or2

        def or_n(data: Mapping[str, Any]) -> Any:
            result: Any = None
            for fn in fns:
                result = fn(data)
                if result:
                    return result
            return result

        return or_n

    def _unary(self, node: ast.UnaryOp) -> _Fn:
        if isinstance(node.op, ast.Invert):
            raise self._syntax("the ~ operator is not allowed")
        operand = self.expr(node.operand)
        if isinstance(node.op, ast.Not):

            def not_(data: Mapping[str, Any]) -> Any:
                return not operand(data)

            return not_
        literal = self._literal(node.operand)
        if literal is not _NOT_LITERAL and type(literal) not in (int, float):
            raise self._syntax(f"unary - and + need a number, not a {_literal_kind(literal)} literal")
        negate = isinstance(node.op, ast.USub)
        symbol = "-" if negate else "+"
        cap = self.limits.max_operand
        fail = self._fail()

        def sign(data: Mapping[str, Any]) -> Any:
            value = operand(data)
            t = type(value)
            if t is not int and t is not float:
                raise fail(f"cannot apply unary {symbol} to {_kind(value)}")
            if not -cap <= value <= cap:
                raise fail(f"an operand of unary {symbol} exceeds the limit of {cap:g}")
            return -value if negate else value

        return sign

    def _binop(self, node: ast.BinOp) -> _Fn:
        op_type = type(node.op)
        if op_type in _FORBIDDEN_OPERATORS:
            raise self._syntax(_FORBIDDEN_OPERATORS[op_type])
        if op_type not in _ARITHMETIC:
            raise self._syntax(f"the {op_type.__name__} operator is not allowed")
        opfn, symbol = _ARITHMETIC[op_type]
        for side in (node.left, node.right):
            literal = self._literal(side)
            if literal is not _NOT_LITERAL and (type(literal) not in (int, float)):
                raise self._syntax(f"arithmetic ({symbol}) needs numbers, not a {_literal_kind(literal)} literal")
        left = self.expr(node.left)
        right = self.expr(node.right)
        divides = op_type in (ast.Div, ast.FloorDiv, ast.Mod)
        cap = self.limits.max_operand
        fail = self._fail()

        def arithmetic(data: Mapping[str, Any]) -> Any:
            a = left(data)
            b = right(data)
            ta = type(a)
            tb = type(b)
            if (ta is not int and ta is not float) or (tb is not int and tb is not float):
                raise fail(f"cannot apply {symbol} to {_kind(a)} and {_kind(b)}")
            if not (-cap <= a <= cap and -cap <= b <= cap):
                raise fail(f"an operand of {symbol} exceeds the limit of {cap:g}")
            if divides and b == 0:
                raise fail("division by zero")
            result = opfn(a, b)
            if not -cap <= result <= cap:
                raise fail(f"the result of {symbol} exceeds the limit of {cap:g}")
            return result

        return arithmetic

    def _compare(self, node: ast.Compare) -> _Fn:
        operands = [node.left, *node.comparators]
        tests: list[_Test] = []
        membership: tuple[frozenset[Any], bool] | None = None
        for index, op in enumerate(node.ops):
            left_node, right_node = operands[index], operands[index + 1]
            if isinstance(op, _IDENTITY):
                raise self._syntax("'is' comparisons are not allowed; use == or !=")
            if isinstance(op, _MEMBERSHIP):
                if not isinstance(right_node, _SEQUENCES):
                    raise self._syntax("'in' needs a literal list or tuple on its right side")
                member_set = frozenset(_member_key(item) for item in self._literal(right_node))
                membership = (member_set, isinstance(op, ast.NotIn))
                tests.append(_membership(*membership))
            elif isinstance(op, ast.Eq):
                tests.append(_eq)
            elif isinstance(op, ast.NotEq):
                tests.append(_not_eq)
            else:
                opfn, symbol = _ORDERING[type(op)]
                self._check_ordering_literals(left_node, right_node, symbol)
                tests.append(self._ordering(opfn, symbol))
        if len(tests) == 1 and membership is not None:
            # ``x in [...]``: the list was checked above and is only looked up in member_set,
            # so it needs no closure of its own.
            left = self.expr(node.left)
            member_set, negated = membership

            def member(data: Mapping[str, Any]) -> Any:
                value = left(data)
                t = type(value)
                found = t is not list and t is not dict and _member_key(value) in member_set
                return not found if negated else found

            return member

        fns = tuple([self.expr(operand) for operand in operands])
        left = fns[0]

        if len(tests) == 1:
            test = tests[0]
            right = fns[1]

            def compare(data: Mapping[str, Any]) -> Any:
                return test(left(data), right(data))

            return compare

        pairs = tuple(zip(tests, fns[1:], strict=True))

        def chain(data: Mapping[str, Any]) -> Any:
            a = left(data)
            for test, fn in pairs:
                b = fn(data)
                if not test(a, b):
                    return False
                a = b
            return True

        return chain

    def _check_ordering_literals(self, left: ast.expr, right: ast.expr, symbol: str) -> None:
        kinds = []
        for side in (left, right):
            literal = self._literal(side)
            if literal is _NOT_LITERAL:
                continue
            kind = "number" if type(literal) in (int, float) else _literal_kind(literal)
            if kind not in ("number", "str"):
                raise self._syntax(f"{symbol} compares numbers or strings, not a {kind} literal")
            kinds.append(kind)
        if len(kinds) == 2 and kinds[0] != kinds[1]:
            raise self._syntax(f"{symbol} cannot compare a {kinds[0]} literal with a {kinds[1]} literal")

    def _ordering(self, opfn: Callable[[Any, Any], Any], symbol: str) -> _Test:
        fail = self._fail()

        def ordering(a: Any, b: Any) -> bool:
            ta = type(a)
            tb = type(b)
            if ((ta is int or ta is float) and (tb is int or tb is float)) or (ta is str and tb is str):
                return bool(opfn(a, b))
            raise fail(f"cannot compare {_kind(a)} with {_kind(b)} using {symbol}")

        return ordering

    # -- reads from the context -------------------------------------------------------------

    def _index(self, node: ast.expr) -> str | int:
        if isinstance(node, ast.Slice):
            raise self._syntax("slices are not allowed")
        key = self._scalar_literal(node)
        if type(key) not in (str, int):
            raise self._syntax("a subscript must be a string or integer literal")
        assert isinstance(key, str | int)
        return key

    def _get_call(self, node: ast.Call) -> tuple[str, Any]:
        func = node.func
        if not (
            isinstance(func, ast.Attribute)
            and func.attr == "get"
            and isinstance(func.value, ast.Name)
            and func.value.id == _CONTEXT
        ):
            raise self._syntax(_FORBIDDEN_NODES[ast.Call])
        if node.keywords:
            raise self._syntax("context.get(...) takes no keyword arguments")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._syntax("starred expressions are not allowed")
        if not 1 <= len(node.args) <= 2:
            raise self._syntax("context.get(...) takes a key and an optional default")
        key = self._scalar_literal(node.args[0])
        if type(key) is not str:
            raise self._syntax("the key of context.get(...) must be a string literal")
        default = None
        if len(node.args) == 2:
            default = self._literal(node.args[1])
            if default is _NOT_LITERAL:
                raise self._syntax("the default of context.get(...) must be a literal")
        assert isinstance(key, str)
        return key, default

    def _read(self, node: ast.expr) -> _Fn:
        path: list[str | int] = []
        base = node
        while isinstance(base, ast.Subscript):
            path.append(self._index(base.slice))
            base = base.value
        path.reverse()
        if isinstance(base, ast.Name):
            if base.id != _CONTEXT:
                raise self._syntax(f"unknown name {base.id[:40]!r}; the only name is 'context'")
            if not path:
                raise self._syntax("'context' can only be used as context.get('key') or context['key']")
            first = path.pop(0)
            if type(first) is not str:
                raise self._syntax("context must be indexed by a string literal")
            assert isinstance(first, str)
            key, default = first, None
        elif isinstance(base, ast.Call):
            key, default = self._get_call(base)
        elif path:
            if isinstance(base, ast.Attribute):
                raise self._forbidden(base)
            raise self._syntax("subscripts are only allowed on values read from context")
        else:
            raise self._forbidden(base)
        return self._make_read(key, default, tuple(path))

    def _make_read(self, key: str, default: Any, path: tuple[str | int, ...]) -> _Fn:
        limits = self.limits
        fail = self._fail()
        missing = _MISSING

        def lookup(data: Mapping[str, Any]) -> Any:
            if type(data) is dict or issubclass(type(data), dict):
                value = dict.get(data, key, missing)  # type: ignore[call-overload]
            else:
                value = data.get(key, missing)
            return default if value is missing else value

        if not path:

            def read(data: Mapping[str, Any]) -> Any:  # lookup(), inlined: the most common read
                if type(data) is dict or issubclass(type(data), dict):
                    value = dict.get(data, key, missing)  # type: ignore[call-overload]
                else:
                    value = data.get(key, missing)
                if value is missing:
                    value = default
                t = type(value)
                if value is None or t is str or t is int or t is bool:
                    return value
                return _to_json(value, limits, fail)

            return read

        def read_path(data: Mapping[str, Any]) -> Any:
            value = lookup(data)
            for step in path:
                value = _step(value, step, fail)
            t = type(value)
            if value is None or t is str or t is int or t is bool:
                return value
            return _to_json(value, limits, fail)

        return read_path


def _not_eq(a: Any, b: Any) -> bool:
    return not _eq(a, b)


def _membership(member_set: frozenset[Any], negated: bool) -> _Test:
    """Build the test of ``in``/``not in`` against a literal list (``b`` is that list)."""

    def membership(a: Any, b: Any) -> bool:
        t = type(a)
        found = t is not list and t is not dict and _member_key(a) in member_set
        return not found if negated else found

    return membership
