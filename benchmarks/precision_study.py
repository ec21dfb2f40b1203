"""What reduced precision does to the scores: TF32 emulated on the CPU, and the fp16 weight path.

    python -m edge_ad.benchmarks.precision_study CHECKPOINT [--data DIR] [--normal CLASS] [--n 20]
                                                 [--out study.json]

Workstation tool (needs torch). For each val frame of the normal class and the same number of
anomalous frames (the other classes), with the same z0 per frame:

* fp32:  the reference search (``search_eager``) in float32;
* tf32:  the same, with every convolution GEMM's inputs rounded to TF32 (10 mantissa bits, round
  to nearest even) in the forward pass *and* in both backward GEMMs (the incoming gradient too),
  fp32 accumulation: what TensorRT/cuDNN do with TF32 enabled;
* fp16 weights: a weight path stored in float16 cannot apply the 6e-9 Adam step (it rounds to 0),
  so it computes the z-only search (lr_theta = 0), which is what is scored here;
* float64 on the first ``--n64`` frames, as the accuracy yardstick.

Reports the score drift (relative to fp32 and to float64) and the AUROC of each, plus the precision
guard's counts on the checkpoint's weights. CPU timings are irrelevant here; this is about numbers.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np

from edge_ad.runtime.data_root import default_kinect_root

DATA = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout


def tf32_round(t):
    """Round a float32 tensor to TF32 (1 + 8 + 10 bits), nearest even; returned as float32."""
    import torch
    if t.dtype != torch.float32:
        raise TypeError("tf32_round expects float32")
    bits = t.contiguous().view(torch.int32)
    lsb = (bits >> 13) & 1
    rounded = (bits + 0x0FFF + lsb) & ~0x1FFF
    out = rounded.view(torch.float32)
    return torch.where(torch.isfinite(t), out, t)


@contextlib.contextmanager
def emulate_tf32():
    """Within the block, torch.nn.functional.conv_transpose2d/conv2d round their GEMM operands to
    TF32 in the forward pass and the incoming gradient in the backward pass."""
    import torch
    import torch.nn.functional as F

    class _RoundGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, y):
            return y.view_as(y)

        @staticmethod
        def backward(ctx, g):
            return tf32_round(g)

    def ste(x):   # rounded value, identity gradient
        return x + (tf32_round(x.detach()) - x).detach()

    orig_t, orig_c = F.conv_transpose2d, F.conv2d

    def conv_t(x, w, bias=None, *a, **kw):
        y = _RoundGrad.apply(orig_t(ste(x), ste(w), None, *a, **kw))
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    def conv(x, w, bias=None, *a, **kw):
        y = _RoundGrad.apply(orig_c(ste(x), ste(w), None, *a, **kw))
        return y if bias is None else y + bias.view(1, -1, 1, 1)

    F.conv_transpose2d, F.conv2d = conv_t, conv
    try:
        yield
    finally:
        F.conv_transpose2d, F.conv2d = orig_t, orig_c


def _auroc(normal, anomalous) -> float:
    """P(score_anomalous > score_normal) (+ half the ties): the Mann-Whitney AUROC."""
    a, n = np.asarray(anomalous)[:, None], np.asarray(normal)[None, :]
    return float(((a > n).sum() + 0.5 * (a == n).sum()) / (a.size * n.size))


def study(checkpoint, data: Path = DATA, normal: str = None, n: int = 20, n64: int = 4, k: int = None,
          seed: int = 0, log=print) -> dict:
    import torch

    from edge_ad.models.checkpoint import load_generator
    from edge_ad.models.search import search_eager
    from edge_ad.runtime.config import SearchConfig, frame_seed, make_z0
    from edge_ad.runtime.backends.precision import analyze
    from edge_ad.runtime.preprocess import PreprocessSpec, preprocess
    from edge_ad.runtime.sources.folder import read_pair
    G = load_generator(checkpoint)
    if normal is None:   # the class the checkpoint was trained on, if it says
        try:
            from edge_ad.models.checkpoint import read_checkpoint
            tr = read_checkpoint(checkpoint).get("train") or {}
            data_ = tr.get("data") or {}
            normal = tr.get("class") or tr.get("normal_class") or data_.get("class") or data_.get("cls")
        except Exception:  # noqa: BLE001 - a plain state_dict has no metadata
            normal = None
    spec = getattr(G, "preprocess", None) or PreprocessSpec()
    cfg = SearchConfig() if k is None else SearchConfig(k=k)
    splits = json.loads((Path(data) / "splits.json").read_text())
    classes = sorted(splits)
    normal = normal if normal in classes else classes[0]
    others = [c for c in classes if c != normal]
    frames = [(normal, str(i), 0) for i in splits[normal]["val"][:n]]
    per = -(-n // len(others))
    frames += [(c, str(i), 1) for c in others for i in splits[c]["val"][:per]][: n]
    W = {name: p.detach().numpy() for name, p in G.named_parameters()}
    guard = {p: analyze(W, cfg.lr_theta, p).summary() for p in ("fp32", "fp16")}
    rows = []
    t0 = time.perf_counter()
    for i, (cls, fid, label) in enumerate(frames):
        rgb, depth = read_pair(Path(data) / cls, fid)
        x = preprocess(rgb, depth, spec)
        z0 = make_z0(cfg.n_seed, G.cfg.z_dim, frame_seed(seed, i))
        r = {"frame": f"{cls}/{fid}", "anomalous": label}
        r["fp32"] = search_eager(G, x, cfg, z0=z0).score
        with emulate_tf32():
            r["tf32"] = search_eager(G, x, cfg, z0=z0).score
        r["fp16_weights"] = search_eager(G, x, cfg.replace(lr_theta=0.0), z0=z0).score
        if i < n64 or (label and i - n < n64):
            r["fp64"] = search_eager(G, x, cfg, z0=z0, dtype=torch.float64).score
        rows.append(r)
        log(f"{i + 1}/{len(frames)} {r['frame']} fp32 {r['fp32']:.6f} tf32 {r['tf32']:.6f} "
            f"fp16w {r['fp16_weights']:.6f}" + (f" fp64 {r['fp64']:.6f}" if "fp64" in r else "")
            + f"  ({time.perf_counter() - t0:.0f} s)")

    def rel(a, b):
        return [abs(r[a] - r[b]) / abs(r[b]) for r in rows if a in r and b in r]

    out = {"checkpoint": str(checkpoint), "model": G.cfg.to_dict(), "search": cfg.to_dict(), "normal": normal,
           "n_normal": sum(1 - r["anomalous"] for r in rows), "n_anomalous": sum(r["anomalous"] for r in rows),
           "guard": guard, "frames": rows}
    for v in ("fp32", "tf32", "fp16_weights"):
        out[f"auroc_{v}"] = _auroc([r[v] for r in rows if not r["anomalous"]], [r[v] for r in rows if r["anomalous"]])
    for a, b in (("tf32", "fp32"), ("fp32", "fp64"), ("tf32", "fp64"), ("fp16_weights", "fp32")):
        d = rel(a, b)
        if d:
            out[f"rel_{a}_vs_{b}"] = {"median": float(np.median(d)), "max": float(np.max(d)), "n": len(d)}
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--normal", help="normal class (default: the first)")
    ap.add_argument("--n", type=int, default=20, help="normal frames (and as many anomalous)")
    ap.add_argument("--n64", type=int, default=4, help="frames per label also scored in float64")
    ap.add_argument("-k", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    rep = study(a.checkpoint, Path(a.data), a.normal, a.n, a.n64, a.k)
    summary = {k: v for k, v in rep.items() if k != "frames"}
    print(json.dumps(summary, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(rep, indent=2))


if __name__ == "__main__":
    main()
