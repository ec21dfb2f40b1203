"""The study's 4-channel DCGAN (see ../shared/reference/study-dcgan.md), module names kept
exactly so that the study's state_dicts load: ``gen.{0..3}`` blocks, ``gen.4`` ConvT, ``gen.5`` Tanh.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class GanConfig:
    """Architecture of one generator/discriminator pair."""

    z_dim: int = 100
    features_g: int = 64
    features_d: int = 64
    channels: int = 4
    resolution: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GanConfig":
        cfg = cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
        if cfg.resolution != 64:
            raise ValueError(f"config.resolution {cfg.resolution}: only 64x64 DCGANs are supported")
        return cfg


def _g_block(cin: int, cout: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride, padding, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Generator(nn.Module):
    """z (N, z_dim, 1, 1) -> image (N, channels, 64, 64) in [-1, 1]."""

    def __init__(self, cfg: GanConfig = GanConfig()):
        super().__init__()
        self.cfg = cfg
        fg = cfg.features_g
        self.gen = nn.Sequential(
            _g_block(cfg.z_dim, fg * 16, 1, 0),   # 1x1 -> 4x4
            _g_block(fg * 16, fg * 8, 2, 1),      # -> 8x8
            _g_block(fg * 8, fg * 4, 2, 1),       # -> 16x16
            _g_block(fg * 4, fg * 2, 2, 1),       # -> 32x32
            nn.ConvTranspose2d(fg * 2, cfg.channels, 4, 2, 1),  # -> 64x64, with bias
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.gen(z)


class Discriminator(nn.Module):
    """image (N, channels, 64, 64) -> (N, 1, 1, 1); a probability, or a raw critic for WGAN-GP."""

    def __init__(self, cfg: GanConfig = GanConfig(), sigmoid: bool = True, norm: str = "batch"):
        """norm: "batch" (the study), or "instance" (per-sample, so WGAN-GP's per-sample gradient
        penalty stays valid; a BatchNorm critic couples the samples of a batch)."""
        super().__init__()
        fd = cfg.features_d
        if norm not in ("batch", "instance"):
            raise ValueError(f"critic norm must be 'batch' or 'instance', got {norm!r}")

        def block(cin, cout):
            layer = nn.BatchNorm2d(cout) if norm == "batch" else nn.InstanceNorm2d(cout, affine=True)
            return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), layer, nn.LeakyReLU(0.2))

        layers = [nn.Conv2d(cfg.channels, fd, 4, 2, 1), nn.LeakyReLU(0.2),   # 32x32
                  block(fd, fd * 2), block(fd * 2, fd * 4), block(fd * 4, fd * 8),  # 16, 8, 4
                  nn.Conv2d(fd * 8, 1, 4, 2, 0)]                                # 1x1
        if sigmoid:
            layers.append(nn.Sigmoid())
        self.disc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.disc(x)


def init_weights(model: nn.Module) -> None:
    """The study's init: N(0, 0.02) for conv and BatchNorm weights, zero BatchNorm bias."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)  # centred at 1 as in the DCGAN reference code
            nn.init.zeros_(m.bias)
