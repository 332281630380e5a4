"""Default governor limits declared in code, applied when Redis has none for a resource.

Limits live in Redis so an operator can change them at run time for every worker at once;
the defaults an app declares here are written only where no limit exists yet (on worker
start), so they never overwrite an operator's choice::

    declare_default_limits(app, {"payments": [(100, 3600)], "email": [(10, 1)]})
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from celery import Celery

from sandbox_platform.coordination.governor import Governor

__all__ = ["CONF_KEY", "LimitSpec", "apply_default_limits", "declare_default_limits"]

CONF_KEY = "sandbox_platform_default_limits"
LimitSpec = Iterable[tuple[int, float]]
"""The limits of one resource: ``(tokens, per_seconds)`` windows that all hold at once."""


def declare_default_limits(app: Celery, limits: Mapping[str, LimitSpec]) -> None:
    """Record default limits on the app (validated now: positive numbers only)."""
    table: dict[str, list[tuple[int, float]]] = dict(app.conf.get(CONF_KEY) or {})
    for resource, specs in limits.items():
        checked = []
        for limit, per_seconds in specs:
            if not isinstance(limit, int) or limit < 1 or per_seconds <= 0:
                raise ValueError(
                    f"default limit for {resource!r}: {limit}/{per_seconds}s is invalid"
                )
            checked.append((limit, float(per_seconds)))
        table[resource] = checked
    app.conf[CONF_KEY] = table


def apply_default_limits(app: Celery, governor: Governor) -> list[str]:
    """Set the declared defaults of every resource that has no limit; return those set."""
    applied = []
    for resource, specs in (app.conf.get(CONF_KEY) or {}).items():
        if governor.limits(resource):
            continue
        for limit, per_seconds in specs:
            governor.set_limit(resource, limit, per_seconds)
        applied.append(resource)
    return applied
