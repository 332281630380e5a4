"""The tree a job belongs to: its root, its parent, its children, from the ``parent_id`` and
``root_id`` Celery gives every job enqueued from inside another (kept on its run records).

:func:`job_tree` returns the tree (or trees) of the jobs named, flattened depth first: each
node says its job, its parent, its depth, its latest state and attempt, and its children's
ids, so a page or a terminal can draw it with links both ways. A job whose run is not
recorded yet but is named as another's parent appears as a node of its own (``recorded:
false``), so the child still hangs under it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from sandbox_platform.db.engine import session_scope
from sandbox_platform.db.models import JobRun

__all__ = ["MAX_TREE_NODES", "TreeNode", "job_tree"]

#: the most jobs one tree shows (a fan-out of thousands is summed up, not drawn)
MAX_TREE_NODES = 500


@dataclass
class TreeNode:
    """One job of a tree."""

    task_id: str
    task_name: str | None = None
    parent_id: str | None = None
    correlation_id: str | None = None
    state: str | None = None
    attempt: int | None = None
    recorded: bool = False
    children: list[str] = field(default_factory=list)
    depth: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task_name": self.task_name,
            "parent_id": self.parent_id,
            "correlation_id": self.correlation_id,
            "state": self.state,
            "attempt": self.attempt,
            "recorded": self.recorded,
            "children": list(self.children),
            "depth": self.depth,
        }


def job_tree(database_url: str, task_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every job of the trees the jobs ``task_ids`` belong to, depth first from each root
    (children in the order they started); empty when none of them has a run record."""
    wanted = sorted(set(task_ids))
    if not wanted:
        return []
    with session_scope(database_url) as session:
        named = session.execute(
            select(JobRun.task_id, JobRun.root_id).where(JobRun.task_id.in_(wanted))
        ).all()
        roots = sorted({root or task_id for task_id, root in named})
        if not roots:
            return []
        rows = session.scalars(
            select(JobRun)
            .where(or_(JobRun.root_id.in_(roots), JobRun.task_id.in_(roots)))
            .order_by(JobRun.started_at, JobRun.id)
            .limit(MAX_TREE_NODES * 4)
        ).all()
        nodes = _nodes(rows)
    return [node.to_dict() for node in _depth_first(nodes)][:MAX_TREE_NODES]


def _nodes(rows: Iterable[JobRun]) -> dict[str, TreeNode]:
    """One node per job (its latest record's state), plus a node for each parent named but
    not recorded, linked to their children in start order."""
    nodes: dict[str, TreeNode] = {}
    for row in rows:  # oldest first: the last record of a job wins
        node = nodes.setdefault(row.task_id, TreeNode(row.task_id))
        node.task_name, node.parent_id = row.task_name, row.parent_id
        node.correlation_id = row.correlation_id or node.correlation_id
        node.state, node.attempt, node.recorded = row.state, row.attempt, True
    for node in list(nodes.values()):
        parent_id = node.parent_id
        if parent_id is None:
            continue
        parent = nodes.setdefault(parent_id, TreeNode(parent_id))
        if node.task_id not in parent.children:
            parent.children.append(node.task_id)
    return nodes


def _depth_first(nodes: dict[str, TreeNode]) -> list[TreeNode]:
    ordered: list[TreeNode] = []
    seen: set[str] = set()

    def visit(node: TreeNode, depth: int) -> None:
        if node.task_id in seen:  # a cycle cannot come from Celery; never loop on one
            return
        seen.add(node.task_id)
        node.depth = depth
        ordered.append(node)
        for child in node.children:
            visit(nodes[child], depth + 1)

    for node in nodes.values():
        if node.parent_id is None or node.parent_id not in nodes:
            visit(node, 0)
    return ordered
