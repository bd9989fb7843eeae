"""The invariant check every reliability scenario ends with (docs/reliability.md).

- started = completed + expected failures;
- no live instance holds an expired lease (and, once all are done, nothing is pending at all);
- each instance's transition log is gap-free, ``(instance_id, seq)`` unique;
- each step committed once (workflows without loops: one succeeded record per step that ran).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

from tests.e2e.stack import Stack


async def check_invariants(
    stack: Stack, tenant: uuid.UUID, started: set[str], *, expected_failures: int = 0, all_done: bool = True
) -> None:
    """Assert the invariants for ``tenant``'s instances ``started``."""
    rows = await stack.tenant_sql(tenant, "SELECT id, status FROM workflow_instances")
    statuses = {str(i): status for i, status in rows}
    appeared, vanished = set(statuses) - started, started - set(statuses)
    assert not appeared and not vanished, f"instances appeared {sorted(appeared)[:5]}, vanished {sorted(vanished)[:5]}"
    counts = Counter(statuses.values())
    assert counts["completed"] + counts["failed"] == len(started) if all_done else True, counts
    assert counts["failed"] == expected_failures, counts

    expired = await stack.tenant_sql(
        tenant,
        "SELECT w.instance_id FROM workflow_pending_work AS w JOIN workflow_instances AS i ON i.id = w.instance_id "
        "WHERE w.lease_expires_at < now() AND i.status NOT IN ('completed', 'failed', 'canceled')",
    )
    assert expired == [], f"live instances hold expired leases: {expired[:5]}"
    if all_done:
        assert await stack.tenant_sql(tenant, "SELECT instance_id FROM workflow_pending_work") == []

    steps = await stack.tenant_sql(
        tenant, "SELECT instance_id, seq, step_name, status FROM workflow_step_executions ORDER BY instance_id, seq"
    )
    seqs: dict[str, list[int]] = defaultdict(list)
    succeeded: dict[str, Counter[str]] = defaultdict(Counter)
    for instance_id, seq, name, status in steps:
        seqs[str(instance_id)].append(seq)
        if status == "succeeded":
            succeeded[str(instance_id)][name] += 1
    for instance_id, numbers in seqs.items():
        assert numbers == list(range(len(numbers))), f"transition log of {instance_id} has gaps: {numbers}"
    for instance_id, names in succeeded.items():
        twice = [name for name, n in names.items() if n != 1]
        assert not twice, f"instance {instance_id} committed {twice} more than once"
