"""Run worker/beat processes side by side and keep them running.

A child that dies (a crash, an out-of-memory kill) is started again after a short,
growing pause; a child that exits with a configuration error (2) or a readiness NO-GO (3)
stops the whole group with that code, since starting it again cannot help.

Shutdown belongs to the supervisor: each child runs in a process group of its own, so a
Ctrl-C in the terminal reaches only the supervisor, which sends every child one SIGTERM
(Celery's warm shutdown: running jobs finish, records are flushed; exit code 0). SIGINT and
SIGTERM end supervision alike. A child also gets SIGTERM if the supervisor itself dies
(``PR_SET_PDEATHSIG``), so none is left behind.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

import structlog

from sandbox_platform.procs.deadlines import DeadlineWatch

__all__ = ["FATAL_EXIT_CODES", "Supervisor"]

log = structlog.get_logger(__name__)

FATAL_EXIT_CODES = frozenset({2, 3})


class Supervisor:
    def __init__(
        self,
        commands: Sequence[Sequence[str]],
        env: dict[str, str],
        *,
        restart: bool = True,
        max_backoff: float = 30.0,
        deadlines: DeadlineWatch | None = None,
    ) -> None:
        self.commands = [list(c) for c in commands]
        self.deadlines = deadlines
        self.env = env
        self.restart = restart
        self.max_backoff = max_backoff
        self.children: list[subprocess.Popen[bytes]] = []
        self.restarts = [0] * len(self.commands)
        self._stopping = threading.Event()

    def _spawn(self, index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.commands[index], env=self.env, process_group=0, preexec_fn=_die_with_parent
        )

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """End supervision: every child gets SIGTERM (a warm shutdown), whatever ``signum``."""
        self._stopping.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        """Supervise until every child has exited after a stop; return the worst code."""
        self.children = [self._spawn(i) for i in range(len(self.commands))]
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda signum, _f: self.stop(signum))
            signal.signal(signal.SIGINT, lambda signum, _f: self.stop(signum))
        fatal = 0
        while not self._stopping.is_set():
            for index, child in enumerate(self.children):
                code = child.poll()
                if code is None and not self._stopping.is_set():
                    self._enforce_deadline(child)
                if code is None or self._stopping.is_set():
                    continue
                if code in FATAL_EXIT_CODES or not self.restart:
                    fatal = code
                    log.error("child exited; stopping", command=self.commands[index][:6], code=code)
                    self.stop()
                    break
                self.restarts[index] += 1
                pause = min(self.max_backoff, 0.5 * 2 ** min(self.restarts[index], 6))
                log.warning(
                    "child died; restarting", code=code, pause=pause, restarts=self.restarts[index]
                )
                self._stopping.wait(pause)
                if not self._stopping.is_set():
                    self.children[index] = self._spawn(index)
            self._stopping.wait(0.5)
        codes = [child.wait() for child in self.children]
        return fatal or max((c for c in codes if c > 0), default=0)

    def _enforce_deadline(self, child: subprocess.Popen[bytes]) -> None:
        """Stop a consumer whose job runs past its time limit (it is started again)."""
        if self.deadlines is None:
            return
        info = self.deadlines.overdue(child.pid)
        if info is None:
            return
        log.error("job past its time limit; stopping its consumer", task_id=info.get("task_id"))
        try:
            self.deadlines.on_overdue(info)
        except Exception:
            log.exception("could not record the timed-out job")
        child.kill()
        child.wait(30)
        self.deadlines.forget(child.pid)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the supervisor dies (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
