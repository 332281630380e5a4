"""The dashboard's HTML pages and its two actions (replay a dead letter, change a limit).

Every page renders the same data its ``/api/...`` twin returns. Actions are POSTs that carry
the CSRF token, come from the dashboard's own origin, and are recorded as audit events with
the user who made them.
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from sandbox_platform.coordination.governor import Governor
from sandbox_platform.core.errors import PlatformError
from sandbox_platform.dashboard.api import state_of, view
from sandbox_platform.dashboard.auth import csrf_token, same_origin
from sandbox_platform.db.audit import record_audit
from sandbox_platform.ops.alerts import Severity
from sandbox_platform.ops.deadletters import replay_dead_letter

__all__ = ["page_routes", "templates"]

templates = Jinja2Templates(
    directory=str(resources.files("sandbox_platform.dashboard") / "templates")
)


def _when(iso: str | None) -> Markup:
    """An ISO time as ``HH:MM:SS.mmm`` with the full date in a tooltip."""
    if not iso:
        return Markup("")
    clock = iso[11:23] if len(iso) >= 23 else iso
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(iso, clock)


templates.env.filters["when"] = _when

NAV = (
    ("/", "GO/NO-GO"),
    ("/heartbeat", "Heartbeat"),
    ("/governor", "Governor"),
    ("/alerts", "Alerts"),
    ("/sandbox", "Sandbox log"),
    ("/dead-letters", "Dead letters"),
    ("/queues", "Queues"),
    ("/audit", "Audit"),
)


def user_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("user") or "local")


def render(request: Request, template: str, data: dict[str, Any], **extra: Any) -> Response:
    context = {
        "data": data,
        "nav": NAV,
        "user": user_of(request),
        "csrf": csrf_token(user_of(request)),
        "mode": state_of(request).settings.mode.value,
        "severities": [s.label for s in Severity],
        "query": dict(request.query_params),
        **extra,
    }
    return templates.TemplateResponse(request, template, context)


def _page(name: str, template: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return render(request, template, await view(request, name))

    return endpoint


def _filtered(name: str, template: str) -> Any:
    async def endpoint(request: Request) -> Response:
        return render(request, template, await view(request, name, request))

    return endpoint


async def correlation_page(request: Request) -> Response:
    """One job's story: the path is a task id, a correlation id or an idempotency key."""
    job = request.path_params["correlation_id"]
    return render(request, "correlation.html", await view(request, "correlation", job))


async def correlation_search(request: Request) -> Response:
    job = request.query_params.get("correlation_id", "").strip()
    if not job:
        raise HTTPException(400, "give a task id, a correlation id or an idempotency key")
    return RedirectResponse(f"/jobs/{quote(job, safe='/:@')}", status_code=303)


# -- actions ----------------------------------------------------------------------------------


async def _checked_form(request: Request) -> dict[str, str]:
    """The form of a POST whose origin and CSRF token check out (else 403)."""
    if not same_origin(request):
        raise HTTPException(403, "cross-site request refused")
    form = await request.form()
    fields = {key: str(value) for key, value in form.items()}
    if fields.get("csrf_token") != csrf_token(user_of(request)):
        raise HTTPException(403, "missing or wrong CSRF token; reload the page")
    return fields


def _back(path: str, **message: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(message)}", status_code=303)


async def replay(request: Request) -> Response:
    await _checked_form(request)
    state = state_of(request)
    letter_id = int(request.path_params["dead_letter_id"])

    def work() -> str:
        task_id = replay_dead_letter(state.app, state.database_url, letter_id)
        record_audit(
            state.database_url,
            actor=user_of(request),
            action="dead_letter.replay",
            target=str(letter_id),
            source="dashboard",
            detail={"task_id": task_id},
        )
        return task_id

    try:
        task_id = await run_in_threadpool(work)
    except PlatformError as exc:
        return _back("/dead-letters", error=str(exc))
    return _back("/dead-letters", notice=f"dead letter {letter_id} replayed as task {task_id}")


def _limit_fields(fields: dict[str, str]) -> tuple[str, int, float]:
    try:
        resource = fields["resource"].strip()
        limit, per_seconds = int(fields["limit"]), float(fields["per_seconds"])
    except (KeyError, ValueError):
        raise ValueError(
            "resource, limit (an integer) and per_seconds (a number) are needed"
        ) from None
    if not resource:
        raise ValueError("resource must not be empty")
    return resource, limit, per_seconds


async def set_limit(request: Request) -> Response:
    fields = await _checked_form(request)
    state = state_of(request)
    try:
        resource, limit, per_seconds = _limit_fields(fields)

        def work() -> None:
            Governor(state.redis, state.settings.key_prefix).set_limit(resource, limit, per_seconds)
            record_audit(
                state.database_url,
                actor=user_of(request),
                action="governor.set_limit",
                target=resource,
                source="dashboard",
                detail={"limit": limit, "per_seconds": per_seconds},
            )

        await run_in_threadpool(work)
    except ValueError as exc:
        return _back("/governor", error=str(exc))
    return _back("/governor", notice=f"{resource}: {limit} per {per_seconds:g}s")


async def live_rows(request: Request) -> Response:
    """New rows of the alerts or sandbox table, as HTML (the page's script polls this)."""
    kind = request.path_params["kind"]
    if kind not in ("alerts", "sandbox"):
        raise HTTPException(404)
    data = await view(request, kind, request)
    return templates.TemplateResponse(request, f"_{kind}_rows.html", {"data": data})


def page_routes() -> list[Route]:
    return [
        Route("/", _page("readiness", "index.html")),
        Route("/heartbeat", _page("heartbeat", "heartbeat.html")),
        Route("/governor", _page("governor", "governor.html")),
        Route("/governor/limit", set_limit, methods=["POST"]),
        Route("/alerts", _filtered("alerts", "alerts.html")),
        Route("/sandbox", _filtered("sandbox", "sandbox.html")),
        Route("/live/{kind}", live_rows),
        Route("/dead-letters", _filtered("dead_letters", "dead_letters.html")),
        Route("/dead-letters/{dead_letter_id:int}/replay", replay, methods=["POST"]),
        Route("/queues", _page("queues", "queues.html")),
        Route("/audit", _page("audit", "audit.html")),
        Route("/jobs", correlation_search),
        Route("/jobs/{correlation_id:path}", correlation_page),
    ]
