"""Small file helpers shared by the data pipeline, the trainers and the model cards.

Everything the project writes to disk goes through :func:`atomic_write`: the bytes
land in a temporary file in the destination folder and are renamed over the
target only when complete, so an interrupted run (Ctrl-C, a crash, a full disk)
never leaves a half-written file that looks valid.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_CHUNK = 1 << 20


def _umask_mode() -> int:
    """The mode a normally created file gets (0o666 minus the umask): mkstemp
    makes 0o600 files, which would leave models unreadable to other users."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; rename it over ``path`` on success.

    On any exception (KeyboardInterrupt included) the temp file is removed and
    ``path`` is left exactly as it was.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary *path* beside ``path`` for libraries that insist on
    writing files themselves (``model.save``, ``np.savez``); rename on success.

    ``suffix`` defaults to the target's suffix, since Keras and NumPy choose the
    format from the file extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".tmp" + (suffix if suffix is not None else path.suffix),
        dir=path.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, _umask_mode())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_path)
        raise


@contextlib.contextmanager
def atomic_pair(path: str | os.PathLike, other: str | os.PathLike) -> Iterator[tuple[Path, Path]]:
    """Temporary paths beside ``path`` and ``other`` (a model and its card),
    renamed over them back to back, ``path`` first, only when the block succeeds.

    Everything slow (saving, hashing, writing the card) happens on the temp
    files, so an error or Ctrl-C inside the block leaves both previous files as
    they were, and no model is put in place without its card. (Two files cannot
    be replaced in one step; the card records the model's SHA-256, so the
    microseconds between the two renames are still detectable.)
    """
    with atomic_path(other) as tmp_other, atomic_path(path) as tmp:
        yield tmp, tmp_other


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as pretty JSON, atomically."""
    with atomic_write(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=False)
        fh.write("\n")


def library_versions(*extra: str) -> dict[str, str]:
    """Versions of Python, NumPy and the ``extra`` libraries (e.g. "tensorflow",
    "keras"), for model cards. Extras are imported, so name only what you use."""
    import numpy

    versions = {"python": platform.python_version(), "numpy": numpy.__version__}
    for name in extra:
        with contextlib.suppress(Exception):
            module = __import__(name)
            versions[name] = module.__version__
    return versions
