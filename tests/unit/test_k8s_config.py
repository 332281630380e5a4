"""deploy/kubernetes: the Secret template and who reads which key, the ConfigMap's app module,
and worker memory sized for the processes the CPU limit gives."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox_platform.procs.cpu_quota import default_processes
from tests.deploy_files import MANIFESTS, manifest_containers
from tests.helpers import platform_env

KUBE = MANIFESTS[0].parent
DOCS = [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]
SECRETS = {doc["metadata"]["name"]: doc for doc in DOCS if doc["kind"] == "Secret"}
(CONFIG,) = [doc["data"] for doc in DOCS if doc["kind"] == "ConfigMap"]
CONNECTIONS = {"SANDBOX_PLATFORM_REDIS_URL", "SANDBOX_PLATFORM_DATABASE_URL"}
UI_KEYS = {
    "flower": {"SANDBOX_PLATFORM_FLOWER_BASIC_AUTH"},
    "dashboard": {"SANDBOX_PLATFORM_DASHBOARD_USER", "SANDBOX_PLATFORM_DASHBOARD_PASSWORD"},
}
SECRET_WORDS = ("URL", "PASSWORD", "AUTH", "TOKEN")
#: resident memory per consumer process and for the supervisor (docs/deployment.md)
CONSUMER_MB, SUPERVISOR_MB = 100, 90


def _workloads() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [
        (doc, container)
        for path in MANIFESTS
        for doc, container in manifest_containers(path.read_text())
        if doc["kind"] in ("Deployment", "Job")
    ]


def _role(doc: dict[str, Any]) -> str:
    return str(doc["spec"]["template"]["metadata"]["labels"]["role"])


def _secret_key_refs(container: dict[str, Any]) -> set[tuple[str, str]]:
    refs = set()
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.add((ref["name"], ref["key"]))
    return refs


def test_the_secret_template_holds_placeholders_only() -> None:
    assert set(SECRETS) == {"sandbox-platform", "sandbox-platform-ui"}
    assert (KUBE / "secret.yaml").exists()
    for name, secret in SECRETS.items():
        assert "data" not in secret, "stringData only: no base64 to hide a real value in"
        for key, value in secret["stringData"].items():
            if any(word in key for word in SECRET_WORDS):
                assert value == "" or "CHANGE-ME" in value, (name, key)
    assert set(SECRETS["sandbox-platform"]["stringData"]) >= {
        *CONNECTIONS,
        "SANDBOX_PLATFORM_LIVE_DATABASE_URL",
    }
    assert set(SECRETS["sandbox-platform-ui"]["stringData"]) == set().union(*UI_KEYS.values())


def test_every_pod_reads_the_connections_secret_and_the_config_map() -> None:
    workloads = _workloads()
    assert {_role(doc) for doc, _ in workloads} >= {"worker", "beat", "flower", "dashboard"}
    for doc, container in workloads:
        refs = [next(iter(r.items())) for r in container["envFrom"]]
        assert ("secretRef", {"name": "sandbox-platform"}) in refs, _role(doc)
        assert ("configMapRef", {"name": "sandbox-platform"}) in refs, _role(doc)


def test_ui_credentials_reach_only_flower_and_the_dashboard() -> None:
    for doc, container in _workloads():
        refs = _secret_key_refs(container)
        expected = {("sandbox-platform-ui", key) for key in UI_KEYS.get(_role(doc), set())}
        assert refs == expected, _role(doc)
        for name, key in refs:  # every reference names a key the template has
            assert key in SECRETS[name]["stringData"], (name, key)


def test_no_manifest_carries_a_literal_secret() -> None:
    for doc, container in _workloads():
        for var in container.get("env", []):
            if any(word in var["name"] for word in SECRET_WORDS):
                assert "value" not in var, (_role(doc), var["name"])
    assert not [key for key in CONFIG if any(word in key for word in SECRET_WORDS)]


def test_the_app_module_comes_from_the_config_map() -> None:
    assert CONFIG["SANDBOX_PLATFORM_APP"] == "workers"  # the bundled example, in the image
    for _, container in _workloads():
        assert not any("SANDBOX_PLATFORM_APP" in word for word in container["command"])


def test_config_map_and_secret_template_are_valid_settings(tmp_path: Path) -> None:
    """What a pod's environment would be, validated by the platform itself."""
    env = platform_env(data_dir=tmp_path)
    env.update(CONFIG)
    env.update(SECRETS["sandbox-platform"]["stringData"])
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "settings", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["mode"] == "sandbox" and shown["live_database_url"] is None
    assert "CHANGE-ME" not in proc.stdout  # the password part is masked


def _cpu(quantity: str) -> tuple[int, int]:
    """A CPU quantity as a cgroup (quota, period) in microseconds, as the kubelet sets it."""
    period = 100_000
    if quantity.endswith("m"):
        return int(quantity[:-1]) * period // 1000, period
    return int(float(quantity) * period), period


def _mib(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**20


def test_worker_memory_fits_the_processes_its_cpu_limit_starts(tmp_path: Path) -> None:
    (worker,) = [c for doc, c in _workloads() if _role(doc) == "worker"]
    assert "--processes" not in worker["command"]  # the CPU limit decides
    resources = worker["resources"]
    quota, period = _cpu(resources["limits"]["cpu"])
    (tmp_path / "cpu.max").write_text(f"{quota} {period}\n")
    processes = default_processes(tmp_path, cpu_count=64)  # on a big node
    assert processes >= 1
    needed = (processes * CONSUMER_MB + SUPERVISOR_MB) * 1e6 / 2**20
    request, limit = _mib(resources["requests"]["memory"]), _mib(resources["limits"]["memory"])
    assert needed <= request <= limit, (processes, needed, request, limit)
    assert limit <= 2 * request, "a limit far above the request invites OOM kills on the node"
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]


@pytest.mark.parametrize(
    ("quantity", "expected"), [("2", (200_000, 100_000)), ("1500m", (150_000, 100_000))]
)
def test_cpu_quantities(quantity: str, expected: tuple[int, int]) -> None:
    assert _cpu(quantity) == expected
