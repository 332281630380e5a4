"""The example shop's beat schedule, as ``sandbox-platform beat`` (or ``celery -A
sandbox_platform.examples.shop beat``) sends it.

The shop declares no periodic task of its own: its beat sends the platform's schedule (the
heartbeat and the queue watch every interval, housekeeping hourly), which the LeaderScheduler
adds to the ``beat_schedule`` of every platform app. An app's own entries go in
``app.conf.beat_schedule`` beside it (README, "Your own app").
"""

from sandbox_platform.app.schedule import HOUSEKEEPING_SECONDS, beat_schedule

__all__ = ["HOUSEKEEPING_SECONDS", "beat_schedule"]
