"""``celery -A tests.cluster_app worker``: the platform app built from the environment, with
the tasks of tests/cluster_tasks.py (tests/integration/test_redis_cluster.py)."""

from sandbox_platform.app.factory import create_app
from sandbox_platform.core.exits import exit_on_settings_error

app = exit_on_settings_error(create_app)

from tests.cluster_tasks import register  # noqa: E402

tasks = register(app)

__all__ = ["app", "tasks"]
