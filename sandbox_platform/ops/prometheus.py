"""The Prometheus text exposition of the platform's metrics (``/metrics``).

Counters and the run-time histogram come from the cluster-wide totals in Redis
(:mod:`sandbox_platform.ops.metrics`); gauges are read at scrape time: heartbeat age, the last
readiness report (1/0 per check), queue lengths and the oldest waiting job's age.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from sandbox_platform.ops.backlog import QueueStat
from sandbox_platform.ops.metrics import parse_field

__all__ = ["CONTENT_TYPE", "Snapshot", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "sandbox_platform"

#: counter name -> (help, label names)
COUNTERS: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType(
    {
        "jobs_total": ("Runs of guarded jobs by task and outcome state", ("task", "state")),
        "governor_admitted_total": ("Jobs the governor let through, by resource", ("resource",)),
        "governor_denied_total": ("Jobs the governor re-queued, by resource", ("resource",)),
        "idempotent_replays_total": (
            "Worker runs skipped because their idempotency key was done (the stored result "
            "returned), by task",
            ("task",),
        ),
        "enqueue_deduplicated_total": (
            "Repeats caught at enqueue (an earlier job of the same idempotency key answered), "
            "by task",
            ("task",),
        ),
        "dry_run_intercepts_total": (
            "Irreversible calls intercepted in sandbox, by action",
            ("action",),
        ),
        "dead_letters_total": ("Jobs dead-lettered, by reason", ("reason",)),
    }
)


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads besides the counters."""

    totals: Mapping[str, float]
    heartbeat_age: float | None = None
    readiness: Mapping[str, bool] = field(default_factory=dict)
    queues: Sequence[QueueStat] = ()


def _grouped(totals: Mapping[str, float]) -> dict[str, list[tuple[dict[str, str], float]]]:
    grouped: dict[str, list[tuple[dict[str, str], float]]] = {}
    for key, value in totals.items():
        name, labels = parse_field(key)
        grouped.setdefault(name, []).append((labels, value))
    return grouped


def _counters(grouped: Mapping[str, list[tuple[dict[str, str], float]]]) -> Iterator[Metric]:
    for name, (doc, labels) in COUNTERS.items():
        family = CounterMetricFamily(
            f"{NAMESPACE}_{name.removesuffix('_total')}", doc, labels=labels
        )
        for values, amount in grouped.get(name, []):
            family.add_metric([values.get(label, "") for label in labels], amount)
        yield family


def _histogram(grouped: Mapping[str, list[tuple[dict[str, str], float]]]) -> Metric:
    family = HistogramMetricFamily(
        f"{NAMESPACE}_job_run_seconds", "Run time of guarded job bodies", labels=["task"]
    )
    sums = {values["task"]: amount for values, amount in grouped.get("job_run_seconds_sum", [])}
    buckets: dict[str, list[tuple[str, float]]] = {}
    for values, amount in grouped.get("job_run_seconds_bucket", []):
        buckets.setdefault(values["task"], []).append((values["le"], amount))
    for task, pairs in sorted(buckets.items()):
        ordered = sorted(pairs, key=lambda pair: float(pair[0]))
        family.add_metric([task], [(le, count) for le, count in ordered], sums.get(task, 0.0))
    return family


def _gauges(snapshot: Snapshot) -> Iterable[Metric]:
    age = GaugeMetricFamily(
        f"{NAMESPACE}_heartbeat_age_seconds", "Seconds since the last beat tick (Redis time)"
    )
    if snapshot.heartbeat_age is not None:
        age.add_metric([], snapshot.heartbeat_age)
    ready = GaugeMetricFamily(
        f"{NAMESPACE}_readiness_check", "1 when a readiness check passes, else 0", labels=["check"]
    )
    for name, ok in snapshot.readiness.items():
        ready.add_metric([name], 1.0 if ok else 0.0)
    length = GaugeMetricFamily(f"{NAMESPACE}_queue_length", "Jobs waiting", labels=["queue"])
    oldest = GaugeMetricFamily(
        f"{NAMESPACE}_queue_oldest_seconds", "Age of the oldest waiting job", labels=["queue"]
    )
    for stat in snapshot.queues:
        length.add_metric([stat.queue], stat.length)
        if stat.oldest_age is not None:
            oldest.add_metric([stat.queue], stat.oldest_age)
    return [age, ready, length, oldest]


class _Collector:
    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        grouped = _grouped(self.snapshot.totals)
        yield from _counters(grouped)
        yield _histogram(grouped)
        yield from _gauges(self.snapshot)


def exposition(snapshot: Snapshot) -> bytes:
    """The Prometheus text format of ``snapshot``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    return generate_latest(registry)
