"""The generator as a pure function of stacked per-seed weights (grouped convolutions).

n_seed weight copies are stacked so that the whole seeded search is one batch-1 network:
a ConvTranspose weight [in, out, 4, 4] becomes [S*in, out, 4, 4] with groups=S, a per-channel
BatchNorm vector [c] becomes [S*c], and the activations are (1, S*c, h, w). Seed j owns channel
block j everywhere, so the seeds never mix. Used by the batched reference scorer and the exporter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .dcgan import Generator

BN_EPS = 1e-5


def layer_specs(G: Generator) -> list[dict]:
    """Per ConvT layer: its parameter names, stride, padding, and whether BN+ReLU or bias+Tanh follow."""
    specs = []
    for i in range(4):
        specs.append({"conv": f"gen.{i}.0.weight", "bn_w": f"gen.{i}.1.weight", "bn_b": f"gen.{i}.1.bias",
                      "bn_m": f"gen.{i}.1.running_mean", "bn_v": f"gen.{i}.1.running_var",
                      "stride": 1 if i == 0 else 2, "padding": 0 if i == 0 else 1})
    specs.append({"conv": "gen.4.weight", "bias": "gen.4.bias", "stride": 2, "padding": 1})
    return specs


def stack_params(G: Generator, n_seed: int, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """theta -> n_seed copies concatenated on dim 0: each [shape0 * S, ...]."""
    return {n: p.detach().to(dtype).repeat(n_seed, *[1] * (p.ndim - 1)).clone()
            for n, p in G.named_parameters()}


def bn_scale_shift(G: Generator, n_seed: int, dtype=torch.float32) -> dict[str, tuple]:
    """Eval-mode BatchNorm folded to inv_std per layer, tiled for S seeds: {layer: (mean[S*c], inv_std[S*c])}."""
    out = {}
    for i in range(4):
        m = G.state_dict()[f"gen.{i}.1.running_mean"].to(dtype)
        v = G.state_dict()[f"gen.{i}.1.running_var"].to(dtype)
        out[i] = (m.repeat(n_seed), torch.rsqrt(v + BN_EPS).repeat(n_seed))
    return out


def forward_stacked(params: dict, bn: dict, z: torch.Tensor, n_seed: int) -> torch.Tensor:
    """z (1, S*z_dim, 1, 1) -> images (1, S*C, 64, 64), seed j in channels [j*C, (j+1)*C)."""
    h = z
    for i in range(4):
        h = F.conv_transpose2d(h, params[f"gen.{i}.0.weight"], stride=1 if i == 0 else 2,
                               padding=0 if i == 0 else 1, groups=n_seed)
        mean, inv_std = bn[i]
        scale = (params[f"gen.{i}.1.weight"] * inv_std)[None, :, None, None]
        h = (h - mean[None, :, None, None]) * scale + params[f"gen.{i}.1.bias"][None, :, None, None]
        h = torch.relu(h)
    h = F.conv_transpose2d(h, params["gen.4.weight"], params["gen.4.bias"], stride=2, padding=1, groups=n_seed)
    return torch.tanh(h)
