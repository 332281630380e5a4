"""Dry-run locks: irreversible actions never leave a sandbox process.

Mark a function with :func:`irreversible` (or call it through
:meth:`DryRunLock.execute`, the seed's API). In **sandbox** mode the function is not called:
a dry-run event (action, function, redacted arguments, task id, correlation id, time) is
recorded and logged, and a simulated result is returned — the simulator's, or
:func:`default_simulation`. In **live** mode the call goes through and is logged.

Which lock decides is found through the running job's scope: the lock of the job's own app
(``JobScope.services``), so a sandbox job is intercepted and a live job's call goes through
even when apps of both modes share the process, and however many jobs interleave on threads.
The scope follows task code into the threads and child processes it starts
(:mod:`sandbox_platform.core.propagation`). Outside any job there is no job to ask: the mode
is that of the process's platform app (:mod:`sandbox_platform.core.apps`); with apps of both
modes the call is intercepted (fail safe) and logged once per function; with none, the
environment's settings decide.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, cast

import structlog
from sqlalchemy import insert

from sandbox_platform.core.apps import platform_apps
from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.errors import DryRunError, SimulationError
from sandbox_platform.core.jobscope import current_job, inherited_job
from sandbox_platform.core.redaction import redact
from sandbox_platform.core.settings import Mode, load_settings
from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import DryRunEvent

__all__ = [
    "DryRunLock",
    "Simulator",
    "current_lock",
    "default_simulation",
    "irreversible",
]

log = structlog.get_logger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
Simulator = Callable[..., Any]
EventSink = Callable[[dict[str, Any]], None]


def _no_arguments() -> None:
    """Stands for the function of an event that has none (egress)."""


def default_simulation(action: str, function: str) -> dict[str, Any]:
    """What an intercepted action returns when no simulator was given."""
    return {"dry_run": True, "simulated": True, "action": action, "function": function}


def _qualname(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "?"
    return f"{module}.{getattr(func, '__qualname__', repr(func))}"


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return repr(value)


def _arguments(
    func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> dict[str, Any]:
    try:
        bound = inspect.signature(func).bind_partial(*args, **kwargs)
        named: dict[str, Any] = dict(bound.arguments)
    except (TypeError, ValueError):
        named = {"args": list(args), "kwargs": kwargs}
    return cast(dict[str, Any], redact(_jsonable(named)))


class DryRunLock:
    """The gate every irreversible action passes. ``mode`` decides; ``sink`` records."""

    def __init__(
        self,
        mode: Mode | Callable[[], Mode],
        sink: EventSink | None = None,
        on_intercept: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._mode = mode
        self._sink = sink
        self._on_intercept = on_intercept
        self.intercepted = 0
        self.passed = 0
        #: functions called outside any job while apps of both modes were present (logged)
        self._ambiguous: set[str] = set()

    @property
    def mode(self) -> Mode:
        return self._mode() if callable(self._mode) else self._mode

    @property
    def armed(self) -> bool:
        """True when irreversible actions are intercepted (sandbox mode)."""
        return self.mode is Mode.SANDBOX

    def execute(
        self,
        action: str,
        func: Callable[..., R],
        *args: Any,
        simulate: Simulator | None = None,
        **kwargs: Any,
    ) -> R | Any:
        """Run ``func(*args, **kwargs)`` in live mode; record and simulate it in sandbox."""
        event = self._gate(action, func, args, kwargs)
        if event is None:
            return func(*args, **kwargs)
        try:
            result = simulate(*args, **kwargs) if simulate is not None else self._default(event)
        except Exception as exc:
            raise self._simulator_failed(event, exc) from exc
        return self._intercepted(event, result)

    async def execute_async(
        self,
        action: str,
        func: Callable[..., Awaitable[R]],
        *args: Any,
        simulate: Simulator | None = None,
        **kwargs: Any,
    ) -> R | Any:
        """:meth:`execute` for an ``async def`` action: awaited in live mode; in sandbox the
        simulator's answer (awaited when it is a coroutine) is returned."""
        event = self._gate(action, func, args, kwargs)
        if event is None:
            return await func(*args, **kwargs)
        try:
            result = simulate(*args, **kwargs) if simulate is not None else self._default(event)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise self._simulator_failed(event, exc) from exc
        return self._intercepted(event, result)

    def _gate(
        self, action: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Check the call; None when it goes through (live mode, logged), else its event."""
        if not action or not isinstance(action, str):
            raise DryRunError("an irreversible action needs a non-empty name")
        if not callable(func):
            raise DryRunError(f"action {action!r}: {func!r} is not callable")
        function = _qualname(func)
        event = self._event(action, function, func, args, kwargs)
        if self.mode is Mode.LIVE:
            self.passed += 1
            log.info("irreversible action executed", action=action, function=function)
            return None
        self.intercepted += 1
        return event

    def _intercepted(self, event: dict[str, Any], result: Any) -> Any:
        event["simulated_result"] = _jsonable(result)
        self._record(event)
        log.info(
            "irreversible action intercepted (dry run)",
            action=event["action"],
            function=event["function"],
            arguments=event["arguments"],
        )
        return result

    @staticmethod
    def _default(event: dict[str, Any]) -> dict[str, Any]:
        return default_simulation(event["action"], event["function"])

    def _simulator_failed(self, event: dict[str, Any], exc: Exception) -> SimulationError:
        """A simulator that raises is a bug of the simulator: the call is recorded with the
        error and a :class:`SimulationError` names the action."""
        event["error"] = repr(exc)
        self._record(event, announce=False)
        log.error("simulator raised", action=event["action"], function=event["function"])
        return SimulationError(event["action"], event["function"], exc)

    def note_ambiguous(self, action: str, function: str) -> None:
        """Log (once per function) that ``function`` was called outside any job in a process
        with apps of both modes, and is intercepted by this (a sandbox app's) lock."""
        if function in self._ambiguous:
            return
        self._ambiguous.add(function)
        log.warning(
            "irreversible call outside any job, with sandbox and live apps in this process: "
            "intercepted (fail safe); call it inside a job to run it in its app's mode",
            action=action,
            function=function,
        )

    def record_egress(self, destination: str, how: str, *, blocked: bool) -> None:
        """Record a connection task code tried in sandbox mode (the egress guard calls it)."""
        event = self._event("egress", f"socket.{how}", _no_arguments, (), {})
        event["arguments"] = {"destination": destination, "blocked": blocked}
        event["simulated_result"] = {"blocked": blocked}
        self._record(event)

    def _event(
        self,
        action: str,
        function: str,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> dict[str, Any]:
        job = current_job()
        return {
            "action": action,
            "function": function,
            "arguments": _arguments(func, args, kwargs),
            "intercepted": True,
            "mode": Mode.SANDBOX.value,
            "task_id": job.task_id if job else None,
            "correlation_id": current_correlation_id(),
            "created_at": datetime.now(UTC),
        }

    def _record(self, event: dict[str, Any], *, announce: bool = True) -> None:
        for callback in (self._sink, self._on_intercept if announce else None):
            if callback is None:
                continue
            try:
                callback(event)
            except Exception:
                log.exception("dry-run event could not be recorded", action=event["action"])


def current_lock(action: str = "", function: str = "") -> DryRunLock:
    """The lock an irreversible call made now goes through: the running job's app's; in a
    child process spawned by a job, one for that job's mode and database; outside any job,
    the process's platform app's (a sandbox app's, with a note, when apps of both modes are
    present); with no app at all, one from the environment's settings."""
    job = current_job()
    if job is not None:
        lock = getattr(job.services, "dry_run_lock", None)
        if isinstance(lock, DryRunLock):
            return lock
        inherited = inherited_job()
        if inherited is not None and inherited.mode and inherited.database_url:
            sink = functools.partial(_write_event, inherited.database_url)
            return DryRunLock(Mode(inherited.mode), sink=sink)
    return _lock_outside_job(action, function)


def _lock_outside_job(action: str, function: str) -> DryRunLock:
    apps = platform_apps()
    if not apps:
        settings = load_settings()
        return DryRunLock(
            settings.mode, sink=functools.partial(_write_event, settings.active_database_url)
        )
    if len({entry.mode for entry in apps}) == 1:
        return cast(DryRunLock, apps[0].lock())
    sandbox = next(entry for entry in apps if entry.mode is Mode.SANDBOX)
    lock = cast(DryRunLock, sandbox.lock())
    lock.note_ambiguous(action, function)
    return lock


def _write_event(database_url: str, event: dict[str, Any]) -> None:
    """Store one dry-run event now (a process without a platform app has no recorder)."""
    with session_scope(database_url) as session:
        session.execute(insert(DryRunEvent), [event])


def irreversible(
    action: str, *, simulate: Simulator | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark ``func`` as an irreversible action named ``action``.

    ::

        @irreversible("payment", simulate=lambda order_id, cents: {"charge_id": "sim_1"})
        def charge(order_id: str, cents: int) -> dict: ...
    """
    if not action or not isinstance(action, str):
        raise DryRunError("irreversible() needs a non-empty action name")
    if simulate is not None and not callable(simulate):
        raise DryRunError(f"irreversible({action!r}): simulate must be callable")

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        function = _qualname(func)

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            lock = current_lock(action, function)
            return cast(R, lock.execute(action, func, *args, simulate=simulate, **kwargs))

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            lock = current_lock(action, function)
            call = cast(Callable[..., Awaitable[Any]], func)
            return await lock.execute_async(action, call, *args, simulate=simulate, **kwargs)

        chosen = cast(
            Callable[P, R], async_wrapper if inspect.iscoroutinefunction(func) else wrapper
        )
        chosen.__sandbox_platform_action__ = action  # type: ignore[attr-defined]
        return chosen

    return decorate
