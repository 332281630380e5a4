"""Idempotency keys: a job submitted or delivered twice has its effect once.

Redis makes it fast: :meth:`IdempotencyStore.claim` is one Lua script (``idem_claim.lua``)
that answers ``acquired`` (with a fencing token, larger for every new holder of the key),
``done`` (with the stored JSON result), ``in_flight`` (another holder's lease runs) or
``conflict`` (same key, different arguments: Stripe's semantics). A holder that crashed
leaves a lease that expires; the key is then reclaimable with a larger token, and
:meth:`IdempotencyStore.complete` with the old token fails.

The database makes it correct: :func:`record_effect` inserts the :class:`Effect` row whose
unique idempotency key is the real proof that an effect happened once.

One hash per idempotency key (the key is its Redis Cluster hash tag; fields in ``_claim.lua``)::

    {prefix}:idem:r:{key}   fp, tid, state, token, lease, ttl, exp, result

``tid`` is the enqueue-side dedupe (the first job published under the key), ``token`` the
fencing counter: it only grows, and the hash outlives the record's end (``exp``) by an hour to
keep it. Records written before 0.2 kept the counter in ``{prefix}:idem:f:{key}``: the scripts
still read it (a new token starts above it) and never write it.

Lease and TTL times come from Redis ``TIME``. Redis errors are not wrapped here; callers
that must fail closed (the admission path) wrap them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import redis
import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sandbox_platform.coordination.lua import get_script, run_script
from sandbox_platform.core.context import current_correlation_id
from sandbox_platform.core.errors import IdempotencyConflict, IdempotencyInFlight
from sandbox_platform.core.redis_client import text as _redis_text
from sandbox_platform.db.models import Effect

__all__ = [
    "Claim",
    "ClaimStatus",
    "IdempotencyKeys",
    "IdempotencyManager",
    "IdempotencyStore",
    "fingerprint",
    "idempotency_keys",
    "record_effect",
]

_log = structlog.get_logger(__name__)

ClaimStatus = Literal["acquired", "done", "in_flight", "conflict"]


@dataclass(frozen=True)
class Claim:
    """The answer of :meth:`IdempotencyStore.claim`.

    ``token`` is the fencing token (the caller's when acquired, the holder's otherwise);
    ``result`` the stored JSON text when done; ``lease_seconds`` the lease left (in flight) or
    granted (acquired).
    """

    status: ClaimStatus
    key: str
    token: int
    result: str | None = None
    lease_seconds: float = 0.0

    def value(self) -> Any:
        """The stored result, decoded (None when there is none)."""
        return None if self.result is None else json.loads(self.result)


@dataclass(frozen=True)
class IdempotencyKeys:
    """The Redis keys of one idempotency key."""

    record: str
    fence: str


def idempotency_keys(prefix: str, key: str) -> IdempotencyKeys:
    """The keys of idempotency ``key``; ``{key}`` is the hash tag (one cluster slot)."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"idempotency key must be a non-empty string, got {key!r}")
    return IdempotencyKeys(record=f"{prefix}:idem:r:{{{key}}}", fence=f"{prefix}:idem:f:{{{key}}}")


def fingerprint(args: Any, kwargs: Any) -> str:
    """The first 128 bits (32 hex digits) of the sha256 of the canonical JSON of
    ``[args, kwargs]`` (sorted keys, no spaces).

    Tuples and lists fingerprint alike. Arguments that are not JSON raise TypeError. Records
    written before 0.2 hold all 64 digits; the scripts compare those by this prefix.
    """
    canonical = json.dumps(
        [list(args), kwargs], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def _ms(what: str, seconds: float) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
        raise ValueError(f"{what} must be a positive number of seconds, got {seconds!r}")
    return max(1, round(seconds * 1000))


class IdempotencyStore:
    """Claims, results and fencing tokens of idempotency keys in Redis."""

    def __init__(self, client: redis.Redis, prefix: str = "sp") -> None:
        self.client = client
        self.prefix = prefix

    def keys(self, key: str) -> IdempotencyKeys:
        return idempotency_keys(self.prefix, key)

    fingerprint = staticmethod(fingerprint)

    def claim(
        self,
        key: str,
        fingerprint: str,
        *,
        lease_seconds: float = 300,
        ttl_seconds: float = 86400,
    ) -> Claim:
        """Claim ``key`` for a run with arguments ``fingerprint`` (one round trip)."""
        keys = self.keys(key)
        args: list[str | int] = [
            fingerprint,
            _ms("lease_seconds", lease_seconds),
            _ms("ttl_seconds", ttl_seconds),
        ]
        status, token, result, lease_ms = get_script(self.client, "idem_claim")(
            keys=[keys.record, keys.fence], args=args
        )
        return _claim(key, _redis_text(status), int(token), _redis_text(result), int(lease_ms))

    def complete(self, key: str, token: int, result_json: str) -> bool:
        """Store the result if ``token`` still holds the key; it is kept for the claim's TTL."""
        keys = self.keys(key)  # (run_script: a direct EVALSHA, once per idempotent job)
        stored = run_script(
            self.client, "idem_complete", [keys.record, keys.fence], [str(token), result_json]
        )
        return bool(stored)

    def release(self, key: str, token: int) -> bool:
        """Free the claim after a failed run (a retry may claim it); False if token is stale."""
        released = get_script(self.client, "idem_release")(
            keys=[self.keys(key).record], args=[str(token)]
        )
        return bool(released)

    def extend(self, key: str, token: int, lease_seconds: float) -> bool:
        """Renew the lease for ``lease_seconds`` from now; False if ``token`` is stale."""
        keys = self.keys(key)
        extended = get_script(self.client, "idem_extend")(
            keys=[keys.record, keys.fence], args=[str(token), _ms("lease_seconds", lease_seconds)]
        )
        return bool(extended)

    def forget(self, key: str) -> None:
        """Delete the record of ``key``; its fencing token stays (until the hash expires)."""
        self.client.hdel(self.keys(key).record, *_RECORD_FIELDS)

    def count(self) -> int:
        """How many keys have a hash in Redis (queued, running or done, or ended within the
        hour: their fencing token)."""
        pattern = f"{self.prefix}:idem:r:*"
        return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000))


#: the fields of a record other than its fencing token
_RECORD_FIELDS = ("fp", "tid", "state", "lease", "ttl", "exp", "result")


def _claim(key: str, status: str, token: int, result: str, lease_ms: int) -> Claim:
    if status not in ("acquired", "done", "in_flight", "conflict"):
        raise RuntimeError(f"idempotency script answered an unknown status {status!r}")
    return Claim(
        status=status,  # type: ignore[arg-type]
        key=key,
        token=token,
        result=result if status == "done" else None,
        lease_seconds=lease_ms / 1000,
    )


def record_effect(
    session: Session,
    key: str,
    *,
    task_id: str | None,
    fencing_token: int | None,
    result: dict[str, Any] | None,
    correlation_id: str | None = None,
) -> bool:
    """Insert the :class:`Effect` row of ``key`` in the caller's transaction.

    Returns True when inserted, False when a row for ``key`` exists already. The insert runs
    in a SAVEPOINT, so the caller's transaction survives a duplicate. ``correlation_id``
    defaults to the one bound in this context.
    """
    effect = Effect(
        idempotency_key=key,
        task_id=task_id,
        fencing_token=fencing_token,
        result=result,
        correlation_id=correlation_id if correlation_id is not None else current_correlation_id(),
    )
    try:
        with session.begin_nested():
            session.add(effect)
            session.flush()
    except IntegrityError:
        return False
    return True


class IdempotencyManager:
    """Seed API: run a function at most once per key and replay its JSON result.

    Results go through JSON, so the first call and every replay return the same value.
    """

    def __init__(
        self,
        client: redis.Redis | IdempotencyStore,
        prefix: str = "sp",
        *,
        lease_seconds: float = 300,
        ttl_seconds: float = 86400,
    ) -> None:
        self.store = (
            client if isinstance(client, IdempotencyStore) else IdempotencyStore(client, prefix)
        )
        self.lease_seconds = lease_seconds
        self.ttl_seconds = ttl_seconds

    def process_idempotent(
        self, key: str, func: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """Run ``func(*args, **kwargs)`` once for ``key``; later calls return the stored result.

        Raises IdempotencyInFlight while another holder runs it, IdempotencyConflict when the
        key was used with other arguments. If ``func`` raises, the claim is released (a retry
        may run) and the error propagates.
        """
        claim = self.store.claim(
            key,
            fingerprint(args, kwargs),
            lease_seconds=self.lease_seconds,
            ttl_seconds=self.ttl_seconds,
        )
        if claim.status == "done":
            return claim.value()
        if claim.status == "in_flight":
            raise IdempotencyInFlight(
                f"idempotency key {key!r} is running elsewhere "
                f"(lease ends in {claim.lease_seconds:.1f}s)"
            )
        if claim.status == "conflict":
            raise IdempotencyConflict(
                f"idempotency key {key!r} was already used with different arguments"
            )
        return self._run(claim, func, args, kwargs)

    def _run(
        self, claim: Claim, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        try:
            result_json = json.dumps(func(*args, **kwargs))
        except BaseException:
            self.store.release(claim.key, claim.token)
            raise
        if not self.store.complete(claim.key, claim.token, result_json):
            _log.warning(
                "idempotency.result_not_stored",
                key=claim.key,
                token=claim.token,
                reason="the lease expired and another holder claimed the key",
            )
        return json.loads(result_json)

    def count(self) -> int:
        """How many keys have a stored record."""
        return self.store.count()
