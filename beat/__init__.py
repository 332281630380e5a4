"""The scheduler entry point: ``celery -A beat beat``. The schedule lives in beat.schedule."""

from sandbox_platform.celery_app import create_app
from sandbox_platform.entrypoint import exit_on_settings_error

app = exit_on_settings_error(create_app)

__all__ = ["app"]
