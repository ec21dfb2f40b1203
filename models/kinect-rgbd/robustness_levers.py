"""Reproduce the robustness-lever tables of HISTORY.md: val AUROC, false alarms and anomalies flagged
(threshold at 5 % of the clean val normals) of score variants on a model's generator + izi encoder,
clean and under each nuisance of the default suite (runtime/nuisance/suite.py), with the NN/fg baseline.

    .venv/bin/python models/kinect-rgbd/robustness_levers.py --class cylinder [--model PATH] [--json OUT] \
        [--colour none,gray,rgb] [--align centroid] [--banks plain,mirror,pose,pose+light,pose3,grid2,grid3,random18] \
        [--shift-radius R] [--bank-augment-weight 1,1.5,2] [--bank-trusted-augment 'brightness:1.2']

Levers: the latent bank (E of the train frames as they are / also mirrored / also shifted by up to
2 px / also under photometric jitter: "pose+light" = "pose+photo", the release's LIGHT_AUGMENT) and the per-frame colour normalisation of the foreground
(runtime.preprocess: "none", "gray" = one gain, "rgb" = one gain per channel, to the train frames'
mean foreground colour). --shift-radius R: the test-time shift-min (SearchConfig.score_shift_radius):
each frame's score is the minimum over its copies shifted by up to R px (runtime.preprocess.shift_frame).
--bank-augment-weight w1,w2,...: each bank also with SearchConfig.bank_augment_weight w (latent distance =
min(nearest train frame as it is, w * nearest augmented copy); default the checkpoint's).
--bank-trusted-augment 'brightness:1.2;...': SearchConfig.bank_trusted_augment, the copies under these texts
count as train frames as they are (factor 1); default the checkpoint's.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from edge_ad.models.baselines import nearest_neighbour_scores
from edge_ad.models.checkpoint import load_generator
from edge_ad.models.data import KINECT_CLASSES, kinect_split_ids, spec_with
from edge_ad.models.encoder import encoder_latents
from edge_ad.models.evaluate import calibrate_threshold, detection_metrics, threshold_rates
from edge_ad.models.search import checkpoint_encoder, checkpoint_search_config
from edge_ad.runtime import nuisance as nu
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.latent_bank import LIGHT_AUGMENT
from edge_ad.runtime.latent_memory import latent_memory
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8, normalize_uint8, shift_frame, shift_offsets
from edge_ad.runtime.sources.folder import read_pair

HERE = Path(__file__).resolve().parent


def raw_frames(data, cls, split):
    return [read_pair(Path(data) / cls, str(i)) for i in kinect_split_ids(data, cls, split)]


def to_x(frames, spec):
    return normalize_uint8(np.stack([frame_to_uint8(r, d, spec) for r, d in frames]), spec)


class RandomPose:
    """Mirrored with probability 1/2 and shifted by (dy, dx) uniform in [-px, px]^2, drawn per frame."""

    def __init__(self, px):
        self.px = px

    def __call__(self, rgb, depth, rng):
        if rng.random() < 0.5:
            rgb, depth = nu.Mirror()(rgb, depth)
        dy, dx = rng.integers(-self.px, self.px + 1, 2)
        return nu.Shift(int(dy), int(dx))(rgb, depth)


def bank_augmentations(kind: str) -> tuple:
    """(texts, nuisances): the augmentations whose train-frame latents form the bank after the frame
    itself, as nuisance texts (the bank's layout, manifest latent_bank["augment"]'s spelling, which
    bank_trusted_augment names) and the nuisances built from them, None first (the frame as it is)."""
    kind = "pose+photo" if kind == "pose+light" else kind      # the release's name (latent_bank.LIGHT_AUGMENT)

    def mirror_and_shifts(steps):        # mirror, the shifts, the mirrored shifts (latent_bank.POSE_AUGMENT order)
        shifts = [f"shift:{dy},{dx}" for dy in steps for dx in steps if (dy, dx) != (0, 0)]
        return ["mirror"] + shifts + [f"mirror+{s}" for s in shifts]
    texts = []
    if kind == "mirror":
        texts = ["mirror"]
    if kind in ("pose", "pose+photo"):
        texts = mirror_and_shifts((-2, 0, 2))
    if kind == "pose3":
        texts = mirror_and_shifts((-3, 0, 3))
    if kind in ("grid2", "grid3"):   # every shift of up to 2 (3) px, with and without mirror: 50 (98) per frame
        r = int(kind[4])
        texts = mirror_and_shifts(range(-r, r + 1))
    if kind == "pose+photo":
        texts += list(LIGHT_AUGMENT)
    if kind.startswith("random"):        # random18: 18 random (mirror?, dy, dx), |d| <= 3, per frame
        n = int(kind[6:]) - 2
        return (["mirror"] + [f"random-pose:{j}" for j in range(n)],
                [None, nu.Mirror()] + [RandomPose(3) for _ in range(n)])
    return texts, [None] + [nu.parse_nuisance(t) for t in texts]


def lever_spec(base_spec: PreprocessSpec, train_u8: np.ndarray, colour: str, align: str) -> PreprocessSpec:
    """The measured preprocessing: base_spec with colour_norm ``colour`` to the train frames' mean foreground colour
    and ``align`` to their mean centroid ((0.5, 0.5) for "none"), both read from ``train_u8`` (N, R, R, 4) uint8
    unaligned as a release reads them (models.data.spec_with): for align "component" the centroid of each frame's
    largest component (runtime.preprocess.alignment_mask, the readings the runtime's align step moves), not of
    every reading (session 34's final read: the table measured "component" with every reading's centre)."""
    return spec_with(base_spec, {"colour_norm": colour, "colour_reference": "auto", "align": align,
                                 "align_centre": "auto" if align != "none" else [0.5, 0.5]}, train_u8)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class", dest="cls", required=True, choices=KINECT_CLASSES)
    ap.add_argument("--model", help="checkpoint (default models/kinect-rgbd/CLASS.pt)")
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--colour", default="none,gray,rgb")
    ap.add_argument("--banks", default="plain,mirror,pose,pose+photo")
    ap.add_argument("--align", default="none")
    ap.add_argument("--shift-radius", type=int, default=None,
                    help="test-time shift-min radius (default: the checkpoint's score_shift_radius)")
    ap.add_argument("--bank-augment-weight", default=None,
                    help="comma-separated bank_augment_weight values to measure (default: the checkpoint's)")
    ap.add_argument("--bank-trusted-augment", default=None,
                    help="';'-separated augmentation texts whose copies count as original rows "
                         "(SearchConfig.bank_trusted_augment; '' none; default: the checkpoint's)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    path = a.model or HERE / f"{a.cls}.pt"
    G, E, cfg = load_generator(path), checkpoint_encoder(path), checkpoint_search_config(path)
    if a.shift_radius is not None:
        cfg = cfg.replace(score_shift_radius=a.shift_radius)
    offsets = shift_offsets(cfg.score_shift_radius)
    weights = ([cfg.bank_augment_weight] if a.bank_augment_weight is None
               else [float(w) for w in a.bank_augment_weight.split(",")])
    trusted = (cfg.bank_trusted_augment if a.bank_trusted_augment is None
               else tuple(t for t in a.bank_trusted_augment.split(";") if t))
    p = cfg.score_fg_power
    train = raw_frames(a.data, a.cls, "train")
    val = {c: raw_frames(a.data, c, "val") for c in [a.cls] + [c for c in KINECT_CLASSES if c != a.cls]}
    conds = {"clean": None, **{(n := nu.parse_nuisance(t)).name: n for t in nu.DEFAULT_SUITE}}
    base_spec = G.preprocess
    u8 = np.stack([frame_to_uint8(r, d, replace(base_spec, align="none")) for r, d in train])   # unaligned
    Tx_plain = to_x(train, base_spec)
    cond_frames = {lab: {c: (f if n is None else [n(*fr, nu.frame_rng(0, 100000 * g + i, k)) for i, fr in enumerate(f)])
                         for g, (c, f) in enumerate(val.items())} for k, (lab, n) in enumerate(conds.items())}
    baseline = {lab: {c: nearest_neighbour_scores(Tx_plain, to_x(f, base_spec), fg_power=1.0) for c, f in fr.items()}
                for lab, fr in cond_frames.items()}
    results = {}
    for colour in a.colour.split(","):
        spec = lever_spec(base_spec, u8, colour, a.align)
        t0 = time.perf_counter()
        feats = {}     # per condition and class: per shifted copy (residual score (N,), E(x') (N, z_dim))
        for lab, fr in cond_frames.items():
            feats[lab] = {}
            for c, f in fr.items():
                feats[lab][c] = []
                for dy, dx in offsets:
                    x = shift_frame(to_x(f, spec), dy, dx)
                    z = encoder_latents(E, x)
                    with torch.no_grad():
                        r = G(torch.as_tensor(z)[:, :, None, None]).numpy()
                    fgs = np.maximum((x[:, 3] > -1 + 1e-3).mean((1, 2)), cfg.fg_floor)
                    feats[lab][c].append((((x - r) ** 2).mean((1, 2, 3)) / fgs ** p, z))
        for bank_kind in a.banks.split(","):
            texts, augs = bank_augmentations(bank_kind)
            bank = np.stack([encoder_latents(E, to_x(train if n is None else nu.apply_to_frames(n, train, 1, j), spec))
                             for j, n in enumerate(augs)], axis=1)
            bank = bank.reshape(len(train) * len(augs), -1)       # frame-major (latent_memory.original_rows), as released
            for w in weights:
                try:
                    mem = latent_memory(bank, cfg.replace(bank_augment_weight=w,
                                                          bank_trusted_augment=trusted if w != 1.0 else ()), texts)
                except ValueError as e:     # e.g. a weight for a bank without copies, a trusted text it lacks
                    print(f"{a.cls:9s} bank={bank_kind} w={w:g}: skipped: {e}", flush=True)
                    continue
                rows = {}
                for lab in conds:
                    s = {c: np.min([res * mem.distances(z) ** cfg.score_latent_power
                                    for res, z in copies], axis=0) for c, copies in feats[lab].items()}
                    rows[lab] = s
                report(a, results, rows, baseline, t0, f"colour={colour} align={a.align} bank={bank_kind} ({len(bank)})"
                       + (f" w={w:g}" if w != 1.0 else "")
                       + (f" trusted={';'.join(trusted)}" if trusted and w != 1.0 else "")
                       + (f" shift-min R={cfg.score_shift_radius}" if cfg.score_shift_radius else ""))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


def report(a, results, rows, baseline, t0, name):
    """One variant's scores ``rows`` {condition: {class: (N,)}}: AUROC, false alarms and anomalies flagged
    at 5 % of the clean normals, with the NN baseline's AUROC; printed and kept in ``results[name]``."""
    thr = calibrate_threshold(rows["clean"][a.cls], 0.05)
    table = {}
    for lab, s in rows.items():
        s = dict(s)
        normal = s.pop(a.cls)
        an = np.concatenate(list(s.values()))
        b = dict(baseline[lab])
        bn = b.pop(a.cls)
        table[lab] = {"auroc": detection_metrics(normal, an)["auroc"], **threshold_rates(normal, an, thr),
                      "baseline_auroc": detection_metrics(bn, np.concatenate(list(b.values())))["auroc"]}
    results[name] = table
    mean = np.mean([r["auroc"] for r in table.values()])
    worst = min(table.items(), key=lambda kv: kv[1]["auroc"])
    fa = max(r["false_alarm_rate"] for r in table.values())
    print(f"{a.cls:9s} {name:40s} clean {table['clean']['auroc']:.3f}  mean {mean:.3f}  worst {worst[1]['auroc']:.3f} "
          f"({worst[0]})  max FA {fa:.0%}  flagged {table['clean']['anomalies_flagged']:.0%}  "
          f"NN mean {np.mean([r['baseline_auroc'] for r in table.values()]):.3f}  "
          f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    print("    " + "  ".join(f"{lab}: {r['auroc']:.3f}/{r['false_alarm_rate']:.0%}" for lab, r in table.items()),
          flush=True)


if __name__ == "__main__":
    main()
