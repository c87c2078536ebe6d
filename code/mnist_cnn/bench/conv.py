"""``python -m mnist_cnn bench conv``: the vectorised convolution against the loops
and against ``tf.nn.conv2d``, and against this machine's matrix-multiply speed.

For two layer shapes of the course network (batch 256 by default):

- 28x28x1 -> 32 filters 3x3 (the first layer, on real MNIST digits),
- 13x13x32 -> 64 filters 3x3 (the second layer, valid, on random feature maps),

it prints the seconds per forward pass of ``conv2d_naive`` (timed on a few
images and scaled up to the batch, said so in the output), ``conv2d`` and
``tf.nn.conv2d``; the ratio conv2d / TF; and conv2d's achieved GFLOP/s as a
fraction of ``np.matmul``'s GFLOP/s on a large square float32 matrix measured in
the same run.
"""

from __future__ import annotations

import argparse
import functools
import json

import numpy as np

from mnist_cnn.notebook import best_of

BATCH = 256
NAIVE_IMAGES = 2      # the loops are timed on this many images, then scaled to the batch
REPEATS = 5
MATMUL_SIZE = 2048

LAYERS = (
    # name, (H, W, C_in), (KH, KW, C_out), padding
    ("28x28x1 -> 32 (3x3, valid)", (28, 28, 1), (3, 3, 32), "valid"),
    ("13x13x32 -> 64 (3x3, valid)", (13, 13, 32), (3, 3, 64), "valid"),
)


def matmul_gflops(n: int = MATMUL_SIZE, repeats: int = REPEATS, seed: int = 0) -> float:
    """GFLOP/s of np.matmul on two float32 (n, n) matrices (2 n^3 flops)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def conv_flops(batch, in_shape, out_hw, kshape) -> int:
    """Multiply-adds of a convolution, counted as 2 flops each."""
    kh, kw, c_out = kshape
    return 2 * batch * out_hw[0] * out_hw[1] * kh * kw * in_shape[2] * c_out


def run(batch: int = BATCH, repeats: int = REPEATS, seed: int = 0, cache_dir=None) -> dict:
    from mnist_cnn.backend import import_tensorflow

    tf = import_tensorflow()

    from mnist_cnn.scratch import functional as F

    rng = np.random.default_rng(seed)
    results = {"batch": batch, "naive_images": min(NAIVE_IMAGES, batch),
               "matmul_size": MATMUL_SIZE, "numpy": np.__version__, "layers": []}
    results["matmul_gflops"] = matmul_gflops(MATMUL_SIZE, repeats, seed)
    for name, in_shape, kshape, padding in LAYERS:
        if in_shape[2] == 1:
            from mnist_cnn.data import load_mnist

            (x_train, _), _ = load_mnist(cache_dir, progress=False)
            x = (x_train[:batch, :, :, None] / np.float32(255)).astype(np.float32)
        else:
            x = np.maximum(rng.standard_normal((batch, *in_shape), dtype=np.float32), 0)
        w = (rng.standard_normal((kshape[0], kshape[1], in_shape[2], kshape[2]),
                                 dtype=np.float32) * 0.1)
        b = np.zeros(kshape[2], np.float32)
        out, _ = F.conv2d(x, w, b, 1, padding)
        flops = conv_flops(batch, in_shape, out.shape[1:3], kshape)

        n_naive = results["naive_images"]
        x_few = x[:n_naive]
        tx, tw = tf.constant(x), tf.constant(w)
        tf_pad = padding.upper()

        def run_tf(tx=tx, tw=tw, b=b, tf_pad=tf_pad):
            return (tf.nn.conv2d(tx, tw, 1, tf_pad) + b).numpy()

        fns = {"naive": functools.partial(F.conv2d_naive, x_few, w, b, 1, padding),
               "vec": functools.partial(F.conv2d, x, w, b, 1, padding), "tf": run_tf}
        t_naive = best_of(fns["naive"], 1) * batch / n_naive
        t_vec = best_of(fns["vec"], repeats)
        t_tf = best_of(fns["tf"], repeats)
        ref = tf.nn.conv2d(tx, tw, 1, padding.upper()).numpy() + b
        gflops = flops / t_vec / 1e9
        results["layers"].append({
            "layer": name, "naive_s": t_naive, "vectorised_s": t_vec, "tf_s": t_tf,
            "vectorised_over_tf": t_vec / t_tf, "naive_over_vectorised": t_naive / t_vec,
            "gflop": flops / 1e9, "vectorised_gflops": gflops,
            "fraction_of_matmul": gflops / results["matmul_gflops"],
            "max_abs_diff_vs_tf": float(np.max(np.abs(out - ref))),
        })
    return results


def format_results(r: dict) -> str:
    lines = [f"bench conv: forward pass, batch {r['batch']}, float32, numpy {r['numpy']}",
             f"np.matmul {r['matmul_size']}x{r['matmul_size']} float32: "
             f"{r['matmul_gflops']:.1f} GFLOP/s (this machine, this run)",
             f"{'layer':<28}{'naive*':>10}{'conv2d':>10}{'tf.nn':>10}{'conv2d/tf':>11}"
             f"{'GFLOP/s':>9}{'of matmul':>11}"]
    for row in r["layers"]:
        lines.append(f"{row['layer']:<28}{row['naive_s']:>9.2f}s{row['vectorised_s']:>9.4f}s"
                     f"{row['tf_s']:>9.4f}s{row['vectorised_over_tf']:>10.2f}x"
                     f"{row['vectorised_gflops']:>9.1f}{row['fraction_of_matmul']:>10.0%}")
    lines.append(f"* naive loops timed on {r['naive_images']} image(s) and scaled to "
                 f"{r['batch']} (they take minutes on the whole batch); "
                 f"naive/conv2d = " + ", ".join(f"{row['naive_over_vectorised']:,.0f}x"
                                                for row in r["layers"]))
    lines.append("conv2d vs tf.nn.conv2d max abs difference: " + ", ".join(
        f"{row['max_abs_diff_vs_tf']:.1e}" for row in r["layers"]))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    batch = args.batch_size or (args.limit if args.limit else BATCH)
    repeats = args.repeats or REPEATS
    if batch < 1 or repeats < 1:
        raise ValueError(f"batch size and repeats must be positive, got {batch}, {repeats}")
    results = run(batch, repeats, args.seed, getattr(args, "cache_dir", None))
    print(format_results(results))
    if args.json:
        print(json.dumps(results))
    return 0
