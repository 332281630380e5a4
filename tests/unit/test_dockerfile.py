"""deploy/Dockerfile and .dockerignore, read as text (no Docker engine is needed): the
dependency layer is cached and holds the extras every role of docker-compose.yml and
deploy/kubernetes needs, the user's app goes in by build argument, the image runs as a
non-root user with a health check, and the build context leaves out what it must."""

from __future__ import annotations

import fnmatch
import importlib.util
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox_platform.core.extras import EXTRAS
from tests.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    MANIFESTS,
    ROOT,
    compose_commands,
    dockerfile_instructions,
    instruction_argv,
    manifest_commands,
)

INSTRUCTIONS = dockerfile_instructions(DOCKERFILE.read_text())
#: what the image copies: the package (the example app is inside it), README (the wheel's
#: readme) and the default APP_DIR, the repository's deployment app module; not beat/
SOURCES = {"sandbox_platform", "workers", "README.md"}


def _index(predicate) -> int:  # type: ignore[no-untyped-def]
    for i, (keyword, arguments) in enumerate(INSTRUCTIONS):
        if predicate(keyword, arguments):
            return i
    pytest.fail("no such instruction")


def _copies() -> list[tuple[int, list[str]]]:
    """``(index, sources)`` of every COPY (its last word is the destination)."""
    return [
        (i, [w for w in shlex.split(args)[:-1] if not w.startswith("--")])
        for i, (keyword, args) in enumerate(INSTRUCTIONS)
        if keyword == "COPY"
    ]


def _build_args() -> dict[str, str]:
    found = {}
    for keyword, arguments in INSTRUCTIONS:
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            found[name] = default
    return found


def test_pyproject_is_copied_and_dependencies_installed_before_the_sources() -> None:
    copy_pyproject = _index(lambda k, a: k == "COPY" and "pyproject.toml" in a.split())
    install_deps = _index(lambda k, a: k == "RUN" and "pip install" in a)
    first_source = min(i for i, sources in _copies() if set(sources) & SOURCES)
    assert copy_pyproject < install_deps < first_source
    (only,) = [s for i, s in _copies() if i == copy_pyproject]
    # that layer changes only with the dependencies (and the script that lists them)
    assert only == ["pyproject.toml", "deploy/image_requirements.py"]
    assert all("." not in sources for _, sources in _copies()), "COPY . copies everything"


REQUIREMENTS_SCRIPT = ROOT / "deploy" / "image_requirements.py"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _image_extras() -> list[str]:
    return [e for e in _build_args()["EXTRAS"].split(",") if e]


def test_the_dependency_step_installs_pyprojects_core_and_the_images_extras(
    tmp_path: Path,
) -> None:
    """Run the Dockerfile's own step (its script, its build argument) on the real pyproject."""
    run = INSTRUCTIONS[_index(lambda k, a: k == "RUN" and "pip install" in a)][1]
    words = instruction_argv(run)
    assert words[:4] == ["python", "image_requirements.py", "pyproject.toml", "${EXTRAS}"]
    assert words[4:6] == [">", "/tmp/requirements.txt"]
    assert "pip install -r /tmp/requirements.txt" in run
    out = subprocess.run(
        [sys.executable, REQUIREMENTS_SCRIPT, ROOT / "pyproject.toml", _build_args()["EXTRAS"]],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    project = _pyproject()
    optional = project["optional-dependencies"]
    expected = project["dependencies"] + [r for e in _image_extras() for r in optional[e]]
    assert out == expected
    assert _index(lambda k, a: k == "ARG" and a.startswith("EXTRAS=")) < _index(
        lambda k, a: k == "RUN" and "pip install" in a
    )


def test_the_requirements_script_expands_the_projects_own_extras() -> None:
    spec = importlib.util.spec_from_file_location("image_requirements", REQUIREMENTS_SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    requirements = script.requirements

    everything = requirements(ROOT / "pyproject.toml", ["all"])
    optional = _pyproject()["optional-dependencies"]
    assert not [r for r in everything if r.startswith("sandbox-platform")]  # no index lookup
    assert set(everything) == set(_pyproject()["dependencies"]).union(
        *(optional[e] for e in EXTRAS)
    )
    with pytest.raises(SystemExit, match="unknown extra 'dashbord'"):
        requirements(ROOT / "pyproject.toml", ["dashbord"])


# -- the image's extras cover every role -------------------------------------------------------

#: the commands that need an extra beyond the core install (the others run on it)
COMMAND_EXTRAS = {"dashboard": "dashboard", "flower": "flower", "up": "dashboard"}


def _settings_values(compose_text: str, manifest_texts: list[str]) -> dict[str, set[str]]:
    """Every value each SANDBOX_PLATFORM_* variable gets in compose and the manifests."""
    values: dict[str, set[str]] = {}

    def add(mapping: dict[str, Any]) -> None:
        for name, value in (mapping or {}).items():
            if str(name).startswith("SANDBOX_PLATFORM_"):
                values.setdefault(str(name), set()).add(str(value if value is not None else ""))

    for service in (yaml.safe_load(compose_text).get("services") or {}).values():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        add(environment)
    for text in manifest_texts:
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") in ("Secret", "ConfigMap"):
                add(doc.get("stringData") or {})
                add(doc.get("data") or {})
            for container in _containers(doc or {}):
                add({e["name"]: e.get("value", "") for e in container.get("env", [])})
    return values


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    pod = (doc.get("spec") or {}).get("template", {}).get("spec", {})
    return list(pod.get("containers", [])) + list(pod.get("initContainers", []))


def needed_extras(compose_text: str, manifest_texts: list[str]) -> dict[str, str]:
    """extra -> why, for every command and setting of compose and the manifests."""
    needed: dict[str, str] = {}
    commands = compose_commands(compose_text)
    commands += [c for text in manifest_texts for c in manifest_commands(text)]
    for command in commands:
        if len(command) > 1 and command[1] in COMMAND_EXTRAS:
            needed.setdefault(COMMAND_EXTRAS[command[1]], f"sandbox-platform {command[1]}")
    values = _settings_values(compose_text, manifest_texts)
    for name, seen in values.items():
        if name.endswith("DATABASE_URL") and any(
            v.split("://", 1)[0] in ("postgresql", "postgresql+psycopg") for v in seen
        ):
            needed.setdefault("postgres", f"{name}=postgresql://...")
    if values.get("SANDBOX_PLATFORM_OTEL", set()) & {"1", "true", "True", "yes", "on"}:
        needed.setdefault("otel", "SANDBOX_PLATFORM_OTEL on")
    if not values.get("SANDBOX_PLATFORM_REDIS_URL", set()) - {""}:
        needed.setdefault("embedded", "no SANDBOX_PLATFORM_REDIS_URL")
    return needed


def test_the_images_extras_cover_every_command_and_url() -> None:
    needed = needed_extras(COMPOSE.read_text(), [p.read_text() for p in MANIFESTS])
    assert needed == {
        "dashboard": "sandbox-platform dashboard",
        "flower": "sandbox-platform flower",
        "postgres": "SANDBOX_PLATFORM_DATABASE_URL=postgresql://...",
    }
    missing = sorted(set(needed) - set(_image_extras()))
    assert not missing, f"deploy/Dockerfile's EXTRAS lacks {missing}: {needed}"
    assert set(_image_extras()) <= set(EXTRAS)


@pytest.mark.parametrize(
    ("change", "extra"),
    [
        ({"command": ["sandbox-platform", "up"]}, "dashboard"),
        ({"environment": {"SANDBOX_PLATFORM_OTEL": "1"}}, "otel"),
        ({"environment": {"SANDBOX_PLATFORM_LIVE_DATABASE_URL": "postgresql://u@h/l"}}, "postgres"),
    ],
)
def test_a_new_role_or_setting_is_noticed(change: dict[str, Any], extra: str) -> None:
    """The check reads what it must: a service added to compose with a command or a setting
    that needs an extra shows up in ``needed_extras``."""
    compose = yaml.safe_load(COMPOSE.read_text())
    compose["services"]["extra"] = {"image": "sandbox-platform:local", **change}
    needed = needed_extras(yaml.safe_dump(compose), [p.read_text() for p in MANIFESTS])
    assert extra in needed
    # without its Redis URL anywhere, the embedded Redis would be needed
    bare = {"services": {"w": {"command": ["sandbox-platform", "worker"]}}}
    assert needed_extras(yaml.safe_dump(bare), []) == {"embedded": "no SANDBOX_PLATFORM_REDIS_URL"}


def test_the_platform_is_installed_without_resolving_dependencies_again() -> None:
    runs = [a for k, a in INSTRUCTIONS if k == "RUN" and "pip install" in a]
    assert any("pip install --no-deps ." in a for a in runs), runs


def test_the_users_app_comes_from_build_arguments() -> None:
    args = _build_args()
    assert args.get("APP_DIR") == "workers" and args.get("APP_MODULE") == "workers"
    assert any(sources == ["${APP_DIR}"] for _, sources in _copies())
    env = " ".join(a for k, a in INSTRUCTIONS if k == "ENV")
    assert "SANDBOX_PLATFORM_APP=${APP_MODULE}" in env
    assert "PYTHONPATH=/app" in env
    assert (ROOT / args["APP_DIR"]).is_dir()
    # both ways in are documented in the file itself and in docs/deployment.md
    text = DOCKERFILE.read_text()
    docs = (ROOT / "docs" / "deployment.md").read_text()
    for way in ("--build-arg APP_DIR=", "FROM sandbox-platform", "ENV SANDBOX_PLATFORM_APP="):
        assert way in text and way in docs, way


def test_runs_as_a_non_root_user_with_a_health_check() -> None:
    user = _index(lambda k, a: k == "USER")
    assert INSTRUCTIONS[user][1] not in ("root", "0")
    assert all(k != "RUN" for k, _ in INSTRUCTIONS[user:]), "a RUN after USER runs unprivileged"
    assert _index(lambda k, a: k == "HEALTHCHECK") > user
    assert INSTRUCTIONS[-1][0] == "CMD"


# -- .dockerignore -----------------------------------------------------------------------------

IGNORED = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
PATTERNS = [p for p in IGNORED if p and not p.startswith("#")]


def _ignored(path: str) -> bool:
    """Docker's matching, as far as this file uses it: a pattern excludes the path or a
    parent of it; ``**/`` matches at any depth."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in PATTERNS:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            return True
    return False


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "workers/.venv/lib/x.py",
        ".env",
        "workers/.env.local",
        "sandbox_platform/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v/cache",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/x",
        "sandbox_platform.egg-info/PKG-INFO",
        "tests/unit/test_compose.py",
        "bench/results/run.json",
        "build/lib/x.py",
    ],
)
def test_context_leaves_out(path: str) -> None:
    assert _ignored(path), path


def test_context_keeps_everything_the_dockerfile_copies() -> None:
    sources = {s for _, copied in _copies() for s in copied}
    sources = {_build_args()["APP_DIR"] if s == "${APP_DIR}" else s for s in sources}
    assert sources >= {"pyproject.toml", *SOURCES}
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source), f".dockerignore leaves out {source}, which COPY needs"
        for path in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
            rel = path.relative_to(ROOT).as_posix()
            assert "__pycache__" in rel or not _ignored(rel), rel
