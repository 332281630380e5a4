"""``celery -A tests.shapes_app worker``: the platform app from the environment with the
sandbox tests' tasks (tests/sandbox_shapes.py)."""

from sandbox_platform import create_app
from sandbox_platform.core.exits import exit_on_settings_error
from tests.sandbox_shapes import register_shapes

app = exit_on_settings_error(create_app)
tasks = register_shapes(app)

__all__ = ["app", "tasks"]
