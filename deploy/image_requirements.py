"""The image's dependency layer (deploy/Dockerfile, step 1): the requirements of
pyproject.toml's core install and of the extras named, one a line, for ``pip install -r``.

    python image_requirements.py pyproject.toml dashboard,flower,postgres > requirements.txt

An extra naming the project's own other extras (``all``) is expanded here, so pip never looks
the project itself up on an index. An unknown extra stops the build (not a smaller image).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    own = re.compile(rf"^{re.escape(project['name'])}\[(?P<extras>[^\]]*)\]$")
    found = list(project["dependencies"])
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; pyproject.toml has {sorted(optional)}")
        for requirement in optional[extra]:
            match = own.match(requirement.replace(" ", ""))
            if match:
                pending += [e for e in match["extras"].split(",") if e]
            elif requirement not in found:
                found.append(requirement)
    return found


if __name__ == "__main__":
    names = [name.strip() for name in sys.argv[2].split(",") if name.strip()]
    print("\n".join(requirements(Path(sys.argv[1]), names)))
