"""The broker layer: everything that knows how Celery and kombu move a message.

The platform's Redis transport (:mod:`~sandbox_platform.broker.transport`, fetch and
acknowledgement in one script, the publish-once fold), the worker event loop's fix
(:mod:`~sandbox_platform.broker.hub`), the direct publisher of ``*_many``
(:mod:`~sandbox_platform.broker.publisher`), queue naming per mode
(:mod:`~sandbox_platform.broker.queues`), the Celery configuration built from settings
(:mod:`~sandbox_platform.broker.celery_config`), the supported Celery and kombu versions
(:mod:`~sandbox_platform.broker.versions`), and the hand-over between the guards and the
transport (:mod:`~sandbox_platform.broker.ack_riders`,
:mod:`~sandbox_platform.broker.publish_once`).

Every private Celery or kombu name the platform uses is used here, and only the names listed
in :data:`sandbox_platform.broker.private_api.PRIVATE_API` (a test keeps the list, the code
and docs/architecture.md equal). It imports only :mod:`sandbox_platform.core`.
"""
