"""AUROC and time per frame of the faithful search vs the named fast option lr_theta = 0 (z-only
graph), both on the torch-free runtime, on kinect-rgbd val frames (same z0 per frame).

    .venv/bin/python benchmarks/zonly_auroc.py MODEL_DIR --per-class 30 --out benchmarks/results/zonly.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_ad.runtime.config import frame_seed, make_z0
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.manifest import load_manifest
from edge_ad.runtime.scorer import Scorer
from edge_ad.runtime.sources.folder import read_pair

DATA = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout


def auroc(normal: np.ndarray, anomalous: np.ndarray) -> float:
    """P(score_anomalous > score_normal) + ties/2 (the Mann-Whitney form of the ROC area)."""
    a, n = np.asarray(anomalous)[:, None], np.asarray(normal)[None, :]
    return float(((a > n).sum() + 0.5 * (a == n).sum()) / (a.size * n.size))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--per-class", type=int, default=30)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out")
    args = ap.parse_args()
    man = load_manifest(args.model_dir)
    normal_cls = man.get("train_class") or "rectangle"
    splits = json.loads((DATA / "splits.json").read_text())
    frames = [(c, str(i)) for c in sorted(splits) for i in splits[c]["val"][:args.per_class]]
    scorers = {"faithful": Scorer.load(args.model_dir, threads=args.threads),
               "z-only (lr_theta=0)": Scorer.load(args.model_dir, lr_theta=0.0, threads=args.threads)}
    res = {name: {"scores": [], "times": []} for name in scorers}
    for i, (c, fid) in enumerate(frames):
        rgb, d = read_pair(DATA / c, fid)
        z0 = make_z0(scorers["faithful"].n_seed, scorers["faithful"].z_dim, frame_seed(0, i))
        for name, s in scorers.items():     # interleaved
            t = time.perf_counter()
            r = s.score(rgb, d, z0=z0)
            res[name]["times"].append(time.perf_counter() - t)
            res[name]["scores"].append(r.score)
    labels = np.array([c != normal_cls for c, _ in frames])
    out = {"model": str(args.model_dir), "normal_class": normal_cls, "per_class": args.per_class,
           "frames": len(frames), "variants": {}}
    for name, r in res.items():
        sc = np.array(r["scores"])
        row = {"auroc": auroc(sc[~labels], sc[labels]), "median_s": float(np.median(r["times"])),
               "mode": scorers[name].mode}
        for c in sorted(splits):
            if c != normal_cls:
                m = np.array([fc == c for fc, _ in frames])
                row[f"auroc_vs_{c}"] = auroc(sc[~labels], sc[m])
        out["variants"][name] = row
        print(name, {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
    f, z = (np.array(res[n]["scores"]) for n in res)
    out["max_rel_score_change"] = float(np.max(np.abs(z - f) / f))
    print("max relative score change z-only vs faithful:", out["max_rel_score_change"])
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
