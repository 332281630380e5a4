"""Webhook sink: JSON POST (plain or Slack-compatible), off the caller's thread, retried.

``send`` only puts the payload on a bounded queue (never blocks; a full queue drops the alert
with a counted warning). One daemon thread per process posts, with a timeout per request and
capped, jittered backoff between attempts (:func:`sandbox_platform.guards.retry.compute_delay`).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import structlog

from sandbox_platform.core.redaction import redact
from sandbox_platform.guards.retry import Jitter, RetryPolicy, compute_delay

from ._model import Alert, Severity

__all__ = ["WebhookSink", "slack_payload"]

log = structlog.get_logger("sandbox_platform.alerts")

_SLACK_COLOURS = MappingProxyType(
    {
        Severity.INFO: "#439FE0",
        Severity.WARNING: "warning",
        Severity.ERROR: "danger",
        Severity.CRITICAL: "#7B0000",
    }
)
# Statuses worth another attempt; any other 4xx is a permanent refusal.
_RETRY_STATUSES = frozenset({408, 425, 429})


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook body: ``text`` plus one attachment with the fields."""
    fields = [
        {"title": "kind", "value": alert.kind, "short": True},
        {"title": "severity", "value": alert.severity.label, "short": True},
        {"title": "correlation_id", "value": alert.correlation_id or "-", "short": True},
    ]
    if alert.suppressed:
        fields.append({"title": "suppressed", "value": str(alert.suppressed), "short": True})
    fields.extend(
        {
            "title": str(k),
            "value": json.dumps(v, default=str) if not isinstance(v, str) else v,
            "short": False,
        }
        for k, v in alert.context.items()
    )
    return {
        "text": f"[{alert.severity.label.upper()}] {alert.kind}: {alert.message}",
        "attachments": [
            {
                "color": _SLACK_COLOURS[alert.severity],
                "fallback": alert.message,
                "fields": fields,
                "footer": "sandbox-platform",
                "ts": int(alert.created_at.timestamp()),
            }
        ],
    }


class WebhookSink:
    """POST each alert as JSON to ``url`` from a background thread."""

    def __init__(
        self,
        url: str,
        *,
        slack: bool = False,
        timeout: float = 2.0,
        max_retries: int = 3,
        queue_size: int = 1000,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        headers: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook url must be http(s)://host/...: {parts.scheme}://...")
        if timeout <= 0:
            raise ValueError(f"webhook timeout must be > 0 seconds, got {timeout}")
        if queue_size < 1:
            raise ValueError(f"webhook queue_size must be >= 1, got {queue_size}")
        self.url = url
        # Slack webhook paths are secrets: logs name only scheme, host and port.
        self.target = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        self.slack = slack
        self.timeout = timeout
        self.policy = RetryPolicy(
            max_retries=max_retries, base=base_delay, cap=max_delay, jitter=Jitter.FULL
        )
        self.queue_size = queue_size
        self._headers = {"Content-Type": "application/json", "User-Agent": "sandbox-platform"}
        self._headers.update(headers or {})
        self._rng = rng
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._pending = 0
        self._counts = {"queued": 0, "sent": 0, "failed": 0, "dropped": 0, "retries": 0}

    # -- caller side ---------------------------------------------------------------------

    def payload(self, alert: Alert) -> dict[str, Any]:
        body = slack_payload(alert) if self.slack else alert.to_dict()
        redacted: dict[str, Any] = redact(body)
        return redacted

    def send(self, alert: Alert) -> None:
        """Queue the alert for posting; never blocks, never raises for a full queue."""
        data = json.dumps(self.payload(alert), default=str).encode()
        self._ensure_thread()
        with self._lock:
            if self._stop.is_set():
                log.warning("alert_webhook_closed", target=self.target, kind=alert.kind)
                self._counts["dropped"] += 1
                return
            try:
                self._queue.put_nowait(data)
            except queue.Full:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
            else:
                self._pending += 1
                self._counts["queued"] += 1
                return
        log.warning(
            "alert_webhook_queue_full",
            target=self.target,
            kind=alert.kind,
            correlation_id=alert.correlation_id,
            dropped_total=dropped,
            queue_size=self.queue_size,
        )

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every queued alert was posted or given up; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float | None = 10.0) -> bool:
        """Deliver what is queued (up to ``timeout``), then stop the thread. Idempotent."""
        flushed = self.flush(timeout)
        with self._lock:
            self._stop.set()
            thread = self._thread
        if thread is not None and thread.is_alive():
            # On a full queue the thread sees _stop after its current post instead.
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(None)
            thread.join(timeout)
        return flushed

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {**self._counts, "pending": self._pending}

    def _ensure_thread(self) -> None:
        if self._pid != os.getpid():
            # Forked child: the parent's thread does not exist here, and its lock may have
            # been held at fork time. Start afresh (what was queued stays the parent's).
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._idle = threading.Condition(self._lock)
            self._queue = queue.Queue(maxsize=self.queue_size)
            self._thread = None
            self._pending = 0
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="sandbox-platform-alert-webhook", daemon=True
                )
                self._thread.start()

    # -- background thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self._queue.get()
            if data is None:
                return
            try:
                ok = self._deliver(data)
            except Exception:  # never let the thread die on a bug
                log.exception("alert_webhook_crashed", target=self.target)
                ok = False
            with self._idle:
                self._counts["sent" if ok else "failed"] += 1
                self._pending -= 1
                self._idle.notify_all()

    def _deliver(self, data: bytes) -> bool:
        attempts = self.policy.max_attempts
        for attempt in range(1, attempts + 1):
            retryable, error = self._post(data)
            if error is None:
                return True
            if not retryable or attempt == attempts:
                log.error(
                    "alert_webhook_failed",
                    target=self.target,
                    attempts=attempt,
                    error=error,
                )
                return False
            delay = compute_delay(self.policy, attempt, self._rng)
            with self._lock:
                self._counts["retries"] += 1
            log.warning(
                "alert_webhook_retry",
                target=self.target,
                attempt=attempt,
                delay=delay,
                error=error,
            )
            if self._stop.wait(delay):
                return False
        return False  # pragma: no cover - loop always returns

    def _post(self, data: bytes) -> tuple[bool, str | None]:
        """One POST. Returns (retryable, error) with error None on success."""
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, data=data, headers=self._headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
                return False, None
        except urllib.error.HTTPError as exc:
            exc.close()
            retryable = exc.code >= 500 or exc.code in _RETRY_STATUSES
            return retryable, f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            return True, repr(exc)
