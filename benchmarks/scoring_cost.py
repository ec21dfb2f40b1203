"""Per-frame cost of a shipped model's scoring configuration (issue 4), interleaved in one process on
kinect-rgbd val frames, 1 thread: the exported runtime with the model's configuration and with the
latent memory off, the same configuration in PyTorch, and the algorithm's reference configuration in
PyTorch (a few frames: it is slow).

    .venv/bin/edge-ad export models/kinect-rgbd/rectangle.pt --out /tmp/rect
    .venv/bin/python benchmarks/scoring_cost.py models/kinect-rgbd/rectangle.pt /tmp/rect \
        --out benchmarks/results/scoring_cost_rectangle.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from edge_ad.models.checkpoint import load_generator
from edge_ad.models.search import (checkpoint_bank_augment, checkpoint_encoder, checkpoint_latent_bank,
                                   checkpoint_search_config, search, search_min_shift)
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.preprocess import preprocess
from edge_ad.runtime.scorer import Scorer
from edge_ad.runtime.sources.folder import read_pair

DATA = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("model_dir", help="the checkpoint exported with edge-ad export")
    ap.add_argument("--per-class", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference-frames", type=int, default=5)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(a.data)
    splits = json.loads((root / "splits.json").read_text())
    frames = [read_pair(root / c, str(f)) for c in ("rectangle", "cylinder", "sphere")
              for f in splits[c]["val"][:a.per_class]]
    cfg = checkpoint_search_config(a.checkpoint)
    G, E, bank = load_generator(a.checkpoint), checkpoint_encoder(a.checkpoint), checkpoint_latent_bank(a.checkpoint)
    bank_rows = checkpoint_bank_augment(a.checkpoint)      # the bank's layout (bank_trusted_augment names it)
    runtime = Scorer.load(a.model_dir, threads=1)
    runtime_no_mem = Scorer.load(a.model_dir, threads=1, config=cfg.replace(score_latent_power=0.0))

    def torch_cfg(rgb, d):   # the PyTorch reference of the model's configuration (shift-min included)
        search_min_shift(G, preprocess(rgb, d, G.preprocess), cfg, seed=0, encoder=E, latent_bank=bank,
                         bank_rows_per_frame=bank_rows)

    variants = {"runtime (model's configuration)": lambda rgb, d: runtime.score(rgb, d),
                "runtime, latent memory off": lambda rgb, d: runtime_no_mem.score(rgb, d),
                "pytorch (model's configuration)": torch_cfg}
    times = {k: [] for k in list(variants) + ["pytorch reference configuration"]}
    for rep in range(a.repeats):
        for i, (rgb, d) in enumerate(frames):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn(rgb, d)
                times[name].append(time.perf_counter() - t)
            if rep == 0 and i % max(1, len(frames) // a.reference_frames) == 0:
                t = time.perf_counter()
                search(G, preprocess(rgb, d), SearchConfig(), seed=i)
                times["pytorch reference configuration"].append(time.perf_counter() - t)
    base = float(np.median(times["runtime (model's configuration)"]))
    rows = {k: {"median_ms": 1000 * float(np.median(v)), "p90_ms": 1000 * float(np.percentile(v, 90)),
                "n": len(v), "relative": float(np.median(v)) / base} for k, v in times.items()}
    for k, r in rows.items():
        print(f"{k:34s} median {r['median_ms']:9.2f} ms  p90 {r['p90_ms']:9.2f} ms  x{r['relative']:7.1f}  n={r['n']}")
    if a.out:
        Path(a.out).write_text(json.dumps({"checkpoint": a.checkpoint, "search": cfg.to_dict(), "threads": 1,
                                           "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
