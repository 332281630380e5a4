"""Declarative admission checks: what a guard may add to a job's one admission round trip
besides an idempotency claim and governor tokens.

A guard does not write Lua. In ``contribute`` it states, with
:meth:`~sandbox_platform.coordination.admission.AdmissionRequest.require_absent` or
:meth:`~sandbox_platform.coordination.admission.AdmissionRequest.require_below`, a condition
on one Redis key:

- ``absent``: the key must not exist (a kill switch, a maintenance flag);
- ``below``: the integer at the key (0 when missing) must be below ``bound`` (a counter that
  something else keeps: open incidents, jobs in a partner's queue).

The admission script checks them after the idempotency record's answer (a job already done
still returns its result) and before any governor token or claim is taken: a failed check
takes nothing and answers ``refused`` naming the check. The job is then re-queued after the
check's ``retry_in`` seconds, unless the guard's ``admitted`` hook decides otherwise. A key
that holds something that is not a string (or a non-integer for ``below``) fails that job's
admission as a bad record. Checks are not planned at enqueue: a job with checks is admitted
by the worker, not by the fetch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import redis

__all__ = ["AdmissionCheck", "CheckKind", "check_args", "first_refusal"]

CheckKind = Literal["absent", "below"]


@dataclass(frozen=True)
class AdmissionCheck:
    """One condition of an admission (see the module)."""

    name: str
    key: str
    kind: CheckKind
    bound: int = 0
    retry_in: float = 1.0

    def __post_init__(self) -> None:
        if not self.name or not self.key:
            raise ValueError("an admission check needs a name and a key")
        if self.kind not in ("absent", "below"):
            raise ValueError(f"unknown admission check {self.kind!r} (absent or below)")
        if isinstance(self.bound, bool) or not isinstance(self.bound, int):
            raise ValueError(f"check {self.name!r}: bound must be an integer")
        if not (math.isfinite(self.retry_in) and self.retry_in > 0):
            raise ValueError(f"check {self.name!r}: retry_in must be a positive number")


def check_args(checks: Sequence[AdmissionCheck]) -> tuple[list[str], list[str | int]]:
    """The script's keys and arguments for ``checks``: one key each; ``m``, then per check
    its kind, bound and name."""
    args: list[str | int] = [len(checks)]
    for check in checks:
        args += [check.kind, check.bound, check.name]
    return [check.key for check in checks], args


def first_refusal(client: redis.Redis, checks: Sequence[AdmissionCheck]) -> AdmissionCheck | None:
    """The first check that fails, asked one key at a time (a Redis Cluster, where one
    script cannot span the checks' slots); None when all hold."""
    for check in checks:
        if check.kind == "absent":
            if client.exists(check.key):
                return check
            continue
        raw = client.get(check.key)
        value = int(raw) if raw is not None else 0
        if value >= check.bound:
            return check
    return None
