"""The kernel is pure: (state, event) -> (new state, commands), no I/O, no clock, no mutation."""

from __future__ import annotations

import ast
import copy
import inspect
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

import flowdeck_engine.kernel as kernel_module
from flowdeck_engine import BaseHumanStep, Edge, Kernel, RetryPolicy, StepExecution, TimerStep, WorkflowStatus
from flowdeck_engine.kernel import (
    CancelRequested,
    OpenTask,
    RunStep,
    StartTimer,
    StepFailed,
    StepSucceeded,
    TaskCompleted,
    TimerFired,
)

from .conftest import Set, definition

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Review(BaseHumanStep):
    name = "review"
    title = "Review"


def snapshot(state: object) -> dict[str, object]:
    return {slot: copy.deepcopy(getattr(state, slot)) for slot in type(state).__slots__}  # type: ignore[attr-defined]


def test_kernel_module_does_no_io_and_reads_no_clock() -> None:
    tree = ast.parse(inspect.getsource(kernel_module))
    imported = {
        alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
    }
    imported |= {
        node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {"__future__", "collections", "dataclasses", "typing", "flowdeck_engine", "datetime", "uuid"}
    calls = {
        node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert not calls & {"now", "utcnow", "today", "time", "sleep", "open", "urandom", "uuid4"}


def test_apply_never_mutates_its_input_and_is_deterministic() -> None:
    k = Kernel(definition([Set("a"), Review(), Set("b")], [Edge("a", "review"), Edge("review", "b")]))
    start = k.start(uuid4(), {"x": 1}, T0)
    assert [type(c) for c in start.commands] == [RunStep]
    events = [
        StepSucceeded("a", 1, T0, T0, {"a": True}),
        TaskCompleted("review", "bob", {"ok": True}, T0 + timedelta(hours=1)),
        StepSucceeded("b", 1, T0, T0, {"b": True}),
    ]
    state = start.state
    for event in events:
        before = snapshot(state)
        first = k.apply(state, event)
        second = k.apply(state, event)
        assert snapshot(state) == before, "apply mutated its input"
        assert snapshot(first.state) == snapshot(second.state)
        assert first.commands == second.commands
        state = first.state
    assert state.status is WorkflowStatus.COMPLETED
    assert state.data == {"x": 1, "a": True, "ok": True, "b": True}
    assert state.seq == 4


def test_human_step_commands() -> None:
    k = Kernel(definition([Set("a"), Review(), Set("b")], [Edge("a", "review"), Edge("review", "b")]))
    t = k.apply(k.start(uuid4(), {}, T0).state, StepSucceeded("a", 1, T0, T0))
    assert t.state.status is WorkflowStatus.WAITING
    assert [type(c) for c in t.commands] == [StepExecution, OpenTask]


def test_stale_and_duplicate_events_return_the_same_state() -> None:
    k = Kernel(definition([Set("a"), Set("b")], [Edge("a", "b")]))
    state = k.start(uuid4(), {}, T0).state
    done = k.apply(state, StepSucceeded("a", 1, T0, T0)).state
    for stale in (StepSucceeded("a", 1, T0, T0), StepSucceeded("a", 2, T0, T0), StepFailed("a", 1, T0, T0, "E", "m")):
        t = k.apply(done, stale)
        assert t.state is done and not t.commands
    timer = Kernel(definition([TimerStep("t", duration=timedelta(1)), Set("z")], [Edge("t", "z")]))
    waiting = timer.start(uuid4(), {}, T0)
    assert isinstance(waiting.commands[0], StartTimer)
    fired = timer.apply(waiting.state, TimerFired("t", T0))
    assert timer.apply(fired.state, TimerFired("t", T0)).state is fired.state


def test_cancel_of_a_finished_instance_raises_without_change() -> None:
    from flowdeck_engine import InvalidTransitionError

    k = Kernel(definition([Set("a")], []))
    state = k.start(uuid4(), {}, T0).state
    done = k.apply(state, StepSucceeded("a", 1, T0, T0)).state
    assert done.status is WorkflowStatus.COMPLETED
    before = snapshot(done)
    with pytest.raises(InvalidTransitionError):
        k.apply(done, CancelRequested("late", T0))
    assert snapshot(done) == before


def test_states_and_records_round_trip_through_json() -> None:
    import json

    from flowdeck_engine.codec import execution_from_json, execution_to_json, state_from_json, state_to_json

    k = Kernel(definition([Set("a"), Review(), Set("b")], [Edge("a", "review"), Edge("review", "b")]))
    t = k.apply(k.start(uuid4(), {"x": [1, {"y": None}]}, T0).state, StepSucceeded("a", 1, T0, T0, {"a": True}))
    state = t.state
    assert snapshot(state_from_json(json.loads(json.dumps(state_to_json(state))))) == snapshot(state)
    record = t.commands[0]
    assert isinstance(record, StepExecution)
    assert execution_from_json(json.loads(json.dumps(execution_to_json(record)))) == record


def test_new_ids_are_random_version_4_uuids() -> None:
    import uuid

    from flowdeck_engine.instance import new_id

    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    assert all(u.version == 4 and u.variant == uuid.RFC_4122 for u in ids)
    assert {u.int >> 127 for u in ids} == {0, 1}  # the top bit varies: the bits are random


def test_changes_count_a_copied_value_only_when_it_differs_type_for_type() -> None:
    from flowdeck_engine.context import changes, private_copy

    before = {"n": 1, "l": [1, {"k": 1.0}], "gone": "x"}
    after = private_copy(before)
    assert after["l"] is not before["l"]  # mutable values are copied
    assert changes(before, after) == ({}, ())
    after["l"][1]["k"] = True  # equal to 1.0, but not the same value
    after["n"] = 2
    del after["gone"]
    assert changes(before, after) == ({"n": 2, "l": [1, {"k": True}]}, ("gone",))
    flat = {"n": 1, "s": "x"}
    assert private_copy(flat) == flat and private_copy(flat) is not flat


def test_apply_in_place_changes_the_given_state_into_what_a_copy_would_become() -> None:
    k = Kernel(definition([Set("a"), Set("b"), Set("c")], [Edge("a", "b"), Edge("b", "c")]))
    start = k.start(uuid4(), {"x": 1}, T0)
    first = k.apply(start.state, StepSucceeded("a", 1, T0, T0, {"x": 1, "a": True}, start.state.data))
    event = StepSucceeded("b", 1, T0, T0, {"x": 1, "a": True, "b": True}, first.state.data)
    copied = k.apply(first.state, event)
    assert copied.state is not first.state
    expected = snapshot(copied.state)
    in_place = k.apply(first.state, event, in_place=True)
    assert in_place.state is first.state
    assert snapshot(in_place.state) == expected and in_place.commands == copied.commands
    stale = k.apply(in_place.state, event, in_place=True)
    assert not stale.commands and snapshot(stale.state) == expected


def test_then_names_the_one_machine_step_made_due_now_and_nothing_else() -> None:
    k = Kernel(
        definition(
            [Set("a"), Set("b"), Set("c"), Set("d"), Review()],
            [Edge("a", "b"), Edge("b", "c"), Edge("b", "d"), Edge("c", "review"), Edge("d", "review")],
        )
    )
    start = k.start(uuid4(), {}, T0)
    assert start.then == RunStep("a", 1) and start.commands[-1] is start.then
    after_a = k.apply(start.state, StepSucceeded("a", 1, T0, T0, {"a": True}, start.state.data))
    assert after_a.then == RunStep("b", 1)
    split = k.apply(after_a.state, StepSucceeded("b", 1, T0, T0, {"b": True}, after_a.state.data))
    assert split.then is None and [c.step for c in split.commands if type(c) is RunStep] == ["c", "d"]
    after_c = k.apply(split.state, StepSucceeded("c", 1, T0, T0, {"c": True}, split.state.data))
    assert after_c.then is None  # the join still waits for d
    joined = k.apply(after_c.state, StepSucceeded("d", 1, T0, T0, {"d": True}, after_c.state.data))
    assert joined.then is None and any(type(c) is OpenTask for c in joined.commands)  # a task, not a step
    policy = RetryPolicy(max_attempts=2, initial_interval=timedelta(seconds=5))
    flaky = Kernel(definition([Set("a", retry_policy=policy)], []))
    first = flaky.start(uuid4(), {}, T0)
    failed = flaky.apply(first.state, StepFailed("a", 1, T0, T0, "RuntimeError", "boom"))
    assert failed.commands[-1] == RunStep("a", 2, T0 + timedelta(seconds=5)) and failed.then is None  # not now
