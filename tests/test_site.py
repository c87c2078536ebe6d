"""The built book, checked the way a reader sees it: a real Jupyter Book build,
served on loopback, opened page by page in headless Chromium.

The build (`jupyter-book build . -n -W --keep-going`, executing every chapter)
starts in the background when the session begins (see conftest.py), into
_build/test-site, and these tests wait for it. Set MNIST_CNN_SITE_DIR to check an
already built site instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests._browser import serve

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
LIVE_APP_URL = CONFIG["sphinx"]["config"]["myst_substitutions"]["live_app_url"]
REPO_URL, BRANCH = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
GITHUB_REPO = REPO_URL.removeprefix("https://github.com/")  # org/name
LAUNCH = CONFIG["launch_buttons"]


def _toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


PAGES = _toc_pages()
CHAPTERS = [p for p in PAGES if p != "book/index"]

# axe-core, from the npm registry (`make tools` installs it into .tools/, git-ignored).
AXE = ROOT / ".tools" / "node_modules" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")
APPENDIX = ROOT / "book" / "record.md"   # lists what axe reports below serious, with why
WIDGET = '[data-testid="digit-widget"]'
PHONE = {"width": 390, "height": 844}
# No CSS transition or animation is running (theme or viewport switches animate).
SETTLED = ("document.getAnimations().every(a => a.playState !== 'running' "
           "|| a.effect.getComputedTiming().endTime === Infinity)")


@pytest.fixture(scope="module")
def base_url(site_dir):
    with serve(site_dir) as url:
        yield url


class PageReport:
    def __init__(self):
        self.console_errors: list[str] = []
        self.bad_responses: list[str] = []
        self.external: list[str] = []
        self.load_seconds = 0.0


def _open(browser, url: str, origin: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    report = PageReport()
    page.on("console",
            lambda m: report.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: report.console_errors.append(str(e)))

    def on_response(response):
        if response.status >= 400:
            report.bad_responses.append(f"{response.status} {response.url}")

    def on_request(request):
        if not request.url.startswith(origin) and not request.url.startswith("data:"):
            report.external.append(f"{request.resource_type} {request.url}")

    page.on("response", on_response)
    page.on("requestfailed", lambda r: report.bad_responses.append(f"failed {r.url}"))
    page.on("request", on_request)
    start = time.perf_counter()
    page.goto(url, wait_until="load")
    report.load_seconds = time.perf_counter() - start
    return page, report


# What a reader at 1280 px would have to scroll sideways to read, with every
# drop-down (hidden inputs, solutions) opened: code and output blocks wider than
# their box, display equations wider than the column; figures scaled down so far
# that their labels are hard to read; and figures that read
# wrongly: a rounded "-0.00", or prose where a figure's "%" or "±" can break onto
# the next line (a plain space before it; book/_ext/site_fixes.py makes it a
# no-break space).
LAYOUT_JS = r"""() => {
  const MIN_FIGURE_SCALE = 0.7;
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  document.querySelectorAll('.toggle-hidden').forEach(e => e.classList.remove('toggle-hidden'));
  const main = document.querySelector('main');
  const clipped = [];
  for (const pre of main.querySelectorAll('pre')) {
    if (pre.scrollWidth > pre.clientWidth + 1) {
      const kind = pre.closest('.cell_output') ? 'output' : 'code';
      const longest = pre.textContent.split('\n')
        .reduce((a, b) => b.length > a.length ? b : a, '');
      const cut = pre.scrollWidth - pre.clientWidth;
      clipped.push(`${kind}, ${cut} px cut: ${longest.trim().slice(0, 70)}`);
    }
  }
  const equations = [];
  for (const eq of main.querySelectorAll('mjx-container[display="true"]')) {
    const column = eq.parentElement.getBoundingClientRect().width;
    const wide = Math.max(eq.scrollWidth,
                          ...[...eq.children].map(c => c.getBoundingClientRect().width));
    if (wide > column + 1) {
      equations.push(`${Math.round(wide)} px in ${Math.round(column)}: `
                     + eq.textContent.slice(0, 50));
    }
  }
  // A figure shrunk to fit the column shrinks its text with it: below 0.7 of its
  // drawn size, 9-point labels at the book's 110 dpi fall under 10 px.
  const shrunk = [...main.querySelectorAll('img')]
    .filter(i => i.naturalWidth > 0 && i.getBoundingClientRect().width > 0)
    .map(i => [i.getBoundingClientRect().width / i.naturalWidth, i])
    .filter(([scale]) => scale < MIN_FIGURE_SCALE)
    .map(([scale, i]) => `${scale.toFixed(2)} of ${i.naturalWidth} px: `
                         + (i.alt || i.src).slice(0, 60));
  // Prose only: what a program prints (and its tables) is its own text.
  const skip = n => n.parentElement.closest(
    'pre, code, mjx-container, script, style, .cell_input, .cell_output');
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  const blocks = new Map();
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (skip(n)) continue;
    const block = n.parentElement.closest('p, li, td, th, dt, dd, figcaption, caption')
      || n.parentElement;
    blocks.set(block, (blocks.get(block) || '') + n.textContent);
  }
  const breakable = [];
  for (const text of blocks.values()) {
    for (const m of text.matchAll(/\S{0,12}( %| ±|± )\S{0,12}/g)) breakable.push(m[0]);
  }
  const printed = [...main.querySelectorAll('.cell_output')].map(e => e.textContent).join('\n')
    + [...blocks.values()].join('\n');
  const negativeZero = [...printed.matchAll(/(?<![\w.])[-−]0\.0+(?![\d])/g)].map(m => m[0]);
  return {clipped, equations, shrunk, breakable, negativeZero};
}"""


def _html_url(base: str, page: str) -> str:
    return urllib.parse.urljoin(base, page + ".html")


@pytest.fixture(scope="module")
def crawl(browser, base_url):
    """Open every page in the table of contents once; keep what each one showed."""
    results = {}
    for name in PAGES:
        page, report = _open(browser, _html_url(base_url, name), base_url)
        # MathJax typesets asynchronously; wait for it where there is math.
        # Figures load lazily (below the fold); make them load now and wait for each.
        page.evaluate("""() => Promise.all([...document.images].map(img => {
            img.loading = "eager";
            return img.complete ? null : new Promise(done => {
                img.addEventListener("load", done); img.addEventListener("error", done); });
        }))""")
        # (Some math sits in collapsed solution drop-downs: wait on counts, not visibility.)
        if page.locator(".math").count():
            page.wait_for_function(
                "document.querySelectorAll('mjx-container').length >= "
                "document.querySelectorAll('.math').length", timeout=90_000)
        axe = _axe_scan(page)
        results[name] = {
            "axe": axe,
            "report": report,
            "title": page.locator("main h1").first.inner_text(),
            "text": page.locator("main").inner_text(),
            "links": page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"),
            "figures": page.eval_on_selector_all(
                "main .cell_output img, main figure img",
                "els => els.filter(e => e.complete && e.naturalWidth > 0).length"),
            # An alt text that is a file name (what myst-nb writes when a cell gives
            # none) says nothing about the figure.
            "imgs_without_alt": page.eval_on_selector_all(
                "main img", r"els => els.filter(e => !(e.getAttribute('alt') || '').trim()"
                r" || /\.(png|jpe?g|svg|gif|webp)$/i.test(e.getAttribute('alt').trim()))"
                ".map(e => e.src)"),
            "math": page.locator(".math").count(),
            "mathjax": page.locator("mjx-container").count(),
            "app_links": page.locator(f'a[href^="{LIVE_APP_URL}"]').count(),
            # The rocket menu's entries (hidden until opened): {"Binder": url, ...}.
            "launch": dict(page.eval_on_selector_all(
                ".dropdown-launch-buttons a",
                "els => els.map(e => [e.textContent.trim(), e.href])")),
        }
        if name in ("book/index", CHAPTERS[-1]):
            shot = ROOT / "_build" / f"site_{name.split('/')[-1]}.png"
            page.screenshot(path=str(shot), full_page=False)
        results[name]["layout"] = page.evaluate(LAYOUT_JS)
        # The same page at a phone's width (drop-downs are open: their code too must fit).
        page.set_viewport_size(PHONE)
        page.wait_for_function(f"innerWidth === {PHONE['width']} && {SETTLED}")
        results[name]["phone"] = page.evaluate(PHONE_JS, WIDGET)
        page.close()
    return results


# axe-core on the loaded page, once in each colour mode of the theme (pydata-sphinx-theme
# reads html[data-theme]; its own accessibility tests switch it the same way). Every node
# is kept, with whether it lies inside the book's canvas widget.
AXE_JS = """async ([modes, widget]) => {
  const root = document.documentElement, before = root.dataset.theme, found = {};
  for (const mode of modes) {
    root.dataset.theme = mode;
    // colours fade from one mode to the other: wait for every finite transition
    await Promise.all(document.getAnimations()
      .filter(a => a.playState === 'running'
                   && a.effect.getComputedTiming().endTime !== Infinity)
      .map(a => a.finished));
    const result = await axe.run(document, {resultTypes: ['violations']});
    found[mode] = result.violations.map(v => ({
      id: v.id, impact: v.impact, help: v.help,
      nodes: v.nodes.map(n => {
        const el = typeof n.target[0] === 'string' ? document.querySelector(n.target[0]) : null;
        return {target: n.target.flat().join(' '), summary: n.failureSummary,
                widget: !!(el && el.closest(widget))};
      })}));
  }
  root.dataset.theme = before;
  return found;
}"""


def _axe_scan(page):
    """{mode: [violation, ...]} for light and dark, or None without axe-core."""
    if not AXE.is_file():
        return None
    page.add_script_tag(path=str(AXE))
    return page.evaluate(AXE_JS, [["light", "dark"], WIDGET])


def _require_axe():
    message = f"{AXE.relative_to(ROOT)} is missing (`make tools` installs axe-core from npm)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


# At a phone's width: what sticks out of the screen. An element may run past the edge
# only inside a box that scrolls sideways and itself fits (code, tables, MathJax);
# anything else past the edge makes the page scroll sideways, or is cut off unread.
# Hidden things (the closed sidebars; text for screen readers only) do not count.
PHONE_JS = r"""(widget) => {
  const W = innerWidth;
  const fits = e => {
    const r = e.getBoundingClientRect(); return r.left >= -1 && r.right <= W + 1; };
  const scrollBox = e => getComputedStyle(e).overflowX !== 'visible' && fits(e);
  const out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || fits(el)) continue;
    if (getComputedStyle(el).visibility === 'hidden') continue;
    if (el.closest('mjx-assistive-mml, .visually-hidden, .sr-only')) continue;
    let box = el.parentElement;
    while (box && box !== document.body && !scrollBox(box)) box = box.parentElement;
    const inBox = box && box !== document.body;
    if (inBox && el.closest('pre, code, table, mjx-container')) continue;
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
      + [...el.classList].map(c => '.' + c).join('');
    const where = inBox ? 'cut off in ' + box.tagName.toLowerCase() + '.'
      + [...box.classList].join('.') : 'past the screen';
    out.push(`${name} [${Math.round(r.left)}, ${Math.round(r.right)}] ${where}: `
             + (el.textContent || '').trim().slice(0, 40));
  }
  const canvases = [...document.querySelectorAll(widget + ' canvas')]
    .filter(c => c.getBoundingClientRect().width > 0)
    .map(c => { const r = c.getBoundingClientRect(); return [r.left, r.right]; });
  return {width: W, scrollWidth: document.scrollingElement.scrollWidth,
          sticksOut: out.slice(0, 20), canvases};
}"""


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_cleanly(crawl, name):
    report = crawl[name]["report"]
    assert report.console_errors == [], report.console_errors
    assert report.bad_responses == [], report.bad_responses
    # The site is self-contained: no script, style sheet, font or image from elsewhere.
    assert report.external == [], report.external


@pytest.mark.parametrize("name", PAGES)
def test_page_has_title_goals_and_live_app_link(crawl, name):
    page = crawl[name]
    assert page["title"].strip()
    assert "Learning goals" in page["text"]
    assert page["app_links"] >= 1, f"no link to {LIVE_APP_URL}"
    assert page["imgs_without_alt"] == []


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_shows_executed_figures(crawl, name):
    assert crawl[name]["figures"] >= 1, "no rendered figure from executed code"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_launches_on_binder_and_colab(crawl, name):
    """The launch menu opens the chapter's notebook on Binder and on Colab, and that
    notebook is committed: Colab reads it from GitHub, Binder from the repository."""
    notebook = f"{name}.ipynb"
    assert crawl[name]["launch"] == {
        "Binder": f"{LAUNCH['binderhub_url']}/v2/gh/{GITHUB_REPO}/{BRANCH}"
                  f"?urlpath=lab/tree/{notebook}",
        "Colab": f"{LAUNCH['colab_url']}/github/{GITHUB_REPO}/blob/{BRANCH}/{notebook}",
    }
    tracked = subprocess.run(["git", "-c", f"safe.directory={ROOT}", "ls-files",
                              "--error-unmatch", notebook], cwd=ROOT, capture_output=True)
    assert tracked.returncode == 0, f"{notebook} is not committed (git add it)"


@pytest.mark.parametrize("name", PAGES)
def test_math_is_rendered(crawl, name):
    page = crawl[name]
    assert "$$" not in page["text"], "raw display math left in the page"
    if page["math"]:
        assert page["mathjax"] >= page["math"]


@pytest.mark.parametrize("name", PAGES)
def test_nothing_runs_past_the_column(crawl, name):
    """At 1280 px no code, output or display equation is cut at the column's edge,
    and no figure is shrunk below 0.7 of the size it was drawn at."""
    layout = crawl[name]["layout"]
    cut = {"code or output": layout["clipped"], "display equations": layout["equations"],
           "figures shrunk": layout["shrunk"]}
    assert cut == {"code or output": [], "display equations": [], "figures shrunk": []}


@pytest.mark.parametrize("name", PAGES)
def test_figures_read_whole(crawl, name):
    """No "-0.00", and no figure whose "%" or "±" may wrap onto the next line."""
    layout = crawl[name]["layout"]
    wrong = {"negative zero": layout["negativeZero"], "breakable": layout["breakable"]}
    assert wrong == {"negative zero": [], "breakable": []}


def test_internal_links_resolve(crawl, base_url):
    """Every same-site link points at a page that exists, and at an anchor in it."""
    targets = {link for page in crawl.values() for link in page["links"]
               if link.startswith(base_url)}
    html_cache: dict[str, str] = {}
    broken = []
    for link in sorted(targets):
        url, _, fragment = link.partition("#")
        try:
            if url not in html_cache:
                with urllib.request.urlopen(url, timeout=10) as response:
                    html_cache[url] = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            broken.append(f"{exc.code} {link}")
            continue
        if fragment and url.endswith(".html"):
            anchor = urllib.parse.unquote(fragment)
            if not re.search(rf'id="{re.escape(anchor)}"', html_cache[url]):
                broken.append(f"no anchor #{anchor} in {url}")
    assert len(targets) > len(PAGES)
    assert broken == []


def test_search_finds_convolution(browser, base_url):
    page, report = _open(browser, urllib.parse.urljoin(base_url, "search.html?q=convolution"),
                         base_url)
    page.wait_for_selector("#search-results li", timeout=30_000)
    hits = page.locator("#search-results li").all_inner_texts()
    page.close()
    assert hits, "search returned nothing"
    assert report.console_errors == []


def test_report_load_times(crawl, capsys):
    """Not an assertion on speed: prints what each page cost, for the record."""
    with capsys.disabled():
        print("\nsite check, load time per page:")
        for name, page in crawl.items():
            print(f"  {page['report'].load_seconds * 1000:7.0f} ms  {name}")
    assert len(crawl) == len(PAGES)


# ------------------------------------------------------------------ accessibility, phone
@pytest.mark.parametrize("name", PAGES)
def test_no_serious_accessibility_violation(crawl, name):
    """axe-core finds no violation of serious or critical impact, in light mode or in
    dark mode; the canvas widget is scanned with the rest of the page (its findings
    are marked "in the widget")."""
    scan = crawl[name]["axe"]
    if scan is None:
        _require_axe()
    serious = [f"{mode}: {v['id']} ({v['impact']}) at {n['target']}"
               f"{' (in the widget)' if n['widget'] else ''}: {n['summary']}"
               for mode, violations in scan.items() for v in violations
               if v["impact"] in SERIOUS for n in v["nodes"]]
    assert serious == [], "\n".join(serious)


def _appendix_rows() -> set[tuple[str, str, str]]:
    """(rule, impact, pages) of each row of the appendix's table."""
    rows = re.findall(r"^\| `([\w-]+)` \| (minor|moderate) \| ([^|]+) \|", APPENDIX.read_text(),
                      re.M)
    return {(rule, impact, pages.strip()) for rule, impact, pages in rows}


def test_minor_accessibility_findings_are_listed_in_the_appendix(crawl):
    """Each rule axe-core reports below serious impact, on any page in either mode, has
    a row in the appendix that says why it stays, and no row is left for a rule the
    scan no longer reports. A failure prints the rows to paste, from the scan."""
    if any(page["axe"] is None for page in crawl.values()):
        _require_axe()
    found: dict[tuple[str, str], dict] = {}
    for name, page in crawl.items():
        for mode, violations in page["axe"].items():
            for v in violations:
                if v["impact"] not in SERIOUS:
                    entry = found.setdefault((v["id"], v["impact"]),
                                             {"help": v["help"], "pages": set(), "modes": set()})
                    entry["pages"].add(name.removeprefix("book/"))
                    entry["modes"].add(mode)
    listed = _appendix_rows()
    where = {key: ("every page" if len(e["pages"]) == len(PAGES) else ", ".join(sorted(e["pages"])))
             + ("" if len(e["modes"]) == 2 else " (" + ", ".join(e["modes"]) + " mode)")
             for key, e in found.items()}
    rows = [f"| `{rule}` | {impact} | {where[rule, impact]} | {e['help']}: WHY IT STAYS |"
            for (rule, impact), e in sorted(found.items())]
    assert listed == {(*key, pages) for key, pages in where.items()}, (
        f"{APPENDIX.relative_to(ROOT)} lists {sorted(listed)}; the scan found "
        f"{sorted(found)}. Rows from the scan:\n" + "\n".join(rows))


@pytest.mark.parametrize("name", PAGES)
def test_page_fits_a_phone(crawl, name):
    """At 390 x 844 the page does not scroll sideways and nothing runs past the screen
    or is cut off, except code, tables and equations inside a box that scrolls."""
    phone = crawl[name]["phone"]
    assert phone["scrollWidth"] <= phone["width"], phone["sticksOut"]
    assert phone["sticksOut"] == []


def test_widget_canvas_fits_a_phone(crawl):
    phone = crawl["book/index"]["phone"]
    assert phone["canvases"], f"no canvas shown in {WIDGET} on the home page"
    for left, right in phone["canvases"]:
        assert 0 <= left and right <= phone["width"], (left, right, phone["width"])


def test_phone_sidebar_opens_and_closes(browser, base_url):
    """On a phone the navigation sits behind the one visible menu button: it opens
    over the page, shows the chapters, and closes again (Escape)."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport=PHONE)
    page.goto(_html_url(base_url, CHAPTERS[1]), wait_until="load")
    toggle = page.locator(".primary-toggle:visible")
    expect(toggle).to_have_count(1)
    first_chapter = page.locator(f'nav.bd-docs-nav a[href$="{CHAPTERS[0].split("/")[-1]}.html"]')
    expect(first_chapter).to_be_hidden()
    toggle.click()
    expect(first_chapter).to_be_in_viewport()
    page.keyboard.press("Escape")
    expect(first_chapter).to_be_hidden()
    toggle.click()                  # and again: closing left it working
    expect(first_chapter).to_be_in_viewport()
    page.close()


# ------------------------------------------------------------------ the printed book
