"""The secrets guard seals a task's secret arguments at enqueue and opens them for the body
only; what cannot be opened dead-letters the job; declarations that would put a secret in a
Redis key are refused."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from sandbox_platform.core.errors import PayloadError, SettingsError
from sandbox_platform.core.sealing import is_envelope
from sandbox_platform.core.secret_keys import new_fingerprint_key, new_key
from sandbox_platform.core.secret_mask import SecretMask, masking
from sandbox_platform.guards.builtin import GovernorGuard, IdempotencyGuard, SecretsGuard
from sandbox_platform.guards.state import CallArguments, FingerprintArguments
from sandbox_platform.testing import GuardHarness
from tests.unit.guards.conftest import MakeHarness

KEY_A, KEY_B = new_key("a"), new_key("b")
FINGERPRINT = new_fingerprint_key()


def _pay(order_id: str, card: str, *, cvv: Any = None) -> None:
    return None


def _keys(ring: str = KEY_A) -> dict[str, Any]:
    return {"secret_keys": ring, "secret_fingerprint_key": FINGERPRINT}


def _harness(make: MakeHarness, ring: str = KEY_A, **settings: Any) -> GuardHarness:
    return make(
        SecretsGuard(),
        name="t.pay",
        body=_pay,
        options={"secret": ["card", "cvv"]},
        settings={**_keys(ring), **settings},
    )


def test_secret_values_are_sealed_at_enqueue_and_others_left_in_clear(
    make_harness: MakeHarness,
) -> None:
    call = _harness(make_harness).enqueue(("o-1", "4111111111111111"), {"cvv": "737"})
    assert call.args[0] == "o-1"
    assert is_envelope(call.args[1]) and call.args[1]["kid"] == "a"
    assert is_envelope(call.kwargs["cvv"])
    assert "4111" not in repr(call.args) and "737" not in repr(call.kwargs)
    view = call.state.get(FingerprintArguments)
    assert view is not None
    seen, _ = view.make()
    assert seen[0] == "o-1" and seen[1] != call.args[1]  # an HMAC, not the envelope
    assert "4111" not in repr(seen)


def test_the_worker_opens_them_for_the_body_and_keeps_the_envelopes(
    make_harness: MakeHarness,
) -> None:
    harness = _harness(make_harness)
    call = harness.enqueue(("o-1", "4111111111111111"), {"cvv": 737})
    job = harness.delivery(call)
    assert harness.before_run(job) is None
    opened = job.state.get(CallArguments)
    assert opened is not None
    assert opened.args == ("o-1", "4111111111111111") and opened.kwargs == {"cvv": 737}
    assert job.args == call.args and job.kwargs == call.kwargs  # the message keeps them sealed
    with masking(job.secrets):
        from sandbox_platform.core.redaction import redact, redact_value

        assert redact_value("card 4111111111111111 ok") == "card *** ok"
        assert redact({"n": 737, "id": "x7371"}) == {"n": "***", "id": "x7371"}


def test_the_fingerprint_is_the_same_under_another_key_and_another_nonce(
    make_harness: MakeHarness,
) -> None:
    first = _harness(make_harness).enqueue(("o-1", "4111"), {"cvv": "1"})
    rotated = _harness(make_harness, ring=f"{KEY_B},{KEY_A}").enqueue(("o-1", "4111"), {"cvv": "1"})
    assert rotated.args[1]["kid"] == "b" and rotated.args[1] != first.args[1]
    views = [call.state.get(FingerprintArguments) for call in (first, rotated)]
    assert views[0] is not None and views[1] is not None
    assert views[0].make() == views[1].make()


@pytest.mark.parametrize("tamper", ["unknown key", "flipped byte", "other argument"])
def test_an_envelope_that_cannot_be_opened_dead_letters_the_job(
    make_harness: MakeHarness, tamper: str
) -> None:
    harness = _harness(make_harness)
    call = harness.enqueue(("o-1", "4111111111111111"), {"cvv": "737"})
    args = list(call.args)
    kwargs = dict(call.kwargs)
    if tamper == "unknown key":
        args[1] = _harness(make_harness, ring=KEY_B).enqueue(("o", "4111111111111111")).args[1]
    elif tamper == "flipped byte":
        text = args[1]["ct"]
        args[1] = {**args[1], "ct": text[:-2] + ("A" if text[-2] != "A" else "B") + text[-1]}
    else:  # an envelope moved to another argument does not open (associated data)
        kwargs["cvv"] = args[1]
    outcome = harness.before_run(harness.job(args, kwargs))
    assert outcome is not None and outcome.kind == "dead_letter"
    assert outcome.reason == "secret_undecryptable"
    assert ("'b'" if tamper == "unknown key" else "'a'") in outcome.detail


def test_a_secret_published_in_clear_is_sealed_in_the_message_before_anything_keeps_it(
    make_harness: MakeHarness,
) -> None:
    harness = _harness(make_harness)
    job = harness.job(("o-1", "4111111111111111"), {"cvv": "737"})
    assert harness.before_run(job) is None
    assert is_envelope(job.args[1]) and is_envelope(job.kwargs["cvv"])


def test_a_child_enqueued_inside_a_job_seals_a_value_of_the_job_s_secrets(
    make_harness: MakeHarness,
) -> None:
    child = make_harness(
        SecretsGuard(), name="t.receipt", body=lambda to, note: None, settings=_keys()
    )
    mask = SecretMask()
    mask.add("4111111111111111")
    with masking(mask):
        call = child.enqueue(("ops@example.com", "4111111111111111"))
    assert call.args[0] == "ops@example.com" and is_envelope(call.args[1])
    assert child.enqueue(("ops@example.com", "4111111111111111")).args[1] == "4111111111111111"


def test_a_secret_that_is_not_json_is_refused_at_the_call_site(
    make_harness: MakeHarness,
) -> None:
    with pytest.raises(PayloadError, match="secret argument 'card' is not JSON"):
        _harness(make_harness).enqueue(("o-1", object()))


def test_live_mode_without_keys_is_a_settings_error_naming_the_variable(
    make_harness: MakeHarness,
) -> None:
    harness = make_harness(
        SecretsGuard(),
        name="t.pay",
        body=_pay,
        options={"secret": ["card"]},
        settings={"mode": "live"},
    )
    with pytest.raises(SettingsError, match="SANDBOX_PLATFORM_SECRET_KEYS"):
        harness.enqueue(("o-1", "4111"))


def test_a_sandbox_without_keys_generates_one_private_file_and_reuses_it(
    make_harness: MakeHarness, tmp_path: Path
) -> None:
    first = make_harness(
        SecretsGuard(),
        name="t.pay",
        body=_pay,
        options={"secret": ["card"]},
        settings={"data_dir": tmp_path},
    )
    sealed = first.enqueue(("o-1", "4111")).args[1]
    path = tmp_path / "secret-keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = make_harness(
        SecretsGuard(),
        name="t.pay",
        body=_pay,
        options={"secret": ["card"]},
        settings={"data_dir": tmp_path},
    )
    job = second.job(("o-1", sealed))
    assert second.before_run(job) is None
    opened = job.state.get(CallArguments)
    assert opened is not None and opened.args[1] == "4111"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": ["pan"]}, "secret names 'pan', which is not a parameter"),
        ({"secret": ["card"], "idempotency_key": "pay:{card}"}, "idempotency_key 'pay:{card}'"),
        ({"secret": ["card"], "governor": ["cards:{1}"]}, "governor 'cards:{1}' names"),
        ({"secret": "card", "governor": [("bank:{card}", 2)]}, "governor 'bank:{card}' names"),
    ],
)
def test_declarations_that_would_put_a_secret_in_a_key_are_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("{", r"\{").replace("}", r"\}")):
        GuardHarness(
            SecretsGuard(),
            IdempotencyGuard(),
            GovernorGuard(),
            name="t.pay",
            body=_pay,
            options=options,
            settings=_keys(),
        )


def test_a_deferral_re_sends_the_envelopes_and_a_retry_takes_the_message_s(
    make_harness: MakeHarness,
) -> None:
    from sandbox_platform.guards.republish import publish_again

    harness = _harness(make_harness)
    call = harness.enqueue(("o-1", "4111111111111111"), {"cvv": "737"})
    job = harness.delivery(call)
    assert harness.before_run(job) is None
    publish_again(job, countdown=1.0, headers={}, what="defer")
    (requeued,) = job.task.requeued  # type: ignore[attr-defined]
    assert requeued["args"] == call.args and requeued["kwargs"] == call.kwargs
    assert "4111" not in repr(requeued)
    # Celery's retry re-publishes request.args: the delivered message, still sealed
