"""How many consumer processes a worker starts by default: the container's CPU limit.

``os.cpu_count()`` is the node's cores, not the pod's: a worker in a pod limited to 2 CPUs on
a 32-core node would start 32 consumers (about 100 MB each) and be throttled and OOM-killed.
The CPU limit is the cgroup's CPU quota, as the container sees its own cgroup (the cgroup
namespace that Docker and Kubernetes give it on cgroup v2, the mounted hierarchy on v1):

* cgroup v2: ``<root>/cpu.max`` holds ``"<quota> <period>"`` or ``"max <period>"``;
* cgroup v1: ``<root>/cpu/cpu.cfs_quota_us`` (``-1`` for none) and ``cpu.cfs_period_us``
  (also found under ``cpu,cpuacct/`` or directly in ``<root>``).

The default is quota / period rounded up, at least 1, at most ``os.cpu_count()``; without a
quota (or with a file that cannot be read) it is ``os.cpu_count()``, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CGROUP_ROOT", "cgroup_cpu_limit", "default_processes"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
#: where a cgroup v1 hierarchy mounts the cpu controller, relative to the root
_V1_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu", ".")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> tuple[int, int] | None:
    """The CPU quota under ``root`` as ``(quota, period)`` in microseconds, or None when there
    is no quota (unlimited, no cgroup files, or files that do not parse)."""
    v2 = root / "cpu.max"
    if v2.is_file():
        return _parse_v2(_read(v2))
    for directory in _V1_DIRS:
        quota_file = root / directory / "cpu.cfs_quota_us"
        if quota_file.is_file():
            return _parse_v1(_read(quota_file), _read(root / directory / "cpu.cfs_period_us"))
    return None


def default_processes(root: Path = CGROUP_ROOT, cpu_count: int | None = None) -> int:
    """Consumer processes for a worker started without ``--processes``: the CPU limit rounded
    up, at least 1 and at most the machine's cores; the machine's cores without a limit."""
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    if limit is None:
        return cores
    quota, period = limit
    return max(1, min(cores, -(-quota // period)))  # integer ceiling: no float rounding


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _parse_v2(text: str) -> tuple[int, int] | None:
    words = text.split()
    if len(words) != 2 or words[0] == "max":
        return None
    return _positive_pair(words[0], words[1])


def _parse_v1(quota: str, period: str) -> tuple[int, int] | None:
    return _positive_pair(quota.strip(), period.strip())


def _positive_pair(quota: str, period: str) -> tuple[int, int] | None:
    try:
        pair = int(quota), int(period)
    except ValueError:
        return None
    return pair if pair[0] > 0 and pair[1] > 0 else None
