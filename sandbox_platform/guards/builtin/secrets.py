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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sandbox_platform.core.errors import PayloadError
from sandbox_platform.core.sealing import (
    SecretUndecryptable,
    is_envelope,
    open_value,
    seal_value,
    secret_fingerprint,
)
from sandbox_platform.core.secret_keys import SecretKeys
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

    def __init__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        self.args = list(args)
        self.kwargs = dict(kwargs)

    def get(self, where: int | str) -> Any:
        return self.args[where] if isinstance(where, int) else self.kwargs[where]

    def set(self, where: int | str, value: Any) -> None:
        if isinstance(where, int):
            self.args[where] = value
        else:
            self.kwargs[where] = value


class _Sealer:
    """Seals one enqueue call's secret arguments; keeps their fingerprint view."""

    def __init__(self, keys: SecretKeys, task: str) -> None:
        self.keys = keys
        self.task = task

    def value(self, name: str, value: Any) -> tuple[Any, Any]:
        """(what the message carries, what the fingerprint sees)."""
        if is_envelope(value):  # a replay re-sends the envelope as it is
            try:
                plain = open_value(self.keys.ring, self.task, name, value)
            except SecretUndecryptable:
                return value, value  # the worker dead-letters it, naming the key id
            return value, secret_fingerprint(self.keys.fingerprint_key, self.task, name, plain)
        try:
            sealed = seal_value(self.keys.ring, self.task, name, value)
        except (TypeError, ValueError) as exc:
            raise PayloadError(
                f"{self.task}: secret argument {name!r} is not JSON-serialisable: {exc}"
            ) from None
        return sealed, secret_fingerprint(self.keys.fingerprint_key, self.task, name, value)


class _Opener:
    """Opens one job's envelopes; collects the values into the job's mask."""

    def __init__(self, keys: Callable[[], SecretKeys], job: Job) -> None:
        self._keys = keys
        self.job = job

    def value(self, name: str, value: Any) -> tuple[Any, Any, Any]:
        """(what the body gets, what the message keeps, what the fingerprint sees)."""
        keys = self._keys()
        if is_envelope(value):
            plain = open_value(keys.ring, self.job.name, name, value)
            sealed = value
        else:  # declared secret but published in clear (by name, from elsewhere): seal it now
            plain = value
            sealed = seal_value(keys.ring, self.job.name, name, value)
        self.job.secrets.add(plain)
        return plain, sealed, secret_fingerprint(keys.fingerprint_key, self.job.name, name, plain)


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
        sealer = _Sealer(call.services.secret_keys, call.task_name)
        sealed, view = _Arguments(call.args, call.kwargs), _Arguments(call.args, call.kwargs)
        for where, name in picked:
            carried, seen = sealer.value(name, sealed.get(where))
            sealed.set(where, carried)
            view.set(where, seen)
        call.args, call.kwargs = tuple(sealed.args), sealed.kwargs
        call.state.put(FingerprintArguments(tuple(view.args), view.kwargs))

    # -- worker ---------------------------------------------------------------------------

    def before_run(self, job: Job) -> Outcome | None:
        secret = job.options.get("secret") or ()
        picked = _pick(job.task.sp_argnames, secret, job.args, job.kwargs, None)
        if not picked:
            return None
        opener = _Opener(lambda: job.services.secret_keys, job)
        plain, sealed, view = (_Arguments(job.args, job.kwargs) for _ in range(3))
        try:
            for where, name in picked:
                opened = opener.value(name, plain.get(where))
                plain.set(where, opened[0])
                sealed.set(where, opened[1])
                view.set(where, opened[2])
        except SecretUndecryptable as exc:
            return Outcome.dead_letter(
                UNDECRYPTABLE, error=exc, detail=str(exc), context={"key_id": exc.key_id}
            )
        job.args, job.kwargs = tuple(sealed.args), sealed.kwargs
        job.state.put(CallArguments(tuple(plain.args), plain.kwargs))
        job.state.put(FingerprintArguments(tuple(view.args), view.kwargs))
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
