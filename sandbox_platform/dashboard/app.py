"""The dashboard's ASGI app: pages, their JSON twins, probes and metrics, behind auth."""

from __future__ import annotations

from importlib import resources

from celery import Celery
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from sandbox_platform.core.settings import Settings
from sandbox_platform.dashboard.api import api_routes
from sandbox_platform.dashboard.auth import AuthMiddleware, Credentials
from sandbox_platform.dashboard.pages import page_routes
from sandbox_platform.dashboard.state import DashboardState

__all__ = ["create_dashboard"]


def create_dashboard(settings: Settings, app: Celery, *, host: str = "127.0.0.1") -> Starlette:
    """The dashboard for ``app`` served on ``host``.

    Raises :class:`~sandbox_platform.core.errors.SettingsError` when it would be served
    without credentials anywhere but a loopback address in sandbox mode.
    """
    credentials = Credentials.for_server(settings, host)
    static = StaticFiles(directory=str(resources.files("sandbox_platform.dashboard") / "static"))
    dashboard = Starlette(
        routes=[*api_routes(), *page_routes(), Mount("/static", app=static, name="static")],
        middleware=[Middleware(AuthMiddleware, credentials=credentials)],
    )
    dashboard.state.dashboard = DashboardState(settings, app)
    return dashboard
