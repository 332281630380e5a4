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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

from celery import Celery, Task
from celery.result import AsyncResult

from sandbox_platform.app.enqueue import BATCH_SIZE, enqueue_batch, enqueue_one
from sandbox_platform.app.offload import offload
from sandbox_platform.app.runtime import runtime_for
from sandbox_platform.core.errors import UnknownTaskError
from sandbox_platform.core.job_loop import on_job_loop
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.guards.base import EnqueueCall, Guard, OptionContext
from sandbox_platform.guards.builtin import BUILTIN_GUARDS

__all__ = [
    "BATCH_SIZE",
    "CELERY_OPTIONS",
    "GuardedTask",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
    "enqueue_many_async",
    "guard_option_names",
    "guarded_task",
]

P = ParamSpec("P")
R = TypeVar("R")

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


class GuardedTask(Task[P, R]):
    """Base class of guarded tasks. Per-call state lives in the pipeline's Job, never on
    ``self``; ``sp_options`` are the guard options resolved when the task was declared.

    Generic in the decorated function's parameters ``P`` and return type ``R`` (for type
    checkers only): a direct call and ``.delay(...)`` are checked against the function's
    signature, and ``.delay``/``.apply_async`` return an ``AsyncResult[R]``. The arguments
    of ``apply_async``/``apply_many`` are sequences and mappings, which a type checker
    cannot tie to ``P``."""

    sp_options: Mapping[str, Any] = {}
    sp_argnames: Sequence[str] = ()
    #: the decorated function is an ``async def`` (its body runs on the job loop)
    sp_async: bool = False

    # -- the worker side ----------------------------------------------------------------

    @property
    def request(self) -> Any:
        """The running job's request. Celery keeps it per thread; an async body runs on the
        process's job loop beside other jobs, so there it is the one its job scope holds."""
        if on_job_loop():
            scope = current_job()
            if scope is not None and scope.request is not None and scope.task_name == self.name:
                return scope.request
        return super().request

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.request.called_directly:
            return self.run(*args, **kwargs)
        result: R = runtime_for(self.app).pipeline.run(self, args, kwargs)
        return result

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

    if TYPE_CHECKING:  # Celery's own ``delay``, declared for type checkers without stubs

        def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]: ...

    def _enqueue_call(
        self,
        args: Sequence[Any] | None,
        kwargs: Mapping[str, Any] | None,
        task_id: str | None,
        options: dict[str, Any],
    ) -> EnqueueCall:
        return EnqueueCall(
            task_name=self.name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            options=options,
            task_options=self.sp_options,
            argnames=self.sp_argnames,
            services=runtime_for(self.app).pipeline.services,
            task_id=task_id,
        )

    def apply_async(  # type: ignore[override]  # same call shape; options pass through
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Enqueue one job through the guards (:func:`.enqueue.enqueue_one`)."""
        return enqueue_one(self, self._enqueue_call(args, kwargs, task_id, options))

    # -- bulk enqueue ---------------------------------------------------------------------

    def apply_many(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], **options: Any
    ) -> list[AsyncResult[R]]:
        """Enqueue one job per ``(args, kwargs)`` through one Redis pipeline.

        Every job passes the checks of :meth:`apply_async` (arguments, payload size, delays,
        mode, correlation id); the enqueue-side idempotency dedupe of the whole batch is one
        Lua call. When one job's check fails, nothing is published. ``options`` (e.g.
        ``countdown``, ``queue``) apply to every job. Returns one result per call, in order
        (a duplicate's is the first job's id).
        """
        prepared = [self._enqueue_call(args, kwargs, None, dict(options)) for args, kwargs in calls]
        return enqueue_batch(self, prepared)

    def delay_many(
        self, items: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> list[AsyncResult[R]]:
        """:meth:`apply_many` for a list of argument tuples (or keyword mappings)."""
        return self.apply_many(
            ((), item) if isinstance(item, Mapping) else (tuple(item), {}) for item in items
        )

    # -- async enqueue ---------------------------------------------------------------------
    # The sync methods above, run on a thread of sandbox_platform.app.offload's pool in the
    # caller's context: one enqueue path for every broker (docs/async-enqueue.md).

    async def delay_async(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """``await task.delay_async(...)``: :meth:`delay` without blocking the event loop."""
        return await self.apply_async_async(args, kwargs)

    async def apply_async_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """:meth:`apply_async` on a pool thread; its result, or its error unchanged."""
        return await offload(self.apply_async, args, kwargs, task_id, **options)

    async def apply_many_async(
        self, calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]], **options: Any
    ) -> list[AsyncResult[R]]:
        """:meth:`apply_many` on a pool thread (``calls`` is read here, on the loop)."""
        return await offload(self.apply_many, list(calls), **options)

    async def delay_many_async(
        self, items: Iterable[Sequence[Any] | Mapping[str, Any]]
    ) -> list[AsyncResult[R]]:
        """:meth:`delay_many` on a pool thread (``items`` is read here, on the loop)."""
        return await offload(self.delay_many, list(items))


def _guards_of(app: Celery) -> Sequence[Guard]:
    guards: Sequence[Guard] = getattr(app, "platform_guards", BUILTIN_GUARDS)
    return guards


def guard_option_names(app: Celery) -> dict[str, Guard]:
    """Every task option the guards of ``app`` understand, and the guard that declares it."""
    return {name: guard for guard in _guards_of(app) for name in guard.options}


def _resolve_options(
    app: Celery, name: str, options: Mapping[str, Any], params: Sequence[str]
) -> dict[str, Any]:
    context = OptionContext(name, tuple(params), dict(options))
    resolved: dict[str, Any] = {}
    for guard in _guards_of(app):
        for option, spec in guard.options.items():
            if option in options:
                resolved[option] = spec.resolve(context, options[option])
            else:
                resolved[option] = spec.default
    return resolved


@overload
def guarded_task(
    app: Celery, *, bind: Literal[False] = False, **options: Any
) -> Callable[[Callable[P, R]], GuardedTask[P, R]]: ...


@overload
def guarded_task(
    app: Celery, *, bind: Literal[True], **options: Any
) -> Callable[[Callable[Concatenate[Any, P], R]], GuardedTask[P, R]]: ...


@overload
def guarded_task(
    app: Celery, *, bind: bool, **options: Any
) -> Callable[[Callable[..., R]], GuardedTask[..., R]]: ...


def guarded_task(
    app: Celery, **options: Any
) -> Callable[[Callable[..., Any]], GuardedTask[..., Any]]:
    """Declare a guarded task on ``app``. See the module docstring for the options.

    The task keeps the decorated function's signature for type checkers: ``task(...)`` and
    ``task.delay(...)`` take the function's arguments (without ``self`` when ``bind=True``)
    and ``delay`` returns an ``AsyncResult`` of its return type. Runtime is the same for
    every overload."""
    known = set(guard_option_names(app)) | CELERY_OPTIONS
    unknown = set(options) - known
    if unknown:
        raise ValueError(
            f"unknown guarded_task option(s): {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(known))}"
        )
    if options.get("serializer", "json") != "json":
        raise ValueError("guarded tasks are JSON only; pickle and other serializers are refused")

    def decorate(func: Callable[..., Any]) -> GuardedTask[..., Any]:
        name = options.get("name") or f"{func.__module__}.{func.__name__}"
        params = [
            p.name
            for p in inspect.signature(func).parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if options.get("bind"):
            params = params[1:]
        attrs: dict[str, Any] = {
            "sp_async": inspect.iscoroutinefunction(func),
            "sp_argnames": tuple(params),
            "sp_options": _resolve_options(app, name, options, params),
        }
        celery_options = {k: v for k, v in options.items() if k in CELERY_OPTIONS}
        celery_options.setdefault("name", name)
        register = cast(
            Callable[[Callable[..., Any]], GuardedTask[..., Any]],
            app.task(base=GuardedTask, shared=False, **celery_options, **attrs),
        )
        return register(func)

    return decorate


def _task_named(app: Celery, name: str) -> Task[Any, Any]:
    task = app.tasks.get(name)
    if task is None:
        known = sorted(n for n in app.tasks if not n.startswith("celery."))
        raise UnknownTaskError(f"no task named {name!r} is registered (known: {known})")
    return task


def enqueue(
    app: Celery,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> AsyncResult[Any]:
    """Enqueue a task by name, refusing names the app does not know (no silent loss)."""
    task = _task_named(app, name)
    return task.apply_async(tuple(args), dict(kwargs or {}), **options)


def enqueue_many(
    app: Celery,
    name: str,
    calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]],
    **options: Any,
) -> list[AsyncResult[Any]]:
    """Bulk enqueue by task name (see :meth:`GuardedTask.apply_many`); a plain task gets
    one ``apply_async`` per call, through the same pipeline."""
    task = _task_named(app, name)
    if isinstance(task, GuardedTask):
        return task.apply_many(calls, **options)
    with app.producer_or_acquire() as producer, producer.batch(BATCH_SIZE):
        return [
            task.apply_async(tuple(args), dict(kwargs), producer=producer, **options)
            for args, kwargs in calls
        ]


async def enqueue_async(
    app: Celery,
    name: str,
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    **options: Any,
) -> AsyncResult[Any]:
    """:func:`enqueue` without blocking the event loop (on a pool thread, in the caller's
    context; docs/async-enqueue.md)."""
    return await offload(enqueue, app, name, tuple(args), dict(kwargs or {}), **options)


async def enqueue_many_async(
    app: Celery,
    name: str,
    calls: Iterable[tuple[Sequence[Any], Mapping[str, Any]]],
    **options: Any,
) -> list[AsyncResult[Any]]:
    """:func:`enqueue_many` without blocking the event loop (``calls`` is read on the loop)."""
    return await offload(enqueue_many, app, name, list(calls), **options)
