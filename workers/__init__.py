"""The worker entry point: ``celery -A workers worker``.

The Celery app is built here, from the environment (``SANDBOX_PLATFORM_*``); a bad setting
exits with one line and code 2. Task modules are listed in ``TASK_MODULES``.
"""

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

TASK_MODULES = ["workers.tasks"]

app = exit_on_settings_error(create_app)
app.conf.include = TASK_MODULES
app.loader.import_default_modules()

from workers import tasks  # noqa: E402  (registers the tasks on ``app``)

__all__ = ["app", "tasks"]
