"""The scheduler entry point: ``celery -A beat beat``.

Any number of beats may run: the LeaderScheduler lets only the holder of a Redis lease send,
and a standby takes over within two heartbeat intervals when the leader dies. The schedule
lives in :mod:`beat.schedule`.
"""

from beat.schedule import beat_schedule
from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)
app.conf.beat_schedule = beat_schedule(app.platform_settings)
app.conf.beat_scheduler = "sandbox_platform.app.beat_scheduler:LeaderScheduler"

__all__ = ["app"]
