"""Document text: JSON and YAML parsed into plain values safely, and documents written back.

Both parsers keep every object a document could hold within the limits, and turn every failure
into a problem: nothing else escapes. Keys that appear twice in one object are kept once (the
first value) and reported. YAML is read as the JSON subset it is used for: the tree is built from
the parser's events, without recursion, so that deep nesting is refused at the depth limit (the C
composer of PyYAML crashes the process on a few thousand nested ``[``); anchors and aliases are
refused (they can expand a small text into a huge tree); date-like scalars stay strings; mapping
keys are always the key's text.
"""

from __future__ import annotations

import json
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Final, Literal

import msgspec
import yaml

from flowdeck_engine.documents.errors import DocumentProblem
from flowdeck_engine.documents.pointers import escape

if TYPE_CHECKING:
    from os import PathLike

    from flowdeck_engine.documents.limits import DocumentLimits
    from flowdeck_engine.documents.model import WorkflowDocument

Syntax = Literal["json", "yaml"]

_SUFFIXES: Final[dict[str, Syntax]] = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}
_LOADER: Final[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR: Final = "tag:yaml.org,2002:str"
_AS_TEXT: Final = frozenset({_STR, "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge", "tag:yaml.org,2002:value"})
_COLLECTION_TAGS: Final = frozenset({None, "!", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})
_KEY: Final[Any] = object()  # a mapping frame waits for its next key
_ScalarEvent: Final = yaml.ScalarEvent
_MappingStartEvent: Final = yaml.MappingStartEvent
_SequenceStartEvent: Final = yaml.SequenceStartEvent
_MappingEndEvent: Final = yaml.MappingEndEvent
_SequenceEndEvent: Final = yaml.SequenceEndEvent
_AliasEvent: Final = yaml.AliasEvent


class KeyedTwice(dict[str, Any]):
    """A parsed object in which ``duplicates`` appeared more than once (the first value is kept)."""

    __slots__ = ("duplicates",)

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__()
        self.duplicates: list[str] = []
        for key, value in pairs:
            if key in self:
                self.duplicates.append(key)
            else:
                self[key] = value


def syntax_for(path: str | PathLike[str]) -> Syntax | None:
    """The syntax of a document file by its suffix (``.json``, ``.yaml``, ``.yml``), else None."""
    return _SUFFIXES.get(PurePath(path).suffix.lower())


def parse_text(raw: bytes | str, syntax: Syntax, limits: DocumentLimits) -> tuple[Any, list[DocumentProblem]]:
    """Parse document text: ``(tree, [])``, or ``(None, problems)`` when it cannot be parsed at all."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        message = f"the document is {size} bytes; the limit is {limits.max_bytes}"
        return None, [DocumentProblem("limit.bytes", message)]
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, [DocumentProblem("document.syntax", f"the document is not UTF-8 text (byte {exc.start})")]
    text = raw.removeprefix("\ufeff")
    if "\x00" in text:
        return None, [DocumentProblem("value.nul", "the document contains a NUL character")]
    if syntax == "json":
        return _parse_json(text, limits)
    return _parse_yaml(text, limits)


def _parse_json(text: str, limits: DocumentLimits) -> tuple[Any, list[DocumentProblem]]:
    try:
        return json.loads(text, object_pairs_hook=_object, parse_constant=float), []
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        return None, [DocumentProblem("document.syntax", message)]
    except RecursionError:
        return None, [DocumentProblem("limit.depth", f"the document is nested deeper than {limits.max_depth} levels")]
    except ValueError as exc:  # an integer with too many digits
        return None, [DocumentProblem("document.syntax", f"invalid JSON: {exc}")]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    plain = dict(pairs)
    return plain if len(plain) == len(pairs) else KeyedTwice(pairs)


class _Stop(Exception):
    def __init__(self, code: str, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.problem = DocumentProblem(code, message, pointer)


def _parse_yaml(text: str, limits: DocumentLimits) -> tuple[Any, list[DocumentProblem]]:
    loader = _LOADER(text)
    try:
        return _compose(loader, limits.max_depth), []
    except _Stop as stop:
        return None, [stop.problem]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        return None, [DocumentProblem("document.syntax", f"invalid YAML{where}: {exc.problem or exc.context}")]
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        return None, [DocumentProblem("document.syntax", f"invalid YAML: {exc}")]
    finally:
        loader.dispose()


def _compose(loader: Any, max_depth: int) -> Any:
    """Build the tree from the parser's events (no recursion, depth capped, no aliases)."""
    resolvers = loader.yaml_implicit_resolvers
    # A plain scalar whose first character starts no implicit type (``step_1``, ``Approve``) is
    # text: what loader.resolve() answers, without its Python call and regex lookups.
    text_first = None not in resolvers and not loader.yaml_path_resolvers
    get_event = loader.get_event
    frames: list[list[Any]] = []  # [container, key (or _KEY) of a mapping, duplicate keys]
    frame: list[Any] | None = None  # frames[-1]
    root: Any = None
    documents = 0
    while (event := get_event()) is not None:
        kind = type(event)
        value: Any
        if kind is _ScalarEvent:
            if frame is not None and frame[1] is _KEY:
                frame[1] = event.value
                continue
            tag = event.tag
            value = event.value
            if not (
                (tag is None or tag == "!")
                and (not event.implicit[0] or (text_first and value and value[0] not in resolvers))
            ):
                value = _scalar(loader, event)
        elif kind is _MappingStartEvent or kind is _SequenceStartEvent:
            if frame is not None and frame[1] is _KEY:
                raise _Stop("document.syntax", "a mapping key must be a plain string", _pointer(frames))
            if event.tag not in _COLLECTION_TAGS:
                raise _Stop("value.not_json", f"the YAML tag {event.tag} is not supported", _pointer(frames))
            if len(frames) >= max_depth:
                message = f"nested deeper than {max_depth} levels"
                raise _Stop("limit.depth", message, _pointer(frames))
            mapping = kind is _MappingStartEvent
            frame = [{} if mapping else [], _KEY if mapping else None, []]
            frames.append(frame)
            continue
        elif kind is _MappingEndEvent or kind is _SequenceEndEvent:
            container, _, duplicates = frames.pop()
            frame = frames[-1] if frames else None
            value = container
            if duplicates:
                value = KeyedTwice(list(container.items()))
                value.duplicates = duplicates
        elif kind is _AliasEvent:
            raise _Stop("document.yaml_alias", "YAML anchors and aliases are not supported", _pointer(frames))
        else:
            if frame is not None and frame[1] is _KEY:  # never: these events come between documents
                raise _Stop("document.syntax", "a mapping key must be a plain string", _pointer(frames))
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _Stop("document.syntax", "a file holds one YAML document, not several")
            continue
        if frame is None:
            root = value
            continue
        container = frame[0]
        if type(container) is list:
            container.append(value)
        else:
            key = frame[1]
            if key in container:
                frame[2].append(key)
            else:
                container[key] = value
            frame[1] = _KEY
    return root


def _scalar(loader: Any, event: Any) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        if not event.implicit[0]:  # quoted
            return event.value
        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag in _AS_TEXT:
            return event.value
    return loader.construct_object(yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style))


def _pointer(frames: list[list[Any]]) -> str:
    parts = [escape(len(c) if type(c) is list else k) for c, k, _ in frames if type(c) is list or k is not _KEY]
    return "".join("/" + p for p in parts)


def encode_document(document: WorkflowDocument, syntax: Syntax = "json") -> bytes:
    """The document as text: indented JSON, or block-style YAML (fields in their defined order)."""
    if syntax == "json":
        return msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    text: str = yaml.safe_dump(msgspec.to_builtins(document), sort_keys=False, allow_unicode=True, width=120)
    return text.encode()
