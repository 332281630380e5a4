"""The Celery configuration every platform app gets, as a pure function of the settings.

Each default is a decision of the design record (``docs/architecture.md``): JSON only (pickle
refused), late acks with ``reject_on_worker_lost`` (at-least-once), prefetch 1, the broker's
visibility timeout from settings, connection retry at start-up, no result backend unless one
is configured; every queue qualified with the mode (:mod:`sandbox_platform.broker.queues`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from sandbox_platform.broker.queues import ModeAMQP
from sandbox_platform.core.broker_kind import BrokerKind, broker_kind
from sandbox_platform.core.redis_client import celery_url, redis_url
from sandbox_platform.core.settings import Settings

__all__ = ["DEFAULT_QUEUE", "bare_app", "celery_config"]

DEFAULT_QUEUE = "sandbox_platform"


def celery_config(settings: Settings) -> dict[str, Any]:
    coordination = redis_url(settings)
    broker = settings.broker_url or coordination
    backend = coordination if settings.result_backend == "redis" else settings.result_backend
    transport = _redis_transport_options(settings)
    if broker_kind(broker) is BrokerKind.RABBITMQ:
        broker_transport = _amqp_transport_options()
    else:
        broker_transport = transport
    return {
        "broker_url": celery_url(broker),
        "result_backend": celery_url(backend) if backend else None,
        "task_ignore_result": backend is None,
        "result_expires": 24 * 3600,
        "result_extended": backend is not None,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": broker_transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": 10,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_disable_rate_limits": True,
        "task_default_queue": DEFAULT_QUEUE,
        "timezone": "UTC",
        "enable_utc": True,
        "sandbox_platform_redis_url": coordination,
        "sandbox_platform_key_prefix": settings.key_prefix,
        "sandbox_platform_mode": settings.mode.value,
        "sandbox_platform_leader_ttl": 1.5 * settings.heartbeat_interval,
    }


def _redis_transport_options(settings: Settings) -> dict[str, Any]:
    return {
        "visibility_timeout": settings.visibility_timeout,
        # kombu scans for unacked messages of dead workers every interval, but by default
        # only on every 10th call (100 s + the visibility timeout to recover a crashed job).
        "unacked_restore_interval": max(1.0, min(10.0, settings.visibility_timeout / 4)),
        "unacked_restore_throttle": 1,
    }


def _amqp_transport_options() -> dict[str, Any]:
    """RabbitMQ has no visibility timeout: a lost connection hands back what it held at once;
    its consumer timeout bounds how long a delivery may stay unacknowledged
    (``Settings.redelivery_timeout``). No publisher confirms (``confirm_publish`` is off): the
    solo worker's stall once blamed on them came from kombu's event loop (broker/hub.py)."""
    return {}


def bare_app(settings: Settings, main: str = "sandbox_platform") -> Celery:
    """A Celery app with the platform's configuration and no tasks, signals or guards: for
    talking to the broker and the workers (readiness, tools), not for running jobs."""
    app = Celery(main, set_as_current=False, amqp=ModeAMQP)
    app.config_from_object(celery_config(settings))
    return app
