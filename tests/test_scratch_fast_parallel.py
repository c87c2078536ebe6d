"""Shards in worker processes (mnist_cnn.scratch.fast.parallel): the same numbers as
threads, bit for bit, and a training step that survives a lost worker or an
interrupt."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from mnist_cnn.scratch.fast import FastEngine, FusedPath, parallel
from mnist_cnn.scratch.fast.path import dropout_seeds
from mnist_cnn.scratch.optim import Adam
from mnist_cnn.scratch.train import fit
from mnist_cnn.shapes import NUM_CLASSES

from tests._helpers_scratch import small_cnn

ROOT = Path(__file__).resolve().parents[1]


# Dropout on: its streams, one per shard, must advance alike in threads and processes.
_net = functools.partial(small_cnn, dropout=0.3)


def _data(n=30, seed=1, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return rng.random((n, 14, 14, 1)).astype(dtype), rng.integers(0, NUM_CLASSES, n)


def _step(net, x, y, shards=1, workers=None, processes=False):
    engine = FastEngine(net, shards, workers, processes)
    loss, logits = engine.loss_and_backward(x, y, training=True)
    return loss, logits, [g.copy() for g in net.gradients()]


def _assert_same(a, b):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    assert a[1].dtype == b[1].dtype
    for ga, gb in zip(a[2], b[2], strict=True):
        assert ga.dtype == gb.dtype == a[1].dtype      # float32 networks stay float32
        np.testing.assert_array_equal(ga, gb)


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


@pytest.mark.parametrize("shards,workers", [(2, 2), (3, 2), (3, 3), (5, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_processes_give_the_numbers_of_threads(shards, workers, dtype):
    x, y = _data(dtype=dtype)
    a, b = _net(), _net()
    if dtype == np.float64:
        a.astype(dtype), b.astype(dtype)
    for _ in range(3):      # dropout streams advance identically too
        _assert_same(_step(a, x, y, shards=shards, workers=workers),
                     _step(b, x, y, shards=shards, workers=workers, processes=True))


def test_workers_see_the_current_weights():
    """The parent's weights change between steps (an optimiser step); the
    worker computes with the new ones."""
    x, y = _data()
    a, b = _net(), _net()
    opt_a, opt_b = Adam(1e-2), Adam(1e-2)
    for _ in range(3):
        _assert_same(_step(a, x, y, shards=2), _step(b, x, y, shards=2, processes=True))
        opt_a.step(a.parameters(), a.gradients())
        opt_b.step(b.parameters(), b.gradients())
    np.testing.assert_array_equal(a.parameters()[0], b.parameters()[0])


def test_fit_on_processes_equals_fit_on_threads():
    x, y = _data(64)
    a, b = _net(), _net()
    ha = fit(a, x, y, epochs=2, batch_size=16, seed=3, progress=False,
             engine=FastEngine(a, processes=False))
    hb = fit(b, x, y, epochs=2, batch_size=16, seed=3, progress=False,
             engine=FastEngine(b, processes=True))
    assert ha["loss"] == hb["loss"]
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa, pb)


def _live_workers():
    return [w for pool in parallel._WORKERS.values() for w in pool if w.proc.poll() is None]


def test_a_killed_worker_is_replaced_and_the_step_completed_on_threads():
    x, y = _data()
    net, ref = _net(), _net()
    _assert_same(_step(ref, x, y, shards=2), _step(net, x, y, shards=2, processes=True))
    victims = _live_workers()
    assert victims
    for w in victims:
        w.proc.kill()
        w.proc.wait()
    with pytest.warns(RuntimeWarning, match="worker process"):
        got = _step(net, x, y, shards=2, processes=True)
    _assert_same(_step(ref, x, y, shards=2), got)
    _assert_same(_step(ref, x, y, shards=2), _step(net, x, y, shards=2, processes=True))
    assert _live_workers() and not set(victims) & set(_live_workers())


def test_an_error_in_a_worker_is_raised_with_its_traceback():
    x, y = _data(8)
    net = _net()
    y = y.copy()
    y[-1] = NUM_CLASSES             # out of range, in the second shard only
    with pytest.raises(RuntimeError, match="worker process failed") as info:
        FastEngine(net, shards=2, processes=True).loss_and_backward(x, y)
    assert "Traceback" in str(info.value)
    y[-1] = 3
    ref = _net()
    dropout_seeds(ref), dropout_seeds(ref)      # drawn by the failed step's two shards
    _assert_same(_step(ref, x, y, shards=2), _step(net, x, y, shards=2, processes=True))


def test_an_interrupted_step_leaves_no_busy_worker_behind(monkeypatch):
    """Ctrl-C while a worker computes: the worker is stopped (its late answer
    must not be read as the next step's) and the next step is right."""
    x, y = _data()
    net, ref = _net(), _net()
    _step(net, x, y, shards=2, processes=True)
    _step(ref, x, y, shards=2)
    before = _live_workers()
    real = FusedPath.loss_and_backward

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    # the parent's own shard is interrupted while the worker computes the other
    monkeypatch.setattr(FusedPath, "loss_and_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        FastEngine(net, shards=2, processes=True).loss_and_backward(x, y)
    monkeypatch.setattr(FusedPath, "loss_and_backward", real)
    assert not set(before) & set(_live_workers())
    dropout_seeds(ref), dropout_seeds(ref)      # drawn by the interrupted step
    _assert_same(_step(ref, x, y, shards=2), _step(net, x, y, shards=2, processes=True))


def test_shutdown_stops_workers_and_frees_shared_memory():
    x, y = _data()
    _step(_net(), x, y, shards=2, processes=True)
    names = [s.name.lstrip("/") for pool in parallel._WORKERS.values() for w in pool
             for s in w.shms]
    procs = [w.proc for w in _live_workers()]
    assert names and procs
    parallel.shutdown()
    assert all(p.poll() is not None for p in procs)
    if os.path.isdir("/dev/shm"):
        assert not [n for n in names if os.path.exists(f"/dev/shm/{n}")]


def test_a_script_without_a_main_guard_runs_once(tmp_path):
    """Workers never re-run the user's script (multiprocessing's spawn would)."""
    script = tmp_path / "train_me.py"
    script.write_text(textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import numpy as np
        from mnist_cnn.scratch.fast import FastEngine
        from mnist_cnn.scratch.train import build_model, fit
        print("script body ran")
        rng = np.random.default_rng(0)
        x, y = rng.random((40, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 40)
        net = build_model(0)
        h = fit(net, x, y, epochs=1, batch_size=20, progress=False, engine=FastEngine(net))
        print("loss", h["loss"][0])
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "code")}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("script body ran") == 1
    assert "loss" in out.stdout and "Warning" not in out.stderr
