"""Every ``sandbox-platform`` command in deploy/Dockerfile (RUN, CMD, ENTRYPOINT,
HEALTHCHECK), docker-compose.yml (commands and healthchecks) and deploy/kubernetes (commands,
args and exec probes) is a real command: a renamed command or option fails here."""

from __future__ import annotations

import shlex

import pytest

from tests.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    MANIFESTS,
    all_deploy_commands,
    check_platform_command,
    compose_commands,
    dockerfile_commands,
    manifest_commands,
)

COMMANDS = all_deploy_commands()


@pytest.mark.parametrize(
    ("source", "command"), COMMANDS, ids=[f"{f}: {shlex.join(c)}" for f, c in COMMANDS]
)
def test_command_is_real(source: str, command: list[str]) -> None:
    check_platform_command(command)


def test_each_file_runs_platform_commands() -> None:
    """The extraction finds what each file runs (an empty list would check nothing)."""
    assert dockerfile_commands(DOCKERFILE.read_text()) == [
        ["sandbox-platform", "health"],
        ["sandbox-platform", "worker"],
    ]
    compose = {c[1] for c in compose_commands(COMPOSE.read_text())}
    assert {"db", "worker", "beat", "flower", "dashboard", "readiness"} <= compose
    manifests = {c[1] for p in MANIFESTS for c in manifest_commands(p.read_text())}
    assert {"db", "worker", "beat", "flower", "dashboard", "readiness", "health"} <= manifests


@pytest.mark.parametrize(
    ("command", "complaint"),
    [
        (["sandbox-platform", "wroker"], "no such command"),
        (["sandbox-platform", "db"], "needs a subcommand"),
        (["sandbox-platform", "db", "upgarde"], "no such command"),
        (["sandbox-platform", "health", "--hostname", "x"], "--hostname is not an option"),
        # worker passes unknown options on to celery: still refused here
        (["sandbox-platform", "worker", "--event"], "--event is not an option"),
        (["sandbox-platform", "dashboard", "--port", "http"], "Invalid value for '--port'"),
        (["sandbox-platform", "readiness", "extra"], "unexpected extra argument"),
    ],
)
def test_a_wrong_command_fails_the_check(command: list[str], complaint: str) -> None:
    with pytest.raises(AssertionError, match=complaint):
        check_platform_command(command)


def test_dockerfile_forms_are_all_read() -> None:
    text = "\n".join(
        [
            "FROM python:3.11-slim",
            "# RUN sandbox-platform commented-out",
            "RUN pip install . && sandbox-platform settings --json \\",
            "    ; sandbox-platform db upgrade",
            'ENTRYPOINT ["sandbox-platform"]',
            "HEALTHCHECK --interval=5s \\",
            "    CMD sandbox-platform health --host h",
            'CMD ["sandbox-platform", "worker", "--events"]',
        ]
    )
    assert dockerfile_commands(text) == [
        ["sandbox-platform", "settings", "--json"],
        ["sandbox-platform", "db", "upgrade"],
        ["sandbox-platform"],
        ["sandbox-platform", "health", "--host", "h"],
        ["sandbox-platform", "worker", "--events"],
    ]


def test_compose_healthchecks_are_read() -> None:
    text = """
services:
  a: {command: sandbox-platform beat, healthcheck: {test: "sandbox-platform health"}}
  b: {healthcheck: {test: ["CMD-SHELL", "sandbox-platform readiness --json || exit 1"]}}
  c: {healthcheck: {test: ["CMD", "sandbox-platform", "status"]}}
  d: {healthcheck: {disable: true}}
"""
    assert compose_commands(text) == [
        ["sandbox-platform", "beat"],
        ["sandbox-platform", "health"],
        ["sandbox-platform", "readiness", "--json"],
        ["sandbox-platform", "status"],
    ]
