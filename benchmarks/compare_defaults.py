"""Per-frame latency of several (model directory, variant) pairs, interleaved in one process: e.g. a
model's old default against its new one after a re-export.

    python benchmarks/compare_defaults.py LABEL=DIR[:VARIANT] ... [--source synth://?seed=2] [--frames 6]
        [--threads 2] [--out results/demo_default.json]

Each pair is loaded once (load time reported), warmed up on the first frame, then every frame is scored
by every pair in turn with the same z0 (seed = frame index); reported: load seconds, median and min
seconds per frame, and the score difference to the first pair."""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs", nargs="+", help="LABEL=DIR or LABEL=DIR:VARIANT")
    ap.add_argument("--source", default="synth://?seed=2")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.sources import open_source
    frames = []
    with open_source(a.source) as src:
        for fr in src:
            if fr.error is None:
                frames.append((fr.rgb, fr.depth))
            if len(frames) >= a.frames:
                break
    scorers, res = {}, {}
    for p in a.pairs:
        label, spec = p.split("=", 1)
        d, _, variant = spec.partition(":")
        t0 = time.perf_counter()
        scorers[label] = Scorer.load(d, variant=variant or "auto", threads=a.threads)
        res[label] = {"model_dir": d, "variant": scorers[label].mode, "load_s": time.perf_counter() - t0,
                      "times": [], "scores": []}
        scorers[label].score(*frames[0], seed=0)                        # warm-up
    for i, (rgb, depth) in enumerate(frames):
        for label, s in scorers.items():
            t = time.perf_counter()
            r = s.score(rgb, depth, seed=i)
            res[label]["times"].append(time.perf_counter() - t)
            res[label]["scores"].append(r.score)
    first = next(iter(res.values()))
    for label, r in res.items():
        r["median_s"], r["min_s"] = float(np.median(r["times"])), float(np.min(r["times"]))
        r["max_rel_score_diff_vs_first"] = float(np.max(np.abs(np.subtract(r["scores"], first["scores"]))
                                                        / np.abs(first["scores"])))
        print(f"{label:28s} {r['variant']:10s} load {r['load_s']:.2f} s  median {r['median_s']:.3f} s/frame  "
              f"min {r['min_s']:.3f}  score vs first {r['max_rel_score_diff_vs_first']:.1e}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"source": a.source, "threads": a.threads or os.cpu_count(), "load_average": os.getloadavg(),
                       "pairs": res}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
