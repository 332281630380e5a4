"""``dashboard``: serve the operator's dashboard (and /healthz, /readyz, /metrics)."""

from __future__ import annotations

from typing import Annotated

import typer

from sandbox_platform.cli.common import (
    AppOption,
    app_module,
    cli_settings,
    load_app,
    require_extra,
)

__all__ = ["dashboard"]


def dashboard(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 8600,
    app_option: AppOption = None,
) -> None:
    """Serve the dashboard. Credentials (SANDBOX_PLATFORM_DASHBOARD_USER/_PASSWORD or _TOKEN)
    are required unless it listens on loopback in sandbox mode."""
    require_extra("dashboard", "the dashboard")  # Starlette, Jinja2, uvicorn: imported below
    import uvicorn

    from sandbox_platform.core.logging import configure_logging
    from sandbox_platform.dashboard import create_dashboard

    settings = cli_settings()
    configure_logging(settings.log_format, settings.log_level)
    module = app_module(app_option, settings)
    asgi = create_dashboard(settings, load_app(module, settings), host=host)
    print(f"sandbox-platform dashboard: http://{host}:{port}/", flush=True)
    uvicorn.run(asgi, host=host, port=port, log_config=None, access_log=False)
