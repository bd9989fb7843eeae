"""Workflow documents: the declarative definition format tenants upload (JSON or YAML).

A document compiles to the same :class:`~flowdeck_engine.WorkflowDefinition` as the Python class
API::

    from flowdeck_engine.documents import load_definition

    definition = load_definition(path.read_bytes(), syntax="yaml")

Invalid documents raise :class:`DocumentError` carrying every problem, each with a stable code and
a JSON pointer. The format is defined by the Structs in :mod:`~flowdeck_engine.documents.model`;
its JSON Schema is published as ``workflow-document.schema.json`` in this package.
"""

from __future__ import annotations

from flowdeck_engine.documents.actions import ActionFunction, ActionRegistry, Platform
from flowdeck_engine.documents.durations import format_duration, parse_duration
from flowdeck_engine.documents.errors import (
    PROBLEM_CODES,
    DocumentError,
    DocumentProblem,
    ForbiddenHostError,
    HttpCallError,
    NotExpressibleError,
)
from flowdeck_engine.documents.export import export_document
from flowdeck_engine.documents.http import (
    HttpPolicy,
    HttpRequest,
    HttpResponse,
    HttpTransport,
    StdlibTransport,
    is_forbidden_address,
)
from flowdeck_engine.documents.limits import DocumentLimits
from flowdeck_engine.documents.model import (
    FORMAT,
    EdgeSpec,
    EmitAction,
    EscalationSpec,
    ExternalAction,
    GatewayStepSpec,
    HttpAction,
    HumanStepSpec,
    MachineStepSpec,
    PlatformAction,
    RetrySpec,
    SetAction,
    StepSpec,
    TimerStepSpec,
    WebhookStepSpec,
    WorkflowDocument,
)
from flowdeck_engine.documents.schema import SCHEMA_PATH, document_schema
from flowdeck_engine.documents.source import Syntax, encode_document, syntax_for
from flowdeck_engine.documents.steps import (
    EmitEventStep,
    ExpressionTimerStep,
    ExternalJobStep,
    HttpCallStep,
    HumanTaskStep,
    PlatformActionStep,
    SetValuesStep,
)
from flowdeck_engine.documents.validation import (
    check_document,
    compile_document,
    load_definition,
    load_document,
    validate_document,
)

__all__ = [
    "FORMAT",
    "PROBLEM_CODES",
    "SCHEMA_PATH",
    "ActionFunction",
    "ActionRegistry",
    "DocumentError",
    "DocumentLimits",
    "DocumentProblem",
    "EdgeSpec",
    "EmitAction",
    "EmitEventStep",
    "EscalationSpec",
    "ExpressionTimerStep",
    "ExternalAction",
    "ExternalJobStep",
    "ForbiddenHostError",
    "GatewayStepSpec",
    "HttpAction",
    "HttpCallError",
    "HttpCallStep",
    "HttpPolicy",
    "HttpRequest",
    "HttpResponse",
    "HttpTransport",
    "HumanStepSpec",
    "HumanTaskStep",
    "MachineStepSpec",
    "NotExpressibleError",
    "Platform",
    "PlatformAction",
    "PlatformActionStep",
    "RetrySpec",
    "SetAction",
    "SetValuesStep",
    "StdlibTransport",
    "StepSpec",
    "Syntax",
    "TimerStepSpec",
    "WebhookStepSpec",
    "WorkflowDocument",
    "check_document",
    "compile_document",
    "document_schema",
    "encode_document",
    "export_document",
    "format_duration",
    "is_forbidden_address",
    "load_definition",
    "load_document",
    "parse_duration",
    "syntax_for",
    "validate_document",
]
