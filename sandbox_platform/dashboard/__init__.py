"""The operator's dashboard: an ASGI app (Starlette + Jinja2, no JavaScript build step)
served by ``sandbox-platform dashboard`` and ``sandbox-platform up``."""

from sandbox_platform.dashboard.app import create_dashboard

__all__ = ["create_dashboard"]
