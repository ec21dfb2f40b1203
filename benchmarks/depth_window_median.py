"""The depth fill step's window medians (runtime/preprocess._with_window_medians, shared by fill_depth_holes and
close_depth_notches) against the nanmedian it replaced, interleaved in one process on the same frames.

Not a timed test: seconds per call (best of --repeats, each variant in turn) and their ratio, and whether both
give the same bytes. Frames: a camera-size (--height x --width) uint8 depth with a reading at every pixel and a share
(--dropout) of them lost at random (seeded): half, the case review 19 #5 timed at 0.77 s for K = 5, and 2 %. The
pixels filled: each step's own mask (runtime/preprocess fill_mask, close_mask).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/depth_window_median.py --out benchmarks/results/depth_window_median.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def nanmedian_reference(d8: np.ndarray, fill: np.ndarray, k: int) -> np.ndarray:
    """The fill step as it was before (fadba3b): nanmedian of the window's readings, the missing ones NaN."""
    from numpy.lib.stride_tricks import sliding_window_view
    ys, xs = np.nonzero(fill)
    out = d8.copy()
    if len(ys):
        windows = sliding_window_view(np.pad(d8, k // 2), (k, k))
        vals = windows[ys, xs].reshape(len(ys), k * k).astype(np.float32)
        out[ys, xs] = np.rint(np.nanmedian(np.where(vals > 0, vals, np.nan), axis=1)).astype(np.uint8)
    return out


def frame(h: int, w: int, dropout: float, seed: int = 0) -> np.ndarray:
    """(h, w) uint8 depth with a reading at every pixel (a camera's view of a room: 60..220 along x plus
    noise), then ``dropout`` of the readings lost at random."""
    rng = np.random.default_rng(seed)
    d = np.linspace(60, 220, w).astype(np.uint8)[None, :] + rng.integers(0, 8, (h, w), dtype=np.uint8)
    d[rng.random((h, w)) < dropout] = 0
    return d


def main(argv=None) -> dict:
    from edge_ad.runtime import preprocess as pp
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--dropout", type=float, nargs="+", default=[0.5, 0.02])
    ap.add_argument("--k", type=int, nargs="+", default=[3, 5])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    rows = []
    for drop in a.dropout:
        d8 = frame(a.height, a.width, drop)
        for k in a.k:
            for what, mask in (("fill_depth_holes", pp.fill_mask), ("close_depth_notches", pp.close_mask)):
                fill = mask(d8, k)                             # the pixels the step itself fills
                times = {"nanmedian (before)": [], "network (now)": []}
                outs = {}
                for _ in range(a.repeats):                     # interleaved: the box's load moves both alike
                    for name, fn in (("nanmedian (before)", nanmedian_reference), ("network (now)", pp._with_window_medians)):
                        t0 = time.perf_counter()
                        outs[name] = fn(d8, fill, k)
                        times[name].append(time.perf_counter() - t0)
                best = {n: min(v) for n, v in times.items()}
                same = bool(np.array_equal(outs["nanmedian (before)"], outs["network (now)"]))
                rows.append({"step": what, "dropout": drop, "k": k, "pixels_filled": int(fill.sum()),
                             "seconds": {n: round(v, 4) for n, v in best.items()},
                             "speedup": round(best["nanmedian (before)"] / best["network (now)"], 1), "identical": same})
                print(f"{what:20s} dropout {drop:4.2f} K {k}: {int(fill.sum()):7d} px filled, nanmedian "
                      f"{best['nanmedian (before)']:.3f} s, network {best['network (now)']:.4f} s "
                      f"({rows[-1]['speedup']}x), identical {same}")
    out = {"frame": [a.height, a.width], "repeats": a.repeats, "rows": rows}
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
