"""The beat scheduler, at the path ``celery beat --scheduler`` configurations name::

    celery -A beat beat --scheduler sandbox_platform.beat_scheduler:LeaderScheduler

A re-export only: see :mod:`sandbox_platform.app.beat_scheduler`.
"""

from sandbox_platform.app.beat_scheduler import LeaderScheduler, tick_id_for

__all__ = ["LeaderScheduler", "tick_id_for"]
