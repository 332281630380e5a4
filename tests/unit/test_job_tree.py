"""ops/job_tree.py over a migrated SQLite database: the trees of the jobs named, root first and
depth first, each child under its parent, a job's latest record giving its state, a parent
named by a child but not recorded kept as a node, other trees left out."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun, utcnow
from sandbox_platform.ops.job_tree import job_tree


def _run(
    task_id: str, seconds: int, *, parent: str | None = None, root: str | None = None, **extra: str
) -> JobRun:
    return JobRun(
        task_id=task_id,
        task_name=extra.get("name", "shop.job"),
        correlation_id="corr-tree",
        parent_id=parent,
        root_id=root,
        mode="sandbox",
        state=extra.get("state", "succeeded"),
        attempt=int(extra.get("attempt", "1")),
        started_at=utcnow() - timedelta(minutes=5) + timedelta(seconds=seconds),
    )


@pytest.fixture
def db(sqlite_url: str) -> str:
    from sandbox_platform.db import migrate

    migrate.upgrade(sqlite_url)
    with session_scope(sqlite_url) as session:
        session.add_all(
            [
                _run("root", 1, name="shop.charge", state="retrying"),
                _run("root", 2, name="shop.charge", attempt="2"),
                _run("child-b", 4, parent="root", root="root"),
                _run("child-a", 3, parent="root", root="root", name="shop.receipt"),
                _run("grandchild", 5, parent="child-a", root="root"),
                _run("orphan", 6, parent="unrecorded", root="unrecorded-root"),
                _run("other-root", 7),
            ]
        )
    return sqlite_url


def test_a_tree_is_drawn_root_first_each_child_under_its_parent(db: str) -> None:
    for named in (["root"], ["grandchild"], ["child-b", "root"]):
        tree = job_tree(db, named)
        assert [(n["task_id"], n["depth"]) for n in tree] == [
            ("root", 0),
            ("child-a", 1),
            ("grandchild", 2),
            ("child-b", 1),
        ]
        by_id = {n["task_id"]: n for n in tree}
        assert by_id["root"]["children"] == ["child-a", "child-b"]  # in start order
        assert by_id["root"]["state"] == "succeeded" and by_id["root"]["attempt"] == 2
        assert by_id["grandchild"]["parent_id"] == "child-a"
        assert by_id["child-a"]["task_name"] == "shop.receipt"


def test_a_parent_not_recorded_yet_is_a_node_and_other_trees_are_left_out(db: str) -> None:
    tree = job_tree(db, ["orphan"])
    assert [(n["task_id"], n["depth"], n["recorded"]) for n in tree] == [
        ("unrecorded", 0, False),
        ("orphan", 1, True),
    ]
    assert job_tree(db, ["other-root"])[0]["children"] == []
    assert len(job_tree(db, ["other-root"])) == 1
    assert job_tree(db, ["nobody"]) == [] and job_tree(db, []) == []
