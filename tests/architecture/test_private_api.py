"""Where the package leans on Celery's and kombu's private API: exactly the names of the broker
package's allow-list (``sandbox_platform.broker.private_api``), in exactly those modules, all
inside the broker package (docs/architecture.md, "Private Celery and kombu API"). A new use fails
this test until it is listed here and there, with pyproject's version range in mind; a use
that goes away must leave the list too."""

from __future__ import annotations

import textwrap
from pathlib import Path

import sandbox_platform
from sandbox_platform.broker.private_api import PRIVATE_API
from tests.architecture.private_api import flatten, private_uses

PACKAGE = Path(sandbox_platform.__file__).resolve().parent

#: module -> the private Celery/kombu names it may use (the broker package's own list)
ALLOWED: dict[str, set[str]] = {module: set(names) for module, names in PRIVATE_API.items()}


def test_the_allow_list_names_only_the_broker_package() -> None:
    outside = [module for module in ALLOWED if not module.startswith("sandbox_platform.broker.")]
    assert outside == [], "private Celery/kombu API belongs in sandbox_platform.broker"


def test_private_celery_and_kombu_names_are_used_only_where_listed() -> None:
    found = private_uses(PACKAGE, "sandbox_platform")
    unlisted = [use for use in flatten(found) if use[1] not in ALLOWED.get(use[0], set())]
    stale = [use for use in flatten(ALLOWED) if use[1] not in found.get(use[0], set())]
    assert unlisted == [], "private Celery/kombu API used where it is not listed"
    assert stale == [], "listed but no longer used: take it off the list (and the docs)"


def test_docs_list_the_same_modules_and_names() -> None:
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Private Celery and kombu API", 1)[1].split("\n## ", 1)[0]
    for module, names in ALLOWED.items():
        assert f"`{module.removeprefix('sandbox_platform.')}`" in section, module
        for name in names:
            assert f"`{name}`" in section, (module, name)


def test_the_finder_sees_each_kind_of_use(tmp_path: Path) -> None:
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "uses.py").write_text(
        textwrap.dedent(
            """
            from kombu.transport import redis as kombu_redis

            class Channel(kombu_redis.Channel):
                def _put(self, queue, message, **kwargs):  # an override
                    return self._queue_cycle  # inherited from kombu

            def reach(chan, worker):
                chan._q_for_pri("q", 0)  # on another object
                return getattr(worker, "_conninfo", None)  # by name
            """
        )
    )
    (package / "ours.py").write_text(
        textwrap.dedent(
            """
            class Mine:
                def __init__(self):
                    self._lock = None  # our own, though kombu has a _lock too

                def _read(self):
                    return self._lock
            """
        )
    )
    found = private_uses(package, "planted")
    assert found == {"planted.uses": {"_put", "_queue_cycle", "_q_for_pri", "_conninfo"}}
