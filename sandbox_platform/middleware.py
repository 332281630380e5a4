"""Request-id middleware for web apps, at the import path the docs use::

    from sandbox_platform.middleware import RequestIdMiddleware, WSGIRequestIdMiddleware

A re-export only: see :mod:`sandbox_platform.integrations.request_middleware`.
"""

from sandbox_platform.integrations.request_middleware import (
    RequestIdMiddleware,
    WSGIRequestIdMiddleware,
)

__all__ = ["RequestIdMiddleware", "WSGIRequestIdMiddleware"]
