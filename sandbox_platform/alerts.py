"""Alerts, at the import path the README documents::

    from sandbox_platform.alerts import AlertDispatcher, Severity, WebhookSink

A re-export only: the alerts live in :mod:`sandbox_platform.ops.alerts`.
"""

from sandbox_platform.ops.alerts import *  # noqa: F403  (the same public names)
from sandbox_platform.ops.alerts import __all__ as __all__
