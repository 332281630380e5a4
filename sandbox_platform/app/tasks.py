"""The guarded task: a Celery task whose every run passes the app's guard pipeline.

::

    from sandbox_platform.tasks import guarded_task

    @guarded_task(app, idempotency_key="charge:{order_id}", governor=["payments"],
                  retry=RetryPolicy(max_retries=5, base=2.0))
    def charge_card(order_id: str, amount_cents: int) -> dict: ...

Options are declared by the guards (each guard's ``options``) and checked when the task is
declared: an unknown option, a template naming an argument the function does not have, or a
non-JSON serializer raise ``ValueError`` right there. Enqueueing runs every guard's
``at_enqueue`` hook (arguments, countdown, enqueue-side dedupe); running is
:class:`~sandbox_platform.guards.pipeline.Pipeline`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

from celery import Celery, Task
from celery.result import AsyncResult

from sandbox_platform.app.runtime import runtime_for
from sandbox_platform.core.errors import UnknownTaskError
from sandbox_platform.guards.base import EnqueueCall, Guard, OptionContext
from sandbox_platform.guards.builtin import BUILTIN_GUARDS

__all__ = ["CELERY_OPTIONS", "GuardedTask", "enqueue", "guard_option_names", "guarded_task"]

F = TypeVar("F", bound=Callable[..., Any])

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


class GuardedTask(Task[Any, Any]):
    """Base class of guarded tasks. Per-call state lives in the pipeline's Job, never on
    ``self``; ``sp_options`` are the guard options resolved when the task was declared."""

    sp_options: Mapping[str, Any] = {}
    sp_argnames: Sequence[str] = ()

    # -- the worker side ----------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        return runtime_for(self.app).pipeline.run(self, args, kwargs)

    def requeue(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float,
        headers: Mapping[str, Any],
    ) -> None:
        """Publish the running message again with a countdown; keep its id and retry count."""
        keep_retries: dict[str, Any] = {"retries": self.request.retries or 0}
        super().apply_async(
            tuple(args),
            dict(kwargs),
            task_id=self.request.id,
            countdown=countdown,
            headers=dict(headers),
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
        runtime = runtime_for(self.app)
        call = EnqueueCall(
            task_name=self.name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=options,
            task_options=self.sp_options,
            argnames=self.sp_argnames,
            services=runtime.pipeline.services,
            task_id=task_id,
        )
        existing = runtime.pipeline.enqueue(call)
        if existing is not None:
            return self.AsyncResult(existing)
        return super().apply_async(
            tuple(args) if args is not None else None,
            dict(kwargs) if kwargs is not None else None,
            task_id=call.task_id,
            **call.options,
        )


def _guards_of(app: Celery) -> Sequence[Guard]:
    guards: Sequence[Guard] = getattr(app, "platform_guards", BUILTIN_GUARDS)
    return guards


def guard_option_names(app: Celery) -> dict[str, Guard]:
    """Every task option the guards of ``app`` understand, and the guard that declares it."""
    return {name: guard for guard in _guards_of(app) for name in guard.options}


def _resolve_options(
    app: Celery, name: str, options: Mapping[str, Any], params: Sequence[str]
) -> dict[str, Any]:
    context = OptionContext(name, tuple(params))
    resolved: dict[str, Any] = {}
    for guard in _guards_of(app):
        for option, spec in guard.options.items():
            if option in options:
                resolved[option] = spec.resolve(context, options[option])
            else:
                resolved[option] = spec.default
    return resolved


def guarded_task(app: Celery, **options: Any) -> Callable[[F], GuardedTask]:
    """Declare a guarded task on ``app``. See the module docstring for the options."""
    known = set(guard_option_names(app)) | CELERY_OPTIONS
    unknown = set(options) - known
    if unknown:
        raise ValueError(
            f"unknown guarded_task option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
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
        attrs: dict[str, Any] = {
            "sp_argnames": tuple(params),
            "sp_options": _resolve_options(app, name, options, params),
        }
        celery_options = {k: v for k, v in options.items() if k in CELERY_OPTIONS}
        celery_options.setdefault("name", name)
        register = cast(
            Callable[[F], GuardedTask],
            app.task(base=GuardedTask, shared=False, **celery_options, **attrs),
        )
        return register(func)

    return decorate


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
