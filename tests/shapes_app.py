"""``celery -A tests.shapes_app worker``: the platform app from the environment with the
sandbox tests' tasks (tests/sandbox_shapes.py), and a keep-alive client warmed at import when
the test asks (tests/warm_client.py)."""

from sandbox_platform import create_app
from sandbox_platform.core.exits import exit_on_settings_error
from tests.sandbox_shapes import register_shapes
from tests.warm_client import warm_from_env

app = exit_on_settings_error(create_app)
tasks = register_shapes(app)
warm_from_env()  # a keep-alive connection opened at import, outside any job

__all__ = ["app", "tasks"]
