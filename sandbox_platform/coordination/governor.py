"""The governor: token buckets in Redis that hold every resource to its quota.

Every decision is one Lua script (``governor_acquire.lua``) that reads Redis ``TIME``, refills
and takes from *all* limits of a resource at once (all or nothing), and counts the decision.
Worker clocks are never used.

Limits live in Redis, in a config hash per resource, so :meth:`Governor.set_limit` in one
process applies to every process at the next decision. Bucket state is kept in integers: a
limit of ``limit`` tokens per ``per_seconds`` is stored as ``a`` units per microsecond and ``b``
units per token (``a / b == limit / (per_seconds * 1e6)``, reduced by their gcd), so a refill is
the exact product ``elapsed_us * a`` and the bound ``capacity + rate * elapsed`` holds to the
unit.

Keys (``prefix`` defaults to ``sp``; the resource is the Redis Cluster hash tag, so the keys
of one resource live in one slot)::

    {prefix}:gov:{resource}:cfg     hash   limit name -> "a b cap limit per_us capacity"
    {prefix}:gov:{resource}:state   hash   limit name -> "units last_us b cap"; " cfg <name>"
                                           -> a copy of the limit's config; " admitted",
                                           " denied" -> the decisions counted
    {prefix}:gov:resources          set    resources with a configured limit (for stats;
                                           no tag: on a Redis Cluster set_limit adds to it
                                           after its one-slot MULTI, not inside it)

A decision reads the state hash once and writes it once (``_governor.lua``): the config hash is
what operators and :meth:`Governor.limits` read, and :meth:`Governor.set_limit` writes both in
one transaction. Counters written before 0.2 in ``{prefix}:gov:{resource}:stats`` are still
added to the ones in the state hash.

A Redis that cannot be reached raises :class:`~sandbox_platform.core.errors.GovernorUnavailable`:
the governor fails closed.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from sandbox_platform.coordination.lua import get_script, run_script
from sandbox_platform.core.errors import GovernorUnavailable
from sandbox_platform.core.redis_client import is_cluster
from sandbox_platform.core.redis_client import text as _redis_text

__all__ = [
    "MAX_UNITS",
    "Decision",
    "Governor",
    "GovernorKeys",
    "Limit",
    "bucket_units",
    "governor_keys",
    "resolve_resource",
]

#: state hash fields (limit names never start with a space; see _governor.lua)
_CFG_COPY = " cfg "
_ADMITTED = " admitted"
_DENIED = " denied"

#: Largest integer a Lua number (a double) holds exactly.
MAX_UNITS = 2**53 - 1
_US = 1_000_000


@dataclass(frozen=True)
class Decision:
    """The governor's answer for one acquire.

    ``remaining`` is the tokens left in the tightest limit (``inf`` when the resource has no
    limit); ``wait_seconds`` is 0 when allowed, else when enough tokens will be there (``inf``
    when the cost exceeds a capacity and can never be granted). ``limit`` names the limit that
    decided (the denying one, or the tightest one when allowed).
    """

    allowed: bool
    remaining: float
    wait_seconds: float
    resource: str
    limit: str | None = None


@dataclass(frozen=True)
class Limit:
    """One configured limit of a resource: ``limit`` tokens per ``per_seconds``, bucket size
    ``capacity``."""

    name: str
    limit: int
    per_seconds: float
    capacity: int


@dataclass(frozen=True)
class GovernorKeys:
    """The Redis keys of one resource."""

    cfg: str
    state: str
    #: where 0.1 counted decisions (read only, added to the state hash's counters)
    stats: str

    def as_list(self) -> list[str]:
        """The keys a decision uses."""
        return [self.cfg, self.state]


def governor_keys(prefix: str, resource: str) -> GovernorKeys:
    """The keys of ``resource``; ``{resource}`` is the hash tag (one cluster slot)."""
    _check_resource(resource)
    base = f"{prefix}:gov:{{{resource}}}"
    return GovernorKeys(cfg=f"{base}:cfg", state=f"{base}:state", stats=f"{base}:stats")


def _check_resource(resource: str) -> None:
    if not isinstance(resource, str) or not resource:
        raise ValueError(f"resource must be a non-empty string, got {resource!r}")


def _check_positive_int(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return value


def bucket_units(limit: int, per_seconds: float, capacity: int) -> tuple[int, int, int, int]:
    """The integer bucket of a limit: ``(a, b, cap, per_us)``.

    ``a`` units arrive per microsecond, one token is ``b`` units, the bucket holds ``cap`` units.
    Raises ValueError on invalid input or when the bucket does not fit in 2**53.
    """
    _check_positive_int("limit", limit)
    _check_positive_int("capacity", capacity)
    if isinstance(per_seconds, bool) or not isinstance(per_seconds, int | float):
        raise ValueError(f"per_seconds must be a positive number, got {per_seconds!r}")
    if not math.isfinite(per_seconds) or per_seconds <= 0:
        raise ValueError(f"per_seconds must be a positive number, got {per_seconds!r}")
    per_us = round(per_seconds * _US)
    if per_us < 1:
        raise ValueError(f"per_seconds must be at least one microsecond, got {per_seconds!r}")
    gcd = math.gcd(limit, per_us)
    a, b = limit // gcd, per_us // gcd
    cap = capacity * b
    if cap > MAX_UNITS:
        raise ValueError(
            f"capacity {capacity} per {per_seconds}s is too fine-grained to count exactly "
            f"({cap} units > 2**53); use a rounder period or a smaller capacity"
        )
    return a, b, cap, per_us


#: limit names as the acquire script answers them (bytes) -> str; a few per resource
_LIMIT_NAMES: dict[Any, str | None] = {}


def _limit_name(raw: Any) -> str | None:
    name = _LIMIT_NAMES.get(raw)
    if name is None:
        name = _redis_text(raw) or None
        if len(_LIMIT_NAMES) < _KEY_CACHE_SIZE:
            _LIMIT_NAMES[raw] = name
    return name


def _default_name(per_seconds: float) -> str:
    return f"per_{per_seconds:g}s"


def _parse_limit(name: str, value: str) -> Limit:
    _a, _b, _cap, limit, per_us, capacity = (int(part) for part in value.split())
    return Limit(name=name, limit=limit, per_seconds=per_us / _US, capacity=capacity)


def resolve_resource(
    template: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    argnames: Sequence[str],
) -> str:
    """Fill a resource template such as ``"api:{user_id}"`` from a task's arguments.

    Fields name an argument (matched by keyword, else by position through ``argnames``) or a
    position (``"{0}"``); attribute and index access (``"{user.id}"``) work as in str.format.
    A field the call does not provide raises ValueError naming it.
    """
    values: dict[str, Any] = dict(zip(argnames, args, strict=False))
    values.update(kwargs)
    for _literal, field, _spec, _conv in string.Formatter().parse(template):
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if root == "":
            raise ValueError(f"resource template {template!r}: use named fields, not '{{}}'")
        if root.isdigit():
            if int(root) >= len(args):
                raise ValueError(
                    f"resource template {template!r} needs positional argument {root}, "
                    f"but the call has {len(args)}"
                )
        elif root not in values:
            raise ValueError(
                f"resource template {template!r} needs argument {root!r}, "
                f"which the call does not provide (arguments: {sorted(values) or 'none'})"
            )
    try:
        return template.format(*args, **values)
    except (AttributeError, IndexError, KeyError, TypeError) as exc:
        raise ValueError(f"resource template {template!r} cannot be filled: {exc}") from exc


@contextmanager
def _fail_closed(what: str) -> Iterator[None]:
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise GovernorUnavailable(f"governor Redis unreachable during {what}: {exc}") from exc


#: resources whose keys a Governor remembers (the hot path builds no strings for them)
_KEY_CACHE_SIZE = 1024


class Governor:
    """Token-bucket quotas shared by every process that uses the same Redis and prefix."""

    def __init__(self, client: redis.Redis, prefix: str = "sp") -> None:
        self.client = client
        self.prefix = prefix
        self._resources_key = f"{prefix}:gov:resources"
        self._cluster = is_cluster(client)
        self._acquire_keys: dict[str, list[str]] = {}

    def keys(self, resource: str) -> GovernorKeys:
        """The Redis keys of ``resource``."""
        return governor_keys(self.prefix, resource)

    def set_limit(
        self,
        resource: str,
        limit: int,
        per_seconds: float,
        *,
        name: str | None = None,
        capacity: int | None = None,
    ) -> Limit:
        """Allow ``limit`` tokens per ``per_seconds`` (bursts up to ``capacity``, default limit).

        A resource may have several limits (e.g. 10 per second and 1000 per day); each is named
        (default ``per_{per_seconds}s``), and setting a name again replaces that limit. What
        was consumed stays consumed: raising a capacity from 2 to 5 after 2 takes leaves 3.
        """
        keys = self.keys(resource)
        capacity = limit if capacity is None else capacity
        a, b, cap, per_us = bucket_units(limit, per_seconds, capacity)
        name = _default_name(per_seconds) if name is None else name
        if not name or name != name.strip():
            raise ValueError(f"limit name must be non-empty without surrounding spaces: {name!r}")
        value = f"{a} {b} {cap} {limit} {per_us} {capacity}"
        with _fail_closed("set_limit"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hset(keys.cfg, name, value)
            pipe.hset(keys.state, _CFG_COPY + name, value)
            pipe.persist(keys.state)  # a state written before 0.2 expired when full
            if self._cluster:  # the set has no {resource} tag: outside the one-slot MULTI
                pipe.execute()
                pipe = self.client.pipeline(transaction=False)
            pipe.sadd(self._resources_key, resource)
            pipe.execute()
        return Limit(name=name, limit=limit, per_seconds=per_us / _US, capacity=capacity)

    def clear_limits(self, resource: str) -> None:
        """Remove every limit of ``resource`` (it becomes unlimited) and its bucket state; its
        counters stay."""
        keys = self.keys(resource)
        with _fail_closed("clear_limits"):
            get_script(self.client, "governor_clear")(keys=[keys.cfg, keys.state])
            self.client.srem(self._resources_key, resource)

    def limits(self, resource: str) -> list[Limit]:
        """The limits configured for ``resource``, sorted by name."""
        keys = self.keys(resource)
        with _fail_closed("limits"):
            raw: dict[Any, Any] = self.client.hgetall(keys.cfg)
        return sorted(
            (_parse_limit(_redis_text(k), _redis_text(v)) for k, v in raw.items()),
            key=lambda lim: lim.name,
        )

    def acquire(self, resource: str, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from every limit of ``resource`` at once, or from none."""
        if type(cost) is not int or cost != 1:
            _check_positive_int("cost", cost)
        keys = self._acquire_keys.get(resource) or self._remember_keys(resource)
        try:  # (no context manager, no Script wrapper: this is the governor's hot path)
            allowed, units, per_token, wait_us, limit = run_script(
                self.client, "governor_acquire", keys, (cost,)
            )
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise GovernorUnavailable(f"governor Redis unreachable during acquire: {exc}") from exc
        return Decision(  # (positional: a keyword call costs a third more, per decision)
            allowed == 1,
            units / per_token if per_token else math.inf,
            0.0 if wait_us == 0 else (math.inf if wait_us < 0 else wait_us / _US),
            resource,
            _limit_name(limit),
        )

    def _remember_keys(self, resource: str) -> list[str]:
        keys = self.keys(resource).as_list()
        if len(self._acquire_keys) < _KEY_CACHE_SIZE:
            self._acquire_keys[resource] = keys
        return keys

    def check_limit(self, resource: str) -> tuple[bool, str]:
        """Seed API: take one token; ``(allowed, human-readable message)``."""
        decision = self.acquire(resource)
        if decision.allowed:
            if math.isinf(decision.remaining):
                return True, f"{resource}: no limit configured"
            return True, f"{resource}: allowed, {decision.remaining:.2f} tokens left"
        if math.isinf(decision.wait_seconds):
            return False, f"{resource}: cost exceeds the capacity of limit {decision.limit!r}"
        return False, (
            f"{resource}: rate limited by {decision.limit!r}, retry in {decision.wait_seconds:.3f}s"
        )

    def tokens(self, resource: str) -> dict[str, float]:
        """The tokens in each limit of ``resource`` now (refilled to Redis time); takes none."""
        keys = self.keys(resource)
        script = get_script(self.client, "governor_peek")
        with _fail_closed("tokens"):
            flat = script(keys=[keys.cfg, keys.state], args=[])
        return {
            _redis_text(flat[i]): float(_redis_text(flat[i + 1])) for i in range(0, len(flat), 2)
        }

    def denials(self, resource: str) -> int:
        """How many acquires of ``resource`` were denied (counted inside the script)."""
        keys = self.keys(resource)
        with _fail_closed("denials"):
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(keys.state, _DENIED)
            pipe.hget(keys.stats, "denied")
            now, before = pipe.execute()
        return int(now or 0) + int(before or 0)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per configured resource: ``limits`` (list of dicts), ``denials``, ``admitted``."""
        with _fail_closed("stats"):
            members: set[Any] = self.client.smembers(self._resources_key)
            resources = sorted(_redis_text(m) for m in members)
            pipe = self.client.pipeline(transaction=False)
            for resource in resources:
                keys = self.keys(resource)
                pipe.hmget(keys.state, _ADMITTED, _DENIED)
                pipe.hmget(keys.stats, "admitted", "denied")
            counters = pipe.execute()
        out: dict[str, dict[str, Any]] = {}
        for i, resource in enumerate(resources):
            now, before = counters[2 * i], counters[2 * i + 1]
            out[resource] = {
                "limits": [vars(limit) for limit in self.limits(resource)],
                "denials": int(now[1] or 0) + int(before[1] or 0),
                "admitted": int(now[0] or 0) + int(before[0] or 0),
            }
        return out

    resolve_resource = staticmethod(resolve_resource)
