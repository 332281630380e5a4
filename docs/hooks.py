"""MkDocs hooks of the docs site (mkdocs.yml, ``hooks:``); not a page of it.

The site's guide pages include the README's sections (``--8<-- "README.md:home"``,
pymdownx.snippets), so the guides have one source that the site and the guide tests share.
The README links to the docs pages from the repository root (``docs/scaling.md``, right on
GitHub); on the site those pages are siblings (``scaling.md``). A preprocessor that runs right
after the snippets are included rewrites that prefix, and only that one: a link to anything
else outside docs/ stays broken and ``mkdocs build --strict`` says so. A page in docs/ that
itself links ``docs/...`` is a warning (that link is wrong on GitHub), so every ``docs/`` link
the rewrite sees came from the README.

The docstrings are written in reStructuredText's small habits: Sphinx roles
(``:func:`load_settings```) and a ``::`` before a literal block. Markdown would show both as
written; the API reference shows the name alone, as code, and a plain ``:``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

README_DOCS_LINK = re.compile(r"(\]\(\s*<?)docs/")
SPHINX_ROLE = re.compile(r":(?:func|class|meth|mod|attr|exc|data|obj):`~?([^`]+)`")
LITERAL_MARKER = re.compile(r"(^\s*::\s*$)|(?<=\S)::\s*$")
SNIPPETS = "pymdownx.snippets"
SNIPPETS_PRIORITY = 32  # pymdownx.snippets registers its preprocessor at 32; ours runs next

log = logging.getLogger("mkdocs.hooks.readme")


class ReadmeLinks(Preprocessor):
    """``](docs/x.md)`` -> ``](x.md)``, in the lines the snippets brought in."""

    def run(self, lines: list[str]) -> list[str]:
        return [README_DOCS_LINK.sub(r"\1", line) for line in lines]


class RestHabits(Preprocessor):
    """In docstrings: ``:func:`load_settings``` -> ```load_settings```, ``text::`` ->
    ``text:``, a line of ``::`` alone -> an empty line (the indented block stays code)."""

    def run(self, lines: list[str]) -> list[str]:
        return [
            LITERAL_MARKER.sub(lambda m: "" if m.group(1) else ":", SPHINX_ROLE.sub(r"`\1`", line))
            for line in lines
        ]


class SiteExtension(Extension):
    def extendMarkdown(self, md: Markdown) -> None:
        md.preprocessors.register(ReadmeLinks(md), "readme_links", SNIPPETS_PRIORITY - 1)
        md.preprocessors.register(RestHabits(md), "rest_habits", SNIPPETS_PRIORITY - 1)


def on_config(config: Any) -> Any:
    """Snippets' paths are relative to the repository root (where mkdocs.yml is), whatever
    the working directory; a missing file or section fails the build."""
    root = str(Path(config.config_file_path).resolve().parent)
    options = config.mdx_configs.setdefault(SNIPPETS, {})
    options["base_path"] = [root]
    options["check_paths"] = True
    config.markdown_extensions.append(SiteExtension())
    return config


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    if README_DOCS_LINK.search(markdown):
        log.warning(
            "%s links to docs/...: a page in docs/ links to its siblings as name.md",
            page.file.src_path,
        )
    return markdown
