"""The arguments guard: a message whose arguments do not fit the task's signature (published
by name with one missing, say) is dead-lettered ``invalid_arguments`` at once: no retry can
fix it. Arguments of ``.delay`` calls are checked at the call site already (Celery's
``typing``); this catches what arrives from elsewhere."""

from __future__ import annotations

import inspect

from sandbox_platform.guards.base import Guard, Job, Outcome, Services

__all__ = ["ArgumentsGuard"]


class ArgumentsGuard(Guard):
    name = "arguments"

    def __init__(self) -> None:
        self._signatures: dict[str, inspect.Signature | None] = {}

    def bind(self, services: Services) -> ArgumentsGuard:
        return ArgumentsGuard()

    def _signature(self, job: Job) -> inspect.Signature | None:
        if job.name not in self._signatures:
            try:
                self._signatures[job.name] = inspect.signature(job.task.run)
            except (TypeError, ValueError):
                self._signatures[job.name] = None
        return self._signatures[job.name]

    def before_run(self, job: Job) -> Outcome | None:
        signature = self._signature(job)
        if signature is None:
            return None
        try:
            signature.bind(*job.args, **job.kwargs)
        except TypeError as exc:
            error = TypeError(f"{job.name}: the message's arguments do not fit: {exc}")
            return Outcome.dead_letter("invalid_arguments", error=error)
        return None
