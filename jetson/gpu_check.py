"""Prepared GPU check: parity and per-frame latency of every backend that runs on this machine.

    python -m edge_ad.jetson.gpu_check MODEL_DIR [--data DIR] [--repeats 20] [--out check.json]

For each of onnxruntime CPU (the default, then every other exported variant of runtime/variants.py that
runs there), onnxruntime CUDA EP (device-resident IOBinding) without and with CUDA graphs, and TensorRT
fp32 (and tf32 with --tf32): score the export's parity frames with the same
z0 as the export did and compare with the float64 PyTorch reference scores stored in the manifest's
parity report (so no torch is needed here), then time ``score_input`` on one frame (median and p90
of ``--repeats`` after warm-up). A backend that cannot run here is listed with the one-line reason.
Torch-free and onnx-free: runs on a Jetson or on a lent GPU machine with only the lean runtime.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kinect-rgbd"


def _frames(man: dict, data: Path, spec) -> list:
    """(id, x, z0 seed, reference score) of the manifest's parity frames found under ``data``."""
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.sources.folder import read_pair
    rows = ((man.get("parity") or {}).get("frames")) or []
    out = []
    for r in rows:
        cls, fid = str(r["frame"]).split("/", 1)
        if not (data / cls).is_dir():
            continue
        rgb, depth = read_pair(data / cls, fid)
        out.append((r["frame"], preprocess(rgb, depth, spec), int(r["z0_seed"]), float(r["reference_score"])))
    return out


def backends(man: dict, tf32: bool = False) -> list:
    """(label, Scorer.load keyword arguments, environment) to try, in order: the default ("auto") on the
    CPU provider, then every other exported variant of the variant table (runtime/variants.py) that runs
    on the CPU provider ("onnxruntime-cpu:<variant>"), the CUDA provider without and with CUDA graphs, and
    TensorRT fp32 (and tf32)."""
    from edge_ad.runtime.backends.onnxruntime_backend import cuda_providers
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.variants import VARIANTS, choose, exported, host_head_runs_here
    cfg = SearchConfig.from_dict(man["search"])
    cpu = {"backend": "onnxruntime", "providers": ["CPUExecutionProvider"]}
    out = [("onnxruntime-cpu", cpu, {})]
    try:
        default = choose(cfg, "onnxruntime", True, man["graphs"]).name
    except ValueError:
        default = None
    for v in VARIANTS.values():
        if v.name != default and "onnxruntime" in v.backends and exported(v, cfg, man["graphs"]) \
                and (v.name != "host-head" or host_head_runs_here()):
            out.append((f"onnxruntime-cpu:{v.name}", {**cpu, "variant": v.name}, {}))
    out += [("onnxruntime-cuda", {"backend": "onnxruntime", "providers": cuda_providers(cuda_graph=False)}, {}),
            ("onnxruntime-cuda-graph", {"backend": "onnxruntime", "providers": cuda_providers(cuda_graph=True)}, {}),
            ("tensorrt-fp32", {"backend": "tensorrt"}, {"EDGE_AD_TRT_PRECISION": "fp32"})]
    if tf32:
        out.append(("tensorrt-tf32", {"backend": "tensorrt"}, {"EDGE_AD_TRT_PRECISION": "tf32"}))
    return out


def check(model_dir, data: Path = DATA, repeats: int = 20, warmup: int = 3, tf32: bool = False,
          only=None, log=print) -> dict:
    """Run every backend; returns {"model": ..., "backends": {label: result}}."""
    import warnings

    from edge_ad.runtime import Scorer
    from edge_ad.runtime.config import make_z0
    from edge_ad.runtime.manifest import load_manifest
    from edge_ad.runtime.preprocess import PreprocessSpec
    man = load_manifest(model_dir, verify=True)
    spec = PreprocessSpec.from_dict(man["preprocess"])
    frames = _frames(man, Path(data), spec)
    lay = man["layout"]
    S, zd, R = int(lay["n_seed"]), int(lay["z_dim"]), int(lay["resolution"])
    x_t = frames[0][1] if frames else np.tanh(np.random.default_rng(0).standard_normal((4, R, R))).astype(np.float32)
    report = {"model": str(model_dir), "search": man["search"], "model_config": man["model"],
              "parity_frames": [f[0] for f in frames], "backends": {}}
    for label, kw, env in backends(man, tf32):
        if only and label not in only:
            continue
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        res = {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                scorer = Scorer.load(model_dir, **kw)
                res["load_s"] = time.perf_counter() - t0
                res["variant"] = scorer.mode
            rels = []
            for fid, x, zseed, ref in frames:
                got = scorer.score_input(x, z0=make_z0(S, zd, zseed)).score
                rels.append(abs(got - ref) / max(abs(ref), 1e-12))
                res.setdefault("scores", {})[fid] = {"score": got, "reference": ref, "rel_diff": rels[-1]}
            res["max_rel_diff"] = max(rels) if rels else None
            z0 = make_z0(S, zd, 0)
            for _ in range(warmup):
                scorer.score_input(x_t, z0=z0)
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                scorer.score_input(x_t, z0=z0)
                ts.append(time.perf_counter() - t0)
            res.update({"median_ms": 1e3 * float(np.median(ts)), "p90_ms": 1e3 * float(np.percentile(ts, 90)),
                        "fps": 1.0 / float(np.median(ts)), "repeats": repeats, "ok": True})
            log(f"{label:24s} max rel diff vs float64 {res['max_rel_diff'] if rels else float('nan'):.2e}  "
                f"median {res['median_ms']:.2f} ms  p90 {res['p90_ms']:.2f} ms")
        except Exception as e:  # noqa: BLE001 - report and go on with the next backend
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            res = {"ok": False, "unavailable": f"{type(e).__name__}: {msg}"[:400]}
            log(f"{label:24s} unavailable: {res['unavailable']}")
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
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
