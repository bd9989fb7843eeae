"""``make run`` as a new user meets it: a real process on SQLite, its printed tokens, the flow over HTTP.

The worker and the scheduler run inside that process (in-process queue, no Redis): machine steps
run after the start request returns, timers fire, escalations reassign, parallel branches join,
and outbound webhooks are delivered, all over HTTP as a user would see it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowdeck_api.cli import dev_token
from flowdeck_api.embedded import DEMO_TENANT
from flowdeck_runtime.settings import load_settings
from tests.e2e import documents
from tests.e2e.receiver import receiver

ROOT = Path(__file__).resolve().parents[2]
EMBEDDED_ENV = {
    "FLOWDECK_SCHEDULER_POLL": "0.2",
    "FLOWDECK_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    "FLOWDECK_WEBHOOK_INITIAL_DELAY": "0.5",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Any, what: str, seconds: float = 20) -> Any:
    """Call ``check`` until it returns something truthy; that value."""
    deadline = time.monotonic() + seconds
    while (found := check()) in (None, [], {}, False) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert found, f"timed out waiting for {what}"
    return found


def finished(base: str, headers: dict[str, str], iid: str) -> dict[str, Any]:
    """The instance ``iid`` once it has completed, failed or been canceled."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = httpx.get(f"{base}/v1/instances/{iid}", headers=headers).json()
        return body if body["status"] in {"completed", "failed", "canceled"} else None

    result: dict[str, Any] = poll(done, f"instance {iid} to finish")
    return result


def token(home: Path, user: str, *roles: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """A bearer header for ``user`` of the demo tenant, signed with the embedded run's dev secret."""
    auth = replace(load_settings().auth, dev_secret_file=home / "dev-secret")
    minted = dev_token(auth, tenant=DEMO_TENANT, subject=user, roles=roles, groups=groups, ttl=timedelta(hours=1))
    return {"authorization": f"Bearer {minted}"}


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWDECK_")}
    env.update({"FLOWDECK_HOME": str(tmp_path / "home"), "FLOWDECK_PORT": str(port), **EMBEDDED_ENV})
    process = subprocess.Popen(
        [sys.executable, "-m", "flowdeck_api.embedded"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        lines: list[str] = []
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(lines)
        tokens = dict(re.findall(r"export (\w+)=(\S+)", output))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/v1/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base, tokens, output
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_make_run_serves_the_demo_tenant_and_its_instructions_work(
    embedded: tuple[str, dict[str, str], str],
) -> None:
    base, tokens, output = embedded
    assert f"{base}/docs" in output
    assert set(tokens) == {"ADMIN", "ALICE", "BOB"}
    assert "expense-approval 1.0.0" in output
    alice = {"authorization": f"Bearer {tokens['ALICE']}"}
    bob = {"authorization": f"Bearer {tokens['BOB']}"}
    start = re.search(r"-d '(\{\"workflow\".*?\})'", output)
    assert start is not None
    started = httpx.post(
        f"{base}/v1/instances", content=start.group(1), headers={**alice, "content-type": "application/json"}
    )
    assert started.status_code == 201, started.text
    (task,) = poll(lambda: httpx.get(f"{base}/v1/tasks", headers=bob).json()["items"], "bob's task")
    done = httpx.post(f"{base}/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob)
    assert done.status_code == 200, done.text
    instance = finished(base, alice, started.json()["id"])
    assert instance["status"] == "completed" and instance["context"]["approved"] is True
    assert httpx.get(f"{base}/docs").status_code == 200


def test_timers_escalations_joins_and_webhooks_run_in_process(
    embedded: tuple[str, dict[str, str], str], tmp_path: Path
) -> None:
    base, tokens, _ = embedded
    admin = {"authorization": f"Bearer {tokens['ADMIN']}"}
    finance = token(tmp_path / "home", "fred", "member", groups=("finance-leads",))
    managers = token(tmp_path / "home", "mia", "member", groups=("managers",))
    with receiver(fail_first=1) as (url, received):
        hook = httpx.post(f"{base}/v1/webhooks", json={"url": url, "event_types": ["WorkflowCompleted"]}, headers=admin)
        assert hook.status_code == 201, hook.text
        for doc in (documents.timer(1), documents.escalation(1), documents.parallel()):
            assert httpx.post(f"{base}/v1/definitions", json=doc, headers=admin).status_code == 201
        ids = {}
        for name in ("timed", "escalating", "fan-out"):
            started = httpx.post(f"{base}/v1/instances", json={"workflow": name}, headers=admin)
            assert started.status_code == 201, started.text
            ids[name] = started.json()["id"]
        assert finished(base, admin, ids["fan-out"])["status"] == "completed"
        assert finished(base, admin, ids["timed"])["status"] == "completed"
        (task,) = poll(lambda: httpx.get(f"{base}/v1/tasks", headers=finance).json()["items"], "the escalated task")
        assert httpx.get(f"{base}/v1/tasks", headers=managers).json()["items"] == []
        done = httpx.post(f"{base}/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=finance)
        assert done.status_code == 200, done.text
        assert finished(base, admin, ids["escalating"])["status"] == "completed"

        def delivered() -> list[dict[str, Any]]:
            log = httpx.get(f"{base}/v1/webhooks/{hook.json()['id']}/deliveries", headers=admin).json()
            return [d for d in log if d["status"] == "delivered"]

        assert len(poll(lambda: len(delivered()) == 3 and delivered(), "three deliveries")) == 3
    assert len(received.requests) == 4  # one refused, then one per completed instance
