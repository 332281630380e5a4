"""The example shop's Celery app, built from the environment (``SANDBOX_PLATFORM_*``).

A module of its own so that the tasks import the app without importing the package that
imports them (no import cycle). A bad setting exits with one line and code 2.
"""

from sandbox_platform import create_app
from sandbox_platform.core.exits import exit_on_settings_error

__all__ = ["TASK_MODULES", "app"]

#: the modules a worker of this app imports (Celery's ``include``)
TASK_MODULES = ("sandbox_platform.examples.shop.tasks",)

app = exit_on_settings_error(create_app)
app.conf.include = list(TASK_MODULES)
