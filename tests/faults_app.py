"""``celery -A tests.faults_app worker``: the platform app from the environment with the
reliability suite's tasks (tests/fault_tasks.py) and the example app's declared limits."""

from sandbox_platform import create_app, declare_default_limits
from sandbox_platform.core.exits import exit_on_settings_error
from tests.fault_tasks import register_faults
from tests.secret_tasks import register_secret_tasks

app = exit_on_settings_error(create_app)
declare_default_limits(app, {"fault-bucket": [(30, 1.0)]})
tasks = register_faults(app)
secret_tasks = register_secret_tasks(app)

__all__ = ["app", "secret_tasks", "tasks"]
