"""Sphinx extension of the stochdef docs: generated pages and examples executed at build time.

* Before Sphinx reads the sources, it writes the result pages (``docs/results/generated/``) from the
  committed reports and one API page per package (``docs/api/stochdef.*.rst``) from its ``__all__``
  (:mod:`pages`); autosummary then makes one page per public name.
* The ``runblock`` directive runs a Python example in a fresh interpreter, in an empty temporary folder,
  and shows the code and what it printed. An example that fails (non-zero exit) or runs past its
  ``:timeout:`` (seconds, default 300) stops the build with its error, so a broken example breaks the docs.

In a Markdown page::

    ```{runblock}
    :timeout: 120
    print("hello")
    ```
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import pages
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

log = logging.getLogger(__name__)


def generate(app: Sphinx) -> None:
    """Write the generated result and API pages into the source folder (only files whose text changed)."""
    docs = Path(app.srcdir)
    root = docs.parent
    for name, page in pages.RESULT_PAGES.items():
        pages.write_if_changed(docs / "results" / "generated" / f"{name}.md", page(root))
    # A fragment the defenses page includes (.inc: Sphinx does not read it as a page of its own).
    pages.write_if_changed(docs / "results" / "generated" / "zoo-table.inc", pages.zoo_table(root))
    for package in pages.PACKAGES:
        pages.write_if_changed(docs / "api" / f"{package}.rst", pages.api_page(package))
    # Sphinx listed the sources before this ran: list them again, so that autosummary sees the new pages.
    app.env.find_files(app.config, app.builder)


class RunBlock(SphinxDirective):
    """Run the directive's content as a Python script; show it and its standard output."""

    has_content = True
    option_spec: ClassVar[dict[str, Any]] = {"timeout": directives.positive_int}

    def run(self) -> list[nodes.Node]:
        code = "\n".join(self.content) + "\n"
        where = f"{self.env.docname}.md, line {self.lineno}"
        timeout = self.options.get("timeout", 300)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="stochdef-docs-") as tmp:
            try:
                done = subprocess.run(
                    [sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout
                )
            except subprocess.TimeoutExpired as error:
                raise ExtensionError(f"example at {where} ran past its {timeout}-s timeout") from error
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise ExtensionError(f"example at {where} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        log.info("example at %s ran in %.1f s", where, seconds)
        source = nodes.literal_block(code, code, language="python", classes=["runblock-code"])
        blocks: list[nodes.Node] = [source]
        if done.stdout:
            para = nodes.paragraph("", "", nodes.emphasis("", "Output (run when these pages were built):"))
            output = nodes.literal_block(done.stdout, done.stdout, language="text", classes=["runblock-output"])
            blocks += [para, output]
        return blocks


def setup(app: Sphinx) -> dict[str, Any]:
    # Before autosummary's own builder-inited handler (priority 500), which reads the API pages.
    app.connect("builder-inited", generate, priority=400)
    app.add_directive("runblock", RunBlock)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
