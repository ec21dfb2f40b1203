"""Reproduce the "how the configuration was chosen" table of HISTORY.md: val AUROC of score variants
on a shipped model's generator + izi encoder (residual, latent nearest-neighbour distances, products).

    .venv/bin/python models/kinect-rgbd/latent_variants.py --class cylinder [--data ../shared/data/kinect-rgbd]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from edge_ad.models.checkpoint import load_generator
from edge_ad.models.data import KINECT_CLASSES, load_kinect, to_tensor
from edge_ad.models.encoder import encoder_latents
from edge_ad.models.evaluate import evaluate_scores
from edge_ad.models.search import checkpoint_encoder, checkpoint_search_config
from edge_ad.runtime.data_root import default_kinect_root

HERE = Path(__file__).resolve().parent


def nn_dist(Z: np.ndarray, bank: np.ndarray, k: int = 1) -> np.ndarray:
    """Mean of the k smallest squared distances of each row of Z (N, d) to the rows of bank (M, d)."""
    d = (Z ** 2).sum(1)[:, None] + (bank ** 2).sum(1)[None] - 2 * Z @ bank.T     # (N, M)
    return np.sort(np.maximum(d, 0), 1)[:, :k].mean(1)


def unit(Z: np.ndarray) -> np.ndarray:
    return Z / np.linalg.norm(Z, axis=1, keepdims=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--class", dest="cls", required=True, choices=KINECT_CLASSES)
    ap.add_argument("--data", default=str(default_kinect_root()))
    a = ap.parse_args(argv)
    path = HERE / f"{a.cls}.pt"
    G, E, cfg = load_generator(path), checkpoint_encoder(path), checkpoint_search_config(path)
    p = cfg.score_fg_power
    X = {c: to_tensor(load_kinect(a.data, c, "val", G.preprocess)[1], G.preprocess).numpy() for c in KINECT_CLASSES}
    T = to_tensor(load_kinect(a.data, a.cls, "train", G.preprocess)[1], G.preprocess).numpy()
    Zt = encoder_latents(E, T).astype(np.float64)                                  # (300, z_dim) the bank
    Ztf = encoder_latents(E, T[..., ::-1].copy()).astype(np.float64)               # hflipped train frames
    Z = {c: encoder_latents(E, x).astype(np.float64) for c, x in X.items()}
    with torch.no_grad():
        res = {}
        for c, x in X.items():
            r = G(torch.as_tensor(Z[c], dtype=torch.float32)[:, :, None, None]).numpy()
            fg = np.maximum((x[:, 3] > -1 + 1e-3).mean((1, 2)), cfg.fg_floor)
            res[c] = ((x - r) ** 2).mean((1, 2, 3)) / fg ** p                        # residual / fg^p
    mu = Zt.mean(0)
    _, S, Vt = np.linalg.svd(Zt - mu, full_matrices=False)
    W = Vt.T / (S / np.sqrt(len(Zt)) + 1e-3)                                         # whitening
    feats = {
        "latent NN, L2": {c: nn_dist(z, Zt) for c, z in Z.items()},
        "latent NN, cosine": {c: nn_dist(unit(z), unit(Zt)) for c, z in Z.items()},
        "latent 3-NN, L2": {c: nn_dist(z, Zt, 3) for c, z in Z.items()},
        "latent 5-NN, L2": {c: nn_dist(z, Zt, 5) for c, z in Z.items()},
        "latent NN, L2, bank + hflip": {c: nn_dist(z, np.r_[Zt, Ztf]) for c, z in Z.items()},
        "latent NN, whitened L2": {c: nn_dist((z - mu) @ W, (Zt - mu) @ W) for c, z in Z.items()},
    }
    rows = {f"residual / fg^{p:g}": res, **feats}
    for name in ("latent NN, L2", "latent NN, cosine", "latent NN, whitened L2"):
        rows[f"residual x {name}"] = {c: res[c] * feats[name][c] for c in X}
    for name, s in rows.items():
        s = dict(s)
        normal = s.pop(a.cls)
        print(f"{a.cls:10s} {evaluate_scores(normal, s)['overall']['auroc']:.3f}  {name}")


if __name__ == "__main__":
    main()
