"""The platform-only scheduler entry point: ``celery -A beat beat``.

``sandbox-platform beat --app <your module>`` runs your app's ``beat_schedule`` too; this
module is the platform's schedule alone. Every app built by ``create_app`` uses the
LeaderScheduler, which adds the platform's schedule (:mod:`sandbox_platform.app.schedule`):
any number of beats may run, only the holder of a Redis lease sends, and a standby takes over
within two heartbeat intervals when the leader dies.
"""

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)

__all__ = ["app"]
