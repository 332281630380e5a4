"""The lowest-versions job (.ci/lowest-versions-job) installs what pyproject.toml says is the
lowest: every direct dependency of the core and of the extras the job installs is pinned in
.ci/lowest-constraints.txt to its requirement's lower bound, and nothing else is pinned."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
JOB = ROOT / ".ci" / "lowest-versions-job"
CONSTRAINTS = ROOT / ".ci" / "lowest-constraints.txt"


def _job_extras() -> list[str]:
    """The extras the job installs, from its ``pip install -e '.[...]'`` line."""
    (extras,) = set(re.findall(r"-e '\.\[([a-z,-]+)\]'", JOB.read_text()))
    return extras.split(",")


def _lower_bounds() -> dict[str, Version]:
    """name -> the ``>=`` bound of each direct requirement of the core and the job's extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in _job_extras():
        requirements += project["optional-dependencies"][extra]
    found: dict[str, Version] = {}
    for text in requirements:
        requirement = Requirement(text)
        lows = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert len(lows) == 1, f"{text!r}: a direct requirement needs one lower bound (>=)"
        found[canonicalize_name(requirement.name)] = lows[0]
    return found


def _pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r}: the constraints pin with =="
            found[canonicalize_name(name)] = Version(version)
    return found


def test_the_job_installs_the_core_and_named_extras() -> None:
    assert {"dashboard", "postgres"} <= set(_job_extras())


def test_each_direct_dependency_is_pinned_to_its_lower_bound() -> None:
    bounds, pins = _lower_bounds(), _pins()
    assert sorted(bounds) == sorted(pins), "a requirement without a pin, or a pin without one"
    differ = {name: (str(bounds[name]), str(pins[name])) for name in bounds}
    differ = {name: pair for name, pair in differ.items() if bounds[name] != pins[name]}
    assert differ == {}, "pyproject's lower bound vs the constraints file's pin"
