"""The deployment files validate offline: docker-compose.yml against the Compose spec, the Dockerfile
with hadolint, the Kubernetes manifests with ``kubernetes-validate --strict``; and both run every
production process with the commands we ship, as the database role each one needs."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowdeck_runtime.settings import WorkSettings

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
K8S = ROOT / "infra/k8s"
# The oldest Kubernetes we support; kubernetes-validate ships its schemas (no network).
K8S_VERSION = "1.30.0"
# SAQ's cancellation deadline after the shutdown grace (flowdeck_worker.worker.build_worker).
SAQ_CANCELLATION_DEADLINE = 5


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


# --- Kubernetes (infra/k8s) -------------------------------------------------------------------


def _resource_files() -> list[Path]:
    files = sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")
    assert files, "infra/k8s holds no manifests"
    return files


def _resources() -> list[dict[str, Any]]:
    return [doc for path in _resource_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_specs() -> dict[str, dict[str, Any]]:
    """Every pod template's spec, by its workload's name."""
    return {
        r["metadata"]["name"]: r["spec"]["template"]["spec"]
        for r in _resources()
        if r["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}
    }


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def _main(workload: str) -> dict[str, Any]:
    containers = _pod_specs()[workload]["containers"]
    assert len(containers) == 1, f"{workload} runs one container"
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _secret_ref(container: dict[str, Any], name: str) -> str:
    entry = _env(container).get(name)
    assert entry is not None, f"{container['name']} does not set {name}"
    ref = entry.get("valueFrom", {}).get("secretKeyRef")
    assert ref is not None and "value" not in entry, f"{container['name']}: {name} must come from a Secret"
    assert ref.get("optional") is not True, f"{container['name']}: {name} must not be optional"
    return str(ref["name"])


def _config() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "flowdeck-config")["data"]
    return data


def _parse(args: list[str]) -> argparse.Namespace:
    """``args`` parsed by the shipped ``flowdeck`` subcommand they name (unknown flags fail)."""
    commands = {point.name: point for point in entry_points(group="flowdeck.commands")}
    assert args[0] in commands, f"flowdeck has no command {args[0]!r}"
    parser = argparse.ArgumentParser(prog=f"flowdeck {args[0]}")
    commands[args[0]].load().configure(parser)
    try:
        return parser.parse_args(args[1:])
    except SystemExit:
        pytest.fail(f"flowdeck {' '.join(args)} is not a valid command line")


def _validate(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("kubernetes-validate"), "--strict", "--kubernetes-version", K8S_VERSION, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kubernetes_manifests_pass_strict_validation() -> None:
    files = _resource_files()
    done = _validate(files)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    # A kind without a schema is only a warning: every file must have been checked for real.
    assert "WARN" not in output and "ERROR" not in output, output
    for path in files:
        assert f"{path.relative_to(ROOT)} passed" in output or f"{path} passed" in output, output


def test_strict_validation_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = yaml.safe_load((K8S / "api-deployment.yaml").read_text())
    misspelled = "readinesProbe"  # silently ignored by a lenient apply: the API would never be probed
    deployment["spec"]["template"]["spec"]["containers"][0][misspelled] = {"httpGet": {"port": 8000}}
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(deployment))
    done = _validate([broken])
    assert done.returncode != 0 and misspelled in done.stdout + done.stderr


def test_kustomization_lists_every_manifest_and_no_namespace_is_fixed() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [path.name for path in _resource_files()]
    assert "namespace" not in kustomization
    for resource in _resources():
        assert "namespace" not in resource["metadata"], resource["metadata"]["name"]


def test_kubernetes_runs_every_process_with_the_shipped_command() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    image = _main("flowdeck-api")["image"]
    for workload, process in (
        ("flowdeck-migrate", "migrate"),
        ("flowdeck-api", "api"),
        ("flowdeck-worker", "worker"),
        ("flowdeck-scheduler", "scheduler"),
    ):
        container = _main(workload)
        assert "command" not in container, f"{workload} must keep the image's entrypoint (flowdeck)"
        assert container["args"] == compose[process]["command"], workload
        _parse(container["args"])
        assert container["image"] == image, f"{workload} runs another image"
    assert _one("Job", "flowdeck-migrate")["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    migrate = _parse(_main("flowdeck-migrate")["args"])
    assert (migrate.app_role, migrate.system_role) == ("flowdeck_app", "flowdeck_system")
    assert "FLOWDECK_MODE" not in _env(_main("flowdeck-api"))
    assert _config()["FLOWDECK_MODE"] == "production"
    for workload in ("flowdeck-api", "flowdeck-worker", "flowdeck-scheduler", "flowdeck-migrate"):
        refs = [source["configMapRef"]["name"] for source in _main(workload).get("envFrom", [])]
        assert refs == ["flowdeck-config"], workload


def test_each_process_logs_in_as_its_own_database_role() -> None:
    api, worker, scheduler, migrate = (_main(f"flowdeck-{name}") for name in ("api", "worker", "scheduler", "migrate"))
    assert _secret_ref(api, "FLOWDECK_DATABASE_URL") == "flowdeck-db-api"
    # The cross-tenant scans are granted to flowdeck_system only: the worker's role is a member.
    assert _secret_ref(worker, "FLOWDECK_DATABASE_URL") == "flowdeck-db-worker"
    assert _secret_ref(scheduler, "FLOWDECK_DATABASE_URL") == "flowdeck-db-worker"
    assert _secret_ref(migrate, "FLOWDECK_DATABASE_ADMIN_URL") == "flowdeck-db-admin"
    for container in (api, worker, scheduler):
        assert "FLOWDECK_DATABASE_ADMIN_URL" not in _env(container), "only the migrate Job is the owner"
        assert _secret_ref(container, "FLOWDECK_REDIS_URL") == "flowdeck-redis"
    # Production tokens are verified with the identity provider's keys; an asymmetric algorithm
    # makes the API refuse to start without them rather than sign with a per-pod dev secret.
    assert _secret_ref(api, "FLOWDECK_JWKS_URL") == "flowdeck-auth"
    assert not _env(api)["FLOWDECK_JWT_ALGORITHMS"]["value"].startswith("HS")


def test_the_api_is_replicated_probed_served_and_protected_from_drains() -> None:
    deployment = _one("Deployment", "flowdeck-api")
    assert deployment["spec"]["replicas"] >= 2
    api = _main("flowdeck-api")
    args = _parse(api["args"])
    assert args.host == "0.0.0.0" and args.port == 8000
    assert [(p["name"], p["containerPort"]) for p in api["ports"]] == [("http", 8000)]
    # Readiness does not follow the database: an outage answers 503s rather than emptying the Service.
    for probe, path in (("readinessProbe", "/v1/health/live"), ("livenessProbe", "/v1/health/live")):
        get = api[probe]["httpGet"]
        assert (get["path"], get["port"]) == (path, "http"), probe
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = _one("Service", "flowdeck-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    budget = _one("PodDisruptionBudget", "flowdeck-api")["spec"]
    assert budget["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget.get("minAvailable", 0) >= 1 and budget["minAvailable"] < deployment["spec"]["replicas"]


def test_workers_have_time_to_give_their_leases_back() -> None:
    grace = int(_config().get("FLOWDECK_SHUTDOWN_GRACE", WorkSettings().shutdown_grace_seconds))
    assert "FLOWDECK_SHUTDOWN_GRACE" not in _env(_main("flowdeck-worker")), "set it in the ConfigMap only"
    spec = _pod_specs()["flowdeck-worker"]
    assert spec["terminationGracePeriodSeconds"] > grace + SAQ_CANCELLATION_DEADLINE
    for name in ("flowdeck-worker", "flowdeck-scheduler"):
        assert "ports" not in _main(name), f"{name} serves no HTTP"
        assert _one("Deployment", name)["spec"]["replicas"] >= 1


def test_every_container_is_locked_down_with_requests_and_limits() -> None:
    user = re.findall(r"^USER\s+(\d+)\s*$", (ROOT / "infra/Dockerfile").read_text(), re.MULTILINE)
    assert user, "the Dockerfile runs as a numeric non-root user"
    home = _config()["FLOWDECK_HOME"]
    for workload, spec in _pod_specs().items():
        assert spec.get("automountServiceAccountToken") is False, workload
        assert spec["securityContext"]["runAsNonRoot"] is True, workload
        assert str(spec["securityContext"]["runAsUser"]) == user[-1], workload
        empty_dirs = {volume["name"] for volume in spec.get("volumes", []) if "emptyDir" in volume}
        for container in _containers(spec):
            where = f"{workload}/{container['name']}"
            context = container.get("securityContext", {})
            assert context.get("runAsNonRoot") is True, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("privileged") is not True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not context.get("capabilities", {}).get("add"), where
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container.get("resources", {}).get(bound, {})), f"{where} {bound}"
            # The root filesystem is read-only: FLOWDECK_HOME and /tmp are emptyDirs.
            writable = {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty_dirs}
            assert {home, "/tmp"} <= writable, where


def test_no_secret_value_is_committed() -> None:
    runtime = "".join(path.read_text() for path in (ROOT / "libs/runtime/src/flowdeck_runtime").glob("*.py"))
    known = set(re.findall(r"FLOWDECK_[A-Z_]+", runtime))  # every variable Flowdeck reads
    assert not [r for r in _resources() if r["kind"] == "Secret"], "ops create the Secrets"
    credentials = re.compile(r"://[^/\s@]*:[^/\s@]*@")
    for key, value in _config().items():
        assert not credentials.search(value), key
        assert not re.search(r"URL|SECRET|PASSWORD|TOKEN|KEY", key) or key == "OTEL_EXPORTER_OTLP_ENDPOINT", key
        assert not key.startswith("FLOWDECK_") or key in known, f"{key} is not a setting Flowdeck reads"
    for workload, spec in _pod_specs().items():
        for container in _containers(spec):
            for name, entry in _env(container).items():
                assert not name.startswith("FLOWDECK_") or name in known, f"{workload}: {name} is not a setting"
                assert name != "FLOWDECK_DEV_SECRET_FILE", f"{workload}: production verifies tokens with JWKS"
                if re.search(r"URL|SECRET|PASSWORD|TOKEN", name):
                    _secret_ref(container, name)
                assert not credentials.search(str(entry.get("value", ""))), f"{workload}: {name}"
    for path in K8S.glob("*.yaml"):
        for password in ("flowdeck-owner", "flowdeck-api@", "flowdeck-worker@"):
            assert password not in path.read_text(), f"{path.name} holds a credential"
