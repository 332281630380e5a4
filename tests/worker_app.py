"""The Celery app the integration tests run in real worker processes.

``celery -A tests.worker_app worker``: the platform app built from the environment, with the
task definitions of tests/task_defs.py and the async ones of tests/async_tasks.py.
"""

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)

from tests.async_tasks import register_async_tasks  # noqa: E402
from tests.task_defs import register  # noqa: E402

tasks = register(app)
async_tasks = register_async_tasks(app)

__all__ = ["app", "async_tasks", "tasks"]
