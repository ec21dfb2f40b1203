"""Reproduce HISTORY.md's sixth-pass note on position as class evidence: the nearest-neighbour baseline
(MSE per foreground pixel against the class's train frames and their mirrors) on val, with the frame as
captured and with its foreground centroid aligned (shift-proof by construction), clean and under fixed
camera shifts. Threshold: the 93rd percentile of the clean val normals (7 %, the shipped rectangle rate).

    .venv/bin/python models/kinect-rgbd/shift_evidence.py [--class rectangle ...] [--data ../shared/data/kinect-rgbd]

Rows: "as captured", "aligned" (runtime.preprocess.align_centroid), "object only, aligned" (the largest
connected depth component kept: the static table-edge lines removed first). Entries per shift (dy, dx):
AUROC / false alarms / anomalies flagged. About 20 s per class on one core.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge_ad.runtime.data_root import default_kinect_root

CLASSES = ("rectangle", "cylinder", "sphere")
SHIFTS = ((0, 0), (2, -2), (-2, 2), (2, 2), (-2, -2), (3, -3))


def largest_component(u8: np.ndarray) -> np.ndarray:
    """(R, R, 4) uint8 -> a copy with every pixel outside the largest 8-connected depth component set to 0."""
    from scipy import ndimage
    lab, n = ndimage.label(u8[..., 3] > 0, structure=np.ones((3, 3)))
    if n == 0:
        return u8
    keep = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return np.where(keep[..., None], u8, 0).astype(u8.dtype)


def rows(data: Path, cls: str) -> dict:
    """{row label: [(shift, auroc, false alarms, flagged)]} for normal class ``cls``."""
    from edge_ad.models.baselines import nearest_neighbour_scores
    from edge_ad.models.data import load_kinect
    from edge_ad.runtime.preprocess import PreprocessSpec, align_centroid, move_uint8, normalize_uint8
    from edge_ad.runtime.truth import auroc

    spec = PreprocessSpec()
    u8 = {(c, s): load_kinect(data, c, s, spec)[1] for c in CLASSES for s in ("train", "val")}   # (N, R, R, 4)
    modes = {"as captured": lambda u: u, "aligned": align_centroid,
             "object only, aligned": lambda u: align_centroid(largest_component(u))}
    out = {}
    for label, f in modes.items():
        prep = lambda U: normalize_uint8(np.stack([f(u) for u in U]), spec)                # (N, 4, R, R)
        train = prep(np.concatenate([u8[cls, "train"], u8[cls, "train"][:, :, ::-1]]))
        y = np.concatenate([np.full(len(u8[c, "val"]), c != cls) for c in CLASSES])
        out[label], thr = [], None
        for sh in SHIFTS:
            X = np.concatenate([[move_uint8(u, *sh) for u in u8[c, "val"]] for c in CLASSES])
            s = nearest_neighbour_scores(train, prep(X), fg_power=1.0)
            thr = np.quantile(s[~y], 0.93) if thr is None else thr
            out[label].append((sh, auroc(s, y), float((s[~y] > thr).mean()), float((s[y] > thr).mean())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--class", dest="classes", action="append", choices=CLASSES)
    ap.add_argument("--data", default=str(default_kinect_root()))
    a = ap.parse_args()
    for cls in a.classes or CLASSES:
        for label, r in rows(Path(a.data), cls).items():
            print(f"{cls:9s} {label:22s} " + "  ".join(f"{sh}: {au:.3f}/{fa:.0%}/{fl:.0%}" for sh, au, fa, fl in r),
                  flush=True)


if __name__ == "__main__":
    main()
