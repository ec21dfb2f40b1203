"""The pixel memory's row store (runtime/pixel_memory.py, ``PixelMemory(rows=...)`` / $EDGE_AD_PIXEL_ROWS): the
default uint8 store (each row's uint8 image + its colour-normalization gains, rebuilt when measured) against the
float32 store (the rows expanded at load, the store before session 35), in the same run.

Two parts, both on an export whose configuration has a pixel memory:

* ``--scorer``: the whole Scorer, one fresh process per store (in turn, ``--repeats`` times): the resident set after
  Scorer.load (VmRSS) and its peak (VmHWM), the load's seconds, seconds per frame (``score``, one thread) and per
  frame of ``score_batch``, the scores (each store's equal bit for bit?);
* ``--suite``: the pixel distance d_pix (the only part of a score the store touches) of every frame of the val
  split, clean and under each nuisance of the default suite (runtime.nuisance.DEFAULT_SUITE, drawn as
  ``edge-ad eval --nuisance`` draws them), measured by both stores in one process, interleaved: the largest and the
  median relative difference (0: the same distances, so the same scores, AUROC, false alarms and flagged frames at
  any threshold), the seconds per frame of each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pixel_row_store.py EXPORT_DIR --class cylinder --scorer \
        --suite --out benchmarks/results/pixel_row_store_cylinder_s35.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STORES = ("float32", "uint8")


def _status(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1]) / 1024.0            # MiB
    return float("nan")


def _frames(cls: str, n: int, split: str = "val"):
    from edge_ad.runtime.data_root import default_kinect_root
    from edge_ad.runtime.sources.folder import read_pair
    root = default_kinect_root()
    ids = json.loads((root / "splits.json").read_text())[cls][split]
    return [read_pair(root / cls, str(i)) for i in (ids[:n] if n else ids)]


def probe(model: str, cls: str, n: int, store: str) -> dict:
    """One process, one store (``--probe``): load, RSS, per-frame and score_batch seconds, scores."""
    os.environ["EDGE_AD_PIXEL_ROWS"] = store
    from edge_ad.runtime.scorer import Scorer
    frames = _frames(cls, n)
    rss0 = _status("VmRSS")
    t0 = time.perf_counter()
    s = Scorer.load(model, threads=1)
    load_s = time.perf_counter() - t0
    rss = _status("VmRSS")
    assert s.pixel_memory is not None and s.pixel_memory.row_store == store, "the store asked for"
    t0 = time.perf_counter()
    one = [s.score(rgb, depth, seed=i) for i, (rgb, depth) in enumerate(frames)]
    per_frame = (time.perf_counter() - t0) / len(frames)
    t0 = time.perf_counter()
    batch = s.score_batch(frames, seeds=list(range(len(frames))), threads=1)
    per_frame_batch = (time.perf_counter() - t0) / len(frames)
    return {"store": store, "load_s": round(load_s, 3), "rss_before_load_mib": round(rss0, 1),
            "rss_after_load_mib": round(rss, 1), "peak_rss_mib": round(_status("VmHWM"), 1),
            "pixel_memory_mb": {k: round(b / 1e6, 1) for k, b in s.pixel_memory.nbytes().items()},
            "s_per_frame": round(per_frame, 4), "s_per_frame_score_batch": round(per_frame_batch, 4),
            "pixel_s_median": round(float(np.median([r.timings["pixel_s"] for r in one])), 4),
            "scores": [r.score for r in one], "batch_scores": [r.score for r in batch]}


def scorer_part(model: str, cls: str, n: int, repeats: int) -> dict:
    runs = {k: [] for k in STORES}
    for _ in range(repeats):                                    # in turn: the box's load moves both alike
        for store in STORES:
            out = subprocess.run([sys.executable, __file__, model, "--class", cls, "--frames", str(n),
                                  "--probe", store], capture_output=True, text=True, check=True)
            runs[store].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {k: {m: min(r[m] for r in v) for m in ("load_s", "rss_after_load_mib", "peak_rss_mib", "s_per_frame",
                                                  "s_per_frame_score_batch", "pixel_s_median")}
            for k, v in runs.items()}
    same = all(r["scores"] == runs["float32"][0]["scores"] and r["batch_scores"] == runs["float32"][0]["batch_scores"]
               for v in runs.values() for r in v)
    ratio = {m: round(best["uint8"][m] / best["float32"][m], 3) for m in best["uint8"]}
    return {"frames": n, "repeats": repeats, "best": best, "ratio_uint8_vs_float32": ratio,
            "pixel_memory_mb": {k: v[0]["pixel_memory_mb"] for k, v in runs.items()},
            "rss_before_load_mib": runs["float32"][0]["rss_before_load_mib"],
            "scores_equal_bit_for_bit": same, "runs": [{k: v for k, v in r.items() if "scores" not in k}
                                                       for v in runs.values() for r in v]}


def suite_part(model: str, cls: str, n: int) -> dict:
    from edge_ad.models.evaluate import raw_groups
    from edge_ad.runtime.data_root import default_kinect_root
    from edge_ad.runtime.nuisance import DEFAULT_SUITE, frame_rng, parse_nuisance
    from edge_ad.runtime.pixel_memory import PixelMemory
    from edge_ad.runtime.preprocess import frame_to_uint8, normalize_uint8
    from edge_ad.runtime.scorer import Scorer
    s = Scorer.load(model, threads=1)                                   # the default store: the export's memory
    cfg, spec = s.config, s.preprocess_spec
    entry = s._manifest["pixel_memory"]
    u8 = np.load(Path(model) / entry["file"])
    mem = {"uint8": s.pixel_memory,
           "float32": PixelMemory(u8, spec, entry.get("augment") or [], rows="float32")}
    assert mem["uint8"].row_store == "uint8" and mem["float32"].row_store == "float32"
    rows_equal = all(np.array_equal(mem["uint8"].rows(range(a, min(a + 256, mem["uint8"].shape[0]))).view(np.uint32),
                                    mem["float32"].rows(range(a, min(a + 256, mem["uint8"].shape[0]))).view(np.uint32))
                     for a in range(0, mem["uint8"].shape[0], 256))
    groups = raw_groups(str(default_kinect_root()), cls, "val", None, [], 0, 0, n)
    conditions = {"clean": None, **{t: parse_nuisance(t) for t in DEFAULT_SUITE}}
    rel, secs, rows_out = [], {k: [] for k in STORES}, {}
    for k, (label, nuis) in enumerate(conditions.items()):
        worst = 0.0
        for g, (name, frames) in enumerate(groups.items()):
            raw = [f if nuis is None else nuis(*f, frame_rng(0, 100000 * g + i, k)) for i, f in enumerate(frames)]
            X = normalize_uint8(np.stack([frame_to_uint8(*f, spec) for f in raw]), spec)
            for x in X:
                d = {}
                for store in STORES:
                    t0 = time.perf_counter()
                    d[store] = mem[store].frame_distance(x, cfg.pixel_shift_radius, gain=cfg.pixel_gain_limits)
                    secs[store].append(time.perf_counter() - t0)
                r = abs(d["uint8"] - d["float32"]) / max(abs(d["float32"]), 1e-300)
                rel.append(r)
                worst = max(worst, r)
        rows_out[label] = worst
        print(f"{label}: max rel {worst:.3g}", file=sys.stderr, flush=True)
    return {"frames_per_group": n or "all", "conditions": list(conditions), "distances": len(rel),
            "rows_bit_equal": bool(rows_equal),
            "max_rel_diff": float(np.max(rel)), "median_rel_diff": float(np.median(rel)),
            "max_rel_diff_per_condition": rows_out,
            "pixel_s_per_frame_median": {k: round(float(np.median(v)), 4) for k, v in secs.items()},
            "pixel_s_per_frame_mean": {k: round(float(np.mean(v)), 4) for k, v in secs.items()},
            "ratio_pixel_s_uint8_vs_float32_mean": round(float(np.mean(secs["uint8"]) / np.mean(secs["float32"])), 3)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="an export whose configuration has score_pixel_power > 0")
    ap.add_argument("--class", dest="cls", default="cylinder")
    ap.add_argument("--frames", type=int, default=10, help="val frames of the scorer part")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scorer", action="store_true", help="the whole Scorer, a process per store")
    ap.add_argument("--suite", action="store_true", help="d_pix of val clean + the default nuisance suite")
    ap.add_argument("--suite-frames", type=int, default=0, help="frames per group of the suite part (0: all)")
    ap.add_argument("--probe", choices=STORES, help=argparse.SUPPRESS)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    if a.probe:
        print(json.dumps(probe(a.model, a.cls, a.frames, a.probe)))
        return {}
    out = {"model": str(a.model), "class": a.cls}
    if a.scorer:
        out["scorer"] = scorer_part(a.model, a.cls, a.frames, a.repeats)
        print(json.dumps(out["scorer"]["best"]), json.dumps(out["scorer"]["ratio_uint8_vs_float32"]), file=sys.stderr)
    if a.suite:
        out["suite"] = suite_part(a.model, a.cls, a.suite_frames)
    out["load_average"] = list(os.getloadavg())
    print(json.dumps(out, indent=1))
    if a.out:
        with open(a.out, "x") as f:                                     # results are never replaced
            f.write(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
