"""Complete expense approval workflow example."""

from datetime import datetime

from flowdeck_engine import (
    BaseHumanStep,
    BaseMachineStep,
    Edge,
    LocalExecutionEngine,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowRegistry,
)


# Step 1: Define Steps
class SubmitRequest(BaseMachineStep):
    name = "submit_request"
    description = "Validate and record the expense submission"

    async def execute(self, context: WorkflowContext) -> None:
        amount = context.get("amount", 0)
        if amount <= 0:
            raise ValueError("Amount must be positive")
        context.set("submitted", True)
        context.set("submitted_at", datetime.now().isoformat())


class ManagerApproval(BaseHumanStep):
    name = "manager_approval"
    title = "Approve Expense Request"
    form_schema = {
        "type": "object",
        "properties": {
            "approved": {"type": "boolean", "title": "Approve?"},
            "comments": {"type": "string", "title": "Comments"},
        },
        "required": ["approved"],
    }


class ProcessResult(BaseMachineStep):
    name = "process_result"
    description = "Handle the final outcome"

    async def execute(self, context: WorkflowContext) -> None:
        status = "approved" if context.get("approved") else "rejected"
        context.set("status", status)
        context.set("completed_at", datetime.now().isoformat())


# Step 2: Create Workflow Definition
expense_workflow = WorkflowDefinition(
    name="expense_approval",
    version="1.0.0",
    description="Expense request approval workflow",
    steps={
        "submit_request": SubmitRequest(),
        "manager_approval": ManagerApproval(),
        "process_result": ProcessResult(),
    },
    edges=[
        Edge("submit_request", "manager_approval"),
        Edge("manager_approval", "process_result"),
    ],
    initial_step="submit_request",
    terminal_steps={"process_result"},
)


# Step 3: Register and Run
registry = WorkflowRegistry()
registry.register_definition(expense_workflow)
engine = LocalExecutionEngine(registry)


async def main():
    # Start a new expense request
    instance = await engine.start_workflow(
        "expense_approval",
        initial_data={
            "requester_id": "alice@example.com",
            "amount": 250.00,
            "description": "Conference registration fee",
        },
    )
    print(f"Workflow started: {instance.id}")
    print(f"Current step: {instance.current_step}")  # manager_approval

    # Manager approves the request
    await engine.complete_human_task(
        instance_id=instance.id,
        step_name="manager_approval",
        user_id="bob@example.com",
        data={"approved": True, "comments": "Approved for Q4 budget"},
    )
    print(f"Workflow completed with status: {instance.context.get('status')}")


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
