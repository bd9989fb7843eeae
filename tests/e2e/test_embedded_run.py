"""``make run`` as a new user meets it: a real process on SQLite, its printed tokens, the flow over HTTP."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    port = free_port()
    env = {**os.environ, "FLOWDECK_HOME": str(tmp_path / "home"), "FLOWDECK_PORT": str(port)}
    env.pop("FLOWDECK_DATABASE_URL", None)
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
    (task,) = httpx.get(f"{base}/v1/tasks", headers=bob).json()["items"]
    done = httpx.post(f"{base}/v1/tasks/{task['id']}/complete", json={"data": {"approved": True}}, headers=bob)
    assert done.status_code == 200, done.text
    instance = httpx.get(f"{base}/v1/instances/{started.json()['id']}", headers=alice).json()
    assert instance["status"] == "completed" and instance["context"]["approved"] is True
    assert httpx.get(f"{base}/docs").status_code == 200
