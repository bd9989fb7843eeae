"""Run the quickstart's expense approval and show what happened: events, history, diagram.

This is what ``make run`` shows until the hosted services exist.
"""

from __future__ import annotations

import asyncio
import runpy
from pathlib import Path

from flowdeck_engine import InMemoryEventBus, WorkflowStatus


async def main() -> None:
    example = runpy.run_path(str(Path(__file__).with_name("expense_approval.py")))
    engine = example["engine"]
    bus = InMemoryEventBus()
    engine.event_bus = bus
    print("== running examples/expense_approval.py (the quickstart's complete example)\n")
    await example["main"]()
    (instance,) = await engine.list_instances()
    assert instance.status is WorkflowStatus.COMPLETED, instance.error
    print("\n== events")
    for event in bus.events:
        extra = getattr(event, "step_name", "")
        print(f"  {event.timestamp:%H:%M:%S.%f}  {event.type:<20} {extra}")
    print("\n== step history")
    for record in instance.step_history:
        who = f" by {record.completed_by}" if record.completed_by else ""
        print(f"  {record.step_name:<18} {record.status.value:<10} attempt {record.attempt}{who}")
    print("\n== final context")
    for key, value in instance.context.data.items():
        print(f"  {key} = {value!r}")
    print("\n== diagram (Mermaid)\n")
    print(instance.to_mermaid())


if __name__ == "__main__":
    asyncio.run(main())
