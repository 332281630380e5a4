"""One SQLAlchemy engine per process and URL, disposed in a forked child.

A forked pool child must never reuse its parent's connections: :func:`dispose_engines` is
registered with ``os.register_at_fork`` and Celery's ``worker_process_init``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from sandbox_platform.core.extras import require_database_driver

__all__ = ["dispose_engines", "get_engine", "session_scope"]

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_makers: dict[str, sessionmaker[Session]] = {}


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _build(url_text: str) -> Engine:
    url = make_url(url_text)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    require_database_driver(url_text)  # psycopg: the [postgres] extra, else one line
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)


def get_engine(url_text: str) -> Engine:
    """The engine of this process for ``url_text``, built on first use."""
    engine = _engines.get(url_text)
    if engine is None:
        with _lock:
            engine = _engines.get(url_text)
            if engine is None:
                engine = _engines[url_text] = _build(url_text)
    return engine


def _maker(url_text: str) -> sessionmaker[Session]:
    maker = _makers.get(url_text)
    if maker is None:
        maker = _makers[url_text] = sessionmaker(get_engine(url_text), expire_on_commit=False)
    return maker


@contextmanager
def session_scope(url_text: str) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = _maker(url_text)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Forget every engine without closing the parent's sockets (safe after fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose(close=False)
        _engines.clear()
        _makers.clear()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent's lock may have been held at fork time
    dispose_engines()


os.register_at_fork(after_in_child=_after_fork_in_child)
