"""The mode guard: a message enqueued in one mode never runs on a worker of the other."""

from __future__ import annotations

from sandbox_platform.core.context import MODE_HEADER, message_mode
from sandbox_platform.guards.base import Guard, Job, Outcome

__all__ = ["ModeGuard"]


class ModeGuard(Guard):
    """Dead-letters (``wrong_mode``) a message whose mode header is not the worker's."""

    name = "mode"

    def before_run(self, job: Job) -> Outcome | None:
        enqueued_in = message_mode(job.header(MODE_HEADER))
        worker_mode = job.services.settings.mode.value
        if not enqueued_in or enqueued_in == worker_mode:
            return None
        detail = f"message enqueued in {enqueued_in} mode reached a {worker_mode} worker"
        return Outcome.dead_letter("wrong_mode", detail=detail, failed=False, record=False)
