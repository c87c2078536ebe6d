"""Small fixes to the generated HTML that keep every page free of console errors.

- sphinx-thebe registers its inline configuration script once per read phase,
  and Jupyter Book 1.x runs it twice, so every page declared ``const THEBE_JS_URL``
  twice (a SyntaxError in the browser console). Identical script tags are
  dropped here, keeping the first.
- The live-app URL is defined once in _config.yml (``myst_substitutions.live_app_url``);
  the banner on every page is built from it here.
"""

from __future__ import annotations


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


def setup(app):
    app.connect("config-inited", _live_app_banner)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
