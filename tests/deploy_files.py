"""The ``sandbox-platform`` commands that deploy/Dockerfile, docker-compose.yml and the
Kubernetes manifests run, and a check of each against the real command line."""

from __future__ import annotations

import functools
import json
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import platform_env

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
MANIFESTS = sorted((ROOT / "deploy" / "kubernetes").glob("*.yaml"))
PROGRAM = "sandbox-platform"
SHELL_OPERATORS = {"&&", "||", ";", "|", "&", "(", ")"}


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order: continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def instruction_argv(arguments: str) -> list[str]:
    """An exec-form (JSON array) or shell-form argument list as words."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert all(isinstance(w, str) for w in words), arguments
        return list(words)
    lexer = shlex.shlex(arguments, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def healthcheck_argv(arguments: str) -> list[str]:
    """HEALTHCHECK [--options] CMD ...: the command's words (empty for NONE)."""
    options, found, command = arguments.partition("CMD")
    assert found or options.strip() == "NONE", arguments
    return instruction_argv(command.strip()) if found else []


def dockerfile_commands(text: str) -> list[list[str]]:
    """Every platform command that RUN, CMD, ENTRYPOINT or HEALTHCHECK runs."""
    found = []
    for keyword, arguments in dockerfile_instructions(text):
        if keyword in ("RUN", "CMD", "ENTRYPOINT"):
            found += platform_commands(instruction_argv(arguments))
        elif keyword == "HEALTHCHECK":
            found += platform_commands(healthcheck_argv(arguments))
    return found


# -- compose and Kubernetes -------------------------------------------------------------------


def compose_commands(text: str) -> list[list[str]]:
    """Every platform command a compose service runs or probes with."""
    found = []
    for service in (yaml.safe_load(text).get("services") or {}).values():
        command = service.get("command")
        if command is not None:
            found += platform_commands(_compose_argv(command))
        test = (service.get("healthcheck") or {}).get("test")
        if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL"):
            test = test[1:] if test[0] == "CMD" else test[1]
        if test:
            found += platform_commands(_compose_argv(test))
    return found


def _compose_argv(command: str | list[str]) -> list[str]:
    return instruction_argv(command) if isinstance(command, str) else list(command)


def manifest_containers(text: str) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """``(document, container)`` for every container of every pod template in ``text``."""
    for doc in yaml.safe_load_all(text):
        pod = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            yield doc, container


def manifest_commands(text: str) -> list[list[str]]:
    """Every platform command a container runs or probes with (exec probes)."""
    found = []
    for _, container in manifest_containers(text):
        argv = [*container.get("command", []), *container.get("args", [])]
        found += platform_commands(argv)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "exec" in container.get(probe, {}):
                found += platform_commands(container[probe]["exec"]["command"])
    return found


def platform_commands(argv: list[str]) -> list[list[str]]:
    """The ``sandbox-platform ...`` commands in ``argv`` (shell operators split them)."""
    segments: list[list[str]] = [[]]
    for word in argv:
        if word in SHELL_OPERATORS:
            segments.append([])
        else:
            segments[-1].append(word)
    return [s for s in segments if s and Path(s[0]).name == PROGRAM]


def all_deploy_commands() -> list[tuple[str, list[str]]]:
    """``(file, command)`` for every platform command in the Dockerfile, compose, manifests."""
    found = [(DOCKERFILE.name, c) for c in dockerfile_commands(DOCKERFILE.read_text())]
    found += [(COMPOSE.name, c) for c in compose_commands(COMPOSE.read_text())]
    for path in MANIFESTS:
        found += [(path.name, c) for c in manifest_commands(path.read_text())]
    return found


# -- the check against the real command line -------------------------------------------------


def check_platform_command(command: list[str]) -> None:
    """Fail (AssertionError, one line) unless ``command`` is a real ``sandbox-platform``
    command: its subcommand exists, each ``--option`` is one that subcommand has, its options
    and arguments parse, and ``sandbox-platform <subcommand> --help`` runs and lists them."""
    assert command and Path(command[0]).name == PROGRAM, command
    leaf, path, rest = _resolve(command[1:])
    known = {opt for param in leaf.params for opt in (*param.opts, *param.secondary_opts)}
    options = [w.split("=", 1)[0] for w in rest if w.startswith("--")]
    for option in options:
        assert option in known, f"{shlex.join(command)}: {option} is not an option of {path}"
    try:
        leaf.make_context(" ".join(path), list(rest))
    except Exception as error:  # typer's own (vendored) click raises a UsageError
        if not hasattr(error, "format_message"):
            raise
        raise AssertionError(f"{shlex.join(command)}: {error.format_message()}") from None
    text = help_text(tuple(path))
    for option in options:
        assert option in text, f"{shlex.join(command)}: {option} missing from {path} --help"


def _resolve(words: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command object ``words`` name, its path, and the words after the path."""
    import typer.main

    from sandbox_platform.cli import app

    command: Any = typer.main.get_command(app)
    path: list[str] = []
    while isinstance(getattr(command, "commands", None), dict):  # a group
        assert words, f"{' '.join(path) or PROGRAM} needs a subcommand"
        name, words = words[0], words[1:]
        sub = command.commands.get(name)
        assert sub is not None, f"{' '.join([PROGRAM, *path, name])}: no such command"
        command, path = sub, [*path, name]
    return command, path, words


@functools.cache
def help_text(path: tuple[str, ...]) -> str:
    """``sandbox-platform <path> --help`` run as a process, wide enough not to wrap."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = platform_env(data_dir=data_dir, redis_url="redis://127.0.0.1:6379/15")
        env["COLUMNS"] = "200"  # rich wraps help at 80 columns on a pipe
        proc = subprocess.run(
            [sys.executable, "-m", "sandbox_platform", *path, "--help"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, f"{PROGRAM} {' '.join(path)} --help: {proc.stderr[-2000:]}"
    return proc.stdout
