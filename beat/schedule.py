"""The example app's beat schedule.

A re-export: see :mod:`sandbox_platform.examples.shop.schedule`.
"""

from sandbox_platform.examples.shop.schedule import HOUSEKEEPING_SECONDS, beat_schedule

__all__ = ["HOUSEKEEPING_SECONDS", "beat_schedule"]
