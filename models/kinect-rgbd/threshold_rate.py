"""Choose the false-alarm rate a shipped threshold is read at, from 400 normal frames instead of 100.

The val split has 100 normal frames per class: the 95th percentile of 100 scores is a noisy threshold,
and false alarms measured on the frames it was read from are biased low. The 300 train frames add a
second sample when each is scored as an unseen frame: against the latent bank WITHOUT its own rows (the
frame and its augmented copies; leave-one-out). On kinect-rgbd those scores are distributed as the val
normals' (this script prints the Kolmogorov-Smirnov p-value per condition), clean and under every nuisance
of the val suite, because val and train ids are drawn from the same captures.

For each candidate rate r: threshold = the (1 - r) quantile ("higher") of the 400 clean normal scores;
false alarms per condition on the 400 normal frames under that nuisance; anomalies flagged on the val
anomalies (200). The issue's targets on a held-back set of 100 normal / 200 anomalous frames are turned
into z-margins (distance to the target in standard errors of a share on that many frames):
flagged >= 90 %, clean false alarms <= 10 %, false alarms under the worst nuisance <= 15 %; the rate with
the largest smallest margin is suggested.

    edge-ad export models/kinect-rgbd/C.pt --out /tmp/C
    edge-ad eval --model models/kinect-rgbd/C.pt --data ../shared/data/kinect-rgbd --class C \\
        --out /tmp/C-eval --nuisance --no-baselines
    python models/kinect-rgbd/threshold_rate.py --model /tmp/C --class C --report /tmp/C-eval/report.json

Torch-free (the runtime plus scipy, which the dev install brings with scikit-learn); the train frames are
scored with the exported model (parity with the PyTorch reference that scored the report: ~1e-6).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_ad.runtime import Scorer
from edge_ad.runtime.calibrate import held_out_pixel_distances, held_out_scores, score_scene
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.pixel_memory import PixelMemory
from edge_ad.runtime.nuisance import DEFAULT_SUITE, frame_rng, parse_nuisance
from edge_ad.runtime.latent_bank import bank_inputs_uint8, unaligned_uint8
from edge_ad.runtime.sources.folder import read_pair

TARGETS = {"flagged": 0.90, "clean_false_alarms": 0.10, "nuisance_false_alarms": 0.15}
TEST_FRAMES = {"normal": 100, "anomalous": 200}      # the held-back test set's size per class
TRAIN_FRAME_OFFSET = 900000                          # frame_rng index of train frame i: clear of eval's 100000 * g + i


def train_leave_one_out(scorer: Scorer, model_dir: Path, manifest: dict, frames: list, conditions: dict,
                        seed: int) -> dict:
    """{condition: (N,) scores} of the bank's own train frames (raw (rgb, depth), in bank order) under each
    nuisance, each frame against the bank without its own rows (and, for a model with a pixel memory, the
    pixel memory without its own rows: the memory holds the same train frames in the same order)."""
    cfg, spec = scorer.config, scorer.preprocess_spec
    pixels = None
    if cfg.uses_pixel_memory:                              # the export's pixel_memory.npy, expanded as the scorer does
        pe = manifest["pixel_memory"]
        pixels = PixelMemory(np.load(Path(model_dir) / pe["file"]), spec, pe.get("augment") or [])
        if pixels.n_frames != len(frames):
            raise SystemExit(f"the pixel memory holds {pixels.n_frames} frames, not the {len(frames)} train frames "
                             "(a calibrated model? run this on the exported model)")
        if not np.array_equal(pixels.frames, np.stack([unaligned_uint8(*f, spec) for f in frames])):
            raise SystemExit("the pixel memory's frames are not the train frames in bank order")
    entry = manifest["latent_bank"]
    bank = np.load(Path(model_dir) / entry["file"])                            # (N * A, z_dim), frame-major
    augment = list(entry.get("augment") or [])            # the layout's texts (bank_trusted_augment names them)
    A = 1 + len(augment)
    if len(bank) != len(frames) * A:
        raise SystemExit(f"the bank has {len(bank)} rows, not {A} per train frame ({len(frames)} frames)")
    lat = bank.reshape(len(frames), A, -1)                                      # (N, A, z_dim)
    out = {}
    for k, (label, nuisance) in enumerate(conditions.items()):
        raw = frames if nuisance is None else [nuisance(*f, frame_rng(seed, TRAIN_FRAME_OFFSET + i, k))
                                               for i, f in enumerate(frames)]
        # (R, R, 4) before align, as edge-ad calibrate reads a scene: score_scene aligns (once)
        u8 = [unaligned_uint8(*f, spec) for f in raw]
        res = score_scene(scorer, u8, spec)
        # each frame against the bank without its own A rows (blocks of one frame, no other bank)
        pix = None
        if pixels is not None:      # frame i as scored, against the memory without its own rows
            pix = held_out_pixel_distances(pixels, lambda i: bank_inputs_uint8(u8[i], spec)[0], len(frames),
                                           0, blocks=len(frames), radius=cfg.pixel_shift_radius,
                                           gain=cfg.pixel_gain_limits)
        scores = held_out_scores(res["base"], lat, None, cfg, blocks=len(frames),
                                 shifted_latents=res["shifted_latents"], augment=augment, pixel_distances=pix)
        out[label] = scores
        print(f"  train leave-one-out, {label}: median {np.median(scores):.4g}, p95 {np.percentile(scores, 95):.4g}",
              flush=True)
    return out


def z_margin(share: float, target: float, n: int, above: bool) -> float:
    """(share - target) / standard error of a share on n frames (sign: positive = the target is met)."""
    se = np.sqrt(max(share * (1 - share), 0.01) / n)
    return float(((share - target) if above else (target - share)) / se)


def rate_table(val: dict, anomalies: dict, loo: dict, rates) -> list:
    """One row per rate: threshold, false alarms per condition (400 normals), flagged, z-margins."""
    rows = []
    pooled = {c: np.concatenate([val[c], loo[c]]) for c in val}                 # (400,) normal scores per condition
    for r in rates:
        t = float(np.quantile(pooled["clean"], 1 - r, method="higher"))
        fa = {c: float((pooled[c] > t).mean()) for c in val}
        flagged = {c: float((anomalies[c] > t).mean()) for c in anomalies}
        worst = max((v, c) for c, v in fa.items() if c != "clean")
        z = {"flagged": z_margin(flagged["clean"], TARGETS["flagged"], TEST_FRAMES["anomalous"], True),
             "clean_false_alarms": z_margin(fa["clean"], TARGETS["clean_false_alarms"], TEST_FRAMES["normal"], False),
             "nuisance_false_alarms": z_margin(worst[0], TARGETS["nuisance_false_alarms"], TEST_FRAMES["normal"], False)}
        rows.append({"rate": r, "threshold": t, "false_alarms": fa, "flagged": flagged, "worst_nuisance": worst[1],
                     "z_margins": z, "min_z": min(z.values())})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the exported model directory")
    ap.add_argument("--class", dest="cls", required=True)
    ap.add_argument("--report", required=True, help="edge-ad eval --nuisance report.json (default suite)")
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--rates", default="0.04,0.05,0.06,0.07,0.08")
    ap.add_argument("--out", help="write the table as JSON here")
    a = ap.parse_args(argv)
    from scipy.stats import ks_2samp

    rep = json.loads(Path(a.report).read_text())
    nu = rep.get("nuisance") or {}
    if "scores" not in next(iter(nu.get("conditions", {}).values()), {}):
        raise SystemExit(f"{a.report} has no per-frame nuisance scores: run edge-ad eval --nuisance (this version)")
    conditions = {"clean": None, **{(n := parse_nuisance(t)).name: n for t in DEFAULT_SUITE}}
    if list(conditions) != list(nu["conditions"]):
        raise SystemExit(f"the report's conditions {list(nu['conditions'])} are not the default suite's")
    val = {c: np.asarray(v["scores"][a.cls], float) for c, v in nu["conditions"].items()}
    anomalies = {c: np.concatenate([np.asarray(s, float) for g, s in v["scores"].items() if g != a.cls])
                 for c, v in nu["conditions"].items()}
    scorer = Scorer.load(a.model)
    manifest = json.loads((Path(a.model) / "manifest.json").read_text())
    ids = json.loads((Path(a.data) / "splits.json").read_text())[a.cls]["train"]
    frames = [read_pair(Path(a.data) / a.cls, str(i)) for i in ids]
    loo = train_leave_one_out(scorer, Path(a.model), manifest, frames, conditions, nu.get("seed", 0))
    print(f"{a.cls}: val normals vs train leave-one-out (Kolmogorov-Smirnov p-value per condition):")
    ks = {c: float(ks_2samp(val[c], loo[c]).pvalue) for c in val}
    print("  " + ", ".join(f"{c} {p:.2f}" for c, p in ks.items()))
    rows = rate_table(val, anomalies, loo, [float(r) for r in a.rates.split(",")])
    print(f"{'rate':>5s} {'threshold':>10s} {'clean FA':>8s} {'flagged':>8s} {'worst nuisance FA':>28s}  z: flagged / clean FA / nuisance FA")
    for row in rows:
        z = row["z_margins"]
        print(f"{row['rate']:5.2f} {row['threshold']:10.4g} {row['false_alarms']['clean']:8.1%} "
              f"{row['flagged']['clean']:8.1%} {row['false_alarms'][row['worst_nuisance']]:8.1%} "
              f"({row['worst_nuisance']:>17s})  {z['flagged']:+.1f} / {z['clean_false_alarms']:+.1f} / "
              f"{z['nuisance_false_alarms']:+.1f}  min {row['min_z']:+.2f}")
    best = max(rows, key=lambda r: r["min_z"])
    print(f"suggested rate: {best['rate']} (largest smallest z-margin, {best['min_z']:+.2f})")
    if a.out:
        Path(a.out).write_text(json.dumps({"class": a.cls, "ks_pvalues": ks, "rows": rows, "suggested": best["rate"],
                                           "train_leave_one_out": {c: v.tolist() for c, v in loo.items()}}, indent=1))


if __name__ == "__main__":
    main()
