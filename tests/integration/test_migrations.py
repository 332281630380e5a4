"""`sandbox-platform db upgrade` creates the schema on PostgreSQL and SQLite; down/up works."""

from __future__ import annotations

import subprocess
import sys

import pytest
import sqlalchemy as sa

from sandbox_platform.db.engine import dispose_engines
from sandbox_platform.db.models import Base
from tests.helpers import platform_env

TABLES = set(Base.metadata.tables)


def _cli(*args: str, url: str, tmp_path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "db", *args, "--url", url],
        env=platform_env(data_dir=tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_upgrade_downgrade_upgrade(backend: str, request, tmp_path) -> None:
    url = request.getfixturevalue("pg_url" if backend == "postgresql" else "sqlite_url")
    _cli("upgrade", url=url, tmp_path=tmp_path)
    assert _tables(url) >= TABLES
    current = _cli("current", url=url, tmp_path=tmp_path).stdout
    head = current.split("head=")[1].strip()
    assert f"current={head}" in current

    _cli("downgrade", "--revision", "base", url=url, tmp_path=tmp_path)
    assert not (TABLES & _tables(url))

    _cli("upgrade", url=url, tmp_path=tmp_path)
    assert _tables(url) >= TABLES
    dispose_engines()


def test_models_match_migrations(sqlite_url: str) -> None:
    """Autogenerate finds nothing to add: the migrations describe the models exactly."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from sandbox_platform.db import migrate

    migrate.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": migrate.VERSION_TABLE})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    dispose_engines()
    assert diff == []
