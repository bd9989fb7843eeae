"""Flowdeck's workflow engine: the litestar-workflows API on one pure kernel.

Import everything from here::

    from flowdeck_engine import WorkflowDefinition, Edge, BaseMachineStep, LocalExecutionEngine
"""

from __future__ import annotations

from flowdeck_engine.clock import Clock, FakeClock, SystemClock
from flowdeck_engine.conditions import Condition, ConditionLimits, compile_condition
from flowdeck_engine.context import StepExecution, WorkflowContext
from flowdeck_engine.definition import Edge, WorkflowDefinition
from flowdeck_engine.enums import GatewayMode, StepStatus, StepType, TaskStatus, WorkflowStatus
from flowdeck_engine.events import (
    CustomEvent,
    EventBus,
    HumanTaskCompleted,
    HumanTaskCreated,
    HumanTaskReassigned,
    InMemoryEventBus,
    StepExecuted,
    WorkflowCanceled,
    WorkflowCompleted,
    WorkflowEvent,
    WorkflowFailed,
    WorkflowStarted,
)
from flowdeck_engine.exceptions import (
    ConcurrencyError,
    ConditionError,
    ConditionEvaluationError,
    ConditionLimitError,
    ConditionSyntaxError,
    DuplicateDefinitionError,
    InstanceNotFoundError,
    InvalidTransitionError,
    NoPathError,
    StepExecutionError,
    StepTimeoutError,
    TaskNotFoundError,
    TransitionLimitError,
    ValidationError,
    WorkflowNotFoundError,
    WorkflowsError,
)
from flowdeck_engine.graph import GraphProblem, WorkflowGraph
from flowdeck_engine.groups import ConditionalGroup, ParallelGroup, SequentialGroup
from flowdeck_engine.instance import HumanTask, WorkflowInstance
from flowdeck_engine.kernel import InstanceState, Kernel, Transition
from flowdeck_engine.local import ExecutionEngine, LocalExecutionEngine
from flowdeck_engine.memory import ClockDispatcher, InMemoryInstanceStore
from flowdeck_engine.policies import EngineLimits, Escalation, RetryPolicy
from flowdeck_engine.ports import Dispatcher, InstanceStore, Interceptor, StepQueue
from flowdeck_engine.registry import WorkflowRegistry
from flowdeck_engine.steps import (
    BaseHumanStep,
    BaseMachineStep,
    BaseStep,
    GatewayStep,
    Step,
    TimerStep,
    WebhookStep,
)

__all__ = [
    "BaseHumanStep",
    "BaseMachineStep",
    "BaseStep",
    "Clock",
    "ClockDispatcher",
    "ConcurrencyError",
    "Condition",
    "ConditionError",
    "ConditionEvaluationError",
    "ConditionLimitError",
    "ConditionLimits",
    "ConditionSyntaxError",
    "ConditionalGroup",
    "CustomEvent",
    "Dispatcher",
    "DuplicateDefinitionError",
    "Edge",
    "EngineLimits",
    "Escalation",
    "EventBus",
    "ExecutionEngine",
    "FakeClock",
    "GatewayMode",
    "GatewayStep",
    "GraphProblem",
    "HumanTask",
    "HumanTaskCompleted",
    "HumanTaskCreated",
    "HumanTaskReassigned",
    "InMemoryEventBus",
    "InMemoryInstanceStore",
    "InstanceNotFoundError",
    "InstanceState",
    "InstanceStore",
    "Interceptor",
    "InvalidTransitionError",
    "Kernel",
    "LocalExecutionEngine",
    "NoPathError",
    "ParallelGroup",
    "RetryPolicy",
    "SequentialGroup",
    "Step",
    "StepExecuted",
    "StepExecution",
    "StepExecutionError",
    "StepQueue",
    "StepStatus",
    "StepTimeoutError",
    "StepType",
    "SystemClock",
    "TaskNotFoundError",
    "TaskStatus",
    "TimerStep",
    "Transition",
    "TransitionLimitError",
    "ValidationError",
    "WebhookStep",
    "WorkflowCanceled",
    "WorkflowCompleted",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowEvent",
    "WorkflowFailed",
    "WorkflowGraph",
    "WorkflowInstance",
    "WorkflowNotFoundError",
    "WorkflowRegistry",
    "WorkflowStarted",
    "WorkflowStatus",
    "WorkflowsError",
    "compile_condition",
]
