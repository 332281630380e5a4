"""The Celery app the integration tests run in real worker processes.

``celery -A tests.worker_app worker``: the platform app built from the environment, with the
task definitions of tests/task_defs.py.
"""

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)

from tests.task_defs import register  # noqa: E402

tasks = register(app)

__all__ = ["app", "tasks"]
