"""Bare Celery apps for bench_drain.py (no platform import, so no platform signal receivers).

``celery -A bench.drain_bare:bare_app worker`` (Celery's defaults: JSON, no result backend)
and ``bench.drain_bare:bare_prod_app`` (the same plus ``acks_late`` and prefetch 1).
"""

from __future__ import annotations

from celery import Celery

from bench.drain_common import incr, record_latency, redis_url, wait_then_incr

__all__ = ["bare_app", "bare_prod_app"]


def _app(main: str, **conf: object) -> Celery:
    app = Celery(main, broker=redis_url(), set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        broker_connection_retry_on_startup=True,
        **conf,
    )

    @app.task(name="drain.incr", shared=False)
    def drain_incr(i: int) -> None:
        incr()

    @app.task(name="drain.io", shared=False)
    def drain_io(i: int) -> None:
        wait_then_incr()

    @app.task(name="drain.latency", shared=False)
    def drain_latency(sent_at: float) -> None:
        record_latency(sent_at)

    return app


bare_app = _app("drain_bare")
bare_prod_app = _app("drain_bare_prod", task_acks_late=True, worker_prefetch_multiplier=1)
