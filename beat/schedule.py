"""The platform's beat schedule (a re-export: see :mod:`sandbox_platform.app.schedule`)."""

from sandbox_platform.app.schedule import HOUSEKEEPING_SECONDS, beat_schedule

__all__ = ["HOUSEKEEPING_SECONDS", "beat_schedule"]
