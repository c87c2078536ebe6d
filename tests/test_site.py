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

from tests._browser import build_book, serve

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


@pytest.fixture(scope="module")
def site_dir() -> Path:
    prebuilt = os.environ.get("MNIST_CNN_SITE_DIR")
    return Path(prebuilt) if prebuilt else build_book(ROOT)


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
        results[name] = {
            "report": report,
            "title": page.locator("main h1").first.inner_text(),
            "text": page.locator("main").inner_text(),
            "links": page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"),
            "figures": page.eval_on_selector_all(
                "main .cell_output img, main figure img",
                "els => els.filter(e => e.complete && e.naturalWidth > 0).length"),
            "imgs_without_alt": page.eval_on_selector_all(
                "main img", "els => els.filter(e => !(e.getAttribute('alt') || '').trim())"
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
        page.close()
    return results


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
