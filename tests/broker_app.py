"""``celery -A tests.broker_app worker``: the platform app from the environment with the
broker-isolation tasks (tests/broker_tasks.py)."""

from sandbox_platform import create_app
from sandbox_platform.core.exits import exit_on_settings_error
from tests.broker_tasks import register_broker_tasks

app = exit_on_settings_error(create_app)
tasks = register_broker_tasks(app)

__all__ = ["app", "tasks"]
