"""docker-compose.yml against the Compose specification's schema, and every Kubernetes
manifest against the API schemas of a pinned Kubernetes version, strictly (an unknown field
is an error). Both tools carry their schemas: no network is used (the proxies point at a
closed loopback port, so a download attempt would fail the test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_files import COMPOSE, MANIFESTS

#: the oldest Kubernetes the manifests are meant for (kubernetes-validate bundles its schemas)
KUBERNETES_VERSION = "1.30.0"
NO_NETWORK = "http://127.0.0.1:9"  # the discard port: nothing listens there


def _offline_env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env[name] = NO_NETWORK
    return env


def _run(module: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return _run("check_jsonschema", "--builtin-schema", "vendor.compose-spec", path)


def validate_manifest(path: Path) -> subprocess.CompletedProcess[str]:
    return _run("kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, path)


def test_compose_file_matches_the_compose_spec() -> None:
    proc = check_compose(COMPOSE)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kubernetes_api(path: Path) -> None:
    proc = validate_manifest(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert proc.stdout.count(" passed ") == len(docs), proc.stdout  # every document checked


def _broken_compose(text: str) -> str:
    return text.replace('    command: ["sandbox-platform", "beat"]', '    comand: ["x"]', 1)


def test_a_broken_compose_file_fails(tmp_path: Path) -> None:
    broken = _broken_compose(COMPOSE.read_text())
    assert broken != COMPOSE.read_text()
    (tmp_path / "docker-compose.yml").write_text(broken)
    proc = check_compose(tmp_path / "docker-compose.yml")
    assert proc.returncode != 0 and "comand" in proc.stdout + proc.stderr, proc.stdout


@pytest.mark.parametrize(
    ("name", "old", "new", "complaint"),
    [
        ("worker.yaml", "  replicas: 2\n", "  replica: 2\n", "replica"),  # strict: no typos
        ("worker.yaml", "  replicas: 2\n", "  replicas: two\n", "two"),  # a wrong type
        ("flower.yaml", "containerPort", "containerport", "'containerPort' is a required"),
        ("secret.yaml", "stringData:", "stringdata:", "stringdata"),
    ],
)
def test_a_broken_manifest_fails(
    tmp_path: Path, name: str, old: str, new: str, complaint: str
) -> None:
    (source,) = [p for p in MANIFESTS if p.name == name]
    text = source.read_text()
    assert old in text
    (tmp_path / name).write_text(text.replace(old, new, 1))
    proc = validate_manifest(tmp_path / name)
    assert proc.returncode != 0, proc.stdout
    assert complaint in proc.stdout + proc.stderr


def test_the_pinned_version_is_bundled() -> None:
    proc = _run("kubernetes_validate", "--version")
    assert proc.returncode == 0, proc.stderr
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    assert (schemas / f"v{KUBERNETES_VERSION}-local-strict").is_dir()


def test_the_offline_environment_blocks_downloads() -> None:
    """What makes 'no network' true above: an HTTP(S) fetch under that environment fails at
    the loopback proxy without leaving the machine."""
    script = "import urllib.request; urllib.request.urlopen('https://example.com', timeout=5)"
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=_offline_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Connection refused" in proc.stderr, proc.stderr[-500:]
