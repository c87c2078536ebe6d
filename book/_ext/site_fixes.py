"""Small fixes to the generated HTML that keep every page free of console errors.

- sphinx-thebe registers its inline configuration script once per read phase,
  and Jupyter Book 1.x runs it twice, so every page declared ``const THEBE_JS_URL``
  twice (a SyntaxError in the browser console). Identical script tags are
  dropped here, keeping the first.
- The live-app URL is defined once in _config.yml (``myst_substitutions.live_app_url``);
  the banner on every page is built from it here.
- The book's own style sheet (``_static/course.css``: a column that fits the code)
  is added to every page.
- A figure and its unit or spread stay on one line: in prose, the space before
  ``%`` and the spaces around ``±`` become no-break spaces, so "99 %" or
  "95.6 ± 0.2" never breaks across lines. Code, output and math are left alone.
- Controls are named by what they show (WCAG 2.5.3, "label in name"): a hidden
  cell's toggle is named by its "Show code cell source" text, not by a fixed
  "Toggle hidden content" label; the theme's search and colour-mode buttons come
  from templates/ (the same markup, named by their visible text).
- The single-page builder (``make pdf``) renders what the html builder renders:
  sphinx-exercise registers its nodes for ``singlehtml`` by name, after which
  Sphinx looks up no ``html`` visitor for that builder, so every other
  extension's nodes (a hidden cell, a hidden input) were unknown to it.
- pydata-sphinx-theme copies the dark logo into ``_static`` when a build ends; after
  a build that failed before ``_static`` existed, it wrote the logo *as* the file
  ``_static``, and every later build failed. The folder is made first.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from docutils import nodes
from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput

_BREAKABLE = re.compile(r" (?=%)| ?± ?")   # a space before %, spaces around ±


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        # The two copies differ only in filename None vs "" (inline scripts).
        key = (getattr(script, "filename", None) or "", tuple(sorted(attributes.items())))
        if key in seen:
            continue
        seen.add(key)
        unique.append(script)
    context["script_files"] = unique


def _live_app_banner(app, config):
    url = (config.myst_substitutions or {}).get("live_app_url")
    if not url:
        return
    options = dict(config.html_theme_options or {})
    if options.get("announcement"):  # an announcement set in _config.yml wins
        return
    options["announcement"] = (
        f'Draw a digit and watch the network read it: <a class="live-app-banner" href="{url}">'
        "open the live canvas app</a>."
    )
    config.html_theme_options = options


def _keep_figures_whole(text: str) -> str:
    return _BREAKABLE.sub(lambda m: m.group().replace(" ", "\u00a0"), text)


def _unbreakable_units(app, doctree, docname):
    # Runs after the post-transforms, so glued figures are text by now.
    skip = (nodes.FixedTextElement, nodes.literal, nodes.math, nodes.raw)
    for text in list(doctree.findall(nodes.Text)):
        if " %" not in text and "±" not in text:
            continue
        parent = text.parent
        if any(isinstance(a, skip) for a in _ancestors(parent)):
            continue
        new = _keep_figures_whole(str(text))
        if new != str(text):
            parent.replace(text, nodes.Text(new))


def _ancestors(node):
    while node is not None:
        yield node
        node = node.parent


def _visit_hidden_cell(self, node):
    # myst-nb's own visitor, less the summary's aria-label: a <summary> is named by
    # its text, the prompt a reader sees.
    classes = " ".join(node["classes"])
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    for state, prompt in (("collapsed", "prompt_show"), ("expanded", "prompt_hide")):
        self.body.append(f'<p class="{state} admonition-title">{escape(node[prompt])}</p>\n')
    self.body.append("</summary>\n")


def _own_templates(app, config):
    config.templates_path = [*config.templates_path, str(Path(__file__).parent / "templates")]


def _html_visitors_for_other_html_builders(app):
    handlers = app.registry.translation_handlers
    own = handlers.get(app.builder.name)
    if app.builder.format == "html" and app.builder.name != "html" and own is not None:
        for node, visitors in handlers.get("html", {}).items():
            own.setdefault(node, visitors)


def _static_folder_first(app, exception):
    if app.builder.format == "html":
        (Path(app.outdir) / "_static").mkdir(parents=True, exist_ok=True)


def setup(app):
    app.add_css_file("course.css")
    app.connect("build-finished", _static_folder_first, priority=100)
    app.connect("builder-inited", _html_visitors_for_other_html_builders)
    app.connect("config-inited", _own_templates)
    app.add_node(HideCodeCellNode, override=True,
                 html=(_visit_hidden_cell, depart_HideCellInput))
    app.connect("config-inited", _live_app_banner)
    app.connect("doctree-resolved", _unbreakable_units)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
