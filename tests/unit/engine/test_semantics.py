"""The semantics of execution.txt, each on the LocalExecutionEngine with a fake clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from flowdeck_engine import (
    BaseHumanStep,
    BaseMachineStep,
    ConditionalGroup,
    Edge,
    EngineLimits,
    GatewayMode,
    GatewayStep,
    InvalidTransitionError,
    ParallelGroup,
    RetryPolicy,
    SequentialGroup,
    StepStatus,
    TaskNotFoundError,
    TaskStatus,
    TimerStep,
    WebhookStep,
    WorkflowContext,
    WorkflowRegistry,
    WorkflowStatus,
)

from .conftest import Boom, Harness, Set, definition


class Approve(BaseHumanStep):
    name = "approve"
    title = "Approve it"
    form_schema = {"type": "object", "properties": {"approved": {"type": "boolean"}}}
    candidate_groups = ("managers",)
    due = timedelta(days=2)
    reminder = timedelta(days=1)


def history(instance: Any) -> list[tuple[str, str]]:
    return [(r.step_name, r.status.value) for r in instance.step_history]


# --- sequence, human steps -------------------------------------------------------------------------


async def test_machine_steps_run_in_edge_order(h: Harness) -> None:
    h.register(definition([Set("a"), Set("b"), Set("c")], [Edge("a", "b"), Edge("b", "c")]))
    instance = await h.engine.start_workflow("wf", initial_data={"x": 1})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("trail") == ["a", "b", "c"]
    assert instance.context.get("x") == 1
    assert history(instance) == [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
    assert instance.current_step is None
    assert instance.completed_at is not None
    assert h.event_types() == ["WorkflowStarted", "StepExecuted", "StepExecuted", "StepExecuted", "WorkflowCompleted"]


async def test_human_step_waits_creates_task_and_merges_form_data(h: Harness) -> None:
    h.register(
        definition([Set("submit"), Approve(), Set("done")], [Edge("submit", "approve"), Edge("approve", "done")])
    )
    instance = await h.engine.start_workflow("wf", initial_data={"amount": 10})
    assert instance.status is WorkflowStatus.WAITING
    assert instance.current_step == "approve"
    (task,) = await h.engine.get_pending_tasks()
    assert (task.step_name, task.title, task.candidate_groups) == ("approve", "Approve it", ("managers",))
    assert task.form_schema == Approve.form_schema
    assert task.due_at == h.clock.now() + timedelta(days=2)
    assert task.reminder_at == h.clock.now() + timedelta(days=1)
    assert await h.engine.get_pending_tasks(user_id="bob", groups={"managers"}) == [task]
    assert await h.engine.get_pending_tasks(user_id="bob", groups={"sales"}) == []

    await h.engine.complete_human_task(instance.id, "approve", "bob", {"approved": True})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("approved") is True
    assert instance.context.get("trail") == ["submit", "done"]
    assert task.status is TaskStatus.COMPLETED and task.completed_by == "bob"
    assert [r.completed_by for r in instance.step_history if r.step_name == "approve"] == ["bob"]
    assert "HumanTaskCreated" in h.event_types() and "HumanTaskCompleted" in h.event_types()


async def test_second_completion_is_rejected_and_changes_nothing(h: Harness) -> None:
    h.register(definition([Approve(), Set("done")], [Edge("approve", "done")]))
    instance = await h.engine.start_workflow("wf")
    await h.engine.complete_human_task(instance.id, "approve", "bob", {"approved": True})
    version = instance.version
    with pytest.raises(InvalidTransitionError):
        await h.engine.complete_human_task(instance.id, "approve", "eve", {"approved": False})
    assert instance.version == version
    assert instance.context.get("approved") is True


async def test_concurrent_completions_have_exactly_one_winner(h: Harness) -> None:
    h.register(definition([Approve(), Set("done")], [Edge("approve", "done")]))
    instance = await h.engine.start_workflow("wf")
    results = await asyncio.gather(
        *(h.engine.complete_human_task(instance.id, "approve", f"u{i}", {"who": i}) for i in range(20)),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, InvalidTransitionError) for r in results if isinstance(r, Exception))
    assert instance.status is WorkflowStatus.COMPLETED


async def test_completing_an_unknown_step_is_a_clear_error(h: Harness) -> None:
    h.register(definition([Approve(), Set("done")], [Edge("approve", "done")]))
    instance = await h.engine.start_workflow("wf")
    with pytest.raises(TaskNotFoundError) as info:
        await h.engine.complete_human_task(instance.id, "done", "bob", {})
    assert info.value.step_name == "done" and info.value.instance_id == instance.id


# --- parallel branches and joins -------------------------------------------------------------------


class Meet(BaseMachineStep):
    """Both branches must be running at once to get past the barrier (proves concurrency)."""

    def __init__(self, name: str, barrier: asyncio.Barrier) -> None:
        super().__init__(name)
        self.barrier = barrier

    async def execute(self, context: WorkflowContext) -> None:
        async with asyncio.timeout(2):
            await self.barrier.wait()
        context.set(self.name, True)


async def test_concurrent_branches_writing_one_key_last_completion_wins(h: Harness) -> None:
    steps = [Set("start"), Set("left", key="shared", value="L"), Set("right", key="shared", value="R"), Set("end")]
    edges = [Edge("start", "left"), Edge("start", "right"), Edge("left", "end"), Edge("right", "end")]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    finished = [r.step_name for r in instance.step_history if r.step_name in ("left", "right")]
    assert instance.context.get("shared") == {"left": "L", "right": "R"}[finished[-1]]


async def test_unconditional_fan_out_runs_branches_concurrently_and_joins(h: Harness) -> None:
    barrier = asyncio.Barrier(3)
    steps = [Set("start"), Meet("email", barrier), Meet("slack", barrier), Meet("sms", barrier), Set("complete")]
    edges = [Edge("start", b) for b in ("email", "slack", "sms")] + [
        Edge(b, "complete") for b in ("email", "slack", "sms")
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert all(instance.context.get(b) for b in ("email", "slack", "sms"))
    assert [name for name, _ in history(instance)].count("complete") == 1
    assert history(instance)[-1] == ("complete", "succeeded")


async def test_join_waits_for_a_branch_that_waits_on_a_human(h: Harness) -> None:
    steps = [Set("start"), Set("auto"), Approve(), Set("join")]
    edges = [Edge("start", "auto"), Edge("start", "approve"), Edge("auto", "join"), Edge("approve", "join")]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.WAITING
    assert instance.current_steps == ["approve"]
    assert instance.context.get("auto") is True and instance.context.get("join") is None
    await h.engine.complete_human_task(instance.id, "approve", "bob", {"ok": 1})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("join") is True


async def test_join_does_not_deadlock_when_a_conditional_branch_is_not_taken(h: Harness) -> None:
    steps = [Set("start"), Set("big"), Set("audit"), Set("small"), Set("join")]
    edges = [
        Edge("start", "big", condition="context.get('amount') > 100"),
        Edge("start", "small", condition="context.get('amount') <= 100"),
        Edge("big", "audit"),
        Edge("audit", "join"),
        Edge("small", "join"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"amount": 5})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    assert instance.context.get("trail") == ["start", "small", "join"]
    skipped = {name for name, status in history(instance) if status == "skipped"}
    assert skipped == {"big", "audit"}


async def test_conditional_edges_follow_every_matching_condition(h: Harness) -> None:
    steps = [Set("review"), Set("notify"), Set("archive"), Set("reject"), Set("end")]
    edges = [
        Edge("review", "notify", condition="context.get('score') >= 50"),
        Edge("review", "archive", condition="context.get('score') >= 80"),
        Edge("review", "reject", condition="context.get('score') < 50"),
        Edge("notify", "end"),
        Edge("archive", "end"),
        Edge("reject", "end"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"score": 90})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("notify") and instance.context.get("archive")
    assert instance.context.get("reject") is None
    assert [name for name, status in history(instance) if status == "succeeded"].count("end") == 1
    low = await h.engine.start_workflow("wf", initial_data={"score": 10})
    assert low.context.get("trail") == ["review", "reject", "end"]


async def test_no_matching_condition_fails_clearly(h: Harness) -> None:
    steps = [Set("review"), Set("approve"), Set("reject")]
    edges = [
        Edge("review", "approve", condition="context.get('score') >= 80"),
        Edge("review", "reject", condition="context.get('score') < 50"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"score": 60})
    assert instance.status is WorkflowStatus.FAILED
    assert instance.failed_step == "review"
    assert "NoPathError" in (instance.error or "")
    assert "WorkflowFailed" in h.event_types()


async def test_condition_type_error_fails_without_echoing_values(h: Harness) -> None:
    steps = [Set("review"), Set("approve"), Set("reject")]
    edges = [
        Edge("review", "approve", condition="context.get('score') >= 80"),
        Edge("review", "reject", condition="context.get('score') < 80"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"score": "s3cr3t-value"})
    assert instance.status is WorkflowStatus.FAILED
    assert "ConditionEvaluationError" in (instance.error or "")
    assert "s3cr3t-value" not in (instance.error or "")


async def test_exclusive_gateway_takes_first_match_or_default(h: Harness) -> None:
    steps = [GatewayStep("route"), Set("vp"), Set("manager"), Set("auto")]
    edges = [
        Edge("route", "vp", condition="context.get('amount') > 5000"),
        Edge("route", "manager", condition="context.get('amount') > 100"),
        Edge("route", "auto", default=True),
    ]
    h.register(definition(steps, edges))
    for amount, taken in ((9000, "vp"), (500, "manager"), (5, "auto")):
        instance = await h.engine.start_workflow("wf", initial_data={"amount": amount})
        assert instance.status is WorkflowStatus.COMPLETED
        assert [n for n, s in history(instance) if s == "succeeded"] == ["route", taken]


async def test_inclusive_gateway_takes_every_match(h: Harness) -> None:
    steps = [GatewayStep("route", mode=GatewayMode.INCLUSIVE), Set("a"), Set("b"), Set("none"), Set("end")]
    edges = [
        Edge("route", "a", condition="context.get('x') > 1"),
        Edge("route", "b", condition="context.get('x') > 2"),
        Edge("route", "none", default=True),
        Edge("a", "end"),
        Edge("b", "end"),
        Edge("none", "end"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"x": 3})
    assert instance.context.get("a") and instance.context.get("b") and instance.context.get("end")
    assert instance.context.get("none") is None
    fallback = await h.engine.start_workflow("wf", initial_data={"x": 0})
    assert fallback.context.get("trail") == ["none", "end"]


async def test_python_callable_conditions(h: Harness) -> None:
    steps = [Set("a"), Set("yes"), Set("no")]
    edges = [
        Edge("a", "yes", condition=lambda ctx: ctx.get("flag") is True),
        Edge("a", "no", condition=lambda ctx: ctx.get("flag") is not True),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"flag": True})
    assert instance.context.get("trail") == ["a", "yes"]


# --- loops, the transition cap ---------------------------------------------------------------------


class Count(BaseMachineStep):
    async def execute(self, context: WorkflowContext) -> None:
        context.set("n", context.get("n", 0) + 1)


async def test_loop_with_exit_runs_until_condition(h: Harness) -> None:
    steps = [Count("count"), Set("done")]
    edges = [
        Edge("count", "count", condition="context.get('n') < 5"),
        Edge("count", "done", condition="context.get('n') >= 5"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("n") == 5


async def test_transition_cap_ends_an_endless_loop() -> None:
    h = Harness()
    h.registry = WorkflowRegistry(limits=EngineLimits(max_transitions=50))
    h.engine.registry = h.registry
    steps = [Count("count"), Set("done")]
    edges = [
        Edge("count", "count", condition="context.get('n') > 0"),
        Edge("count", "done", condition="context.get('n') < 0"),
    ]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.FAILED
    assert "exceeded 50 transitions" in (instance.error or "")
    assert instance.context.get("n") == 50


# --- failure, retry policy, timeout, hooks, guards -------------------------------------------------


async def test_failure_after_retries_fails_with_error_and_context_preserved(h: Harness) -> None:
    boom = Boom("charge", retry_policy=RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=10)))
    h.register(definition([Set("a"), boom, Set("z")], [Edge("a", "charge"), Edge("charge", "z")]))
    instance = await h.engine.start_workflow("wf", initial_data={"keep": 1})
    assert instance.status is WorkflowStatus.RUNNING  # waiting out the backoff
    assert boom.runs == 1
    await h.advance(seconds=9)
    assert boom.runs == 1
    await h.advance(seconds=1)
    assert boom.runs == 2
    await h.advance(seconds=20)  # the second wait doubles
    assert boom.runs == 3
    assert instance.status is WorkflowStatus.FAILED
    assert instance.failed_step == "charge"
    assert "RuntimeError: boom #3" in (instance.error or "")
    assert instance.context.data == {"keep": 1, "a": True, "trail": ["a"]}  # failed attempts left nothing
    assert [(r.attempt, r.status) for r in instance.step_history if r.step_name == "charge"] == [
        (1, StepStatus.FAILED),
        (2, StepStatus.FAILED),
        (3, StepStatus.FAILED),
    ]


class Spoil(BaseMachineStep):
    """Changes nested values in place (what it saw first is kept in ``seen``), then fails."""

    def __init__(self, name: str, **kwargs: Any) -> None:
        super().__init__(name, **kwargs)
        self.seen: list[Any] = []

    async def execute(self, context: WorkflowContext) -> None:
        order = context.get("order")
        self.seen.append(repr(context.data))
        order["items"].append("spoiled")
        order["total"] = -1
        context.data["tags"][0] = "spoiled"
        context.set("top", "spoiled")
        raise RuntimeError("spoiled")


async def test_a_failed_step_leaves_the_data_untouched_at_every_depth(h: Harness) -> None:
    spoil = Spoil("spoil", retry_policy=RetryPolicy(max_attempts=2, initial_interval=timedelta(0)))
    h.register(definition([Set("a"), spoil], [Edge("a", "spoil")]))
    items = ["book"]
    instance = await h.engine.start_workflow("wf", initial_data={"order": {"items": items, "total": 5}, "tags": ["x"]})
    assert instance.status is WorkflowStatus.FAILED
    expected = {"order": {"items": ["book"], "total": 5}, "tags": ["x"], "a": True, "trail": ["a"]}
    assert instance.context.data == expected
    assert items == ["book"]  # nor the caller's objects
    assert spoil.seen[0] == spoil.seen[1] == repr(expected)  # the retry saw the data as it was


class SpoilBasket(BaseMachineStep):
    async def execute(self, context: WorkflowContext) -> None:
        context.get("basket").items.append("spoiled")
        context.get("order")["items"].append("spoiled")
        raise RuntimeError("spoiled")


async def test_data_pickle_cannot_take_is_still_copied_for_a_step(h: Harness) -> None:
    class Basket:  # local: pickle cannot take it, copy.deepcopy can
        def __init__(self) -> None:
            self.items = ["book"]

    h.register(definition([SpoilBasket("spoil")], []))
    basket, lock = Basket(), asyncio.Lock()
    data = {"basket": basket, "order": {"items": ["book"]}, "lock": lock}
    instance = await h.engine.start_workflow("wf", initial_data=data)
    assert instance.status is WorkflowStatus.FAILED
    assert instance.context.get("basket").items == ["book"] and basket.items == ["book"]
    assert instance.context.get("order") == {"items": ["book"]}
    assert instance.context.get("lock") is lock  # not data: shared, not copied


class Append(BaseMachineStep):
    """Appends its name to the list at ``key``, in place; with ``wait``, after letting others run first."""

    def __init__(self, name: str, key: str, wait: bool = False) -> None:
        super().__init__(name)
        self.key, self.wait = key, wait

    async def execute(self, context: WorkflowContext) -> None:
        if self.wait:
            for _ in range(5):
                await asyncio.sleep(0)
        context.get(self.key).append(self.name)


async def test_nested_changes_of_a_step_that_succeeds_are_kept(h: Harness) -> None:
    h.register(definition([Append("a", "log"), Append("b", "log")], [Edge("a", "b")]))
    log = ["start"]
    instance = await h.engine.start_workflow("wf", initial_data={"log": log})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("log") == ["start", "a", "b"]
    assert log == ["start"]


async def test_concurrent_branches_keep_each_others_nested_changes(h: Harness) -> None:
    steps = [Set("start"), Append("left", "l"), Append("right", "r", wait=True), Set("end")]
    edges = [Edge("start", "left"), Edge("start", "right"), Edge("left", "end"), Edge("right", "end")]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf", initial_data={"l": [], "r": []})
    assert instance.status is WorkflowStatus.COMPLETED
    # right saved after left, from data it copied before left's change: left's change is kept
    assert [r.step_name for r in instance.step_history][1:3] == ["left", "right"]
    assert (instance.context.get("l"), instance.context.get("r")) == (["left"], ["right"])


async def test_retry_policy_recovers(h: Harness) -> None:
    boom = Boom("flaky", failures=2, retry_policy=RetryPolicy(max_attempts=3, initial_interval=timedelta(0)))
    h.register(definition([boom, Set("z")], [Edge("flaky", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.COMPLETED
    assert boom.runs == 3 and instance.context.get("flaky") == "ok"


async def test_non_retryable_errors_fail_at_once(h: Harness) -> None:
    policy = RetryPolicy(
        max_attempts=5, initial_interval=timedelta(0), non_retryable_errors=frozenset({"RuntimeError"})
    )
    boom = Boom("x", retry_policy=policy)
    h.register(definition([boom, Set("z")], [Edge("x", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.FAILED and boom.runs == 1


def test_retry_policy_backoff_is_data() -> None:
    policy = RetryPolicy(max_attempts=5, initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=5))
    assert [policy.delay_after(n).total_seconds() for n in range(1, 6)] == [1, 2, 4, 5, 5]
    with pytest.raises(AttributeError):
        policy.max_attempts = 2  # type: ignore[misc]


class Slow(BaseMachineStep):
    timeout = timedelta(milliseconds=20)

    async def execute(self, context: WorkflowContext) -> None:
        await asyncio.sleep(5)


async def test_step_timeout_counts_as_a_failure(h: Harness) -> None:
    h.register(definition([Slow("slow"), Set("z")], [Edge("slow", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.FAILED
    assert "StepTimeoutError" in (instance.error or "")


class Hooked(BaseMachineStep):
    def __init__(self, name: str, fail: bool) -> None:
        super().__init__(name)
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    async def execute(self, context: WorkflowContext) -> str:
        if self.fail:
            raise ValueError("nope")
        return "result"

    async def on_success(self, context: WorkflowContext, result: Any) -> None:
        self.calls.append(("success", result))

    async def on_failure(self, context: WorkflowContext, error: Exception) -> None:
        self.calls.append(("failure", type(error).__name__))


async def test_hooks_are_called(h: Harness) -> None:
    good, bad = Hooked("good", fail=False), Hooked("bad", fail=True)
    h.register(definition([good, bad, Set("z")], [Edge("good", "bad"), Edge("bad", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert good.calls == [("success", "result")]
    assert bad.calls == [("failure", "ValueError")]
    assert instance.step_history[0].result == "result"


class Guarded(Set):
    async def can_execute(self, context: WorkflowContext) -> bool:
        return bool(context.get("allowed"))


async def test_false_guard_skips_the_step_and_goes_on(h: Harness) -> None:
    h.register(definition([Set("a"), Guarded("guarded"), Set("z")], [Edge("a", "guarded"), Edge("guarded", "z")]))
    instance = await h.engine.start_workflow("wf", initial_data={"allowed": False})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("trail") == ["a", "z"]
    assert ("guarded", "skipped") in history(instance)
    allowed = await h.engine.start_workflow("wf", initial_data={"allowed": True})
    assert allowed.context.get("trail") == ["a", "guarded", "z"]


# --- cancel and retry ------------------------------------------------------------------------------


async def test_cancel_closes_tasks_and_cannot_repeat(h: Harness) -> None:
    h.register(definition([Approve(), Set("done")], [Edge("approve", "done")]))
    instance = await h.engine.start_workflow("wf")
    await h.engine.cancel_workflow(instance.id, reason="Customer requested cancellation")
    assert instance.status is WorkflowStatus.CANCELED
    assert await h.engine.get_pending_tasks() == []
    (task,) = await h.engine.persistence.list_tasks(instance_id=instance.id)
    assert task.status is TaskStatus.CANCELED
    with pytest.raises(InvalidTransitionError):
        await h.engine.cancel_workflow(instance.id, reason="again")
    with pytest.raises(InvalidTransitionError):
        await h.engine.complete_human_task(instance.id, "approve", "bob", {})
    canceled = h.bus.of_type(type(h.bus.events[-1]))[-1]
    assert canceled.type == "WorkflowCanceled" and canceled.reason == "Customer requested cancellation"  # type: ignore[attr-defined]


async def test_retry_from_the_failed_step(h: Harness) -> None:
    boom = Boom("charge", failures=1)
    h.register(definition([Set("a"), boom, Set("z")], [Edge("a", "charge"), Edge("charge", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.FAILED
    await h.engine.retry(instance.id)
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("trail") == ["a", "z"]
    assert instance.error is None


async def test_retry_from_a_named_step_and_only_when_failed(h: Harness) -> None:
    boom = Boom("charge", failures=1)
    h.register(definition([Set("a"), boom, Set("z")], [Edge("a", "charge"), Edge("charge", "z")]))
    instance = await h.engine.start_workflow("wf")
    await h.engine.retry(instance.id, from_step="a")
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("trail") == ["a", "a", "z"]
    with pytest.raises(InvalidTransitionError, match="only failed instances"):
        await h.engine.retry(instance.id)


async def test_retry_from_unknown_step_is_refused(h: Harness) -> None:
    h.register(definition([Boom("x"), Set("z")], [Edge("x", "z")]))
    instance = await h.engine.start_workflow("wf")
    with pytest.raises(InvalidTransitionError, match="unknown step"):
        await h.engine.retry(instance.id, from_step="nope")


# --- timers and webhooks ---------------------------------------------------------------------------


async def test_timer_fires_from_the_injected_clock(h: Harness) -> None:
    steps = [Set("a"), TimerStep("wait", duration=timedelta(hours=1)), Set("z")]
    h.register(definition(steps, [Edge("a", "wait"), Edge("wait", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.WAITING and instance.current_step == "wait"
    await h.advance(minutes=59)
    assert instance.status is WorkflowStatus.WAITING
    await h.advance(minutes=1)
    assert instance.status is WorkflowStatus.COMPLETED


async def test_timer_until_a_time(h: Harness) -> None:
    until = h.clock.now() + timedelta(days=3)
    h.register(definition([TimerStep("wait", until=until), Set("z")], [Edge("wait", "z")]))
    instance = await h.engine.start_workflow("wf")
    await h.advance(days=2)
    assert instance.status is WorkflowStatus.WAITING
    await h.advance(days=1)
    assert instance.status is WorkflowStatus.COMPLETED


async def test_cancel_calls_off_a_timer(h: Harness) -> None:
    h.register(definition([TimerStep("wait", duration=timedelta(hours=1)), Set("z")], [Edge("wait", "z")]))
    instance = await h.engine.start_workflow("wf")
    await h.engine.cancel_workflow(instance.id, "stop")
    assert h.clock.pending == 0
    await h.advance(hours=2)
    assert instance.status is WorkflowStatus.CANCELED


async def test_webhook_step_waits_for_the_callback(h: Harness) -> None:
    hook = WebhookStep("payment", result_key="payment", timeout=timedelta(hours=1))
    h.register(definition([hook, Set("z")], [Edge("payment", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.WAITING
    await h.engine.receive_callback(instance.id, "payment", {"paid": True})
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("payment") == {"paid": True}
    with pytest.raises(InvalidTransitionError):
        await h.engine.receive_callback(instance.id, "payment", {"paid": True})


async def test_webhook_timeout_fails_the_instance(h: Harness) -> None:
    h.register(definition([WebhookStep("payment", timeout=timedelta(hours=1)), Set("z")], [Edge("payment", "z")]))
    instance = await h.engine.start_workflow("wf")
    await h.advance(hours=1)
    assert instance.status is WorkflowStatus.FAILED
    assert "StepTimeoutError" in (instance.error or "")


# --- groups ----------------------------------------------------------------------------------------


async def test_groups_work_wherever_a_step_does(h: Harness) -> None:
    sequential = SequentialGroup(Set("v1"), Set("v2"), name="validate")
    parallel = ParallelGroup(Set("p1", key="p1"), Set("p2", key="p2"), name="fanout")
    conditional = ConditionalGroup("context.get('amount') > 100", Set("big"), Set("small"), name="size")
    steps = [sequential, parallel, conditional]
    h.register(definition(steps, [Edge("validate", "fanout"), Edge("fanout", "size")]))
    instance = await h.engine.start_workflow("wf", initial_data={"amount": 500})
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    data = instance.context.data
    assert data["v1"] and data["v2"] and data["p1"] and data["p2"] and data["big"]
    assert "small" not in data
    assert [r.step_name for r in instance.step_history] == ["validate", "fanout", "size"]


def test_groups_refuse_waiting_steps() -> None:
    from flowdeck_engine import ValidationError

    with pytest.raises(ValidationError, match="human"):
        SequentialGroup(Set("a"), Approve(), name="bad")


# --- versions --------------------------------------------------------------------------------------


async def test_running_instances_stay_on_their_version(h: Harness) -> None:
    h.register(definition([Approve(), Set("v1")], [Edge("approve", "v1")], version="1.0.0"))
    old = await h.engine.start_workflow("wf")
    h.register(definition([Approve(), Set("v2")], [Edge("approve", "v2")], version="1.1.0"))
    new = await h.engine.start_workflow("wf")
    assert (old.workflow_version, new.workflow_version) == ("1.0.0", "1.1.0")
    await h.engine.complete_human_task(old.id, "approve", "u", {})
    await h.engine.complete_human_task(new.id, "approve", "u", {})
    assert old.context.get("v1") is True and old.context.get("v2") is None
    assert new.context.get("v2") is True
    pinned = await h.engine.start_workflow("wf", version="1.0.0")
    assert pinned.workflow_version == "1.0.0"


# --- escalation and on_timeout edges ---------------------------------------------------------------


async def test_escalation_reassigns_to_a_group_once(h: Harness) -> None:
    from flowdeck_engine import Escalation

    class Review(BaseHumanStep):
        name = "review"
        assignee = "alice"
        escalation = Escalation(after=timedelta(hours=4), reassign_to=("leads",))

    h.register(definition([Review(), Set("done")], [Edge("review", "done")]))
    instance = await h.engine.start_workflow("wf")
    (task,) = await h.engine.get_pending_tasks()
    assert task.is_for("alice") and not task.is_for("bob", {"leads"})
    await h.advance(hours=4)
    assert (task.assignee, task.candidate_groups) == (None, ("leads",))
    assert task.is_for("bob", {"leads"})
    assert "HumanTaskReassigned" in h.event_types()
    await h.advance(hours=8)
    assert h.event_types().count("HumanTaskReassigned") == 1
    await h.engine.complete_human_task(instance.id, "review", "bob", {"ok": True})
    assert instance.status is WorkflowStatus.COMPLETED


async def test_escalation_takes_the_on_timeout_edge(h: Harness) -> None:
    from flowdeck_engine import Escalation

    class Review(BaseHumanStep):
        name = "review"
        escalation = Escalation(after=timedelta(days=1))

    steps = [Review(), Set("approved"), Set("escalated"), Set("end")]
    edges = [
        Edge("review", "approved"),
        Edge("review", "escalated", on_timeout=True),
        Edge("approved", "end"),
        Edge("escalated", "end"),
    ]
    h.register(definition(steps, edges))
    late = await h.engine.start_workflow("wf")
    await h.advance(days=1)
    assert late.status is WorkflowStatus.COMPLETED, late.error
    assert late.context.get("escalated") is True and late.context.get("approved") is None
    assert ("review", "canceled") in history(late)
    (task,) = await h.engine.persistence.list_tasks(instance_id=late.id)
    assert task.status is TaskStatus.CANCELED
    on_time = await h.engine.start_workflow("wf")
    await h.engine.complete_human_task(on_time.id, "review", "bob", {})
    assert on_time.context.get("approved") is True and on_time.context.get("escalated") is None
    await h.advance(days=2)  # the escalation wake-up of a completed task changes nothing
    assert on_time.status is WorkflowStatus.COMPLETED
    assert [n for n, s in history(on_time)].count("end") == 1


async def test_webhook_timeout_takes_the_on_timeout_edge(h: Harness) -> None:
    steps = [WebhookStep("payment", timeout=timedelta(hours=1)), Set("paid"), Set("remind")]
    edges = [Edge("payment", "paid"), Edge("payment", "remind", on_timeout=True)]
    h.register(definition(steps, edges))
    instance = await h.engine.start_workflow("wf")
    await h.advance(hours=1)
    assert instance.status is WorkflowStatus.COMPLETED
    assert instance.context.get("remind") is True and instance.context.get("paid") is None


def test_on_timeout_edges_need_a_deadline() -> None:
    from flowdeck_engine import Escalation, ValidationError

    class Review(BaseHumanStep):
        name = "review"
        escalation = Escalation(after=timedelta(days=1))

    with pytest.raises(ValidationError) as info:
        WorkflowRegistry().register_definition(
            definition([Set("a"), Set("b")], [Edge("a", "b"), Edge("a", "b", on_timeout=True)])
        )
    assert "edge.timeout_without_deadline" in {p.code for p in info.value.problems}
    with pytest.raises(ValidationError) as info:
        WorkflowRegistry().register_definition(definition([Review(), Set("b")], [Edge("review", "b")]))
    assert "step.escalation_without_edge" in {p.code for p in info.value.problems}


async def test_an_awaits_callback_machine_step_waits_like_a_webhook(h: Harness) -> None:
    class ExternalJob(BaseMachineStep):
        awaits_callback = True

    h.register(definition([ExternalJob("render"), Set("z")], [Edge("render", "z")]))
    instance = await h.engine.start_workflow("wf")
    assert instance.status is WorkflowStatus.WAITING and instance.current_step == "render"
    await h.engine.receive_callback(instance.id, "render", {"url": "https://x"})
    assert instance.status is WorkflowStatus.COMPLETED and instance.context.get("url") == "https://x"


async def test_a_failed_wait_fails_the_instance_and_only_while_waiting(h: Harness) -> None:
    class ExternalJob(BaseMachineStep):
        awaits_callback = True

    h.register(definition([ExternalJob("render", timeout=timedelta(hours=1)), Set("z")], [Edge("render", "z")]))
    instance = await h.engine.start_workflow("wf")
    await h.engine.fail_wait(instance.id, "render", "the renderer crashed")
    assert instance.status is WorkflowStatus.FAILED and instance.failed_step == "render"
    assert "ExternalJobError: the renderer crashed" in (instance.error or "")
    assert history(instance)[-1] == ("render", "failed")
    with pytest.raises(InvalidTransitionError):
        await h.engine.fail_wait(instance.id, "render", "again")
    await h.advance(hours=2)  # the wait's timeout was called off: nothing changes
    assert instance.status is WorkflowStatus.FAILED and history(instance)[-1] == ("render", "failed")
    await h.engine.retry(instance.id)
    assert instance.status is WorkflowStatus.WAITING and instance.current_step == "render"
    await h.engine.receive_callback(instance.id, "render", {"url": "https://x"})
    assert instance.status is WorkflowStatus.COMPLETED


async def test_steps_publish_custom_events_only_when_they_succeed(h: Harness) -> None:
    from flowdeck_engine import CustomEvent

    class Announce(BaseMachineStep):
        async def execute(self, context: WorkflowContext) -> None:
            context.emit("order.placed", {"order": context.get("order")})

    flaky = Boom("flaky", failures=1, retry_policy=RetryPolicy(max_attempts=2, initial_interval=timedelta(0)))

    class EmitThenFail(BaseMachineStep):
        async def execute(self, context: WorkflowContext) -> None:
            context.emit("never", {})
            raise RuntimeError("no")

    h.register(definition([Announce("announce"), flaky, Set("z")], [Edge("announce", "flaky"), Edge("flaky", "z")]))
    instance = await h.engine.start_workflow("wf", initial_data={"order": 7})
    assert instance.status is WorkflowStatus.COMPLETED
    (event,) = h.bus.of_type(CustomEvent)
    assert (event.event_type, event.payload, event.step_name) == ("order.placed", {"order": 7}, "announce")  # type: ignore[attr-defined]
    h.register(definition([EmitThenFail("bad"), Set("z")], [Edge("bad", "z")], name="wf2"))
    await h.engine.start_workflow("wf2")
    assert len(h.bus.of_type(CustomEvent)) == 1


async def test_a_human_steps_record_spans_from_task_opened_to_completed(h: Harness) -> None:
    h.register(definition([Approve(), Set("done")], [Edge("approve", "done")]))
    opened = h.clock.now()
    instance = await h.engine.start_workflow("wf")
    await h.advance(hours=5)
    await h.engine.complete_human_task(instance.id, "approve", "bob", {})
    record = instance.step_history[0]
    assert (record.started_at, record.completed_at) == (opened, opened + timedelta(hours=5))


# --- workers: a step queue, resume, timers fired from outside ----------------------------------------


class ListQueue:
    def __init__(self) -> None:
        self.items: list[tuple[Any, list[str]]] = []

    async def enqueue(self, instance: Any, steps: list[str]) -> None:
        self.items.append((instance.id, steps))


async def test_with_a_step_queue_a_worker_runs_the_machine_steps(h: Harness) -> None:
    from flowdeck_engine import LocalExecutionEngine

    h.register(
        definition(
            [Set("a"), Set("b"), Approve(), Set("c")], [Edge("a", "b"), Edge("b", "approve"), Edge("approve", "c")]
        )
    )
    queue = ListQueue()
    api = LocalExecutionEngine(h.registry, h.engine.persistence, clock=h.clock, step_queue=queue)
    worker = LocalExecutionEngine(h.registry, h.engine.persistence, clock=h.clock)
    instance = await api.start_workflow("wf")
    assert instance.status is WorkflowStatus.RUNNING and instance.step_history == []
    assert queue.items == [(instance.id, ["a"])]
    await worker.resume(instance.id)
    assert instance.status is WorkflowStatus.WAITING and instance.context.get("trail") == ["a", "b"]
    await worker.resume(instance.id)  # a duplicate message: nothing is due
    assert [r.step_name for r in instance.step_history] == ["a", "b"]
    await api.complete_human_task(instance.id, "approve", "bob", {})
    assert queue.items[-1] == (instance.id, ["c"]) and instance.status is WorkflowStatus.RUNNING
    await worker.resume(instance.id)
    assert instance.status is WorkflowStatus.COMPLETED


async def test_timers_and_deadlines_can_be_fired_from_outside(h: Harness) -> None:
    from flowdeck_engine import LocalExecutionEngine

    steps = [TimerStep("wait", duration=timedelta(hours=1)), WebhookStep("hook", timeout=timedelta(hours=1)), Set("z")]
    h.register(definition(steps, [Edge("wait", "hook"), Edge("hook", "z")]))
    instance = await h.engine.start_workflow("wf")
    scheduler = LocalExecutionEngine(h.registry, h.engine.persistence, clock=h.clock)
    await scheduler.fire_timer(instance.id, "wait")
    assert instance.current_step == "hook"
    await scheduler.fire_timer(instance.id, "wait")  # late duplicate: no-op
    await scheduler.expire_wait(instance.id, "hook")
    assert instance.status is WorkflowStatus.FAILED and "StepTimeoutError" in (instance.error or "")
