"""What a guard is: a small object with hooks the pipeline calls in order.

A guard declares the task options it understands (:class:`Option`) and overrides the hooks it
needs; every hook does nothing by default. The pipeline (:mod:`sandbox_platform.guards.pipeline`)
walks its ordered list of guards and knows none of them by name::

    at_enqueue(call)           in the enqueuing process, before publishing (may refuse with an
                               EnqueueError, add headers, or answer with an existing job id)
    before_run(job)            in the worker, before anything else; an Outcome stops the job
    contribute(job, request)   add keys to the one admission round trip (claim, tokens)
    admitted(job, admission)   read the admission's answer; an Outcome stops the job
    on_error(job, exc)         the body raised: an Outcome decides (retry, dead letter), else
                               the next guard is asked (in reverse order)
    after_run(job, outcome)    every run's end, in reverse order, whatever the outcome

Whatever a guard needs is handed to it: :meth:`Guard.bind` receives the process's
:class:`Services` once (return a configured guard), and every hook receives the job, which
carries them too. Guards report through ``services.events``; they never reach for a global.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import redis

from sandbox_platform.broker.ack_riders import Settlement
from sandbox_platform.broker.hooks import BrokerHooks
from sandbox_platform.core.context import request_header
from sandbox_platform.core.jobscope import current_job
from sandbox_platform.core.secret_config import SecretKeys, secret_keys_for
from sandbox_platform.core.secret_mask import SecretMask
from sandbox_platform.core.settings import Settings
from sandbox_platform.db.recorder import Recorder
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.egress import EgressPolicy, job_policy
from sandbox_platform.guards.events import Events
from sandbox_platform.guards.state import GuardState, IdempotencyClaim

if TYPE_CHECKING:
    from sandbox_platform.coordination.admission import Admission, AdmissionRequest

__all__ = [
    "EnqueueCall",
    "Guard",
    "GuardedTaskLike",
    "Job",
    "Option",
    "OptionContext",
    "Outcome",
    "OutcomeKind",
    "Services",
    "guard_options",
    "job_services",
]

#: A re-queue never waits less than this (a zero countdown would spin).
MIN_DEFER_SECONDS = 0.05


@dataclass(frozen=True)
class Services:
    """The per-process parts of one app that a guard, or code inside a job, may need; built
    once per app and process by the app layer. The pipeline puts them in the job's scope, so
    code deep inside a job (``irreversible``, the egress guard) uses its own app's."""

    settings: Settings
    redis: redis.Redis
    events: Events
    recorder: Recorder
    #: the gate every irreversible call of the app's jobs passes
    dry_run_lock: DryRunLock
    #: the app's side of the transport: what rides with a job's acknowledgement, what a
    #: publish answered (broker/hooks.py)
    broker: BrokerHooks = field(default_factory=BrokerHooks)

    @property
    def prefix(self) -> str:
        return self.settings.key_prefix

    @functools.cached_property
    def secret_keys(self) -> SecretKeys:
        """What seals the app's secret arguments (live mode without keys: SettingsError);
        worked out on first use (a sandbox may generate its key)."""
        return secret_keys_for(self.settings)

    @functools.cached_property
    def egress(self) -> EgressPolicy | None:
        """The allow-list the app's jobs are held to in a sandbox worker; None: unrestricted
        (live mode, or the guard off). Worked out on first use (it resolves host names)."""
        return job_policy(self.settings)


def job_services() -> Services | None:
    """The services of the running job's app (None outside a job, or in a process a job
    spawned)."""
    job = current_job()
    services = job.services if job is not None else None
    return services if isinstance(services, Services) else None


@dataclass(frozen=True)
class OptionContext:
    """What an option check knows: the task's name and its argument names."""

    task_name: str
    params: Sequence[str]
    #: every option the task was declared with, as given (for checks across options)
    declared: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Option:
    """A task option a guard understands: its default and a check run at decoration time.

    ``check(context, value)`` returns the value to keep, or raises ValueError naming the task.
    """

    default: Any = None
    check: Callable[[OptionContext, Any], Any] | None = None

    def resolve(self, context: OptionContext, value: Any) -> Any:
        return value if self.check is None else self.check(context, value)


OutcomeKind = Literal["done", "defer", "retry", "dead_letter", "abort"]


@dataclass(frozen=True)
class Outcome:
    """How one run of a job ends; the pipeline carries it out.

    ``state`` is the run record's state. ``done`` returns ``value``; ``defer`` publishes the same
    message again in ``countdown`` seconds (no retry used); ``retry`` retries with the task's
    policy; ``dead_letter`` stores the job with ``reason`` and raises ``error`` when ``failed``
    (a final failure), else drops the message; ``abort`` re-raises Celery's own control flow.
    """

    kind: OutcomeKind
    state: str
    value: Any = None
    error: BaseException | None = None
    countdown: float = 0.0
    max_retries: int | None = None
    reason: str = ""
    detail: str = ""
    failed: bool = False
    record: bool = True
    context: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def succeeded(cls, value: Any) -> Outcome:
        return cls("done", "succeeded", value=value)

    @classmethod
    def deduplicated(cls, value: Any) -> Outcome:
        return cls("done", "deduplicated", value=value)

    @classmethod
    def defer(cls, countdown: float) -> Outcome:
        return cls("defer", "deferred", countdown=max(countdown, MIN_DEFER_SECONDS))

    @classmethod
    def retry(cls, error: BaseException, countdown: float, max_retries: int) -> Outcome:
        return cls("retry", "retrying", error=error, countdown=countdown, max_retries=max_retries)

    @classmethod
    def dead_letter(
        cls,
        reason: str,
        *,
        error: BaseException | None = None,
        detail: str = "",
        failed: bool = True,
        record: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> Outcome:
        return cls(
            "dead_letter",
            "dead_lettered",
            error=error,
            reason=reason,
            detail=detail or (repr(error) if error is not None else ""),
            failed=failed,
            record=record,
            context=dict(context or {}),
        )

    @classmethod
    def run_failed(cls, error: BaseException) -> Outcome:
        """Recorded as failed; the body's value stands (it ran, e.g. its result was not
        stored)."""
        return cls("done", "failed", error=error, detail=repr(error))

    @classmethod
    def abort(cls, error: BaseException) -> Outcome:
        return cls("abort", "aborted", error=error, record=False)


class GuardedTaskLike(Protocol):
    """What the pipeline needs of a task (the app layer's GuardedTask provides it)."""

    name: str
    sp_options: Mapping[str, Any]
    sp_argnames: Sequence[str]

    @property
    def request(self) -> Any: ...

    def run(self, *args: Any, **kwargs: Any) -> Any: ...

    def requeue(
        self,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        countdown: float,
        headers: Mapping[str, Any],
    ) -> None: ...

    def retry(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass
class Job:
    """One run of a guarded job, as the guards see it (per-call state lives here)."""

    task: GuardedTaskLike
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    services: Services
    started: float = field(default_factory=time.perf_counter)
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    #: headers a re-queue or a dead letter must carry (e.g. the idempotency key)
    headers: dict[str, Any] = field(default_factory=dict)
    #: per-job state of the guards, typed by class (guards/state.py; never on the guard)
    state: GuardState = field(default_factory=GuardState)
    #: the run record waits for this: the job's result stored (with its acknowledgement)
    record_after: Settlement | None = None
    #: the values of the job's secret arguments, masked in everything written while it runs
    secrets: SecretMask = field(default_factory=SecretMask)
    _result_json: str | None = None

    #: this delivery's request (Celery keeps it per thread: taken where the job starts, so
    #: the job reads the same from any thread, e.g. the time-limit watcher's)
    request: Any = field(init=False)

    def __post_init__(self) -> None:
        self.request = self.task.request

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def task_id(self) -> str:
        return str(self.request.id or "")

    @property
    def attempt(self) -> int:
        return int(self.request.retries or 0) + 1

    @property
    def options(self) -> Mapping[str, Any]:
        return self.task.sp_options

    @property
    def idempotency_key(self) -> str | None:
        """The job's idempotency key, once the idempotency guard resolved it."""
        claim = self.state.get(IdempotencyClaim)
        return claim.key if claim is not None else None

    @property
    def fencing_token(self) -> int | None:
        """The fencing token of the job's acquired idempotency claim, if any."""
        claim = self.state.get(IdempotencyClaim)
        return claim.fencing_token if claim is not None else None

    @property
    def time_limit(self) -> float | None:
        """The job's hard time limit in seconds (the task's, else the app's), if any."""
        task: Any = self.task
        limit = getattr(task, "time_limit", None) or task.app.conf.get("task_time_limit")
        return float(limit) if limit else None

    def header(self, name: str) -> Any:
        """A header of the message being run."""
        return request_header(self.request, name)

    def result_json(self, value: Any) -> str:
        """``value`` as JSON text (encoded once per job, whoever asks first)."""
        if self._result_json is None:
            self._result_json = json.dumps(value, default=repr)
        return self._result_json


@dataclass
class EnqueueCall:
    """One ``apply_async`` of a guarded task, before it is published.

    ``options`` are Celery's publish options (a guard may add ``headers``); a guard that finds
    the job already published sets ``existing_id`` and nothing is published.
    """

    task_name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    options: dict[str, Any]
    task_options: Mapping[str, Any]
    argnames: Sequence[str]
    services: Services
    task_id: str | None = None
    existing_id: str | None = None
    #: part of a bulk enqueue: a guard may leave its Redis work to ``at_enqueue_batch``
    batched: bool = False
    #: per-call state of the guards, typed by class (guards/state.py)
    state: GuardState = field(default_factory=GuardState)
    #: the broker is the coordination Redis behind the platform's transport: a guard may
    #: fold its Redis work into the publish (:mod:`sandbox_platform.broker.publish_once`)
    publish_once: bool = False

    def add_header(self, name: str, value: Any) -> None:
        headers = dict(self.options.get("headers") or {})
        headers[name] = value
        self.options["headers"] = headers


class Guard:
    """Base class of guards: every hook is a no-op. See the module docstring."""

    #: a short name for logs and errors
    name: ClassVar[str] = "guard"
    #: the names of the guards this one runs before / after (in the forward hooks; the
    #: reverse ones the other way): :mod:`sandbox_platform.guards.ordering`
    before: ClassVar[tuple[str, ...]] = ()
    after: ClassVar[tuple[str, ...]] = ()
    #: deprecated (0.2's numbers, built-ins 5..60): read with a warning, removed in 0.4
    order: ClassVar[int | None] = None
    #: the task options this guard understands
    options: ClassVar[Mapping[str, Option]] = {}

    def bind(self, services: Services) -> Guard:
        """This guard configured for one process (default: itself)."""
        return self

    def at_enqueue(self, call: EnqueueCall) -> None:
        return None

    def before_run(self, job: Job) -> Outcome | None:
        return None

    def contribute(self, job: Job, request: AdmissionRequest) -> None:
        return None

    def admitted(self, job: Job, admission: Admission) -> Outcome | None:
        return None

    def on_error(self, job: Job, exc: Exception) -> Outcome | None:
        return None

    def after_run(self, job: Job, outcome: Outcome) -> None:
        return None

    def __repr__(self) -> str:
        return f"<guard {self.name}>"


def guard_options(task: object) -> Mapping[str, Any] | None:
    """The resolved guard options of a guarded task, or None for any other task."""
    options = getattr(task, "sp_options", None)
    return options if isinstance(options, Mapping) else None
