"""deploy/kubernetes: valid YAML, and every platform command and probe in it is a real
command here (its --help runs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))


def _commands() -> list[list[str]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            spec = (doc or {}).get("spec", {})
            pod = spec.get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                found.append(container["command"])
                for probe in ("livenessProbe", "readinessProbe"):
                    if "exec" in container.get(probe, {}):
                        found.append(container[probe]["exec"]["command"])
    return found


HTTP_ENDPOINTS = {"/healthz", "/readyz", "/metrics"}
#: Flower's own probe endpoint (flower/urls.py), served without credentials
FLOWER_HEALTH = "/healthcheck"


def _http_probes(name: str) -> list[str]:
    return [
        container[probe]["httpGet"]["path"]
        for doc in _docs(name)
        for container in _containers(doc)
        for probe in ("livenessProbe", "readinessProbe")
        if "httpGet" in container.get(probe, {})
    ]


def test_flower_probes_use_flowers_health_endpoint() -> None:
    import re

    from flower.urls import handlers

    patterns = [h.regex.pattern if hasattr(h, "regex") else h[0] for h in handlers]
    assert any(re.fullmatch(pattern, FLOWER_HEALTH) for pattern in patterns)
    assert _http_probes("flower.yaml") == [FLOWER_HEALTH, FLOWER_HEALTH]


def test_http_probes_use_the_dashboards_endpoints() -> None:
    from sandbox_platform.dashboard.api import api_routes

    served = {route.path for route in api_routes()}
    assert served >= HTTP_ENDPOINTS
    probes = [
        container[probe]["httpGet"]["path"]
        for path in MANIFESTS
        if path.name != "flower.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        for container in (doc or {})
        .get("spec", {})
        .get("template", {})
        .get("spec", {})
        .get("containers", [])
        for probe in ("livenessProbe", "readinessProbe")
        if "httpGet" in container.get(probe, {})
    ]
    assert probes and set(probes) <= HTTP_ENDPOINTS


def test_manifests_parse_and_have_commands() -> None:
    assert MANIFESTS
    assert len(_commands()) >= 5


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[:3]))
def test_commands_are_real(command: list[str], tmp_path: Path) -> None:
    assert command[0] == "sandbox-platform"
    subcommand = command[1:3] if command[1] == "db" else command[1:2]
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *subcommand, "--help"],
        env=platform_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_readiness_probes_skip_only_known_checks() -> None:
    from sandbox_platform.ops.readiness import CHECK_NAMES

    for command in _commands():
        if command[1] == "readiness" and "--skip" in command:
            names = command[command.index("--skip") + 1].split(",")
            assert set(names) <= set(CHECK_NAMES), names


def _docs(name: str) -> list[dict]:  # type: ignore[type-arg]
    text = (ROOT / "deploy" / "kubernetes" / name).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _containers(doc: dict) -> list[dict]:  # type: ignore[type-arg]
    return list(doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []))


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c[:3]))
def test_command_options_are_real(command: list[str], tmp_path: Path) -> None:
    """Every --option in a manifest's command or probe is one its command documents."""
    first_option = next((i for i, w in enumerate(command) if w.startswith("-")), len(command))
    env = platform_env(data_dir=tmp_path, redis_url="redis://127.0.0.1:6379/15")
    env["COLUMNS"] = "200"  # rich wraps help at 80 columns on a pipe
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", *command[1:first_option], "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for option in (w.split("=", 1)[0] for w in command if w.startswith("--")):
        assert option in proc.stdout, f"{command}: {option} is not an option"


def test_workers_send_events_for_flower() -> None:
    (deployment,) = [d for d in _docs("worker.yaml") if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    assert "--events" in container["command"]


def test_flower_deployment_and_service() -> None:
    docs = {doc["kind"]: doc for doc in _docs("flower.yaml")}
    assert set(docs) == {"Deployment", "Service"}
    (container,) = _containers(docs["Deployment"])
    assert container["command"][:2] == ["sandbox-platform", "flower"]
    pod_labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = docs["Service"]["spec"]
    assert service["type"] == "ClusterIP"
    assert service["selector"].items() <= pod_labels.items()
    port = container["command"][container["command"].index("--port") + 1]
    (named,) = [p for p in container["ports"] if p["name"] == service["ports"][0]["targetPort"]]
    assert str(named["containerPort"]) == port


def test_flower_credentials_come_from_the_secret() -> None:
    (deployment,) = [d for d in _docs("flower.yaml") if d["kind"] == "Deployment"]
    (container,) = _containers(deployment)
    assert not any("auth" in word.lower() for word in container["command"])
    env = {item["name"]: item for item in container["env"]}
    ref = env["SANDBOX_PLATFORM_FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "sandbox-platform-ui"
    for path in MANIFESTS:  # no manifest carries a literal Flower credential
        for doc in _docs(path.name):
            for item in _containers(doc):
                for var in item.get("env", []):
                    assert "value" not in var or "AUTH" not in var["name"], (path, var["name"])


def test_the_worker_grace_period_outlasts_the_warm_shutdown() -> None:
    """SIGTERM: running jobs get SHUTDOWN_TIMEOUT seconds, then the rest is handed back and
    the records flushed; all of it must end before Kubernetes sends SIGKILL."""
    from sandbox_platform.core.settings import Settings

    (worker,) = [
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/kubernetes/worker.yaml").read_text())
        if doc and doc.get("kind") == "Deployment"
    ]
    grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown = Settings.model_fields["shutdown_timeout"].default
    assert grace >= shutdown + 20, (grace, shutdown)
