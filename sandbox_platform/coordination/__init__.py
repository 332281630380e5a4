"""Coordination mechanisms: what holds across every worker and machine, kept in Redis.

The governor (per-resource token buckets, :mod:`~sandbox_platform.coordination.governor`),
idempotency keys and their leases (:mod:`~sandbox_platform.coordination.idempotency`), the
poison counts of redelivered jobs (:mod:`~sandbox_platform.coordination.poison`), the
one-round-trip admission that asks the governor and the idempotency claim at once
(:mod:`~sandbox_platform.coordination.admission`), the grouping of keys by Redis Cluster slot
(:mod:`~sandbox_platform.coordination.slots`) and their Lua scripts
(:mod:`~sandbox_platform.coordination.lua`). Each is usable on its own; the guards
(:mod:`sandbox_platform.guards`) put them on every guarded job. The broker's fetch script
includes the admission snippets of ``coordination/lua`` (Lua text, not a Python import).
It imports only :mod:`sandbox_platform.db` and :mod:`sandbox_platform.core`.
"""
