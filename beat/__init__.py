"""The deployment's scheduler entry point: ``celery -A beat beat``.

The bundled example app, :mod:`sandbox_platform.examples.shop`, under the name the repository
has always given its beat; ``sandbox-platform beat --app <your module>`` runs your app's
``beat_schedule`` instead. Every app built by ``create_app`` uses the LeaderScheduler, which
adds the platform's schedule (:mod:`sandbox_platform.app.schedule`): any number of beats may
run, only the holder of a Redis lease sends, and a standby takes over within two heartbeat
intervals when the leader dies. This directory is the repository's, not the wheel's.
"""

from sandbox_platform.examples.shop import app

__all__ = ["app"]
