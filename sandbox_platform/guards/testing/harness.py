"""The harness: guards bound to fake services, and their hooks called one at a time the way
the pipeline calls them (see the package's docstring)."""

from __future__ import annotations

import inspect
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, SimpleNamespace
from typing import Any, TypeVar

import redis

from sandbox_platform.coordination.admission import Admission, AdmissionRequest, Admitter
from sandbox_platform.core.settings import Settings, load_settings
from sandbox_platform.guards.base import EnqueueCall, Guard, Job, OptionContext, Outcome, Services
from sandbox_platform.guards.dry_run import DryRunLock
from sandbox_platform.guards.events import Event, Events
from sandbox_platform.guards.pipeline import Pipeline, _hook
from sandbox_platform.guards.testing.fakes import FakeTask, MemoryRecorder, default_redis_url

__all__ = ["Admitted", "GuardHarness"]

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class Admitted:
    """What :meth:`GuardHarness.admit` saw: the request the guards contributed and the
    admission's answer (both None when no guard contributed, so no round trip was made; the
    answer is None too when the message carried the transport's admission), and the outcome
    of the ``admitted`` hooks (None: the job runs)."""

    request: AdmissionRequest | None
    admission: Admission | None
    outcome: Outcome | None


class _RecordingAdmitter(Admitter):
    """The real admitter, or a given answer; remembers each thread's last request."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        super().__init__(client, prefix)
        self.local = threading.local()

    def admit_request(self, request: AdmissionRequest) -> Admission:
        answer: Admission | None = getattr(self.local, "answer", None)
        admission = answer if answer is not None else super().admit_request(request)
        self.local.seen = (request, admission)
        return admission


def _body(*args: Any, **kwargs: Any) -> None:
    return None


def _params(body: Callable[..., Any]) -> tuple[str, ...]:
    """The task's argument names, as ``guarded_task`` takes them from its function."""
    try:
        parameters = inspect.signature(body).parameters.values()
    except (TypeError, ValueError):
        return ()
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return tuple(p.name for p in parameters if p.kind not in variadic)


def _resolve(
    guards: Sequence[Guard], name: str, argnames: Sequence[str], given: Mapping[str, Any]
) -> dict[str, Any]:
    """The task's options as ``guarded_task`` resolves them: each guard's, checked by its
    :class:`~sandbox_platform.guards.base.Option`, else its default."""
    declared = {option for guard in guards for option in guard.options}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise ValueError(f"{name}: no guard of the harness declares {unknown}")
    context = OptionContext(name, tuple(argnames), dict(given))
    return {
        option: spec.resolve(context, given[option]) if option in given else spec.default
        for guard in guards
        for option, spec in guard.options.items()
    }


class _Steps(Pipeline):
    """The pipeline's own steps, one at a time (the harness never runs a whole job: no body,
    no run record, no dead letter)."""

    def __init__(self, guards: Sequence[Guard], services: Services) -> None:
        super().__init__(guards, services)
        self._admitter = self.admitter = _RecordingAdmitter(services.redis, services.prefix)

    def before(self, job: Job) -> Outcome | None:
        return self._before(job)

    def admission(self, job: Job) -> Outcome | None:
        return self._admit(job)

    def on_error(self, job: Job, exc: Exception) -> Outcome:
        return self._error(job, exc)

    def after(self, job: Job, outcome: Outcome) -> None:
        for guard in self._after_run:
            _hook(guard, "after_run", guard.after_run, job, outcome)


class GuardHarness:
    """``guards`` bound to fake services around a task ``name`` whose body is ``body``
    (its parameters are the task's argument names) declared with ``options`` (checked by the
    guards' :class:`~sandbox_platform.guards.base.Option` s, defaults filled in, as at
    decoration). ``settings``: a :class:`Settings`, or overrides of the harness's defaults
    (Redis as given, in-memory SQLite URLs never opened, a key prefix of its own)."""

    def __init__(
        self,
        *guards: Guard,
        name: str = "tests.task",
        body: Callable[..., Any] = _body,
        options: Mapping[str, Any] | None = None,
        settings: Settings | Mapping[str, Any] | None = None,
        redis_client: redis.Redis | None = None,
        redis_url: str | None = None,
        time_limit: float | None = None,
    ) -> None:
        if not guards:
            raise ValueError("GuardHarness needs at least one guard")
        self.name = name
        self.body = body
        self.argnames = _params(body)
        self.time_limit = time_limit
        self.task_options = MappingProxyType(_resolve(guards, name, self.argnames, options or {}))
        self._own_prefix = not isinstance(settings, Settings) and "key_prefix" not in (
            settings or {}
        )
        if not isinstance(settings, Settings):
            defaults = {
                "redis_url": redis_url or default_redis_url(),
                "database_url": "sqlite://",
                # never opened (a live worker needs one; two in-memory URLs may compare equal)
                "live_database_url": "sqlite:///sp-guard-harness-live.sqlite3",
                "key_prefix": f"sp-test-{uuid.uuid4().hex[:12]}",
            }
            settings = load_settings(**{**defaults, **(settings or {})})
        self._own_client = redis_client is None
        url = redis_url or settings.redis_url or default_redis_url()
        client = redis_client or redis.Redis.from_url(url)
        #: every event the guards emitted, in order
        self.events: list[Event] = []
        #: every action the dry-run lock intercepted (sandbox mode)
        self.intercepted: list[dict[str, Any]] = []
        self.recorder = MemoryRecorder()
        events = Events()
        events.subscribe(Event, self.events.append, uid="guard-harness")
        self.services = Services(
            settings=settings,
            redis=client,
            events=events,
            recorder=self.recorder,
            dry_run_lock=DryRunLock(settings.mode, sink=self.intercepted.append),
        )
        self._steps = _Steps(guards, self.services)

    # -- the parts -----------------------------------------------------------------------

    @property
    def guards(self) -> tuple[Guard, ...]:
        """The bound guards, in the pipeline's order."""
        return self._steps.guards

    @property
    def guard(self) -> Guard:
        """The bound guard (the first, in order, when there are several)."""
        return self._steps.guards[0]

    @property
    def redis(self) -> redis.Redis:
        return self.services.redis

    @property
    def prefix(self) -> str:
        return self.services.prefix

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def events_of(self, kind: type[E]) -> list[E]:
        """The recorded events of type ``kind`` (or a subclass)."""
        return [event for event in list(self.events) if isinstance(event, kind)]

    # -- jobs and calls ------------------------------------------------------------------

    def job(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        retries: int = 0,
        headers: Mapping[str, Any] | None = None,
        redelivered: bool = False,
    ) -> Job:
        """A delivery of the task as the worker's pipeline makes it: attempt ``retries + 1``,
        message ``headers``, kombu's ``redelivered`` flag."""
        request = SimpleNamespace(
            id=task_id or str(uuid.uuid4()),
            retries=retries,
            headers=dict(headers or {}),
            delivery_info={"routing_key": "celery", "redelivered": redelivered},
            is_eager=False,
        )
        task = FakeTask(
            self.name, self.body, self.task_options, self.argnames, request, self.time_limit
        )
        return Job(task, tuple(args), dict(kwargs or {}), self.services)

    def delivery(self, call: EnqueueCall, *, retries: int = 0, redelivered: bool = False) -> Job:
        """The job that the message ``call`` published becomes (its id, headers, arguments)."""
        headers = call.options.get("headers") or {}
        return self.job(
            call.args,
            call.kwargs,
            task_id=call.task_id,
            retries=retries,
            headers=headers,
            redelivered=redelivered,
        )

    def call(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> EnqueueCall:
        """An ``apply_async(args, kwargs, **options)`` of the task, before the guards."""
        return EnqueueCall(
            task_name=self.name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            options=dict(options),
            task_options=self.task_options,
            argnames=self.argnames,
            services=self.services,
            task_id=options.get("task_id"),
        )

    # -- the hooks, as the pipeline calls them -------------------------------------------

    def enqueue(
        self, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None, **options: Any
    ) -> EnqueueCall:
        """``at_enqueue`` of every guard for :meth:`call` ``(args, kwargs, **options)``: the
        call as the guards left it (headers in ``options["headers"]``, ``existing_id`` when
        one answered with an earlier job); a refusal raises EnqueueError."""
        call = self.call(args, kwargs, **options)
        self._steps.enqueue(call)
        return call

    def before_run(self, job: Job) -> Outcome | None:
        """``before_run`` of every guard, in order, until one stops the job."""
        return self._steps.before(job)

    def admit(self, job: Job, answer: Admission | None = None) -> Admitted:
        """``contribute`` of every guard, the admission round trip (or ``answer``, made up
        by the test, in its place), then ``admitted`` until one stops the job."""
        local = self._steps.admitter.local
        local.answer, local.seen = answer, (None, None)
        try:
            outcome = self._steps.admission(job)
            request, admission = local.seen
        finally:
            local.answer = local.seen = None
        return Admitted(request, admission, outcome)

    def error(self, job: Job, exc: Exception) -> Outcome:
        """The body raised ``exc``: ``on_error`` in reverse order until one decides; the
        pipeline's own decision (dead letter ``failed``) when none does."""
        return self._steps.on_error(job, exc)

    def after_run(self, job: Job, outcome: Outcome) -> None:
        """``after_run`` of every guard, in reverse order. The pipeline logs a hook's error
        and lets the outcome stand; the harness raises it (``GuardHookError``)."""
        self._steps.after(job, outcome)

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Delete the harness's Redis keys (when it chose the prefix); close its client."""
        client = self.services.redis
        if self._own_prefix:
            keys = list(client.scan_iter(match=f"{self.prefix}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        if self._own_client:
            client.close()

    def __enter__(self) -> GuardHarness:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
