"""``celery -A tests.counted worker``: the worker app module a test asked for
(``SP_TEST_COUNTED_APP``, ``module`` or ``module:attribute``), with its jobs in flight counted
in Redis (tests/inflight.py). ``worker_factory`` starts threads workers through it."""

import importlib
import os

from tests.inflight import install

_module_name, _, _attribute = os.environ["SP_TEST_COUNTED_APP"].partition(":")
app = getattr(importlib.import_module(_module_name), _attribute or "app")
install()

__all__ = ["app"]
