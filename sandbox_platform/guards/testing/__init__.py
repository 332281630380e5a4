"""A harness to unit-test a guard's hooks: real hooks, real Redis, no worker, no broker.

A guard author builds a :class:`GuardHarness` around the guard (or guards) under test; the
harness binds them to :class:`~sandbox_platform.guards.base.Services` of its own (the given
Redis with a key prefix of its own, an :class:`Events` bus whose every event it records, a
recorder and a dry-run lock that keep their rows in memory), builds jobs and enqueue calls
for a task with the given options, and calls the hooks the way the pipeline does: through a
:class:`~sandbox_platform.guards.pipeline.Pipeline`'s own steps, so hooks run in its order, a
hook's unexpected error is wrapped in the same ``GuardHookError`` (an ``EnqueueError`` at
enqueue) and the admission is the real round trip::

    from sandbox_platform.guards.testing import GuardHarness, run_concurrently

    with GuardHarness(MyGuard(), options={"my_option": 3}, settings={"mode": "live"}) as h:
        call = h.enqueue(args=(1,))                  # at_enqueue (raises EnqueueError)
        job = h.delivery(call)                       # the job that message becomes
        assert h.before_run(job) is None             # before_run
        assert h.admit(job).outcome is None          # contribute, one admission, admitted
        outcome = h.error(job, ValueError("boom"))   # on_error, in reverse
        h.after_run(job, outcome)                    # after_run, in reverse
        assert h.events == []                        # what the guards emitted
        run_concurrently(lambda i: h.before_run(h.job(args=(i,))), threads=8)

Redis: pass a client, or a URL, or nothing for ``$SP_TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379``) with db ``$SP_TEST_REDIS_DB`` (default 9, the test suite's).
Unless the settings name a ``key_prefix``, the harness uses a prefix of its own and deletes
its keys on :meth:`GuardHarness.close`; it never flushes a database.
"""

from sandbox_platform.guards.testing.fakes import FakeTask, MemoryRecorder, default_redis_url
from sandbox_platform.guards.testing.harness import Admitted, GuardHarness
from sandbox_platform.guards.testing.threads import run_concurrently

__all__ = [
    "Admitted",
    "FakeTask",
    "GuardHarness",
    "MemoryRecorder",
    "default_redis_url",
    "run_concurrently",
]
