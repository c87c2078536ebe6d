"""The course's one rule for "equal" (mnist_cnn.numerics), TensorFlow imported one
way (mnist_cnn.backend: quiet, TensorFloat-32 off), and the make test-numerics report."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn import numerics
from mnist_cnn.backend import is_startup_noise
from mnist_cnn.numerics import (
    assert_close,
    assert_gradient_close,
    assert_within,
    max_rel_error,
    round_to_tf32,
    tolerance,
)

from tools import numerics as runner

ROOT = Path(__file__).resolve().parents[1]


def test_tolerance_follows_the_lower_precision():
    f32, f64 = np.ones(3, np.float32), np.ones(3, np.float64)
    assert tolerance(f32) == pytest.approx(1000 * 2.0 ** -23)       # 1.19e-4
    assert tolerance(f64) == pytest.approx(1000 * 2.0 ** -52)       # 2.2e-13
    assert tolerance(f32, f64) == tolerance(f64, f32) == tolerance(f32)
    assert tolerance(1.0, [1, 2]) == tolerance(f64)                 # Python numbers: float64
    assert tolerance(np.float32) == tolerance("float32") == tolerance(f32)   # or dtypes


def test_error_is_relative_to_the_largest_magnitude():
    a = np.array([1000.0, 1e-9])
    assert max_rel_error(a, np.array([1000.0, 0.0])) == pytest.approx(1e-12)
    assert max_rel_error(a * 1e-6, a * 1e-6 * (1 + 1e-5)) == pytest.approx(1e-5, rel=1e-3)
    assert max_rel_error(np.zeros(4), np.zeros(4)) == 0.0
    assert max_rel_error(np.array([np.inf]), np.array([np.inf])) == 0.0
    assert max_rel_error(np.array([1.0, np.nan]), np.array([1.0, 2.0])) != 0.0
    with pytest.raises(AssertionError, match="shapes differ"):
        max_rel_error(np.zeros(3), np.zeros(4))


def test_float32_rounding_passes_with_headroom_and_tf32_rounding_does_not():
    """A 288-term product (a 3x3x32 convolution's) in float32 sits far inside the
    tolerance; with its inputs rounded to TensorFloat-32's 10 mantissa bits it does
    not (here; TF32 is not reliably caught, which is why the backend turns it off)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 288))
    w = rng.standard_normal((288, 16))
    exact = (x @ w).astype(np.float32)
    f32 = x.astype(np.float32) @ w.astype(np.float32)
    assert assert_close(f32, exact) < tolerance(f32) / 100

    tx, tw = round_to_tf32(x), round_to_tf32(w)
    assert tx.dtype == np.float32
    assert max_rel_error(tx, x) <= 2.0 ** -11                    # half a 10-bit unit
    assert np.all(np.abs(tx.view(np.uint32)) & 0x1FFF == 0)      # 13 low bits cleared
    with pytest.raises(AssertionError, match=r"relative error .* > tolerance"):
        assert_close(tx @ tw, exact, "TF32 matmul")


def test_failure_message_names_the_comparison_and_the_worst_element():
    with pytest.raises(AssertionError) as info:
        assert_close(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0]), "demo")
    text = str(info.value)
    assert text.startswith("demo: relative error 0.167 > tolerance")
    assert "index (1,)" in text and "2.0" in text and "2.5" in text


def test_explicit_rtol_and_gradient_checks():
    assert assert_close(1.0, 1.0 + 1e-8, rtol=1e-7) == pytest.approx(1e-8, rel=1e-6)
    with pytest.raises(AssertionError):
        assert_close(1.0, 1.0 + 1e-8)                                # float64 default: too far
    g = np.array([1.0, -2.0, 3.0])
    assert assert_gradient_close(g, g * (1 + 1e-9)) < numerics.GRADIENT_RTOL
    with pytest.raises(AssertionError, match="gradient check failed"):
        assert_gradient_close(g, -g, "flipped sign")


def test_every_check_is_logged_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MNIST_CNN_NUMERICS_LOG", str(log))
    assert_close(np.float32(1), np.float32(1))
    assert_gradient_close([1.0], [1.0], "g")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in rows] == ["equal", "gradient"]
    assert rows[0]["what"].startswith("test_numerics.py:")        # where it was called
    assert rows[0]["error"] == 0 and rows[0]["tolerance"] == pytest.approx(tolerance(np.float32(1)))
    assert rows[1]["what"] == "g"


def test_a_known_difference_is_held_to_its_bound_and_logged_as_one(tmp_path, monkeypatch):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv("MNIST_CNN_NUMERICS_LOG", str(log))
    eta, eps, g = 0.2, 1e-7, np.array([4.0, -0.5])
    step = eta * np.abs(g) / (np.abs(g) + eps)           # Adam's first step, exactly
    err = assert_within(step, [eta, eta], eps / 0.5, "Adam's first step")
    assert 0 < err <= eps / 0.5
    with pytest.raises(AssertionError, match="exceeds the bound"):
        assert_within(step, [eta, eta], eps / 10, "too tight a bound")
    row = json.loads(log.read_text().splitlines()[0])
    assert row == {"what": "Adam's first step", "kind": "bound", "error": err,
                   "tolerance": eps / 0.5}


def test_the_report_asks_headroom_of_rounding_and_only_the_bound_of_a_bound():
    records = [
        {"what": "rounding", "kind": "equal", "error": 5e-5, "tolerance": 1e-4, "variant": "v"},
        {"what": "effect", "kind": "bound", "error": 1.9e-7, "tolerance": 2e-7, "variant": "v"},
        {"what": "broken", "kind": "bound", "error": 3e-7, "tolerance": 2e-7, "variant": "v"},
    ]
    rows = {r["what"]: r for r in runner.summarise(records)}
    assert [rows[w]["ok"] for w in ("rounding", "effect", "broken")] == [False, True, False]
    text = runner.format_table(list(rows.values()))
    assert "under 10x" in text and "(a bound)" in text and "outside its bound" in text


def test_the_report_flags_small_headroom():
    records = [
        {"what": "a", "error": 1e-6, "tolerance": 1e-4, "variant": "v1"},
        {"what": "a", "error": 2e-5, "tolerance": 1e-4, "variant": "v2"},   # worst: 5x
        {"what": "b", "error": 0.0, "tolerance": 1e-4, "variant": "v1"},
    ]
    rows = runner.summarise(records)
    assert [(r["what"], r["variant"], r["ok"]) for r in rows] == [("a", "v2", False),
                                                                  ("b", "v1", True)]
    assert rows[0]["headroom"] == pytest.approx(5)
    text = runner.format_table(rows)
    assert "under 10x" in text and "exact" in text


def test_chapters_with_comparisons_are_found():
    found = runner.comparison_chapters()
    assert all(p.suffix == ".md" and p.parent.name == "book" for p in found)
    assert all("assert_close" in p.read_text() or "assert_gradient_close" in p.read_text()
               for p in found)


# ------------------------------------------------------------------ TensorFlow, one way
def _direct_tf_imports(path: Path, source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        found += [f"{path.name}:{node.lineno} {n}" for n in names
                  if n.split(".")[0] in ("tensorflow", "keras")]
    return found


def test_tensorflow_is_imported_only_through_the_backend():
    """Every module, test, benchmark and chapter gets TensorFlow from
    mnist_cnn.backend, so TF32 is off and the start-up lines are filtered everywhere."""
    import jupytext

    offenders = []
    for folder in ("code", "tests", "app", "benchmarks", "tools"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name != "backend.py":
                offenders += _direct_tf_imports(path, path.read_text())
    for path in (ROOT / "book").glob("*.md"):
        for cell in jupytext.read(path, fmt="md:myst").cells:
            if cell.cell_type == "code":
                src = "\n".join(line for line in cell.source.splitlines()
                                if not line.lstrip().startswith(("%", "!")))
                offenders += _direct_tf_imports(path, src)
    assert offenders == []


def test_backend_turns_tensorfloat32_off_and_prints_nothing():
    code = ("import sys\nfrom mnist_cnn.backend import import_keras, import_tensorflow\n"
            "tf = import_tensorflow(); keras = import_keras()\n"
            "x = tf.nn.conv2d(tf.ones((1, 5, 5, 1)), tf.ones((3, 3, 1, 2)), 1, 'SAME')\n"
            "print(tf.config.experimental.tensor_float_32_execution_enabled(), x.shape)\n"
            "print('python stderr still works', file=sys.stderr)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, check=True, timeout=300)
    assert out.stdout.split() == ["False", "(1,", "5,", "5,", "2)"]
    assert out.stderr.splitlines() == ["python stderr still works"]


def test_startup_noise_is_recognised_and_nothing_else():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796403688.499377    2380 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.",
        "E0000 00:00:1796403696.284588    2380 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
    ]
    assert all(is_startup_noise(line) for line in noise)
    kept = ["Traceback (most recent call last):", "ValueError: bad model file",
            "error: No Keras model at models/x.keras", "I0000 is not a log line"]
    assert not any(is_startup_noise(line) for line in kept)
