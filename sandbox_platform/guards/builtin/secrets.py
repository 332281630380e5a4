"""The secrets guard: a task's secret arguments travel and rest sealed, and are opened only
for the call itself.

Option ``secret``: the names of the task's secret parameters (``secret=["card", "cvv"]``),
passed by position or keyword. An idempotency key or governor template that names one is
refused when the task is declared (it would put the secret in a Redis key).

At enqueue each secret value is sealed (:mod:`sandbox_platform.core.sealing`: AES-GCM, the
task's and the argument's names as associated data) and its idempotency fingerprint is an
HMAC with the fingerprint key. Inside a running job, an argument of a child job whose value
is one of the running job's secret values is sealed as well, declared or not.

In the worker every envelope is opened before the body: the body gets the values; the message
(``request.args``, the dead letter, a retry's or a deferral's re-publish) keeps the
envelopes; everything the job writes while it runs has the values masked (the job's
:class:`~sandbox_platform.core.secret_mask.SecretMask`). An envelope that cannot be opened
(unknown key id, changed bytes) dead-letters the job ``secret_undecryptable`` before it runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sandbox_platform.core.context import MODE_HEADER, sealed_mode
from sandbox_platform.core.errors import PayloadError
from sandbox_platform.core.sealing import (
    SecretUndecryptable,
    is_envelope,
    open_value,
    seal_value,
    secret_fingerprint,
)
from sandbox_platform.core.secret_config import SecretKeys
from sandbox_platform.core.secret_mask import SecretMask, active_mask
from sandbox_platform.guards.base import EnqueueCall, Guard, Job, Option, OptionContext, Outcome
from sandbox_platform.guards.state import CallArguments, FingerprintArguments
from sandbox_platform.guards.templates import template_fields

__all__ = ["UNDECRYPTABLE", "SecretsGuard", "secret_names"]

#: the dead-letter reason of a job whose sealed argument cannot be opened
UNDECRYPTABLE = "secret_undecryptable"


def _templates(declared: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    key = declared.get("idempotency_key")
    if isinstance(key, str):
        yield "idempotency_key", key
    governor = declared.get("governor") or ()
    for item in [governor] if isinstance(governor, str) else governor:
        template = item if isinstance(item, str) else next(iter(item), None)
        if isinstance(template, str):
            yield "governor", template


def secret_names(context: OptionContext, value: Any) -> tuple[str, ...]:
    """The ``secret`` option checked: parameter names of the task, named by no template."""
    names = [value] if isinstance(value, str) else list(value or ())
    for name in names:
        if not isinstance(name, str) or name not in context.params:
            raise ValueError(
                f"{context.task_name}: secret names {name!r}, which is not a parameter of the "
                f"task (parameters: {', '.join(context.params) or 'none'})"
            )
    secret = set(names)
    positions = {str(i) for i, param in enumerate(context.params) if param in secret}
    for option, template in _templates(context.declared):
        named = template_fields(template) & (secret | positions)
        if named:
            raise ValueError(
                f"{context.task_name}: {option} {template!r} names the secret argument "
                f"{sorted(named)[0]!r}: a secret must not become part of a Redis key"
            )
    return tuple(dict.fromkeys(names))


def _argument_name(argnames: Sequence[str], position: int) -> str:
    return argnames[position] if position < len(argnames) else f"#{position}"


def _carried(mask: SecretMask | None, value: Any) -> bool:
    """A value of the running job's secrets (passed on to a child job)."""
    if mask is None or isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    return str(value) in mask


class _Arguments:
    """A copy of a call's arguments, addressed by position or keyword."""

    def __init__(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], *, copy: bool = True
    ) -> None:
        self.args: Sequence[Any] = list(args) if copy else args
        self.kwargs: Mapping[str, Any] = dict(kwargs) if copy else kwargs

    def get(self, where: int | str) -> Any:
        return self.args[where] if isinstance(where, int) else self.kwargs[where]

    def set(self, where: int | str, value: Any) -> None:
        assert isinstance(self.args, list) and isinstance(self.kwargs, dict)
        if isinstance(where, int):
            self.args[where] = value
        else:
            self.kwargs[where] = value


def _any_envelope(call: EnqueueCall, picked: Sequence[tuple[int | str, str]]) -> bool:
    return any(
        is_envelope(call.args[where] if isinstance(where, int) else call.kwargs[where])
        for where, _ in picked
    )


def _seal(keys: SecretKeys, task: str, name: str, value: Any) -> dict[str, Any]:
    try:
        return seal_value(keys.ring, task, name, value)
    except (TypeError, ValueError) as exc:
        raise PayloadError(
            f"{task}: secret argument {name!r} is not JSON-serialisable: {exc}"
        ) from None


def _fingerprint_view(
    keys: SecretKeys, task: str, picked: Sequence[tuple[int | str, str]], plain: _Arguments
) -> FingerprintArguments:
    """The arguments the idempotency fingerprint sees: each secret value as its HMAC (an
    envelope that could not be opened as itself); worked out only when asked."""

    def make() -> tuple[tuple[Any, ...], dict[str, Any]]:
        view = _Arguments(plain.args, plain.kwargs)
        for where, name in picked:
            value = view.get(where)
            if not is_envelope(value):
                view.set(where, secret_fingerprint(keys.fingerprint_key, task, name, value))
        return tuple(view.args), dict(view.kwargs)

    return FingerprintArguments(make)


class SecretsGuard(Guard):
    name = "secrets"
    options = {"secret": Option(default=(), check=secret_names)}

    # -- enqueue --------------------------------------------------------------------------

    def at_enqueue(self, call: EnqueueCall) -> None:
        secret = call.task_options.get("secret") or ()
        mask = active_mask()
        if not secret and mask is None:
            return
        picked = _pick(call.argnames, secret, call.args, call.kwargs, mask)
        if not picked:
            return
        keys, task = call.services.secret_keys, call.task_name
        sealed = _Arguments(call.args, call.kwargs)
        plain = _Arguments(call.args, call.kwargs) if _any_envelope(call, picked) else None
        for where, name in picked:
            value = sealed.get(where)
            if not is_envelope(value):
                sealed.set(where, _seal(keys, task, name, value))
            elif plain is not None:  # a re-sent envelope: as it is (its HMAC, when it opens)
                with contextlib.suppress(SecretUndecryptable):
                    plain.set(where, open_value(keys.ring, task, name, value))
        plain = plain or _Arguments(call.args, call.kwargs, copy=False)
        call.args, call.kwargs = tuple(sealed.args), dict(sealed.kwargs)
        call.state.put(_fingerprint_view(keys, task, picked, plain))
        headers = call.options.get("headers") or {}
        if MODE_HEADER not in headers:  # (a re-publish keeps the job's own)
            call.add_header(MODE_HEADER, sealed_mode(call.services.settings.mode.value))

    # -- worker ---------------------------------------------------------------------------

    def before_run(self, job: Job) -> Outcome | None:
        secret = job.options.get("secret") or ()
        picked = _pick(job.task.sp_argnames, secret, job.args, job.kwargs, None)
        if not picked:
            return None
        keys = job.services.secret_keys
        plain, sealed = _Arguments(job.args, job.kwargs), _Arguments(job.args, job.kwargs)
        try:
            for where, name in picked:
                value = plain.get(where)
                if is_envelope(value):
                    value = open_value(keys.ring, job.name, name, value)
                else:  # declared secret, published in clear (by name, from elsewhere)
                    sealed.set(where, seal_value(keys.ring, job.name, name, value))
                plain.set(where, value)
                job.secrets.add(value)
        except SecretUndecryptable as exc:
            return Outcome.dead_letter(
                UNDECRYPTABLE, error=exc, detail=str(exc), context={"key_id": exc.key_id}
            )
        job.args, job.kwargs = tuple(sealed.args), dict(sealed.kwargs)
        job.state.put(CallArguments(tuple(plain.args), dict(plain.kwargs)))
        job.state.put(_fingerprint_view(keys, job.name, picked, plain))
        return None


def _pick(
    argnames: Sequence[str],
    secret: Sequence[str],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    mask: SecretMask | None,
) -> list[tuple[int | str, str]]:
    """Where the secret values sit: declared secret, an envelope, or one of ``mask``'s."""
    picked: list[tuple[int | str, str]] = []
    for position, value in enumerate(args):
        name = _argument_name(argnames, position)
        if name in secret or is_envelope(value) or _carried(mask, value):
            picked.append((position, name))
    for name, value in kwargs.items():
        if name in secret or is_envelope(value) or _carried(mask, value):
            picked.append((name, name))
    return picked
