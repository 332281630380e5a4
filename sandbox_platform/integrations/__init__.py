"""What ties the platform to the frameworks around it: the request-id middleware for ASGI and
WSGI web apps (:mod:`~sandbox_platform.integrations.request_middleware`, documented at
``sandbox_platform.middleware``) and OpenTelemetry tracing
(:mod:`~sandbox_platform.integrations.tracing`). It imports only :mod:`sandbox_platform.core`.
"""
