"""The performance targets (issues 11, 17, the async phase) as rows from one bench_drain.py run.

Each ratio is the ratio of the medians over runs; ``span`` is the min-max of the same ratio
computed run by run (run r of one variant against run r of the other: they ran back to back;
for enqueue, chunk r of one kind against chunk r of the other).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["async_rows", "io_rows", "print_targets", "target_rows"]

Row = dict[str, Any]


def _per_run(results: Sequence[Any], name: str, attr: str) -> dict[int, float]:
    return {r.run: getattr(r, attr) for r in results if r.variant == name}


def _ratio(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float] | None:
    runs = sorted(a.keys() & b.keys())
    if not runs:
        return None
    per_run = [a[r] / b[r] for r in runs]
    median = statistics.median(a[r] for r in runs) / statistics.median(b[r] for r in runs)
    return median, min(per_run), max(per_run)


def _row(figure: str, value: tuple[float, float, float] | None, op: str, target: float) -> Row:
    if value is None:
        return {"figure": figure, "value": None}
    checks: dict[str, Callable[[float, float], bool]] = {
        ">=": lambda v, t: v >= t,
        "<=": lambda v, t: v <= t,
        "==": lambda v, t: v == t,
    }
    median, low, high = value
    return {
        "figure": figure,
        "value": median,
        "span": (low, high),
        "target": f"{op} {target:g}",
        "met": checks[op](median, target),
    }


def _drain_rows(results: Sequence[Any]) -> list[Row]:
    def drain(name: str) -> dict[int, float]:
        return _per_run(results, name, "drain_rate")

    bare = drain("bare-default")
    return [
        _row("drain, guarded / bare Celery defaults", _ratio(drain("platform-guarded"), bare),
             ">=", 2.0),
        _row("drain, guarded / Dramatiq 2x4",
             _ratio(drain("platform-guarded"), drain("dramatiq")), ">=", 0.75),
        _row("drain, guarded + idempotency key / bare defaults",
             _ratio(drain("platform-idem"), bare), ">=", 1.6),
        _row("drain, plain platform task / bare defaults",
             _ratio(drain("platform-plain"), bare), ">=", 2.3),
        _row("drain, guarded + one secret argument / guarded",
             _ratio(drain("platform-secret"), drain("platform-guarded")), ">=", 0.9),
    ]  # fmt: skip


def _enqueue_rows(extras: dict[str, Any]) -> list[Row]:
    def chunks(label: str) -> dict[int, float]:
        return dict(enumerate(extras["enqueue"].get(label, [])))

    bare = chunks("bare-default single")
    return [
        _row("enqueue, guarded .delay / bare apply_async",
             _ratio(chunks("platform-guarded single"), bare), ">=", 0.95),
        _row("enqueue, guarded + idempotency key / bare apply_async",
             _ratio(chunks("platform-idem single"), bare), ">=", 0.9),
        _row("enqueue, guarded + one secret argument / guarded",
             _ratio(chunks("platform-secret single"), chunks("platform-guarded single")),
             ">=", 0.8),
        _row("bulk enqueue (guarded delay_many) / Dramatiq send",
             _ratio(chunks("platform-guarded bulk"), chunks("dramatiq single")), ">=", 1.0),
    ]  # fmt: skip


#: jobs/s of one job in flight in the I/O-bound phase (its body waits 100 ms)
IO_RATE_PER_SLOT = 10.0


def io_rows(results: Sequence[Any], in_flight: int) -> list[Row]:
    """The I/O-bound phase (issue 17): the guarded task with governor and idempotency key on
    the documented threads command against Dramatiq at equal jobs in flight, and against the
    command's ideal (in flight x 10 jobs/s)."""

    def drain(name: str) -> dict[int, float]:
        return _per_run(results, name, "drain_rate")

    ours = drain("io-platform")
    ideal = _ideal(ours, in_flight)
    return [
        _row("io drain, guarded + idem key / Dramatiq -p 2 -t 8",
             _ratio(ours, drain("io-dramatiq")), ">=", 1.0),
        _row("io drain, guarded + idem key / bare Celery threads",
             _ratio(ours, drain("io-bare-threads")), ">=", 0.9),
        _row(f"io drain, documented command / ideal {in_flight} x 10/s",
             _ratio(ours, ideal), ">=", 0.9),
    ]  # fmt: skip


def _ideal(runs: dict[int, float], in_flight: int) -> dict[int, float]:
    """The ideal rate of ``in_flight`` 100 ms jobs, once for each run of ``runs``."""
    return {run: in_flight * IO_RATE_PER_SLOT for run in runs}


def async_rows(results: Sequence[Any], in_flight: int) -> list[Row]:
    """The async phase: the guarded task (governor and idempotency key) with an ``async def``
    body against its ideal (in flight x 10 jobs/s) and against arq at the same jobs in flight."""
    ours = _per_run(results, "async-platform", "drain_rate")
    arq = _per_run(results, "async-arq", "drain_rate")
    ideal = _ideal(ours, in_flight)
    return [
        _row(f"async: platform guarded 2 x 50 / ideal {in_flight * IO_RATE_PER_SLOT:,.0f} jobs/s",
             _ratio(ours, ideal), ">=", 0.8),
        _row("async: platform / arq (2 x 50)", _ratio(ours, arq), ">=", 1.0),
    ]  # fmt: skip


def _extra_rows(results: Sequence[Any], extras: dict[str, Any]) -> list[Row]:
    latency = extras["latency"]
    guarded_p99 = {i + 1: r["p99"] for i, r in enumerate(latency.get("platform-guarded", []))}
    bare_p99 = {i + 1: r["p99"] for i, r in enumerate(latency.get("bare-default", []))}
    rows = [
        _row("latency enqueue->start p99, guarded / bare", _ratio(guarded_p99, bare_p99),
             "<=", 1.2),
    ]  # fmt: skip
    governor = extras.get("governor")
    if governor:
        ratios = [ours / raw for ours, raw in governor["rates"]]
        rows.append(
            _row("governor decision / raw EVALSHA, one connection",
                 (statistics.median(ratios), min(ratios), max(ratios)), ">=", 0.9)
        )  # fmt: skip
        over = float(governor["bound"]["over"])
        rows.append(_row("over-admission, 8 processes on one bucket", (over, over, over), "==", 0))
    memory = [r.idem_bytes_per_job for r in results if r.idem_bytes_per_job is not None]
    if memory:
        value = statistics.median(memory)
        rows.append(
            _row("Redis memory per idempotency key (bytes)", (value, min(memory), max(memory)),
                 "<=", 300)
        )  # fmt: skip
    return rows


def target_rows(
    results: Sequence[Any], extras: dict[str, Any], io_in_flight: int, async_in_flight: int
) -> list[Row]:
    """Every row of the target table from one invocation's results."""
    rows = _drain_rows(results) + _enqueue_rows(extras) + _extra_rows(results, extras)
    return rows + io_rows(results, io_in_flight) + async_rows(results, async_in_flight)


def print_targets(rows: list[Row]) -> None:
    print()
    head = f"{'target':<54} {'now':>9} {'min-max':>15} {'target':>8}  met"
    print(head)
    print("-" * len(head))
    for row in rows:
        if row["value"] is None:
            print(f"{row['figure']:<54} {'-':>9}  (variant not run)")
            continue
        low, high = row["span"]
        print(
            f"{row['figure']:<54} {row['value']:>9.2f} {f'{low:.2f}-{high:.2f}':>15}"
            f" {row['target']:>8}  {'yes' if row['met'] else 'NO'}"
        )
    print(
        "ratios: median of runs over median of runs; min-max: the same ratio run by run. "
        "memory: MEMORY USAGE of the keys one idempotent job leaves (median of runs)."
    )
