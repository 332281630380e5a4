"""Retry policy: exponential backoff, capped, jittered; and what happens when it gives up.

Three layers, each usable alone:

* :class:`RetryPolicy` + :func:`compute_delay` -- a validated policy and a *pure* function of
  the attempt number (tenacity ``wait_exponential_jitter`` / dramatiq ``compute_backoff``).
  Tested without sleeping; used by the task layer (Celery countdowns) and by the webhook sink.
* :class:`RetryBackoffManager` -- the seed's in-process API, running a callable through
  ``tenacity.Retrying`` with the policy's wait and an injectable ``sleep``.
* exhaustion hooks (:class:`ExhaustedHooks`, one object per app or manager, never per
  process): when a policy gives up, every hook gets an :class:`ExhaustedEvent`. An app's
  alert dispatcher connects to its runtime's hooks. Hook errors are logged loudly and never
  reach the caller.

:func:`check_countdown` refuses a countdown the broker would redeliver before it is due.
"""

from sandbox_platform.guards.retry.hooks import ExhaustedEvent, ExhaustedHook, ExhaustedHooks
from sandbox_platform.guards.retry.manager import RetryBackoffManager, RetryRecord
from sandbox_platform.guards.retry.policy import Jitter, RetryPolicy, check_countdown, compute_delay

__all__ = [
    "ExhaustedEvent",
    "ExhaustedHook",
    "ExhaustedHooks",
    "Jitter",
    "RetryBackoffManager",
    "RetryPolicy",
    "RetryRecord",
    "check_countdown",
    "compute_delay",
]
