"""The deployment files validate offline: docker-compose.yml against the Compose spec, the Dockerfile
with hadolint; and the compose file runs every production process with the commands we ship."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is a dev dependency: run uv sync"
    return found


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    done = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [_tool("hadolint"), str(ROOT / "infra/Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_runs_every_process_and_binds_the_api_to_loopback_only() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "scheduler", "otel-collector"} <= set(services)
    assert services["migrate"]["command"][0] == "migrate"
    for name in ("api", "worker", "scheduler"):
        assert services[name]["command"][0] == name
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = services[name]["environment"]
        assert env["FLOWDECK_MODE"] == "production" and env["FLOWDECK_REDIS_URL"].startswith("redis://")
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    for path in ("infra/postgres-init.sql", "infra/otel-collector.yaml"):
        assert (ROOT / path).is_file()
