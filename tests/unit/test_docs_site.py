"""The docs site (mkdocs.yml): ``mkdocs build --strict``, what CI runs, passes with every page of
docs/ in the nav, no broken link or anchor, the README's sections included and the API reference
generated from the docstrings.

The guide pages include README.md's sections between its ``--8<-- [start:NAME]`` /
``[end:NAME]`` markers (HTML comments, invisible on GitHub), so the site and the guide tests
read one text; the quick tests here check the markers, the build test the whole site.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from markdown import Markdown

import sandbox_platform

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
INCLUDE = re.compile(r'^--8<-- "README\.md:([\w-]+)"$', re.MULTILINE)
MARKER = re.compile(r"^<!-- --8<-- \[(start|end):([\w-]+)\] -->$", re.MULTILINE)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def included_sections() -> dict[str, list[str]]:
    """README section name -> the docs pages that include it."""
    found: dict[str, list[str]] = {}
    for page in sorted(DOCS.rglob("*.md")):
        for name in INCLUDE.findall(page.read_text()):
            found.setdefault(name, []).append(str(page.relative_to(DOCS)))
    return found


def test_every_included_readme_section_has_its_markers_in_order() -> None:
    text = README.read_text()
    markers = [(m.group(1), m.group(2)) for m in MARKER.finditer(text)]
    sections = included_sections()
    assert "home" in sections, sections
    for name in sections:
        assert markers.count(("start", name)) == 1 == markers.count(("end", name)), name
        assert markers.index(("start", name)) < markers.index(("end", name)), name
    assert {name for _, name in markers} == set(sections)  # no marker left without a page


def test_no_marker_sits_in_a_readme_code_block() -> None:
    """The guide tests run the README's code blocks: a marker must stay outside them."""
    for block in FENCE.findall(README.read_text()):
        assert "--8<--" not in block, block


def _hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_links_to_docs_pages_become_site_links() -> None:
    md = Markdown(extensions=[_hooks().SiteExtension()])
    html = md.convert(
        "See [scaling](docs/scaling.md), [keys](docs/operations.md#rotating-the-secret-keys),"
        " ![go](docs/images/dashboard-go.png) and [bench](bench/README.md).\n\n"
        "Read by :func:`load_settings`, at the path the README documents::\n\n"
        "    from sandbox_platform.tasks import guarded_task\n"
    )
    assert 'href="scaling.md"' in html
    assert 'href="operations.md#rotating-the-secret-keys"' in html
    assert 'src="images/dashboard-go.png"' in html
    assert 'href="bench/README.md"' in html  # not a docs page: left for --strict to report
    assert "by <code>load_settings</code>, at the path the README documents:</p>" in html
    assert "<pre><code>from sandbox_platform.tasks import guarded_task" in html


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    config = ["--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)]
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", *config],
        cwd=tmp_path,  # the snippets' and mkdocstrings' paths do not depend on it
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]

    pages = {path.relative_to(site).as_posix(): path.read_text() for path in site.rglob("*.html")}
    for page in sorted(DOCS.rglob("*.md")):  # every page is built (and, strict, in the nav)
        name = page.relative_to(DOCS).with_suffix("").as_posix()
        built = "index.html" if name == "index" else name.removesuffix("/index") + "/index.html"
        assert built in pages, name
    leftovers = [name for name, html in pages.items() if "--8&lt;--" in html or "--8<--" in html]
    assert leftovers == []  # every include was expanded

    home = pages["index.html"]
    assert 'id="your-own-app"' in home and "shop_tasks.py" in home  # README, "Your own app"
    assert 'href="user-guide/"' in home  # the README's docs/user-guide.md, as a site link
    reference = pages["reference/sandbox_platform/index.html"]
    missing = [n for n in sandbox_platform.__all__ if f'id="sandbox_platform.{n}"' not in reference]
    assert missing == []  # every public name is in the API reference
