"""SIGTERM (what a hosting platform sends to stop a job) is handled like Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
from mnist_cnn._io import sha256_file
from mnist_cnn.scratch import Sequential


def test_sigterm_mid_training_keeps_the_previous_model(tmp_path):
    out = tmp_path / "m.npz"
    # A previous model and card that must survive the interrupted run untouched.
    Sequential.load(_committed_numpy_model()).save(out)
    (tmp_path / "m.json").write_text('{"previous": true}\n')
    before = {p.name: sha256_file(p) for p in tmp_path.iterdir()}

    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_cnn", "train-numpy", "--epochs", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    # Wait until training has really started (the progress bar is on stderr).
    seen = ""
    while "train epoch" not in seen:
        chunk = proc.stderr.read(64)
        assert chunk, f"training ended before it started: {seen[-500:]}"
        seen += chunk
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)

    assert proc.returncode == 130
    assert "Interrupted; no partial files were written." in err
    assert "Traceback" not in err
    assert {p.name: sha256_file(p) for p in tmp_path.iterdir()} == before  # no temp files


def _committed_numpy_model():
    from mnist_cnn import paths

    path = paths.default_numpy_model()
    assert path.is_file()
    net = Sequential.load(path)
    assert np.isfinite(net.predict_proba(np.zeros((1, 28, 28, 1), np.float32))).all()
    return path
