"""Sessions for task and application code, bound to the database of the current mode.

In sandbox mode every session is bound to the sandbox database and in live mode to the
live one, so whatever a task writes in sandbox never reaches live data. Applications
register their own SQLAlchemy metadata so ``sandbox-platform sandbox reset`` can rebuild it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import MetaData
from sqlalchemy.orm import Session

from sandbox_platform.core.apps import active_settings
from sandbox_platform.core.errors import IsolationError
from sandbox_platform.core.settings import ENV_PREFIX, Settings, database_identity
from sandbox_platform.db import migrate
from sandbox_platform.db.engine import dispose_engines, get_engine, session_scope

__all__ = ["app_metadata", "platform_session", "register_app_metadata", "reset_sandbox"]

_app_metadata: list[MetaData] = []


def register_app_metadata(metadata: MetaData) -> MetaData:
    """Tell the platform about the application's tables (for ``sandbox reset``)."""
    if not any(existing is metadata for existing in _app_metadata):
        _app_metadata.append(metadata)
    return metadata


def app_metadata() -> list[MetaData]:
    return list(_app_metadata)


@contextmanager
def platform_session(settings: Settings | None = None) -> Iterator[Session]:
    """A session on this mode's database; commits on success, rolls back on error.

    Without ``settings``: inside a job, its app's; outside any job, the process's platform
    app's (``core.apps.active_settings``)."""
    if settings is None:
        settings = active_settings()
    with session_scope(settings.active_database_url) as session:
        yield session


def reset_sandbox(
    settings: Settings, url: str | None = None, metadata: list[MetaData] | None = None
) -> str:
    """Drop and recreate the sandbox database's schema: the platform's and the app's.

    Refuses (IsolationError) when the target is the live database. Returns the URL reset.
    """
    target = url or settings.sandbox_database_url
    if settings.live_database_url and database_identity(target) == database_identity(
        settings.live_database_url
    ):
        raise IsolationError(
            f"{ENV_PREFIX}LIVE_DATABASE_URL",
            "refusing to reset: the target database is the live database",
        )
    tables = metadata if metadata is not None else app_metadata()
    engine = get_engine(target)
    for md in tables:
        md.drop_all(engine)
    migrate.downgrade(target, "base")
    migrate.upgrade(target, "head")
    for md in tables:
        md.create_all(engine)
    dispose_engines()
    return target
