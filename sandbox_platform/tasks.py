"""Guarded tasks, at the import path the README documents::

    from sandbox_platform.tasks import guarded_task, enqueue

A re-export only: the guarded task lives in :mod:`sandbox_platform.app.tasks`.
"""

from sandbox_platform.app.tasks import GuardedTask, enqueue, guarded_task

__all__ = ["GuardedTask", "enqueue", "guarded_task"]
