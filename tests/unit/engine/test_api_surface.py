"""Every public name of the seeds' core API is importable from flowdeck_engine, as the seeds call it."""

from __future__ import annotations

import inspect

import flowdeck_engine
from flowdeck_engine import Edge, LocalExecutionEngine, StepType, WorkflowDefinition, WorkflowStatus

SEED_NAMES = [
    "WorkflowDefinition",
    "Edge",
    "WorkflowContext",
    "StepExecution",
    "Step",
    "BaseMachineStep",
    "BaseHumanStep",
    "GatewayStep",
    "TimerStep",
    "WebhookStep",
    "SequentialGroup",
    "ParallelGroup",
    "ConditionalGroup",
    "StepType",
    "WorkflowStatus",
    "StepStatus",
    "ExecutionEngine",
    "LocalExecutionEngine",
    "WorkflowRegistry",
    "EventBus",
    "InMemoryEventBus",
    "WorkflowStarted",
    "WorkflowCompleted",
    "WorkflowFailed",
    "WorkflowCanceled",
    "StepExecuted",
    "HumanTaskCreated",
    "HumanTaskCompleted",
    "WorkflowsError",
    "WorkflowNotFoundError",
    "StepExecutionError",
    "InvalidTransitionError",
    "ValidationError",
    "WorkflowGraph",
]


def test_seed_names_are_exported() -> None:
    missing = [name for name in SEED_NAMES if not hasattr(flowdeck_engine, name)]
    assert missing == []
    assert sorted(flowdeck_engine.__all__) == flowdeck_engine.__all__
    assert all(hasattr(flowdeck_engine, name) for name in flowdeck_engine.__all__)


def test_exception_tree() -> None:
    root = flowdeck_engine.WorkflowsError
    for name in flowdeck_engine.__all__:
        obj = getattr(flowdeck_engine, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, root), name
    err = flowdeck_engine.WorkflowNotFoundError("x", "1.0.0")
    assert (err.name, err.version, err.detail) == ("x", "1.0.0", "workflow 'x' version '1.0.0' is not registered")


def test_enums_have_the_seed_values() -> None:
    assert [t.value for t in StepType] == ["machine", "human", "webhook", "timer", "gateway"]
    assert {s.name for s in WorkflowStatus} == {"PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "CANCELED"}


def test_edge_positional_or_keyword() -> None:
    assert Edge("a", "b") == Edge(source="a", target="b")
    assert Edge("a", "b", "context.get('x')").condition == Edge("a", "b", condition="context.get('x')").condition


def test_signatures_match_the_seeds() -> None:
    assert list(inspect.signature(WorkflowDefinition).parameters)[:7] == [
        "name",
        "version",
        "description",
        "steps",
        "edges",
        "initial_step",
        "terminal_steps",
    ]
    assert list(inspect.signature(LocalExecutionEngine).parameters)[:3] == ["registry", "persistence", "event_bus"]
    assert list(inspect.signature(LocalExecutionEngine.start_workflow).parameters)[1:4] == [
        "workflow_name",
        "initial_data",
        "version",
    ]
    assert list(inspect.signature(LocalExecutionEngine.complete_human_task).parameters)[1:] == [
        "instance_id",
        "step_name",
        "user_id",
        "data",
    ]
    assert list(inspect.signature(LocalExecutionEngine.execute_step).parameters)[1:] == [
        "step",
        "context",
        "previous_result",
    ]
    assert list(inspect.signature(LocalExecutionEngine.cancel_workflow).parameters)[1:] == ["instance_id", "reason"]
    assert list(inspect.signature(LocalExecutionEngine.retry).parameters)[1:] == ["instance_id", "from_step"]


def test_local_engine_satisfies_the_protocols() -> None:
    from flowdeck_engine import BaseMachineStep, InMemoryEventBus, Step, WorkflowRegistry

    engine: flowdeck_engine.ExecutionEngine = LocalExecutionEngine(WorkflowRegistry())
    assert engine is not None
    assert isinstance(BaseMachineStep("x"), Step)
    assert isinstance(InMemoryEventBus(), flowdeck_engine.EventBus)
