"""Per-frame preprocessing cost at a camera's resolution (audit 29 #10): ``Scorer.score`` on a kinect-rgbd val
frame as stored (64 x 64, the size every other per-frame cost in the docs was measured at) and the same frame
brought to 640 x 480 and 1280 x 720 (colour bilinear + noise sigma 3, depth nearest as uint16 millimetres +
noise sigma 2: audit 29's construction), interleaved in one process, 1 thread.

Per model and size: the medians of ``timings["preprocess_s"]`` (crop + resize, depth fill / close, the
sensor-fault checks, normalisation) and ``timings["search_s"]`` (encoder, search, score factors), and the ratios
that hold on a loaded machine: preprocessing / search of the same frames, and each size's preprocessing / the
64 x 64 frame's. "before session 30" (``before_session30``: the frame converted twice for a depth-repairing
model, the background masked by np.where, the depth repair's window counts by an integral image) is timed in the
same rounds against today's ``scorer.frame_input`` (timed the same way); their ratio is session 30's gain, and
their outputs are compared byte for byte.

    .venv/bin/edge-ad export models/kinect-rgbd/sphere.pt --out /tmp/sphere     # likewise rectangle, cylinder
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/camera_preprocess_cost.py /tmp/rectangle /tmp/sphere \
        /tmp/cylinder --out benchmarks/results/camera_preprocess_cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime import preprocess
from edge_ad.runtime.preprocess import (aligned_uint8, close_depth_notches, depth_to_8bit, fill_depth_holes,
                                        move_uint8, normalize_uint8)
from edge_ad.runtime.scorer import Scorer, check_input, frame_input
from edge_ad.runtime.sensor_faults import raise_frame_faults
from edge_ad.runtime.sources.folder import read_pair

SIZES = {"64x64 (as stored)": None, "640x480": (640, 480), "1280x720": (1280, 720)}


def camera_frame(rgb: np.ndarray, d8: np.ndarray, size, rng: np.random.Generator) -> tuple:
    """A 64 x 64 kinect frame (rgb (64, 64, 3) uint8, d8 (64, 64) uint8) brought to ``size`` (W, H): (rgb (H, W, 3)
    uint8, depth (H, W) uint16 mm, 0 = no reading); None: the frame as stored."""
    if size is None:
        return rgb, d8
    big = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)).astype(np.float64)
    big = np.clip(big + rng.normal(0, 3, big.shape), 0, 255).astype(np.uint8)
    d = np.asarray(Image.fromarray(d8).resize(size, Image.NEAREST)).astype(np.float64)
    mm = np.where(d > 0, d / 255 * 700 + rng.normal(0, 2, d.shape), 0).clip(0, 65535).astype(np.uint16)
    return big, mm


def centre_resize(img: np.ndarray, size: int, resample) -> np.ndarray:
    """The centre square of img (H, W[, C]) resized to (size, size[, C]) (preprocess's crop and resize)."""
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = np.ascontiguousarray(img[top:top + s, left:left + s])
    return img if s == size else np.asarray(Image.fromarray(img).resize((size, size), resample))


def integral_window_counts(mask: np.ndarray, k: int) -> np.ndarray:
    """preprocess._window_counts before session 30: an int32 integral image, (H, W) bool -> (H - k + 1, W - k + 1)."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
    s[1:, 1:] = mask.cumsum(0, dtype=np.int32).cumsum(1, dtype=np.int32)
    return s[k:, k:] - s[:-k, k:] - s[k:, :-k] + s[:-k, :-k]


def before_session30(rgb, depth, spec) -> np.ndarray:
    """Scorer.score's preprocessing as it was before session 30 (scorer.frame_input of 2bd60b9), kept as this
    benchmark's reference: the background masked by np.where + astype, a depth-repairing model's frame converted
    twice (frame_to_uint8, then again without depth_fill / depth_close inside the fault checks), the fill's and
    close's window counts by an integral image (swapped into runtime.preprocess for the call). (4, R, R) float32,
    the bytes of today's frame_input."""
    today = preprocess._window_counts
    preprocess._window_counts = integral_window_counts
    try:
        return _before_session30(rgb, depth, spec)
    finally:
        preprocess._window_counts = today


def _before_session30(rgb, depth, spec) -> np.ndarray:
    def convert(spec):                                 # frame_to_uint8 of then: (R, R, 4) uint8
        d8 = depth_to_8bit(depth, spec)
        if spec.depth_fill:
            d8 = fill_depth_holes(d8, spec.depth_fill)
        if spec.depth_close:
            d8 = close_depth_notches(d8, spec.depth_close)
        rgb8 = np.where((d8 > 0)[:, :, None], rgb, 0).astype(np.uint8) if spec.mask_rgb_background else rgb
        out = np.concatenate([centre_resize(rgb8, spec.resolution, Image.BOX),
                              centre_resize(d8, spec.resolution, Image.NEAREST)[:, :, None]], axis=2)
        return aligned_uint8(move_uint8(out, *spec.scene_shift), spec)
    u8 = convert(spec)
    captured = convert(replace(spec, depth_fill=0, depth_close=0)) if spec.depth_fill or spec.depth_close else u8
    raise_frame_faults(rgb, depth, spec, captured=captured)
    return check_input(normalize_uint8(u8, spec), (4,) + u8.shape[:2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", nargs="+", help="exported model directories (edge-ad export)")
    ap.add_argument("--frames", type=int, default=3, help="val frames per class (rectangle, cylinder, sphere)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--out")
    a = ap.parse_args()
    root = Path(a.data)
    splits = json.loads((root / "splits.json").read_text())
    raw = [read_pair(root / c, str(f)) for c in ("rectangle", "cylinder", "sphere") for f in splits[c]["val"][:a.frames]]
    rng = np.random.default_rng(0)
    frames = {name: [camera_frame(rgb, d, size, rng) for rgb, d in raw] for name, size in SIZES.items()}
    scorers = {str(m): Scorer.load(m, threads=1) for m in a.model_dirs}
    times = {m: {name: {"preprocess": [], "search": [], "now": [], "before": []} for name in SIZES} for m in scorers}
    load = [os.getloadavg()[0]]
    same = True                                         # today's model input == before_session30's, every frame
    for _ in range(a.rounds):                           # every model, size and frame once per round: interleaved
        for m, s in scorers.items():
            for name in SIZES:
                for i, (rgb, depth) in enumerate(frames[name]):
                    r = s.score(rgb, depth, seed=0)
                    times[m][name]["preprocess"].append(r.timings["preprocess_s"])
                    times[m][name]["search"].append(r.timings["search_s"])
                    got = {}
                    pair = [("now", frame_input), ("before", before_session30)]
                    for what, prep in pair[::-1] if i % 2 else pair:     # each first after the search half the time
                        t0 = time.perf_counter()
                        got[what] = prep(rgb, depth, s.preprocess)
                        times[m][name][what].append(time.perf_counter() - t0)
                    same &= bool(np.array_equal(got["now"], got["before"]))
        load.append(os.getloadavg()[0])
    out = {"rounds": a.rounds, "frames_per_size": len(raw), "threads": 1, "load_average_1min": load,
           "model_input_identical_to_before_session30": same, "models": {}}
    for m, s in scorers.items():
        spec = s.preprocess
        rows = {}
        base = float(np.median(times[m]["64x64 (as stored)"]["preprocess"]))
        for name in SIZES:
            t = {k: float(np.median(v)) for k, v in times[m][name].items()}
            rows[name] = {"preprocess_ms": 1000 * t["preprocess"], "search_ms": 1000 * t["search"],
                          "preprocess_vs_search": t["preprocess"] / t["search"],
                          "preprocess_vs_64x64": t["preprocess"] / base,
                          "frame_input_ms": 1000 * t["now"], "before_session30_ms": 1000 * t["before"],
                          "before_session30_vs_now": t["before"] / t["now"]}
        out["models"][m] = {"configuration": s.config.name, "depth_fill": spec.depth_fill,
                            "depth_close": spec.depth_close, "align": spec.align,
                            "shift_radius": s.config.score_shift_radius, "sizes": rows}
        print(f"{m} (depth_fill {spec.depth_fill}, depth_close {spec.depth_close}, align {spec.align}, "
              f"shift-min R {s.config.score_shift_radius}):")
        for name, r in rows.items():
            print(f"  {name:18s} preprocess {r['preprocess_ms']:7.1f} ms ({r['preprocess_vs_64x64']:5.1f}x the 64x64 "
                  f"frame's), search {r['search_ms']:6.1f} ms, preprocess/search {r['preprocess_vs_search']:5.2f}; "
                  f"before session 30 {r['before_session30_vs_now']:.2f}x today's")
    print(f"model input identical to before session 30's on every frame: {same}; "
          f"load average (1 min) during the run: {min(load):.1f}-{max(load):.1f}")
    if a.out:
        Path(a.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
