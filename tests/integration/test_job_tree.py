"""A job and the jobs it enqueued link to each other: the run records keep Celery's
``parent_id``/``root_id``, and ``jobs show`` (CLI, JSON) and ``/jobs/<id>`` draw the tree with
links both ways. A real worker (solo and threads) runs a sync parent with one child and an
async parent with two, on PostgreSQL.

Regression (issue 21.2): the job page was a flat timeline; nothing marked the child as the
child of the job that enqueued it."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun
from tests.async_tasks import register_async_tasks
from tests.helpers import platform_env, wait_until
from tests.pools import ON_BOTH_POOLS

pytestmark = [pytest.mark.slow, ON_BOTH_POOLS]


@pytest.fixture
def platform_settings_kwargs(pg_settings_kwargs):  # type: ignore[no-untyped-def]
    return pg_settings_kwargs


def _children(database: str, parent_id: str, count: int) -> list[str]:
    """The task ids of ``parent_id``'s children once ``count`` of them have run."""
    found: list[str] = []

    def recorded() -> bool:
        with session_scope(database) as session:
            query = select(JobRun.task_id).where(
                JobRun.parent_id == parent_id, JobRun.state == "succeeded"
            )
            found[:] = sorted(set(session.scalars(query)))
            parent_done = session.scalars(
                select(JobRun.state).where(JobRun.task_id == parent_id)
            ).all()
        return len(found) == count and "succeeded" in parent_done

    wait_until(recorded, timeout=60, interval=0.2, message=f"{count} children never recorded")
    return found


def _shown(env: dict[str, str], task_id: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox_platform", "jobs", "show", task_id, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


def _check_tree(tree: list[dict[str, Any]], parent: str, children: list[str], name: str) -> None:
    by_id = {node["task_id"]: node for node in tree}
    assert by_id[parent]["depth"] == 0 and by_id[parent]["parent_id"] is None, tree
    assert sorted(by_id[parent]["children"]) == children, tree
    for child in children:
        assert by_id[child]["parent_id"] == parent and by_id[child]["depth"] == 1, tree
        assert by_id[child]["task_name"] == name and by_id[child]["state"] == "succeeded"
    assert tree[0]["task_id"] == parent  # root first


def test_a_parent_and_its_children_link_to_each_other(
    guarded: Any,
    platform_app: Any,
    worker_factory: Any,
    dashboard_factory: Any,
    pg_settings_kwargs: dict[str, object],
    tmp_path: Any,
) -> None:
    async_tasks = register_async_tasks(platform_app)
    worker_factory(platform_app, "tests.worker_app")
    database = str(pg_settings_kwargs["database_url"])
    sync_parent = guarded.charge_then_child.delay(str(tmp_path / "sink"), 1).id
    async_parent = async_tasks.parent.delay(f"tree-{uuid.uuid4().hex[:8]}").id
    families = {
        sync_parent: (_children(database, sync_parent, 1), "tests.charge"),
        async_parent: (_children(database, async_parent, 2), "async.child"),
    }

    env = platform_env(**pg_settings_kwargs, readiness_timeout=1)
    served = dashboard_factory("tests.worker_app")
    for parent, (children, name) in families.items():
        for looked_up in (parent, *children):
            shown = _shown(env, looked_up)
            _check_tree(shown["tree"], parent, children, name)
            marked = [n["task_id"] for n in shown["tree"] if n["matched_job"]]
            assert marked == [looked_up]
        table = subprocess.run(
            [sys.executable, "-m", "sandbox_platform", "jobs", "show", children[0]],
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert "job tree" in table and f"{name} {children[0]} succeeded  parent {parent}" in table
        parent_page = served.http.get(f"/jobs/{parent}")[1].decode()
        for child in children:
            assert f'class="child-link" href="/jobs/{child}"' in parent_page, parent_page
            child_page = served.http.get(f"/jobs/{child}")[1].decode()
            assert f'class="parent-link" href="/jobs/{parent}"' in child_page, child_page
        api = served.http.json(f"/api/jobs/{children[0]}")
        _check_tree(api["tree"], parent, children, name)
