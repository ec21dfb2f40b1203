"""Reproduce HISTORY.md's "Nearest-neighbour baselines, every variant" table: the nearest-neighbour
MSE baseline against the class's train frames, on plain preprocessing (the issues' definition) and on
the shipped model's preprocessing where it differs, with foreground powers 0 / 0.5 / 1, on clean val
frames and under the val nuisance suite (``edge-ad eval --nuisance``'s DEFAULT_SUITE, nuisance seed 0).

    .venv/bin/python models/kinect-rgbd/nn_baselines.py [--class cylinder ...] [--data ../shared/data/kinect-rgbd]

Per class and variant: AUROC on clean val, the mean over clean + the 9 nuisances, and the worst
condition. ``edge-ad eval`` prints the clean column of every variant (header) and the mean of the plain
fg^1 one (nuisance table). About 1 min per class on one core.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from edge_ad.runtime.data_root import default_kinect_root

CLASSES = ("rectangle", "cylinder", "sphere")
POWERS = (0.0, 0.5, 1.0)


def nn_variants(data, cls: str, checkpoint, split: str = "val", max_per_class: int = 0, suite=None) -> dict:
    """{(preprocessing label, fg power): {"clean", "mean", "worst"} AUROC} of the nearest-neighbour
    baseline of normal class ``cls`` on ``split``, with the preprocessing and search configuration's
    fg_floor of the model in ``checkpoint`` (the floor of each power as edge-ad eval --scoring checkpoint
    takes it: baselines.baseline_fg_floor; SearchConfig's default floor for a checkpoint without one);
    ``suite``: {label: nuisance}, default the eval's DEFAULT_SUITE."""
    from edge_ad.models.baselines import baseline_fg_floor, nearest_neighbour_scores
    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.evaluate import nuisance_suite, raw_groups
    from edge_ad.models.search import checkpoint_search_config
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.nuisance import DEFAULT_SUITE, parse_nuisance
    from edge_ad.runtime.preprocess import levers_text, plain_spec

    spec = load_generator(checkpoint).preprocess
    fg_floor = (checkpoint_search_config(checkpoint) or SearchConfig()).fg_floor
    if suite is None:
        suite = {(n := parse_nuisance(t)).name: n for t in DEFAULT_SUITE}
    raw = raw_groups(data, cls, split, None, (), 0, 0, max_per_class)
    preps = {"plain": plain_spec(spec)}
    if levers_text(spec):
        preps[f"model: {levers_text(spec)}"] = spec
    out = {}
    for label, pspec in preps.items():
        train = to_tensor(load_kinect(data, cls, "train", pspec)[1], pspec).numpy()        # (300, 4, R, R)
        for p in POWERS:
            floor = baseline_fg_floor(p, fg_floor)
            res = nuisance_suite(lambda X, p=p, floor=floor: nearest_neighbour_scores(train, X, fg_power=p,
                                                                                     fg_floor=floor),
                                 raw, cls, suite, pspec, threshold=0.0)
            c = [r["auroc"] for r in res["conditions"].values() if "auroc" in r]
            out[label, p] = {"clean": res["conditions"]["clean"]["auroc"], "mean": res["mean"]["auroc"],
                             "worst": min(c)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--class", dest="classes", action="append", choices=CLASSES)
    ap.add_argument("--data", default=str(default_kinect_root()))
    a = ap.parse_args()
    for cls in a.classes or CLASSES:
        for (label, p), r in nn_variants(a.data, cls, Path(__file__).parent / f"{cls}.pt").items():
            print(f"{cls:9s} {label:40s} fg^{p:g}: clean {r['clean']:.3f}  mean {r['mean']:.3f}  "
                  f"worst {r['worst']:.3f}", flush=True)


if __name__ == "__main__":
    main()
