"""Prepared GPU check: parity and per-frame latency of every backend that runs on this machine.

    python -m edge_ad.jetson.gpu_check MODEL_DIR [--data DIR] [--repeats 20] [--out check.json]

For each of onnxruntime CPU (the default, then every other exported variant of runtime/variants.py that
runs there), onnxruntime CUDA EP (device-resident IOBinding) without and with CUDA graphs, and TensorRT
fp32 (and tf32 with --tf32): score the export's parity frames as the export did (the same z0 for
z_init "random"; encoder.onnx's z0 with the same noise seed for "encoder"; the shift-min off, as the
reference rows were scored) and compare with the float64 PyTorch reference scores stored in the
manifest's parity report (so no torch is needed here): ``parity_ok`` when every frame is within the
export's tolerance. Then time ``score_input`` on one frame with the model's own configuration
(encoder, shift-min included; median and p90 of ``--repeats`` after warm-up). A backend that cannot
run here is listed with the one-line reason.
Torch-free and onnx-free: runs on a Jetson or on a lent GPU machine with only the lean runtime.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from edge_ad.runtime.data_root import default_kinect_root

DATA = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout


def _frames(man: dict, data: Path, spec) -> list:
    """(id, x, start, reference score) of the manifest's parity frames found under ``data``; start:
    the z0 the export scored the frame from (``_start``)."""
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.sources.folder import read_pair
    rows = ((man.get("parity") or {}).get("frames")) or []
    out = []
    for r in rows:
        cls, fid = str(r["frame"]).split("/", 1)
        if not (data / cls).is_dir():
            continue
        rgb, depth = read_pair(data / cls, fid)
        out.append((r["frame"], preprocess(rgb, depth, spec), _start(man, r.get("z_init"), int(r["z0_seed"])),
                     float(r["reference_score"])))
    return out


def _start(man: dict, z_init, seed: int) -> dict:
    """``score_input`` keywords for a frame scored from noise seed ``seed``: the export's parity
    gave z_init "random" make_z0(n_seed, z_dim, seed), and let "encoder" compute z0 with
    encoder.onnx (+ z_init_sigma * the same noise): passing make_z0 there skips the encoder and the
    score is another one (shipped rectangle: relative difference 3.6 instead of 1e-6)."""
    from edge_ad.runtime.config import make_z0
    if (z_init or man["search"].get("z_init", "random")) == "encoder":
        return {"seed": seed}
    lay = man["layout"]
    return {"z0": make_z0(int(lay["n_seed"]), int(lay["z_dim"]), seed)}


def backends(man: dict, tf32: bool = False) -> list:
    """(label, Scorer.load keyword arguments) to try, in order: the default ("auto") on the
    CPU provider, then every other exported variant of the variant table (runtime/variants.py) that runs
    on the CPU provider ("onnxruntime-cpu:<variant>"), the CUDA provider without and with CUDA graphs, and
    TensorRT fp32 (and tf32)."""
    from edge_ad.runtime.backends.onnxruntime_backend import cuda_providers
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.variants import VARIANTS, choose, exported, host_head_runs_here
    cfg = SearchConfig.from_dict(man["search"])
    cpu = {"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}
    out = [("onnxruntime-cpu", cpu)]
    try:
        default = choose(cfg, "onnxruntime", True, man["graphs"]).name
    except ValueError:
        default = None
    for v in VARIANTS.values():
        if v.name != default and "onnxruntime" in v.backends and exported(v, cfg, man["graphs"]) \
                and (v.name != "host-head" or host_head_runs_here()):
            out.append((f"onnxruntime-cpu:{v.name}", {**cpu, "variant": v.name}))
    out += [("onnxruntime-cuda", {"backend": "onnxruntime", "providers": cuda_providers(cuda_graph=False)}),
            ("onnxruntime-cuda-graph", {"backend": "onnxruntime", "providers": cuda_providers(cuda_graph=True)}),
            ("tensorrt-fp32", {"backend": "tensorrt", "backend_options": {"precision": "fp32"}})]
    if tf32:
        out.append(("tensorrt-tf32", {"backend": "tensorrt", "backend_options": {"precision": "tf32"}}))
    return out


def check(model_dir, data: Path = DATA, repeats: int = 20, warmup: int = 3, tf32: bool = False,
          only=None, log=print) -> dict:
    """Run every backend; returns {"model": ..., "backends": {label: result}}."""
    import warnings

    from edge_ad.runtime import Scorer
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.manifest import load_manifest
    from edge_ad.runtime.preprocess import PreprocessSpec
    man = load_manifest(model_dir, verify=True)
    spec = PreprocessSpec.from_dict(man["preprocess"])
    frames = _frames(man, Path(data), spec)
    cfg = SearchConfig.from_dict(man["search"])
    # the reference rows score each frame as given: the shift-min (host code around the graphs) off
    parity_cfg = cfg.replace(score_shift_radius=0) if cfg.score_shift_radius else None
    tolerance = float((man.get("parity") or {}).get("tolerance") or 1e-4)
    R = int(man["layout"]["resolution"])
    x_t = frames[0][1] if frames else np.tanh(np.random.default_rng(0).standard_normal((4, R, R))).astype(np.float32)
    report = {"model": str(model_dir), "search": man["search"], "model_config": man["model"], "tolerance": tolerance,
              "parity_frames": [f[0] for f in frames], "backends": {}}
    for label, kw in backends(man, tf32):
        if only and label not in only:
            continue
        res = {}
        loaded = []            # closed below: a backend's buffers are freed before the next one loads
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                scorer = Scorer.load(model_dir, **kw)
                loaded.append(scorer)
                res["load_s"] = time.perf_counter() - t0
                res["variant"] = scorer.mode
                pscorer = scorer if parity_cfg is None else Scorer.load(model_dir, config=parity_cfg, **kw)
                loaded.append(pscorer)
            rels = []
            for fid, x, start, ref in frames:
                got = pscorer.score_input(x, **start).score
                rels.append(abs(got - ref) / max(abs(ref), 1e-12))
                res.setdefault("scores", {})[fid] = {"score": got, "reference": ref, "rel_diff": rels[-1]}
            res["max_rel_diff"] = max(rels) if rels else None
            res["parity_ok"] = max(rels) <= tolerance if rels else None     # None: no parity frame here
            start = _start(man, None, 0)
            for _ in range(warmup):
                scorer.score_input(x_t, **start)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                scorer.score_input(x_t, **start)
                ts.append(time.perf_counter() - t0)
            res.update({"median_ms": 1e3 * float(np.median(ts)), "p90_ms": 1e3 * float(np.percentile(ts, 90)),
                        "fps": 1.0 / float(np.median(ts)), "repeats": repeats, "ok": True})
            parity = (f"max rel diff vs float64 {res['max_rel_diff']:.2e} ({'within' if res['parity_ok'] else 'OVER'} "
                      f"the export's tolerance {tolerance:g})" if rels else "no parity frames found under --data")
            log(f"{label:24s} {parity}  median {res['median_ms']:.2f} ms  p90 {res['p90_ms']:.2f} ms")
        except Exception as e:  # noqa: BLE001 - report and go on with the next backend
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            res = {"ok": False, "unavailable": f"{type(e).__name__}: {msg}"[:400]}
            log(f"{label:24s} unavailable: {res['unavailable']}")
        finally:
            for s in loaded:
                s.close()
        report["backends"][label] = res
    b = report["backends"]
    if b.get("onnxruntime-cuda", {}).get("ok") and b.get("onnxruntime-cuda-graph", {}).get("ok"):
        report["cuda_graph_speedup"] = b["onnxruntime-cuda"]["median_ms"] / b["onnxruntime-cuda-graph"]["median_ms"]
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--data", default=str(DATA), help="kinect-rgbd root (for the parity frames)")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--tf32", action="store_true", help="also TensorRT with TF32 (report the score drift)")
    ap.add_argument("--only", nargs="*", help="backend labels to run")
    ap.add_argument("--out", help="write the JSON report here")
    a = ap.parse_args(argv)
    rep = check(a.model_dir, Path(a.data), a.repeats, a.warmup, a.tf32, a.only)
    if a.out:
        Path(a.out).write_text(json.dumps(rep, indent=2, default=float))
    return 0 if any(r.get("ok") for r in rep["backends"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
