"""The speed layer's shared memory stays mapped while arrays view it.

NumPy arrays made on a ``SharedMemory`` buffer hold no buffer export, so closing
the block unmaps memory they still point into; reading them afterwards crashes the
process. Each scenario runs in a child process, so a crash fails the test instead
of ending the test run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SETUP = """
import gc
import numpy as np
from mnist_cnn.scratch.fast.parallel import _Segment, _offsets

specs = [((3, 4), np.dtype(np.float32)), ((5,), np.dtype(np.int64))]
offsets, nbytes = _offsets(specs)
seg = _Segment(create=True, size=nbytes)
"""


def _run(body: str) -> subprocess.CompletedProcess:
    code = textwrap.dedent(SETUP) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_arrays_outlive_the_close_of_their_block():
    done = _run("""
        a, b = seg.arrays(specs, offsets)
        a[:] = 1.5
        b[:] = 7
        part = a[1:]                      # a view of a view
        seg.close()
        seg.unlink()
        del seg, a
        gc.collect()
        part += 1.0                       # write and read after the close
        print(float(part.sum()), int(b.sum()))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20.0", "35"]
    assert done.stderr == ""              # no "Exception ignored" from a late close


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux's /proc")
def test_a_block_closed_under_its_arrays_is_freed_with_the_last_of_them():
    done = _run("""
        import os

        def descriptors(name):            # open file descriptors on the block
            fds = "/proc/self/fd"
            return sum(name.lstrip("/") in os.readlink(f"{fds}/{fd}")
                       for fd in os.listdir(fds) if os.path.exists(f"{fds}/{fd}"))

        def mapped(name):
            with open("/proc/self/maps") as maps:
                return name.lstrip("/") in maps.read()

        name = seg.name
        a, b = seg.arrays(specs, offsets)
        before = descriptors(name)        # the block's, and the mapping's own copy
        seg.close()                       # arrays alive: the mapping stays, but the
        seg.unlink()                      # block's own descriptor is closed now
        print(before, descriptors(name), mapped(name))
        try:
            seg.arrays(specs, offsets)
        except ValueError as exc:
            print("closed" in str(exc))
        del a, b
        gc.collect()                      # the last array gone: nothing of it is left
        print(descriptors(name), mapped(name))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", "True", "True", "0", "False"]
    assert done.stderr == ""


def test_a_block_without_arrays_closes_at_once():
    done = _run("""
        a, _ = seg.arrays(specs, offsets)
        a[:] = 2.0
        del a, _
        gc.collect()
        seg.close()
        print(seg.buf is None)
        seg.close()                       # a second close does nothing
        seg.unlink()
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
    assert done.stderr == ""


def test_two_blocks_keep_their_own_numbers():
    done = _run("""
        other = _Segment(create=True, size=nbytes)
        a, _ = seg.arrays(specs, offsets)
        c, _ = other.arrays(specs, offsets)
        a[:], c[:] = 3.0, 4.0
        for s in (seg, other):
            s.close()
            s.unlink()
        print(float(a.sum()), float(c.sum()))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["36.0", "48.0"]
