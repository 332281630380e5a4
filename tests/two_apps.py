"""``celery -A tests.two_apps worker``: a worker module holding apps of both modes.

The app the worker runs (``app``) is built from the environment (its mode included); a second
app of the other mode is built too, as a module that enqueues jobs of the other mode would.
``SP_TEST_APP_ORDER`` says which is created first: ``worker-first`` or ``other-first`` (the
last created app used to decide the mode of every irreversible call in the process).
"""

import os

from sandbox_platform import create_app
from sandbox_platform.core.exits import exit_on_settings_error
from sandbox_platform.core.settings import Mode, load_settings
from tests.async_tasks import register_async_tasks
from tests.task_defs import register

ORDER = os.environ.get("SP_TEST_APP_ORDER", "worker-first")


def _other():  # type: ignore[no-untyped-def]
    mode = Mode.LIVE if load_settings().mode is Mode.SANDBOX else Mode.SANDBOX
    return create_app(load_settings(mode=mode), main="other")


if ORDER == "other-first":
    other = _other()
    app = exit_on_settings_error(create_app)
else:
    app = exit_on_settings_error(create_app)
    other = _other()
tasks = register(app)
other_tasks = register(other)
async_tasks = register_async_tasks(app)
other_async_tasks = register_async_tasks(other)

__all__ = ["app", "async_tasks", "other", "other_async_tasks", "other_tasks", "tasks"]
