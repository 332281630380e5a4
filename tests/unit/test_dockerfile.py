"""deploy/Dockerfile and .dockerignore, read as text (no Docker engine is needed): the
dependency layer is cached, the user's app goes in by build argument, the image runs as a
non-root user with a health check, and the build context leaves out what it must."""

from __future__ import annotations

import fnmatch
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy_files import DOCKERFILE, ROOT, dockerfile_instructions, instruction_argv

INSTRUCTIONS = dockerfile_instructions(DOCKERFILE.read_text())
SOURCES = {"sandbox_platform", "workers", "beat", "README.md"}


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
    assert only == ["pyproject.toml"]  # that layer changes only with the dependencies
    assert all("." not in sources for _, sources in _copies()), "COPY . copies everything"


def test_the_dependency_step_installs_exactly_pyprojects_dependencies(tmp_path: Path) -> None:
    """Run the Dockerfile's own extraction script on the real pyproject.toml."""
    run = INSTRUCTIONS[_index(lambda k, a: k == "RUN" and "pip install" in a)][1]
    words = instruction_argv(run)
    script = words[words.index("-c") + 1]
    out = tmp_path / "requirements.txt"
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    assert "/tmp/requirements.txt" in script and "/tmp/requirements.txt" in run
    subprocess.run(
        [sys.executable, "-c", script.replace("/tmp/requirements.txt", str(out))],
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out.read_text().splitlines() == expected
    assert "pip install -r /tmp/requirements.txt" in run


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
