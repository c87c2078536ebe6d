"""``make test-numerics``: the course's comparisons under other machines' arithmetic.

A reader's laptop (Intel, AMD, Apple silicon), Binder or Colab computes the same
float32 sums as this machine with other kernels, in another order. Two switches
show that arithmetic here:

- ``OPENBLAS_CORETYPE`` makes NumPy's OpenBLAS use another CPU generation's
  kernels (Prescott runs the oldest SSE3 code, Haswell the AVX2 code);
- ``TF_ENABLE_ONEDNN_OPTS`` switches TensorFlow between its oneDNN kernels and
  its own Eigen kernels.

For each variant this runs the tests marked ``numerics`` and, unless
``--no-chapters``, executes every chapter that checks a comparison, with
``MNIST_CNN_NUMERICS_LOG`` set so that each :func:`mnist_cnn.numerics.assert_close`
(and gradient check) records its error. It then prints, per comparison, the worst
error seen under any variant against its tolerance, and fails if a run failed or a
comparison of two computations of one value keeps less than 10x headroom (a known
difference checked with :func:`mnist_cnn.numerics.assert_within` has to stay within
its bound, with no headroom asked: the error is the effect itself).

    python tools/numerics.py                   # everything (make test-numerics)
    python tools/numerics.py --no-chapters     # the tests only (a few minutes)

The tests run one file per process, one after another (as each chapter runs in a
kernel of its own). All of them in one process died in the garbage collector (a
corrupted dict) after about 150 tests, depending on the process's allocation
history (with ``-q``, not with ``-v``); each file alone passes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HEADROOM = 10.0

# This machine's own kernels, then three other OpenBLAS generations, with TensorFlow's
# oneDNN kernels off, on and off (on is TensorFlow's default on x86 Linux).
VARIANTS = {
    "this machine's kernels": {},
    "OpenBLAS Prescott, TF oneDNN off": {"OPENBLAS_CORETYPE": "Prescott",
                                         "TF_ENABLE_ONEDNN_OPTS": "0"},
    "OpenBLAS Nehalem, TF oneDNN on": {"OPENBLAS_CORETYPE": "Nehalem",
                                       "TF_ENABLE_ONEDNN_OPTS": "1"},
    "OpenBLAS Sandybridge, TF oneDNN off": {"OPENBLAS_CORETYPE": "Sandybridge",
                                            "TF_ENABLE_ONEDNN_OPTS": "0"},
}


def comparison_chapters() -> list[Path]:
    """The chapters that check a comparison with mnist_cnn.numerics."""
    return sorted(p for p in BOOK.glob("*.md")
                  if "assert_close" in p.read_text() or "assert_gradient_close" in p.read_text())


def blas_kernel(env: dict) -> str:
    """The OpenBLAS kernel NumPy loads under ``env`` (as threadpoolctl reports it)."""
    code = ("import numpy, threadpoolctl; print(','.join(i.get('architecture') or '?' "
            "for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "unknown"


def execute_chapter(path: Path) -> None:
    """Execute one chapter as a notebook, in book/ as the build does (raises on error)."""
    import jupytext
    from nbclient import NotebookClient

    nb = jupytext.read(path)
    NotebookClient(nb, timeout=1800, kernel_name="python3",
                   resources={"metadata": {"path": str(BOOK)}}).execute()


PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "numerics"]


def numerics_test_files(env: dict) -> list[str]:
    """The test files that hold tests marked ``numerics``, in collection order."""
    out = subprocess.run([*PYTEST, "--collect-only"], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, check=False)
    files = []
    for line in out.stdout.splitlines():
        name = line.split("::")[0]
        if "::" in line and name not in files:
            files.append(name)
    if not files:
        raise SystemExit(f"no numerics tests collected:\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
    return files


def _run(cmd: list[str], env: dict, log: Path) -> tuple[bool, str]:
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **env,
                                             "MNIST_CNN_NUMERICS_LOG": str(log)},
                         capture_output=True, text=True, check=False)
    tail = (out.stdout + out.stderr).strip().splitlines()[-15:]
    return out.returncode == 0, "\n".join(tail)


def read_log(log: Path, source: str, variant: str) -> list[dict]:
    if not log.is_file():
        return []
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [{**r, "what": f"{source}: {r['what']}", "variant": variant} for r in rows]


def summarise(records: list[dict], headroom: float = HEADROOM) -> list[dict]:
    """One row per comparison: the worst error under any variant, its tolerance, the
    headroom (tolerance / worst error) and whether it passes."""
    worst: dict[str, dict] = {}
    for r in records:
        w = worst.get(r["what"])
        if w is None or r["error"] / r["tolerance"] > w["error"] / w["tolerance"]:
            worst[r["what"]] = r
    rows = []
    for what, r in worst.items():
        room = r["tolerance"] / r["error"] if r["error"] > 0 else float("inf")
        bound = r.get("kind") == "bound"             # a known difference: within it is ok
        rows.append({"what": what, "error": r["error"], "tolerance": r["tolerance"],
                     "headroom": room, "variant": r["variant"], "bound": bound,
                     "ok": room >= (1.0 if bound else headroom)})
    return sorted(rows, key=lambda row: row["headroom"])


def format_table(rows: list[dict]) -> str:
    lines = [f"{'worst error':>11}  {'tolerance':>9}  {'headroom':>9}  comparison (worst under)"]
    for r in rows:
        room = "exact" if r["headroom"] == float("inf") else f"{r['headroom']:.0f}x"
        if r["bound"]:
            flag = "   (a bound)" if r["ok"] else "   <-- outside its bound"
        else:
            flag = "" if r["ok"] else "   <-- under 10x"
        lines.append(f"{r['error']:11.2e}  {r['tolerance']:9.1e}  {room:>9}  "
                     f"{r['what']} ({r['variant']}){flag}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-chapters", action="store_true", help="run the tests only")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS),
                        help="which variants (default: all)")
    parser.add_argument("--execute", type=Path, help=argparse.SUPPRESS)   # worker mode
    args = parser.parse_args(argv)
    if args.execute:
        execute_chapter(args.execute.resolve())
        return 0

    chapters = [] if args.no_chapters else comparison_chapters()
    records, failures = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for v, variant in enumerate(args.variants):
            env = VARIANTS[variant]
            print(f"[{variant}] NumPy's OpenBLAS kernel: {blas_kernel(env)}", flush=True)
            # (label, source of the comparisons' names, command): one process per test file
            jobs = [(Path(f).stem, "tests", [*PYTEST, "-x", f]) for f in numerics_test_files(env)]
            jobs += [(p.stem, p.stem, [sys.executable, __file__, "--execute", str(p)])
                     for p in chapters]
            for j, (label, source, cmd) in enumerate(jobs):
                log = Path(tmp) / f"{v}-{j}.jsonl"
                t0 = time.perf_counter()
                ok, tail = _run(cmd, env, log)
                got = read_log(log, source, variant)
                print(f"  {label:30s} {'ok  ' if ok else 'FAIL'} {len(got):4d} comparisons "
                      f"{time.perf_counter() - t0:6.0f} s", flush=True)
                if not ok:
                    failures.append(f"{label} under {variant}:\n{tail}")
                records += got
    rows = summarise(records)
    print()
    print(format_table(rows))
    weak = [r for r in rows if not r["ok"]]
    print(f"\n{len(rows)} comparisons under {len(args.variants)} variants "
          f"({len(records)} checks); {len(weak)} under {HEADROOM:.0f}x headroom or outside "
          f"their bound; "
          f"{len(failures)} failed runs")
    for f in failures:
        print(f"\nFAILED: {f}")
    return 1 if weak or failures or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
