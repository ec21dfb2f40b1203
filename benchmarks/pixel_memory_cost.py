"""The pixel memory's cost (SearchConfig.score_pixel_power > 0, runtime/pixel_memory.py): one export scored with
its pixel factor ("on": the bounded search, the default since session 34), with the pixel memory's full search
("full": PixelMemory.full_search, the path before session 34) and with it off (score_pixel_power 0: the same
export, the memory not loaded), interleaved in one process on the same real frames; load time, seconds per frame,
the pixel distance's seconds per frame (timings["pixel_s"], median) and its share of the frame, the ratios, the
largest relative score difference on vs full (0: the bounded search is exact), the memory's rows and bound tables
in MB.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixel_memory_cost.py EXPORT_DIR --class cylinder --frames 10 \
        --repeats 3 --out benchmarks/results/pixel_memory_cost_s34.json
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv=None) -> dict:
    from edge_ad.runtime.data_root import default_kinect_root
    from edge_ad.runtime.scorer import Scorer
    from edge_ad.runtime.sources.folder import read_pair
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an export whose configuration has score_pixel_power > 0")
    ap.add_argument("--class", dest="cls", default="cylinder")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    root = default_kinect_root()
    ids = json.loads((root / "splits.json").read_text())[a.cls]["val"][:a.frames]
    frames = [read_pair(root / a.cls, str(i)) for i in ids]
    t0 = time.perf_counter()
    on = Scorer.load(a.model, threads=a.threads)
    load_on = time.perf_counter() - t0
    if not on.config.uses_pixel_memory:
        raise SystemExit(f"{a.model}: its configuration {on.config.name!r} has no pixel memory (score_pixel_power 0)")
    t0 = time.perf_counter()
    off = Scorer.load(a.model, threads=a.threads, config=on.config.replace(score_pixel_power=0.0))
    load_off = time.perf_counter() - t0
    full = Scorer.load(a.model, threads=a.threads)
    full._pixels = full._pixels.full_search()          # the same memory, searched in full
    times = {"on": [], "full": [], "off": []}
    pixel_s, share, scores = ({"on": [], "full": []} for _ in range(3))    # per frame: timings["pixel_s"], of total_s
    for _ in range(a.repeats):                         # interleaved: the box's load moves all alike
        for name, s in (("off", off), ("on", on), ("full", full)):
            t0 = time.perf_counter()
            for i, (rgb, depth) in enumerate(frames):
                r = s.score(rgb, depth, seed=i)
                if name in pixel_s:
                    pixel_s[name].append(r.timings["pixel_s"])
                    share[name].append(r.timings["pixel_s"] / r.timings["total_s"])
                    scores[name].append(r.score)
            times[name].append((time.perf_counter() - t0) / len(frames))
    best = {k: min(v) for k, v in times.items()}
    pix = {k: float(np.median(v)) for k, v in pixel_s.items()}
    rel = float(np.max(np.abs(np.array(scores["on"]) - scores["full"]) / np.abs(scores["full"])))
    out = {"model": str(a.model), "configuration": on.config.name, "class": a.cls, "frames": len(frames),
           "repeats": a.repeats, "threads": a.threads, "shift_copies": (2 * on.config.score_shift_radius + 1) ** 2,
           "pixel_memory_rows": list(on._pixels.shape),
           "pixel_memory_mb": {k: round(b / 1e6, 1) for k, b in on._pixels.nbytes().items()},
           "load_s": {"on": round(load_on, 3), "off": round(load_off, 3)},
           "s_per_frame_best": {k: round(v, 4) for k, v in best.items()},
           "pixel_s_median": {k: round(v, 4) for k, v in pix.items()},
           "pixel_share_of_frame_median": {k: round(float(np.median(v)), 3) for k, v in share.items()},
           "ratio_on_vs_off": round(best["on"] / best["off"], 3),
           "ratio_full_vs_on": round(best["full"] / best["on"], 3),
           "pixel_ratio_full_vs_on": round(pix["full"] / pix["on"], 3),
           "max_rel_score_diff_on_vs_full": rel, "load_average": list(os.getloadavg())}
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "x") as f:                    # results are never replaced
            f.write(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
