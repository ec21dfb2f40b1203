"""The simulated new scene of issue 12: before / after ``edge-ad calibrate`` (torch-free runtime only).

The scene is kinect-rgbd's held-out val frames under one fixed change of light, colour and camera
position (default: brightness -20 %, a warm white balance, the camera shifted by (2, -2) px). The
model is calibrated on N normal frames of the scene (the first N val ids, or --draw random: N drawn at
random, --draw-seed, or --draw spread: N val ids spread evenly, floor(i x val normals / N), as edge-ad calibrate spreads) (written as a PNG frame folder, run
through ``edge-ad calibrate``), then scored, before and after, on the rest of the scene: the other
normal val frames and all val frames of the other two classes, under the same change.

--json also saves what a threshold rule needs, to evaluate any rule offline without rescoring
("per_frame"): what calibrate's threshold rule read (runtime.calibrate.ThresholdInputs: the held-out scores
of the N calibration frames, fpr, model_threshold, same_rate, what; ``choose_threshold(ThresholdInputs(**those))``
replays it), the model's threshold and rate table, and every rest-of-scene frame's score before and after
calibrate (normals, anomalies with their class), with the val ids. "calibrate_s": calibrate's wall time.
A model with the silhouette lever is calibrated and scored with it (its frames reach calibrate and Scorer.score
raw: docs/calibrate.md, "A model with the silhouette lever").

    .venv/bin/python models/kinect-rgbd/new_scene.py --model EXPORTED_DIR --class rectangle \
        [--scene "brightness:0.8+wb:1.1,1,0.9+shift:2,-2"] [--n-calib 50] [--draw first|random|spread]
        [--draw-seed S] [--no-colour-gain | --colour-gain-unchecked] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from edge_ad.runtime import Scorer
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.sources.folder import read_pair

CLASSES = ("rectangle", "cylinder", "sphere")


def auroc(normal, anomalous) -> float:
    """P(anomalous > normal) + 0.5 P(tie) (NumPy only)."""
    n, a = np.asarray(normal)[:, None], np.asarray(anomalous)[None]
    return float((a > n).mean() + 0.5 * (a == n).mean())


def rates(thr, normal, anomalous) -> dict:
    return {"auroc": auroc(normal, anomalous), "threshold": thr,
            "false_alarm_rate": float((np.asarray(normal) > thr).mean()),
            "anomalies_flagged": float((np.asarray(anomalous) > thr).mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="exported model directory")
    ap.add_argument("--class", dest="cls", required=True, choices=CLASSES)
    ap.add_argument("--data", default=str(default_kinect_root()))
    ap.add_argument("--scene", default="brightness:0.8+wb:1.1,1,0.9+shift:2,-2")
    ap.add_argument("--n-calib", type=int, default=50)
    ap.add_argument("--draw", choices=("first", "random", "spread"), default="first",
                    help="which normal frames calibrate: the first --n-calib val ids (capture order: one stretch "
                         "of the recording), --n-calib drawn at random, or spread: --n-calib val ids spread "
                         "evenly, floor(i x normal frames / --n-calib) (edge-ad calibrate's default on a source of known length)")
    ap.add_argument("--draw-seed", type=int, default=0)
    ap.add_argument("--fpr", type=float, default=None,
                    help="calibrate's target rate (default: the model's own rate, as edge-ad calibrate)")
    ap.add_argument("--no-colour-gain", action="store_true", help="calibrate without the scene's colour gain")
    ap.add_argument("--colour-gain-unchecked", action="store_true",
                    help="calibrate applies the measured scene colour gain without its check (edge-ad calibrate's "
                         "flag: as before session 34)")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--no-floor", action="store_true", help="calibrate without the model's threshold as a floor")
    ap.add_argument("--max-shift", type=int, default=3, help="calibrate's camera-shift search radius (0: off)")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    if a.no_colour_gain and a.colour_gain_unchecked:        # as edge-ad calibrate refuses them together
        ap.error("--colour-gain-unchecked applies the scene's colour gain without its check; --no-colour-gain "
                 "applies none: give one of them")
    colour_gain = False if a.no_colour_gain else "always" if a.colour_gain_unchecked else True
    from edge_ad.runtime import calibrate as calibrate_module
    from edge_ad.runtime.sources import open_source
    scene = parse_nuisance(a.scene)
    splits = json.loads((Path(a.data) / "splits.json").read_text())
    frames = {c: [scene(*read_pair(Path(a.data) / c, str(i)), frame_rng(0, 100000 * g + n))
                  for n, i in enumerate(splits[c]["val"])] for g, c in enumerate(CLASSES)}
    normal = frames[a.cls]
    if a.draw == "spread":      # calibrate's own selection (read_scene's positions), the others the rest
        picked = np.array(calibrate_module.spread_positions(len(normal), a.n_calib) or range(len(normal)), int)
        order = np.concatenate([picked, np.setdiff1d(np.arange(len(normal)), picked)])
    else:
        order = np.arange(len(normal)) if a.draw == "first" else np.random.default_rng(a.draw_seed).permutation(len(normal))
    calib_idx, rest_idx = sorted(order[:a.n_calib]), sorted(order[a.n_calib:])   # source order kept (calibrate's blocks)
    calib = [normal[i] for i in calib_idx]
    rest = [normal[i] for i in rest_idx]
    anomalous = [f for c in CLASSES if c != a.cls for f in frames[c]]
    anomalous_ids = [[c, int(i)] for c in CLASSES if c != a.cls for i in splits[c]["val"]]
    threshold_inputs = []          # what calibrate's threshold rule read (ThresholdInputs): held-out scores, fpr, floor
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scene"
        (folder / "rgb").mkdir(parents=True)
        (folder / "depth").mkdir()
        for n, (rgb, depth) in enumerate(calib):
            Image.fromarray(rgb).save(folder / "rgb" / f"{n}.png")
            Image.fromarray(depth).save(folder / "depth" / f"{n}.png")
        before = Scorer.load(a.model)
        out = Path(tmp) / "calibrated"
        t0 = time.perf_counter()
        with open_source(str(folder)) as src:
            calibrate_module.calibrate_model(a.model, src, out, fpr=a.fpr, source=str(folder),
                                             colour_gain=colour_gain, blocks=a.blocks,
                                             floor=not a.no_floor, max_shift=a.max_shift,
                                             on_threshold_inputs=threshold_inputs.append)
        calibrate_s = time.perf_counter() - t0
        after = Scorer.load(out)
        thr_before = before.threshold
        if thr_before is None:   # a model exported without one: as shipped, at fpr of the clean val normals
            clean = [before.score(*read_pair(Path(a.data) / a.cls, str(i))).score for i in splits[a.cls]["val"]]
            thr_before = float(np.quantile(clean, 1 - (a.fpr or 0.05), method="higher"))
        result = {"class": a.cls, "calibration": json.loads((out / "manifest.json").read_text())["calibration"], "scene": scene.name, "draw": a.draw if a.draw != "random" else f"random (seed {a.draw_seed})", "n_calib": len(calib), "n_normal": len(rest),
                  "n_anomalous": len(anomalous), "calibrate_s": round(calibrate_s, 1)}
        own = before.manifest.get("threshold") or {}
        per_frame = {**threshold_inputs[0].as_dict(), "model_threshold_value": thr_before,
                     "model_target_fpr": own.get("target_fpr"),
                     "model_rates": own.get("rates"), "model_n_normal": own.get("n_normal"),
                     "calib_val_ids": [int(splits[a.cls]["val"][i]) for i in calib_idx],
                     "rest_val_ids": [int(splits[a.cls]["val"][i]) for i in rest_idx],
                     "anomalous_ids": anomalous_ids}
        for name, sc in (("before", before), ("after", after)):
            sn = [sc.score(*f).score for f in rest]
            sa = [sc.score(*f).score for f in anomalous]
            result[name] = rates(thr_before if name == "before" else sc.threshold, sn, sa)
            per_frame[name] = {"normal": [float(v) for v in sn], "anomalous": [float(v) for v in sa]}
        result["per_frame"] = per_frame
    print(json.dumps({k: v for k, v in result.items() if k != "per_frame"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
