"""The runner: walks an ordered list of guards around each guarded job, knowing none by name.

Worker side, for one delivery (:meth:`Pipeline.run`)::

    before_run of every guard            (a mode check, poison quarantine, ...)
    one admission round trip             (the guards' contributions; skipped when empty)
    admitted of every guard              (the answer: run, return a stored result, defer, ...)
    the body, inside a job scope         (task id, name, attempt, key, fencing token)
    on_error of the guards, in reverse   (when the body raised: retry or dead letter)
    after_run of every guard, reversed   (whatever the outcome)
    record the run, carry out the outcome

Enqueue side (:meth:`Pipeline.enqueue`): ``at_enqueue`` of every guard, in order.

Errors: our own (:class:`~sandbox_platform.core.errors.PlatformError`) propagate. Anything
else a guard's hook raises is logged loudly with the guard's name and then handled like an
error of the job (before or at admission: the job does not run; at enqueue: an EnqueueError;
after the run: the outcome stands).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn, TypeVar

import redis
import structlog
from celery.exceptions import Ignore, Reject, Retry

from sandbox_platform.coordination.admission import AdmissionRequest, Admitter, record_error
from sandbox_platform.core.context import (
    CORRELATION_HEADER,
    MODE_HEADER,
    current_correlation_id,
)
from sandbox_platform.core.errors import EnqueueError, GovernorUnavailable, PlatformError
from sandbox_platform.core.job_loop import AsyncTimeLimitExceeded, job_loop
from sandbox_platform.core.jobscope import JobScope, job_scope
from sandbox_platform.core.secret_mask import masking
from sandbox_platform.guards.base import (
    EnqueueCall,
    Guard,
    GuardedTaskLike,
    Job,
    Outcome,
    Services,
)
from sandbox_platform.guards.deadletter import DeadLetters
from sandbox_platform.guards.events import AdmissionUnavailable, JobDeadLettered
from sandbox_platform.guards.ordering import sort_guards
from sandbox_platform.guards.prefetch import (
    plan_admission,
    prefetched_admission,
    release_prefetched,
)
from sandbox_platform.guards.republish import publish_again, retry_or_requeue
from sandbox_platform.guards.run_records import RESULT_RECORD_LIMIT, RUN_STATES, RunRecords
from sandbox_platform.guards.scrub import scrubbed
from sandbox_platform.guards.shortcuts import SHORTCUT_HOOKS, EnqueueShortcuts
from sandbox_platform.guards.state import CallArguments
from sandbox_platform.guards.time_limits import JobTimeLimitExceeded, ThreadDeadlines, Watched

__all__ = ["RESULT_RECORD_LIMIT", "RUN_STATES", "Pipeline", "sort_guards"]

log = structlog.get_logger(__name__)

_CONTROL_FLOW = (Retry, Ignore, Reject)


def _overrides(guard: Guard, hook: str) -> bool:
    if hook in SHORTCUT_HOOKS:  # an optional protocol: only its members are asked
        shortcut = isinstance(guard, EnqueueShortcuts)
        return shortcut and getattr(type(guard), hook) is not getattr(EnqueueShortcuts, hook)
    return getattr(type(guard), hook) is not getattr(Guard, hook)


class GuardHookError(PlatformError):
    """A guard's hook raised something unexpected; the job is treated as failed."""


_T = TypeVar("_T")


def _hook(guard: Guard | EnqueueShortcuts, hook: str, method: Callable[..., _T], *args: Any) -> _T:
    """``method(*args)``, a hook of ``guard``: let our own errors through; log anything else
    loudly and wrap it. (A plain call, not a context manager: it runs several times for
    every job and every enqueue.)"""
    try:
        return method(*args)
    except (PlatformError, *_CONTROL_FLOW):
        raise
    except Exception as exc:
        log.exception("guard hook failed", guard=guard.name, hook=hook)
        raise GuardHookError(f"guard {guard.name!r} failed in {hook}: {exc!r}") from exc


def _enqueue_hook(
    guard: Guard | EnqueueShortcuts,
    hook: str,
    task_name: str,
    method: Callable[..., None],
    *args: Any,
) -> None:
    """:func:`_hook` at the call site of an enqueue: a guard's failure is an EnqueueError."""
    try:
        _hook(guard, hook, method, *args)
    except GuardHookError as exc:
        raise EnqueueError(f"{task_name}: {exc}") from exc.__cause__


class Pipeline:
    """The guards of one process, bound to its services, and the run loop around a job."""

    def __init__(self, guards: Sequence[Guard], services: Services) -> None:
        self.services = services
        self.guards = tuple(guard.bind(services) for guard in sort_guards(guards))
        self._admitter = Admitter(services.redis, services.prefix)
        self._dead_letters = DeadLetters(services)
        self._deadlines = ThreadDeadlines(self._timed_out)
        self._runs = RunRecords(services)

        def having(hook: str) -> tuple[Guard, ...]:
            return tuple(g for g in self.guards if _overrides(g, hook))

        self._at_enqueue = having("at_enqueue")

        def shortcuts(hook: str) -> tuple[EnqueueShortcuts, ...]:
            return tuple(g for g in having(hook) if isinstance(g, EnqueueShortcuts))

        self._at_enqueue_batch = shortcuts("at_enqueue_batch")
        self._at_enqueue_failed = shortcuts("at_enqueue_failed")
        self._after_publish = shortcuts("after_publish")
        self._before_run = having("before_run")
        self._contribute = having("contribute")
        self._admitted = having("admitted")
        self._on_error = tuple(reversed(having("on_error")))
        self._after_run = tuple(reversed(having("after_run")))

    # -- enqueue --------------------------------------------------------------------------

    def enqueue(self, call: EnqueueCall) -> str | None:
        """Run every ``at_enqueue`` hook; return an existing job's id when one answered."""
        for guard in self._at_enqueue:
            _enqueue_hook(guard, "at_enqueue", call.task_name, guard.at_enqueue, call)
            if call.existing_id is not None:
                return call.existing_id
        plan_admission(call, self._contribute)
        return None

    def enqueue_many(self, calls: Sequence[EnqueueCall]) -> list[str | None]:
        """:meth:`enqueue` for every call of a bulk enqueue, then each guard's batch work
        (one round trip for all); per call, an existing job's id or None."""
        for call in calls:
            call.batched = True
            self.enqueue(call)
        for guard in self._at_enqueue_batch:
            _enqueue_hook(
                guard, "at_enqueue_batch", calls[0].task_name, guard.at_enqueue_batch, calls
            )
        return [call.existing_id for call in calls]

    def published(self, call: EnqueueCall) -> str | None:
        """After the publish: each guard reads what the transport answered for work it
        folded into the publish; an existing job's id (nothing was pushed) or None."""
        for guard in self._after_publish:
            _enqueue_hook(guard, "after_publish", call.task_name, guard.after_publish, call)
        return call.existing_id

    def enqueue_failed(self, calls: Sequence[EnqueueCall]) -> None:
        """Publishing failed: each guard undoes what it wrote at enqueue (best effort: the
        caller's exception is the one that matters)."""
        for guard in self._at_enqueue_failed:
            try:
                guard.at_enqueue_failed(calls)
            except Exception:
                log.exception("could not undo an enqueue after a failed publish", guard=guard.name)

    # -- run ------------------------------------------------------------------------------

    def run(self, task: GuardedTaskLike, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run one delivery of ``task`` through the guards; return its result or raise.

        Everything written while it runs has the job's secret values masked (its mask is
        empty unless a guard opened sealed arguments)."""
        job = Job(task, args, kwargs, self.services)
        with masking(job.secrets):
            return self._carry_out(job, self._dead_letters.pending(job) or self._decide(job))

    def _decide(self, job: Job) -> Outcome:
        try:
            early = self._before(job)
            if early is not None:
                release_prefetched(job)
            else:
                early = self._admit(job)
        except GovernorUnavailable as exc:
            self._emit_unavailable(job, exc)
            return self._error(job, exc)
        except GuardHookError as exc:
            return self._error(job, exc)
        if early is not None:
            return early
        return self._run_body(job)

    def _run_body(self, job: Job) -> Outcome:
        """The body, inside the job's scope (its app's settings and services); on a pool
        thread, under watch of its hard time limit (guards/time_limits.py)."""
        services = self.services
        scope = JobScope(
            job.task_id,
            job.name,
            job.attempt,
            job.idempotency_key,
            job.fencing_token,
            settings=services.settings,
            services=services,
            request=job.request,
        )
        is_async = bool(getattr(job.task, "sp_async", False))
        limit = self._thread_limit(job)
        watch: contextlib.AbstractContextManager[Watched | None] = contextlib.nullcontext()
        if limit and not is_async:  # an async body is cancelled at its limit instead
            watch = self._deadlines.watching(job, limit, *self._snapshot(job))
        watched: Watched | None = None
        stopped: BaseException | None = None
        try:
            call = job.state.get(CallArguments)  # a guard's (opened secrets), else the message's
            args, kwargs = (call.args, call.kwargs) if call is not None else (job.args, job.kwargs)
            with job_scope(scope), watch as watched:
                value = job.task.run(*args, **kwargs)
                if inspect.iscoroutine(value):  # an async def: on the process's job loop
                    value = self._await(job, value, job.time_limit if is_async else None)
        except AsyncTimeLimitExceeded as exc:
            return self._cancelled(job, exc)
        except JobTimeLimitExceeded:
            if watched is None or not watched.timed_out.is_set():
                raise  # not ours to handle
        except _CONTROL_FLOW as exc:
            stopped = exc
        except Exception as exc:
            stopped = exc
        if watched is not None and watched.timed_out.is_set():
            return self._late(watched)  # whatever the body did after its deadline
        if isinstance(stopped, _CONTROL_FLOW):
            return Outcome.abort(stopped)
        if isinstance(stopped, Exception):
            return self._error(job, stopped)
        return Outcome.succeeded(value)

    def _await(self, job: Job, body: Coroutine[Any, Any, Any], limit: float | None) -> Any:
        """Run an async job's body on the job loop, in a copy of the job's context (its
        scope, correlation id and mask: the body's own, whatever else runs on the loop)."""
        return job_loop().run(body, context=contextvars.copy_context(), limit=limit)

    def _cancelled(self, job: Job, exc: AsyncTimeLimitExceeded) -> Outcome:
        log.error(
            "async job past its time limit: cancelled and dead-lettered; "
            "the other jobs of its worker go on",
            task_id=job.task_id,
            task=job.name,
            limit=exc.limit,
            ended_on_cancel=exc.finished,
        )
        how = "cancelled on its worker's event loop" + (
            "" if exc.finished else " (it had not ended when its worker moved on)"
        )
        return _timed_out_outcome(exc.limit, how)

    def _thread_limit(self, job: Job) -> float | None:
        """The hard time limit this pipeline enforces itself: for a job on a pool thread
        (the threads pool). The main thread is a solo consumer's (its supervisor stops it) or
        a prefork child's (Celery kills it); an eager call is the caller's."""
        if threading.current_thread() is threading.main_thread() or job.request.is_eager:
            return None
        return job.time_limit

    def _snapshot(self, job: Job) -> tuple[str | None, dict[str, Any]]:
        """What a time-out handled on another thread needs: the correlation id, the message."""
        correlation_id = current_correlation_id()
        return correlation_id, self._message(job, correlation_id)

    def _before(self, job: Job) -> Outcome | None:
        for guard in self._before_run:
            outcome = _hook(guard, "before_run", guard.before_run, job)
            if outcome is not None:
                return outcome
        return None

    def _admit(self, job: Job) -> Outcome | None:
        request = AdmissionRequest()
        for guard in self._contribute:
            _hook(guard, "contribute", guard.contribute, job, request)
        if not request:
            return None
        try:
            admission = prefetched_admission(job, request) or self._admitter.admit_request(request)
        except redis.ResponseError as exc:  # one of this job's records: this job only
            error = record_error(request, self.services.prefix, exc)
            return Outcome.dead_letter("bad_record", error=error, detail=str(error))
        for guard in self._admitted:
            outcome = _hook(guard, "admitted", guard.admitted, job, admission)
            if outcome is not None:
                return outcome
        if admission.status == "refused":  # a check failed and no guard chose otherwise
            check = request.check_named(admission.resource or "")
            retry_in = check.retry_in if check is not None else 1.0
            log.info("admission check refused; job re-queued", check=admission.resource)
            return Outcome.defer(retry_in)
        return None

    def _error(self, job: Job, exc: Exception) -> Outcome:
        for guard in self._on_error:
            outcome = _hook(guard, "on_error", guard.on_error, job, exc)
            if outcome is not None:
                return outcome
        return Outcome.dead_letter("failed", error=exc)

    def _emit_unavailable(self, job: Job, exc: Exception) -> None:
        self.services.events.emit(
            AdmissionUnavailable(
                job.name, job.task_id, current_correlation_id(), error=str(exc) or repr(exc)
            )
        )

    # -- outcome --------------------------------------------------------------------------

    def _carry_out(self, job: Job, outcome: Outcome) -> Any:
        if job.secrets:  # what leaves the job (errors, details) has its secret values masked
            outcome = scrubbed(outcome)
        for guard in self._after_run:
            with contextlib.suppress(GuardHookError):  # logged; the outcome stands
                _hook(guard, "after_run", guard.after_run, job, outcome)
        if outcome.record:
            self._runs.record_when_settled(job, outcome, current_correlation_id())
        handler = _HANDLERS[outcome.kind]
        return handler(self, job, outcome)

    def _done(self, job: Job, outcome: Outcome) -> Any:
        return outcome.value

    def _abort(self, job: Job, outcome: Outcome) -> NoReturn:
        assert outcome.error is not None
        raise outcome.error

    def _defer(self, job: Job, outcome: Outcome) -> NoReturn:
        publish_again(job, countdown=outcome.countdown, headers=job.headers, what="defer")
        raise Ignore()

    def _retry(self, job: Job, outcome: Outcome) -> NoReturn:
        assert outcome.error is not None
        retry_or_requeue(job, outcome.error, outcome.countdown, outcome.max_retries)

    def _dead_letter(self, job: Job, outcome: Outcome) -> NoReturn:
        correlation_id = current_correlation_id()
        message = self._message(job, correlation_id)
        if not self._dead_letters.store(job, outcome, message, correlation_id):
            raise Ignore()  # postponed: published again to store it, nothing lost
        if outcome.reason == "already_dead_lettered":
            raise Ignore()
        self._emit_dead_lettered(job, outcome, correlation_id)
        if outcome.failed and outcome.error is not None:
            raise outcome.error
        raise Ignore()

    def _emit_dead_lettered(self, job: Job, outcome: Outcome, correlation_id: str | None) -> None:
        self.services.events.emit(
            JobDeadLettered(
                job.name,
                job.task_id,
                correlation_id,
                reason=outcome.reason,
                detail=outcome.detail,
                attempts=job.attempt,
                failed=outcome.failed,
                context={**outcome.context, "idempotency_key": job.idempotency_key},
            )
        )

    # -- hard time limits on threads -------------------------------------------------------

    def _timed_out(self, watched: Watched) -> bool:
        """On the watcher's thread: ``watched`` is past its time limit. Dead-letter it now
        (the other jobs of the process go on); True when the dead letter is stored."""
        job: Job = watched.job
        outcome = _timed_out_outcome(watched.limit)
        log.error(
            "job past its time limit: dead-lettered; the other jobs of its worker go on",
            task_id=job.task_id,
            task=job.name,
            limit=watched.limit,
            correlation_id=watched.correlation_id,
        )
        if not self._dead_letters.store(
            job, outcome, watched.message, watched.correlation_id, postpone=False
        ):
            return False  # the database refused it: stored when the job's thread returns
        self._runs.record(job, outcome, watched.correlation_id)
        self._emit_dead_lettered(job, outcome, watched.correlation_id)
        return True

    def _late(self, watched: Watched) -> Outcome:
        """The body of a job that timed out came back (or was interrupted): acknowledge it as
        dead-lettered, whatever it returned."""
        if watched.dead_lettered:
            return Outcome.dead_letter("already_dead_lettered", failed=False, record=False)
        return _timed_out_outcome(watched.limit)

    def _message(self, job: Job, correlation_id: str | None) -> dict[str, Any]:
        """The job as stored in a dead letter: enough to publish it again."""
        request = job.request
        return {
            "task": job.name,
            "args": list(job.args),
            "kwargs": dict(job.kwargs),
            "queue": (request.delivery_info or {}).get("routing_key"),
            "retries": request.retries,
            "headers": {
                CORRELATION_HEADER: correlation_id,
                MODE_HEADER: job.header(MODE_HEADER),
                **job.headers,
            },
        }


_HANDLERS: Mapping[str, Callable[[Pipeline, Job, Outcome], Any]] = MappingProxyType(
    {
        "done": Pipeline._done,
        "abort": Pipeline._abort,
        "defer": Pipeline._defer,
        "retry": Pipeline._retry,
        "dead_letter": Pipeline._dead_letter,
    }
)


def _timed_out_outcome(limit: float, how: str = "stopped on its thread") -> Outcome:
    detail = (
        f"ran longer than its time limit of {limit:g}s; {how} while the "
        "other jobs of its worker went on"
    )
    return Outcome.dead_letter("timed_out", detail=detail, failed=True)
