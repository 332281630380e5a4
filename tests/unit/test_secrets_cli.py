"""``sandbox-platform secrets``: new keys (only the value on stdout, parseable as the settings
parse it), its one-line usage errors, and re-sealing one message's envelopes (no services).
The database round trip and readiness are tests/integration/test_secret_reencrypt.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sandbox_platform.cli import app
from sandbox_platform.core.sealing import open_value, seal_value
from sandbox_platform.core.secret_keys import (
    FINGERPRINT_KEY_SETTING,
    KEY_BYTES,
    SECRET_KEYS_SETTING,
    new_key,
    parse_fingerprint_key,
    parse_key_ring,
)
from sandbox_platform.ops.secret_reencrypt import reencrypt_message
from sandbox_platform.ops.secret_usage import KeyUsage, message_key_ids

TASK = "shop.pay"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["secrets", *args])
    return result.exit_code, result.stdout, result.stderr


# -- new-key -----------------------------------------------------------------------------------


def test_new_key_prints_one_ring_entry_and_a_hint_on_stderr() -> None:
    code, out, err = run("new-key")
    assert code == 0, err
    assert out.endswith("\n") and out.count("\n") == 1
    ring = parse_key_ring(out.strip())
    assert len(ring.keys) == 1 and len(ring.current) == KEY_BYTES
    assert re.fullmatch(r"k\d{8}[0-9a-f]{4}", ring.current_id)
    assert SECRET_KEYS_SETTING in err and "reencrypt" in err
    assert out.strip() not in err  # the key is on stdout only


def test_new_key_with_an_id_and_two_keys_make_a_rotation_ring() -> None:
    code, first, _ = run("new-key", "--id", "B")
    assert code == 0
    code, second, _ = run("new-key", "--id", "A.2024_old-1")
    assert code == 0
    ring = parse_key_ring(f"{first.strip()},{second.strip()}")
    assert ring.ids == ("B", "A.2024_old-1")
    assert ring.current_id == "B"
    assert ring.keys[0][1] != ring.keys[1][1]


def test_new_fingerprint_key() -> None:
    code, out, err = run("new-key", "--fingerprint")
    assert code == 0, err
    assert out.count("\n") == 1
    assert len(parse_fingerprint_key(out.strip())) == KEY_BYTES
    assert FINGERPRINT_KEY_SETTING in err
    assert ":" not in out  # no key id


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("new-key", "--id", "bad id"), "not a key id: 'bad id'"),
        (("new-key", "--id", "x" * 41), "not a key id"),
        (("new-key", "--id", "a:b"), "not a key id"),
        (("new-key", "--id", "B", "--fingerprint"), "--id does not apply to --fingerprint"),
    ],
)
def test_new_key_usage_errors_are_one_line_exit_2(args: tuple[str, ...], said: str) -> None:
    code, out, err = run(*args)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("sandbox-platform: ") and said in err


def test_new_key_needs_no_settings_and_only_the_value_reaches_stdout(tmp_path: Path) -> None:
    """As ``export X=$(sandbox-platform secrets new-key)`` runs it: settings that would not
    load (a malformed Redis URL, live mode with no database) do not matter."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SANDBOX_PLATFORM_REDIS_URL": "not a url",
        "SANDBOX_PLATFORM_MODE": "live",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "secrets", "new-key", "--id", "fresh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert parse_key_ring(done.stdout.strip()).ids == ("fresh",)
    assert done.stdout.count("\n") == 1
    assert SECRET_KEYS_SETTING in done.stderr


def test_reencrypt_without_keys_in_live_mode_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SANDBOX_PLATFORM_MODE", "live")
    monkeypatch.setenv("SANDBOX_PLATFORM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SANDBOX_PLATFORM_DATABASE_URL", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("SANDBOX_PLATFORM_LIVE_DATABASE_URL", f"sqlite:///{tmp_path / 'l.db'}")
    monkeypatch.setenv("SANDBOX_PLATFORM_DATA_DIR", str(tmp_path))
    code, out, err = run("reencrypt")
    assert code == 2
    assert out == ""
    assert f"configuration error: {SECRET_KEYS_SETTING}" in err and err.count("\n") == 1


# -- re-sealing one message --------------------------------------------------------------------


def ring_of(*ids: str) -> tuple[str, dict[str, str]]:
    entries = {key_id: new_key(key_id) for key_id in ids}
    return ",".join(entries.values()), entries


def test_reencrypt_message_moves_envelopes_to_the_current_key() -> None:
    _, entries = ring_of("A", "B")
    old = parse_key_ring(entries["A"])
    both = parse_key_ring(f"{entries['B']},{entries['A']}")
    message = {
        "task": TASK,
        "args": [
            "order-1",
            seal_value(old, TASK, "card", "4242 4242 4242 4242"),
            seal_value(old, TASK, "#2", {"nested": [1, 2]}),  # past the declared parameters
        ],
        "kwargs": {"cvv": seal_value(old, TASK, "cvv", 123), "note": "plain"},
        "queue": "q",
    }
    already = seal_value(both, TASK, "token", "t")  # under the current key: left alone
    message["kwargs"]["token"] = already  # type: ignore[index]

    moved = reencrypt_message(both, TASK, message, ("order_id", "card"))
    assert moved.envelopes == 3 and moved.problems == []
    args, kwargs = moved.message["args"], moved.message["kwargs"]
    assert args[0] == "order-1" and kwargs["note"] == "plain" and moved.message["queue"] == "q"
    assert kwargs["token"] is already
    assert sorted(message_key_ids(args, kwargs)) == ["B", "B", "B", "B"]
    new = parse_key_ring(entries["B"])
    assert open_value(new, TASK, "card", args[1]) == "4242 4242 4242 4242"
    assert open_value(new, TASK, "#2", args[2]) == {"nested": [1, 2]}
    assert open_value(new, TASK, "cvv", kwargs["cvv"]) == 123
    assert message["args"][1]["kid"] == "A"  # type: ignore[index]  # the input is not changed


def test_reencrypt_message_reports_what_it_cannot_open() -> None:
    _, entries = ring_of("A", "B", "C")
    ring = parse_key_ring(f"{entries['B']},{entries['A']}")
    gone = parse_key_ring(entries["C"])
    tampered = seal_value(parse_key_ring(entries["A"]), TASK, "card", "x")
    tampered["ct"] = tampered["ct"][:-4] + ("AAAA" if tampered["ct"][-4:] != "AAAA" else "BBBB")
    message = {
        "args": ["o", tampered],
        "kwargs": {"cvv": seal_value(gone, TASK, "cvv", 1)},
    }
    moved = reencrypt_message(ring, TASK, message, ("order_id", "card"))
    assert moved.envelopes == 0
    assert [(argument, key_id) for argument, key_id, _why in moved.problems] == [
        ("card", "A"),
        ("cvv", "C"),
    ]
    assert "does not verify" in moved.problems[0][2]
    assert "no configured key" in moved.problems[1][2]
    assert moved.message["kwargs"]["cvv"]["kid"] == "C"  # left as it was

    # a task the app does not know: its positional envelopes have no name, keywords do
    unknown = reencrypt_message(
        ring,
        TASK,
        {
            "args": [tampered],
            "kwargs": {"card": seal_value(parse_key_ring(entries["A"]), TASK, "card", "y")},
        },
        None,
    )
    assert unknown.envelopes == 1
    assert [(argument, key_id) for argument, key_id, _why in unknown.problems] == [("#0", "A")]


def test_usage_messages_name_key_ids_never_keys() -> None:
    text, entries = ring_of("B")
    usage = KeyUsage(declared=["shop.pay"], ring_ids=parse_key_ring(text).ids)
    usage.used["A"]["dead letters"] += 2
    usage.used["A"]["queue q"] += 1
    usage.used["B"]["dead letters"] += 1
    assert usage.missing == ["A"]
    message = usage.missing_message()
    assert "'A' by dead letters (2), queue q (1)" in message
    assert "configured: B" in message and SECRET_KEYS_SETTING in message
    assert entries["B"].split(":", 1)[1] not in message + usage.summary()
