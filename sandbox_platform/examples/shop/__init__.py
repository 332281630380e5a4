"""The bundled example app: a shop that charges cards and mails receipts.

``celery -A sandbox_platform.examples.shop worker`` runs it, and so does every platform
command in sandbox mode when neither ``--app`` nor ``SANDBOX_PLATFORM_APP`` names an app
(live mode has no default app: an unset one is a settings error). The Celery app
(:mod:`~sandbox_platform.examples.shop.celery_app`) is built from the environment; a bad
setting exits with one line and code 2. The tasks are in
:mod:`~sandbox_platform.examples.shop.tasks` (their names, ``workers.charge_card`` and
``workers.send_receipt``, are those of 0.1's example, so jobs queued before an upgrade still
find them); the beat schedule is in :mod:`~sandbox_platform.examples.shop.schedule`.
"""

from sandbox_platform.examples.shop import tasks
from sandbox_platform.examples.shop.celery_app import TASK_MODULES, app

__all__ = ["TASK_MODULES", "app", "tasks"]
