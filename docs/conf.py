"""Sphinx configuration of the stochdef docs: `tox -e docs`, or `sphinx-build -W -b html docs docs/_build/html`.

Sphinx rather than MkDocs: the docstrings are written in reStructuredText roles (``:func:``, ``:class:``) with
Google-style ``Example:`` sections, which autodoc + napoleon render as they are; mkdocstrings would not.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

project = "stochdef"
author = "the stochdef authors"
copyright = "stochdef authors, MIT license"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "stochdef_docs",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

html_theme = "furo"
html_title = "stochdef"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# The reports nest their tables' headings under the paper's (## paper, #### table): that nesting is theirs.
suppress_warnings = ["myst.header"]

autosummary_generate = True
autodoc_typehints = "description"
autodoc_typehints_description_target = "all"
autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# The attack libraries' own classes (ART's PyTorchClassifier, ...) are bases of a few of ours; their docstrings
# are not ours to check, so inherited members are not documented.
autodoc_inherit_docstrings = False
