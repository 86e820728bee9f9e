"""Sphinx configuration of the course site (MyST-NB renders the notebooks). Run ``docs/build``, not
sphinx-build: it stages the pages (chapters with their header, the API page, the benchmark results) and sets
how the notebooks are executed (``CBIR_SITE_EXECUTION``: ``cache``, or ``off`` for notebooks executed already)."""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package of this checkout, installed or not

project = "cbir-tutorial"
author = "the cbir-tutorial authors"
html_title = "cbir-tutorial"  # a tab reads "<page title> — cbir-tutorial"
extensions = ["myst_nb", "sphinx_design"]
# overview.md: included by index.md; notebooks/: the notebooks as committed, offered for download on each chapter
exclude_patterns = ["_build", "**/.ipynb_checkpoints", "overview.md", "notebooks"]
myst_enable_extensions = ["colon_fence", "dollarmath", "amsmath"]
myst_heading_anchors = 3
smartquotes_action = "qe"  # quotes and ellipses only: "--help" in a table stays a command, not an en dash

nb_execution_mode = os.environ.get("CBIR_SITE_EXECUTION", "cache")
nb_execution_cache_path = os.environ.get("CBIR_SITE_CACHE", "")
nb_execution_timeout = 3600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = False  # a cell's printed lines stay where they were, between its tables and figures
nb_execution_excludepatterns = []

html_theme = "sphinx_book_theme"
# no download button: the staged notebook carries the site's own cells (the note, the folded answers)
html_theme_options = {"show_navbar_depth": 1, "show_toc_level": 2, "home_page_in_toc": False,
                      "navigation_with_keys": False, "use_download_button": False}
repository = os.environ.get("CBIR_SITE_REPOSITORY", "")
if repository:
    html_theme_options.update(repository_url=f"https://github.com/{repository}", use_repository_button=True)
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"  # a grid of products and a magnifier
html_css_files = ["site.css"]
html_js_files = ["site.js"]
# no "Last updated" footer: it is the build's date, beside the chapter's own "Last modified"
# A widget needs a kernel: its still HTML (e.g. the explorer's picture of itself) is shown instead of its view.
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]


def _hide_machine_paths(app, doctree, docname):
    """A chapter's outputs show ``<data>``, ``<tmp>``, ``<cache>`` and ``~`` for the build machine's folders
    (lessons.site.shown_paths), and none of pip's notes to the machine (its configuration's warnings, "you may need
    to restart the kernel")."""
    import re
    import tempfile

    from docutils import nodes

    from cbir_tutorial.lessons.site import shown_paths

    if not docname.startswith("chapters/"):
        return
    data = os.environ.get("CBIR_TUTORIAL_DATA")
    data = str(Path(data).resolve()) if data else None
    for node in list(doctree.findall(lambda n: isinstance(n, (nodes.literal_block, nodes.raw)))):
        text = node.astext()
        pip_noise = (r"(?m)^(\x1b\[[0-9;]*m)*(?:WARNING: Location '[^']*' is ignored: .*"
                     r"|Note: you may need to restart the kernel to use updated packages\.)[ \t]*\n?")
        shown = shown_paths(re.sub(pip_noise, "", text), data, tempfile.gettempdir(), str(Path.home()))
        if isinstance(node, nodes.raw):  # HTML: the placeholders are text, not tags
            for placeholder in ("data", "tmp", "cache"):
                shown = shown.replace(f"<{placeholder}>", f"&lt;{placeholder}&gt;")
        if isinstance(node, nodes.literal_block) and not re.sub(r"\x1b\[[0-9;]*m", "", shown).strip() and text.strip():
            parent = node.parent  # nothing left but blank lines (e.g. the setup cell's pip notes): no empty box
            parent.remove(node)
            if "cell_output" in parent.get("classes", []) and not parent.children:
                parent.parent.remove(parent)
            continue
        if shown != text:
            node.children = []
            node += nodes.Text(shown)
            node.rawsource = shown


def _tidy_tables(app, doctree, docname):
    """In the tables a notebook's outputs show (a DataFrame's HTML), a missing value (``NaN``, ``<NA>``) is an
    empty cell, read as "not measured" (lessons.site.blank_missing_cells), and a column empty in every row (the
    sample's brands and prices) is left out (lessons.site.without_empty_columns); prose, code and printed text
    stay."""
    from docutils import nodes

    from cbir_tutorial.lessons.site import blank_missing_cells, without_empty_columns

    for node in list(doctree.findall(nodes.raw)):
        if node.get("format") != "html" or "text_html" not in node.get("classes", []):  # MyST-NB's HTML outputs
            continue
        text = node.astext()
        blanked = without_empty_columns(blank_missing_cells(text))
        if blanked != text:
            node.children = []
            node += nodes.Text(blanked)
            node.rawsource = blanked


#: Terms whose words Sphinx's search splits ("MAP@K" into "map" and "k", found on most pages), each made an index
#: entry of the chapter that teaches it: a search for the whole term lists that chapter first.
SEARCH_TERMS = {"chapters/06_evaluation": ("MAP@K", "AP@K", "precision@K", "recall@K", "MAP@R"),
                "chapters/09_scaling_up": ("FAISS", "HNSW", "IVF", "IVF-PQ", "Milvus", "Milvus Lite", "int8",
                                           "bfloat16")}


def _index_search_terms(app, doctree):
    """An index entry (no visible text) for each of the page's :data:`SEARCH_TERMS`, at its first section."""
    from docutils import nodes
    from sphinx import addnodes

    terms = SEARCH_TERMS.get(app.env.docname, ())
    section = next(iter(doctree.findall(nodes.section)), None)
    if terms and section is not None:
        entries = [("single", term, "search-terms", "main", None) for term in terms]
        section.insert(1, addnodes.index(entries=entries, inline=False))
        section.insert(1, nodes.target("", "", ids=["search-terms"]))


def setup(app):
    app.connect("doctree-read", _index_search_terms)
    app.connect("doctree-resolved", _hide_machine_paths)  # after MyST-NB chose each output's form
    app.connect("doctree-resolved", _tidy_tables)
