"""The guarded task: a Celery task whose every run passes the platform's guards.

::

    from sandbox_platform.tasks import guarded_task

    @guarded_task(app, idempotency_key="charge:{order_id}", governor=["payments"],
                  retry=RetryPolicy(max_retries=5, base=2.0))
    def charge_card(order_id: str, amount_cents: int) -> dict: ...

Options are checked when the task is declared: an unknown option, a template naming an
argument the function does not have, or a non-JSON serializer raise ``ValueError`` right
there. Enqueueing checks the arguments (JSON, size limit), the countdown (shorter than the
broker's visibility timeout) and, with an idempotency key, returns the first job's id
instead of publishing the same key twice. Running is :mod:`sandbox_platform.guards.runner`.
"""

from __future__ import annotations

import inspect
import string
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import redis
from celery import Celery, Task
from celery.result import AsyncResult

from sandbox_platform.context import IDEMPOTENCY_HEADER
from sandbox_platform.errors import (
    CountdownTooLongError,
    EnqueueError,
    IdempotencyConflict,
    UnknownTaskError,
)
from sandbox_platform.guards.governor import resolve_resource
from sandbox_platform.guards.idempotency import fingerprint
from sandbox_platform.guards.retry import RetryPolicy, check_countdown
from sandbox_platform.payload import check_payload

__all__ = ["GUARD_OPTIONS", "GuardedTask", "enqueue", "guarded_task"]

F = TypeVar("F", bound=Callable[..., Any])

GUARD_OPTIONS = frozenset(
    {"idempotency_key", "idempotency_ttl", "idempotency_lease", "governor", "retry", "dedupe"}
)
CELERY_OPTIONS = frozenset(
    {
        "name",
        "queue",
        "time_limit",
        "soft_time_limit",
        "ignore_result",
        "priority",
        "expires",
        "typing",
        "serializer",
        "bind",
        "track_started",
    }
)
DEFAULT_RETRY = RetryPolicy(max_retries=3, base=1.0, cap=60.0)


def _template_fields(template: str) -> set[str]:
    fields = set()
    for _literal, field, _spec, _conv in string.Formatter().parse(template):
        if field is not None:
            fields.add(field.split(".", 1)[0].split("[", 1)[0])
    return fields


def _check_template(task_name: str, option: str, template: str, params: Sequence[str]) -> None:
    if not isinstance(template, str) or not template:
        raise ValueError(f"{task_name}: {option} must be a non-empty string template")
    for field in _template_fields(template):
        if not field.isdigit() and field not in params:
            raise ValueError(
                f"{task_name}: {option} {template!r} names {field!r}, which is not an "
                f"argument of the task (arguments: {', '.join(params) or 'none'})"
            )


def _governor_specs(task_name: str, value: Any, params: Sequence[str]) -> list[tuple[str, int]]:
    items: Iterable[Any] = [value] if isinstance(value, str) else (value or [])
    specs: list[tuple[str, int]] = []
    for item in items:
        template, cost = (item, 1) if isinstance(item, str) else tuple(item)
        if not isinstance(cost, int) or cost < 1:
            raise ValueError(f"{task_name}: governor cost for {template!r} must be an int >= 1")
        _check_template(task_name, "governor", template, params)
        specs.append((template, cost))
    return specs


class GuardedTask(Task[Any, Any]):
    """Base class of guarded tasks. Per-call state lives in the runner, never on ``self``."""

    sp_idempotency_key: str | None = None
    sp_idempotency_ttl: float = 24 * 3600
    sp_idempotency_lease: float = 300
    sp_governor: Sequence[tuple[str, int]] = ()
    sp_retry: RetryPolicy = DEFAULT_RETRY
    sp_dedupe: bool = True
    sp_argnames: Sequence[str] = ()

    # -- the worker side ----------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        from sandbox_platform.guards.runner import run_guarded

        return run_guarded(self, args, kwargs)

    def resolve_idempotency_key(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
        if self.sp_idempotency_key is None:
            return None
        key = resolve_resource(self.sp_idempotency_key, args, kwargs, self.sp_argnames)
        return f"{self.name}:{key}"

    def resolve_resources(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> list[tuple[str, int]]:
        return [
            (resolve_resource(template, args, kwargs, self.sp_argnames), cost)
            for template, cost in self.sp_governor
        ]

    def requeue(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float,
        idempotency_key: str | None,
    ) -> None:
        """Publish the running message again with a countdown; keep its id and retry count."""
        headers = {IDEMPOTENCY_HEADER: idempotency_key} if idempotency_key else {}
        keep_retries: dict[str, Any] = {"retries": self.request.retries or 0}
        super().apply_async(
            tuple(args),
            dict(kwargs),
            task_id=self.request.id,
            countdown=countdown,
            headers=headers,
            **keep_retries,
        )

    # -- the enqueue side ---------------------------------------------------------------

    def apply_async(  # type: ignore[override]  # same call shape; options pass through
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult[Any]:
        settings = self.app.platform_settings if hasattr(self.app, "platform_settings") else None
        if settings is not None:
            check_payload(self.name, args, kwargs, settings.payload_limit_bytes)
            self._check_delay(options, settings.visibility_timeout)
        key = options.pop("idempotency_key", None)
        if key is None and self.sp_idempotency_key is not None:
            key = self.resolve_idempotency_key(args or (), kwargs or {})
        if key is not None:
            headers = dict(options.pop("headers", None) or {})
            headers[IDEMPOTENCY_HEADER] = key
            options["headers"] = headers
            task_id = task_id or str(uuid.uuid4())
            if self.sp_dedupe:
                first = self._first_job_for(
                    key, task_id, fingerprint(list(args or ()), dict(kwargs or {}))
                )
                if first is not None:
                    return self.AsyncResult(first)
        return super().apply_async(
            tuple(args) if args is not None else None,
            dict(kwargs) if kwargs is not None else None,
            task_id=task_id,
            **options,
        )

    def _check_delay(self, options: Mapping[str, Any], visibility_timeout: int) -> None:
        countdown = options.get("countdown")
        eta = options.get("eta")
        if eta is not None:
            if isinstance(eta, str):
                eta = datetime.fromisoformat(eta)
            if eta.tzinfo is None:
                eta = eta.replace(tzinfo=UTC)
            countdown = (eta - datetime.now(UTC)).total_seconds()
        try:
            check_countdown(countdown, visibility_timeout)
        except CountdownTooLongError as exc:
            raise CountdownTooLongError(f"{self.name}: {exc}") from None

    def _first_job_for(self, key: str, task_id: str, args_fingerprint: str) -> str | None:
        """Enqueue-side dedupe: the id of the first job published under ``key``, if not us.

        The same key with other arguments raises IdempotencyConflict at the call site.
        """
        from sandbox_platform.runtime import runtime

        rt = runtime()
        redis_key = f"{rt.settings.key_prefix}:enq:{{{key}}}"
        ttl = max(1, int(self.sp_idempotency_ttl))
        mine = f"{task_id} {args_fingerprint}"
        try:
            if rt.redis.set(redis_key, mine, nx=True, ex=ttl):
                return None  # the first publication under this key: one round trip
            existing = rt.redis.get(redis_key)
        except redis.RedisError as exc:
            raise EnqueueError(
                f"{self.name}: Redis unreachable for enqueue dedupe: {exc}"
            ) from None
        if existing is None:
            return None  # expired in between: this one is the first now
        first_id, _, first_fingerprint = (
            existing.decode() if isinstance(existing, bytes) else str(existing)
        ).partition(" ")
        if first_fingerprint != args_fingerprint:
            raise IdempotencyConflict(
                f"{self.name}: idempotency key {key!r} was used before with different arguments"
            )
        return None if first_id == task_id else first_id


def guarded_task(app: Celery, **options: Any) -> Callable[[F], GuardedTask]:
    """Declare a guarded task on ``app``. See the module docstring for the options."""
    unknown = set(options) - GUARD_OPTIONS - CELERY_OPTIONS
    if unknown:
        raise ValueError(
            f"unknown guarded_task option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(GUARD_OPTIONS | CELERY_OPTIONS))}"
        )
    if options.get("serializer", "json") != "json":
        raise ValueError("guarded tasks are JSON only; pickle and other serializers are refused")

    def decorate(func: F) -> GuardedTask:
        name = options.get("name") or f"{func.__module__}.{func.__name__}"
        params = [
            p.name
            for p in inspect.signature(func).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if options.get("bind"):
            params = params[1:]
        attrs = _guard_attrs(name, options, params)
        celery_options = {k: v for k, v in options.items() if k in CELERY_OPTIONS}
        celery_options.setdefault("name", name)
        register = cast(
            Callable[[F], GuardedTask],
            app.task(base=GuardedTask, shared=False, **celery_options, **attrs),
        )
        return register(func)

    return decorate


def _guard_attrs(name: str, options: Mapping[str, Any], params: Sequence[str]) -> dict[str, Any]:
    attrs: dict[str, Any] = {"sp_argnames": tuple(params)}
    key = options.get("idempotency_key")
    if key is not None:
        _check_template(name, "idempotency_key", key, params)
        attrs["sp_idempotency_key"] = key
    for option in ("idempotency_ttl", "idempotency_lease"):
        if option in options:
            value = options[option]
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name}: {option} must be a number of seconds > 0")
            attrs[f"sp_{option}"] = float(value)
    if "governor" in options:
        attrs["sp_governor"] = tuple(_governor_specs(name, options["governor"], params))
    if "retry" in options:
        policy = options["retry"]
        if not isinstance(policy, RetryPolicy):
            raise ValueError(f"{name}: retry must be a RetryPolicy, not {type(policy).__name__}")
        attrs["sp_retry"] = policy
    if "dedupe" in options:
        attrs["sp_dedupe"] = bool(options["dedupe"])
    return attrs


def enqueue(
    app: Celery,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> AsyncResult[Any]:
    """Enqueue a task by name, refusing names the app does not know (no silent loss)."""
    task = app.tasks.get(name)
    if task is None:
        known = sorted(n for n in app.tasks if not n.startswith("celery."))
        raise UnknownTaskError(f"no task named {name!r} is registered (known: {known})")
    return task.apply_async(tuple(args), dict(kwargs or {}), **options)
