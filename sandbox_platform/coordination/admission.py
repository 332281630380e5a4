"""Admission: the idempotency claim and the governor take in one round trip.

``admit.lua`` first looks at the claim: ``done``, ``in_flight`` and ``conflict`` are answered
without taking any token. Otherwise it plans the take on every limit of every resource; if one
denies, nothing is written but the denial counters (``denied``, with the wait), and the claim
is *not* taken. Only when all limits allow are the tokens taken and the claim acquired, with a
new fencing token.

The keys are exactly those of :class:`~sandbox_platform.coordination.governor.Governor` and
:class:`~sandbox_platform.coordination.idempotency.IdempotencyStore` for the same prefix, so the
three objects can be mixed freely.

The pipeline builds one :class:`AdmissionRequest` per job: each guard that needs Redis at
admission *contributes* to it (the idempotency guard its claim, the governor guard its
tokens), and :meth:`Admitter.admit_request` answers it in one round trip.

Redis Cluster: one script may only touch one slot, and an idempotency key and each resource
have hash tags of their own (``{key}``, ``{resource}``), so ``admit.lua`` would span slots
(``CROSSSLOT``). On a cluster client the admitter therefore makes the same decision in
single-slot steps (:meth:`Admitter._admit_in_steps`): the claim (``idem_claim.lua``; done, in
flight or conflict answer at once, no token taken), then each resource's take
(``governor_acquire.lua``); a denial releases the claim (``idem_release.lua``). Costs: one
round trip per step instead of one in all (claim + n takes, + 1 release when denied), a claim
that was briefly held when a take denies (its fencing token grows by one), and with several
resources the tokens taken before a later resource denies stay taken (the governor
under-admits there; it never over-admits). The single-node path is unchanged.
A Redis that cannot be reached raises GovernorUnavailable (fail closed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis

from sandbox_platform.coordination.checks import AdmissionCheck, check_args, first_refusal
from sandbox_platform.coordination.governor import (
    Governor,
    _check_positive_int,
    _fail_closed,
    governor_keys,
)
from sandbox_platform.coordination.idempotency import IdempotencyStore, _ms, idempotency_keys
from sandbox_platform.coordination.lua import get_script
from sandbox_platform.core.errors import CoordinationRecordError
from sandbox_platform.core.redis_client import is_cluster
from sandbox_platform.core.redis_client import text as _redis_text

__all__ = [
    "Admission",
    "AdmissionRequest",
    "AdmissionStatus",
    "Admitter",
    "admission_from_header",
    "plan_of",
]

AdmissionStatus = Literal["acquired", "done", "in_flight", "conflict", "denied", "refused"]
_STATUSES = ("acquired", "done", "in_flight", "conflict", "denied", "refused")


@dataclass(frozen=True)
class Admission:
    """The answer of :meth:`Admitter.admit`.

    ``token`` is the fencing token (acquired: the caller's; done/in_flight/conflict: the
    holder's; None without an idempotency key or when denied). ``result`` is the stored JSON
    text when done. ``wait_seconds`` is, when denied, the wait until the tokens are there
    (``inf``: never); when in flight, the holder's remaining lease. ``resource`` names the
    resource that denied, or (``refused``) the check that failed.
    """

    status: AdmissionStatus
    token: int | None = None
    result: str | None = None
    wait_seconds: float = 0.0
    resource: str | None = None

    @property
    def admitted(self) -> bool:
        return self.status == "acquired"

    def refused_by(self, name: str) -> bool:
        """The admission check ``name`` failed (coordination/checks.py)."""
        return self.status == "refused" and self.resource == name

    @property
    def held_elsewhere(self) -> bool:
        """The job's idempotency key is held by a run in flight (a live worker's)."""
        return self.status == "in_flight"

    def value(self) -> Any:
        """The stored result, decoded (None when there is none)."""
        return None if self.result is None else json.loads(self.result)


@dataclass
class AdmissionRequest:
    """What the guards of one job ask of the admission script (empty: no round trip)."""

    claim_key: str | None = None
    fingerprint: str = ""
    lease: float = 300
    ttl: float = 86400
    takes: list[tuple[str, int]] = field(default_factory=list)
    checks: list[AdmissionCheck] = field(default_factory=list)

    def claim(self, key: str, fingerprint: str, *, lease: float, ttl: float) -> None:
        """Claim idempotency ``key`` for a run with arguments ``fingerprint``."""
        self.claim_key, self.fingerprint, self.lease, self.ttl = key, fingerprint, lease, ttl

    def take(self, resource: str, cost: int = 1) -> None:
        """Take ``cost`` tokens from every limit of ``resource`` (all resources or none)."""
        self.takes.append((resource, cost))

    def require_absent(self, key: str, *, name: str, retry_in: float = 1.0) -> None:
        """Admit only while Redis ``key`` does not exist; else the job is re-queued after
        ``retry_in`` seconds (coordination/checks.py)."""
        self.checks.append(AdmissionCheck(name, key, "absent", retry_in=retry_in))

    def require_below(self, key: str, bound: int, *, name: str, retry_in: float = 1.0) -> None:
        """Admit only while the integer at ``key`` (0 when missing) is below ``bound``."""
        self.checks.append(AdmissionCheck(name, key, "below", bound, retry_in))

    def check_named(self, name: str) -> AdmissionCheck | None:
        return next((check for check in self.checks if check.name == name), None)

    def __bool__(self) -> bool:
        return self.claim_key is not None or bool(self.takes) or bool(self.checks)


def record_error(request: AdmissionRequest, prefix: str, exc: Exception) -> CoordinationRecordError:
    """The error of an admission whose script failed on one of the job's records (a key of
    another type), naming the records it touches."""
    named = []
    if request.claim_key is not None:
        named.append(f"idempotency record {prefix}:idem:r:{{{request.claim_key}}}")
    named += [f"governor keys {prefix}:gov:{{{resource}}}:*" for resource, _ in request.takes]
    named += [f"check {check.name!r} key {check.key}" for check in request.checks]
    return CoordinationRecordError(f"admission failed on {', '.join(named)}: {exc}")


def plan_of(request: AdmissionRequest) -> list[Any]:
    """``request`` as the admission plan a message carries (``ADMIT_HEADER``): what the
    transport's fetch script needs to admit the job exactly as :class:`Admitter` would."""
    plan: list[Any] = [
        request.claim_key or "",
        request.fingerprint if request.claim_key is not None else "",
        _ms("lease", request.lease),
        _ms("ttl", request.ttl),
        [[resource, _check_positive_int("cost", cost)] for resource, cost in request.takes],
    ]
    if request.checks:  # never made by the fetch: such a plan matches no fetched answer
        plan.append([[c.key, c.kind, c.bound, c.name] for c in request.checks])
    return plan


def admission_from_header(value: Any, idem_key: str | None) -> Admission | None:
    """The admission the transport made (``ADMITTED_HEADER``), or None if malformed."""
    try:
        status, token, result, wait_us, resource = value
        return _admission(
            str(status), int(token), str(result), int(wait_us), str(resource), idem_key
        )
    except (TypeError, ValueError, RuntimeError):
        return None


class Admitter:
    """Runs ``admit.lua`` against the governor's and the idempotency store's keys."""

    def __init__(self, client: redis.Redis, prefix: str = "sp") -> None:
        self.client = client
        self.prefix = prefix
        #: a Redis Cluster: admit in single-slot steps (see the module docstring)
        self.in_steps = is_cluster(client)

    def admit(
        self,
        idem_key: str | None,
        fingerprint: str,
        resources: Sequence[tuple[str, int]],
        lease: float = 300,
        ttl: float = 86400,
        checks: Sequence[AdmissionCheck] = (),
    ) -> Admission:
        """Claim ``idem_key`` (if given) and take ``cost`` from each ``(resource, cost)``,
        when every one of ``checks`` holds.

        ``lease`` and ``ttl`` are seconds, as in IdempotencyStore.claim.
        """
        if self.in_steps:
            return self._admit_in_steps(idem_key, fingerprint, resources, lease, ttl, checks)
        keys, args = self._keys_and_args(idem_key, fingerprint, resources, lease, ttl)
        check_keys, check_arguments = check_args(checks)
        keys, args = keys + check_keys, args + check_arguments
        script = get_script(self.client, "admit")
        with _fail_closed("admit"):
            status, token, result, wait_us, resource = script(keys=keys, args=args)
        return _admission(
            _redis_text(status),
            int(token),
            _redis_text(result),
            int(wait_us),
            _redis_text(resource),
            idem_key,
        )

    def admit_request(self, request: AdmissionRequest) -> Admission:
        """Answer ``request`` in one round trip (see :meth:`admit`)."""
        return self.admit(
            request.claim_key,
            request.fingerprint,
            request.takes,
            request.lease,
            request.ttl,
            request.checks,
        )

    def _admit_in_steps(
        self,
        idem_key: str | None,
        fingerprint: str,
        resources: Sequence[tuple[str, int]],
        lease: float,
        ttl: float,
        checks: Sequence[AdmissionCheck] = (),
    ) -> Admission:
        """The admission as single-slot steps, for a Redis Cluster: the checks (before the
        record's answer here: a done job whose check fails is re-queued, then answered), the
        claim, then each take."""
        for _resource, cost in resources:
            _check_positive_int("cost", cost)
        store = IdempotencyStore(self.client, self.prefix)
        token: int | None = None
        if checks:
            with _fail_closed("admit (checks)"):
                refused = first_refusal(self.client, checks)
            if refused is not None:
                return Admission("refused", resource=refused.name)
        if idem_key is not None:
            with _fail_closed("admit (claim)"):
                claim = store.claim(idem_key, fingerprint, lease_seconds=lease, ttl_seconds=ttl)
            if claim.status != "acquired":
                wait = claim.lease_seconds if claim.status == "in_flight" else 0.0
                return Admission(claim.status, claim.token, claim.result, wait)
            token = claim.token
        governor = Governor(self.client, self.prefix)
        for resource, cost in resources:
            decision = governor.acquire(resource, cost)
            if not decision.allowed:
                if idem_key is not None and token is not None:
                    with _fail_closed("admit (release)"):
                        store.release(idem_key, token)
                return Admission("denied", None, None, decision.wait_seconds, resource)
        return Admission("acquired", token)

    def _keys_and_args(
        self,
        idem_key: str | None,
        fingerprint: str,
        resources: Sequence[tuple[str, int]],
        lease: float,
        ttl: float,
    ) -> tuple[list[str], list[str | int]]:
        keys: list[str] = []
        if idem_key is not None:
            idem = idempotency_keys(self.prefix, idem_key)
            keys += [idem.record, idem.fence]
        costs: list[str | int] = []
        names: list[str | int] = []
        for resource, cost in resources:
            keys += governor_keys(self.prefix, resource).as_list()
            costs.append(_check_positive_int("cost", cost))
            names.append(resource)
        head: list[str | int] = [
            "1" if idem_key is not None else "0",
            fingerprint,
            _ms("lease", lease),
            _ms("ttl", ttl),
            len(costs),
        ]
        return keys, head + costs + names


def _admission(
    status: str, token: int, result: str, wait_us: int, resource: str, idem_key: str | None
) -> Admission:
    if status not in _STATUSES:
        raise RuntimeError(f"admission script answered an unknown status {status!r}")
    has_token = idem_key is not None and status not in ("denied", "refused")
    return Admission(
        status=status,  # type: ignore[arg-type]
        token=token if has_token else None,
        result=result if status == "done" else None,
        wait_seconds=math.inf if wait_us < 0 else wait_us / 1_000_000,
        resource=resource or None,
    )
