"""Guarded tasks, at the import path the README documents::

    from sandbox_platform.tasks import guarded_task, enqueue, enqueue_async

A re-export only: the guarded task lives in :mod:`sandbox_platform.app.tasks`.
"""

from sandbox_platform.app.tasks import GuardedTask, enqueue, enqueue_async, guarded_task

__all__ = ["GuardedTask", "enqueue", "enqueue_async", "guarded_task"]
