"""The dashboard's JSON API (``/api/...``) and its HTTP endpoints for machines:
``/healthz`` (liveness), ``/readyz`` (200 on GO, 503 on NO-GO with the reasons) and
``/metrics`` (Prometheus text). Each page of the dashboard reads the same functions."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox_platform.dashboard.state import DashboardState
from sandbox_platform.ops import records
from sandbox_platform.ops.backlog import queue_stats
from sandbox_platform.ops.heartbeat import Heartbeat
from sandbox_platform.ops.job_lookup import find_job, nothing_matched
from sandbox_platform.ops.metrics import read_totals
from sandbox_platform.ops.overview import (
    governor_overview,
    heartbeat_overview,
    outcomes_over_time,
    queues_overview,
)
from sandbox_platform.ops.prometheus import CONTENT_TYPE, Snapshot, exposition

__all__ = ["api_routes", "int_param", "view"]


def state_of(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    """An integer query parameter; a 400 with a clear message when it is not one."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise HTTPException(
            400, f"query parameter {name!r} must be an integer, got {raw!r}"
        ) from None


def text_param(request: Request, name: str) -> str | None:
    value = request.query_params.get(name, "").strip()
    return value or None


# -- what each page shows (sync: they run in the thread pool) ----------------------------------


def readiness_view(state: DashboardState) -> dict[str, Any]:
    return state.readiness().to_dict()


def alerts_view(state: DashboardState, request: Request) -> dict[str, Any]:
    return {
        "alerts": records.list_alerts(
            state.database_url,
            severity=text_param(request, "severity"),
            kind=text_param(request, "kind"),
            after_id=int_param(request, "after"),
            limit=int_param(request, "limit", 100) or 100,
        ),
        "kinds": records.alert_kinds(state.database_url),
    }


def sandbox_view(state: DashboardState, request: Request) -> dict[str, Any]:
    return {
        "events": records.list_dry_runs(
            state.database_url,
            action=text_param(request, "action"),
            after_id=int_param(request, "after"),
            limit=int_param(request, "limit", 100) or 100,
        ),
        "actions": records.dry_run_actions(state.database_url),
    }


def dead_letters_view(state: DashboardState, request: Request) -> dict[str, Any]:
    return {
        "dead_letters": records.list_dead_letters(
            state.database_url,
            reason=text_param(request, "reason"),
            limit=int_param(request, "limit", 100) or 100,
        )
    }


def correlation_view(state: DashboardState, job: str) -> dict[str, Any]:
    """One job's story: ``job`` is a task id, a correlation id or an idempotency key
    (ops/job_lookup.py); ``matched`` says which (null when nothing matched)."""
    story = find_job(state.database_url, job, lambda: state.redis, state.settings.key_prefix)
    match = story.match
    return {
        "looked_up": job,
        "matched": match.to_dict() if match is not None else None,
        "matched_text": match.describe() if match is not None else nothing_matched(job),
        "task_id": match.task_id if match is not None else None,
        "correlation_id": story.correlation_id,
        "entries": story.entries,
        "tree": story.tree,
    }


def queues_view(state: DashboardState) -> dict[str, Any]:
    return {
        "queues": queues_overview(state.broker, state.queues),
        "outcomes": outcomes_over_time(state.redis, state.settings.key_prefix),
    }


def heartbeat_view(state: DashboardState) -> dict[str, Any]:
    return heartbeat_overview(state.settings, state.redis)


def governor_view(state: DashboardState) -> dict[str, Any]:
    return {"resources": governor_overview(state.redis, state.settings.key_prefix)}


def audit_view(state: DashboardState) -> dict[str, Any]:
    return {"audit": records.list_audit(state.database_url)}


async def view(request: Request, name: str, *args: Any) -> dict[str, Any]:
    """The data of page ``name`` (see VIEWS), computed off the event loop."""
    function = VIEWS[name]
    data: dict[str, Any] = await run_in_threadpool(function, state_of(request), *args)
    return data


VIEWS: Mapping[str, Any] = MappingProxyType(
    {
        "readiness": readiness_view,
        "heartbeat": heartbeat_view,
        "governor": governor_view,
        "queues": queues_view,
        "audit": audit_view,
        "correlation": correlation_view,
        "alerts": alerts_view,
        "sandbox": sandbox_view,
        "dead_letters": dead_letters_view,
    }
)
_WITH_REQUEST = frozenset({"alerts", "sandbox", "dead_letters"})


def _api(name: str) -> Any:
    async def endpoint(request: Request) -> JSONResponse:
        if name == "correlation":
            data = await view(request, name, request.path_params["correlation_id"])
        elif name in _WITH_REQUEST:
            data = await view(request, name, request)
        else:
            data = await view(request, name)
        return JSONResponse(data)

    return endpoint


# -- probes and metrics --------------------------------------------------------------------------


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    state = state_of(request)
    report = await run_in_threadpool(state.readiness, 1.0)
    body = {"verdict": report.verdict, "reasons": report.reasons}
    return JSONResponse(body, status_code=200 if report.go else 503)


def _snapshot(state: DashboardState) -> Snapshot:
    settings = state.settings
    report = state.readiness()
    heartbeat = Heartbeat(
        state.redis, interval_seconds=settings.heartbeat_interval, prefix=settings.key_prefix
    )
    return Snapshot(
        totals=read_totals(state.redis, settings.key_prefix),
        heartbeat_age=heartbeat.last_tick_age(),
        readiness={check.name: check.ok for check in report.checks},
        queues=[queue_stats(state.broker, queue) for queue in state.queues],
    )


async def metrics(request: Request) -> Response:
    snapshot = await run_in_threadpool(_snapshot, state_of(request))
    return Response(exposition(snapshot), media_type=CONTENT_TYPE)


def api_routes() -> list[Route]:
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/jobs/{correlation_id:path}", _api("correlation")),
    ]
    for name in ("readiness", "heartbeat", "governor", "queues", "audit", "alerts", "sandbox"):
        routes.append(Route(f"/api/{name}", _api(name)))
    routes.append(Route("/api/dead-letters", _api("dead_letters")))
    return routes
