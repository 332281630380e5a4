"""The deployment's worker entry point: ``celery -A workers worker``.

The bundled example app, :mod:`sandbox_platform.examples.shop`, under the name compose, the
Dockerfile and the Kubernetes manifests use (``SANDBOX_PLATFORM_APP=workers``). This directory
is the repository's, not the wheel's: an installed package names the example by its own path.
"""

from sandbox_platform.examples.shop import TASK_MODULES, app, tasks

__all__ = ["TASK_MODULES", "app", "tasks"]
