"""The search's hyperparameters (stored in manifests and checkpoints) and the initial latents.

Defaults are the algorithm's reference configuration (adgan-rgbd-algorithm.md):
lr_z = 5e-2, lr_theta = 6e-9, n_seed = 3, k = 19, Adam with torch's defaults, MSE loss.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class SearchConfig:
    """How a frame is scored: k Adam steps on z and on per-seed weight copies, n_seed seeds."""

    lr_z: float = 5e-2
    lr_theta: float = 6e-9
    n_seed: int = 3
    k: int = 19
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    name: str = "reference"
    # Score normalisation (issue 4), applied after the search; the search itself is unchanged.
    # score = mean_j loss_j / max(fg(x), fg_floor) ** score_fg_power, fg(x) = share of pixels of the
    # INPUT whose depth channel is foreground (> -1, i.e. raw depth > 0). 0.0 = the reference (plain
    # mean); 1.0 = squared error per foreground pixel, so big objects do not score as anomalous.
    score_fg_power: float = 0.0
    fg_floor: float = 0.01
    # Initial latents (issue 4): "random" (the reference: z0 ~ N(0, I) from make_z0) or "encoder"
    # (an izi encoder stored with the model gives E(x); z0_j = E(x) + z_init_sigma * make_z0(...)_j).
    z_init: str = "random"
    z_init_sigma: float = 0.0

    def __post_init__(self):
        if self.n_seed < 1 or self.k < 0:
            raise ValueError(f"need n_seed >= 1 and k >= 0, got n_seed={self.n_seed}, k={self.k}")
        if self.lr_z < 0 or self.lr_theta < 0:
            raise ValueError("learning rates must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ValueError(f"invalid Adam settings beta1={self.beta1} beta2={self.beta2} eps={self.eps}")
        if self.z_init not in ("random", "encoder") or self.z_init_sigma < 0:
            raise ValueError(f"z_init must be 'random' or 'encoder' and z_init_sigma >= 0, got "
                             f"{self.z_init!r}, {self.z_init_sigma}")
        if self.score_fg_power < 0 or not 0 < self.fg_floor <= 1:
            raise ValueError(f"need score_fg_power >= 0 and 0 < fg_floor <= 1, got "
                             f"score_fg_power={self.score_fg_power}, fg_floor={self.fg_floor}")

    @property
    def updates_weights(self) -> bool:
        """False for the z-only fast variant (lr_theta == 0): no weight gradients needed."""
        return self.lr_theta > 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown search settings {sorted(unknown)}")
        return cls(**d)

    def replace(self, **kw) -> "SearchConfig":
        d = self.to_dict()
        d.update({k: v for k, v in kw.items() if v is not None})
        return SearchConfig.from_dict(d)


def foreground_fraction(x: np.ndarray) -> float:
    """Share of pixels of a preprocessed frame x (4, R, R) in [-1, 1] whose depth (channel 3) is
    foreground: > -1 + 1e-3, i.e. raw depth > 0 (background and table are 0 at capture)."""
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[0] != 4:
        raise ValueError(f"x must be (4, R, R), got shape {x.shape}")
    return float((x[3] > -1 + 1e-3).mean())


def score_scale(x: np.ndarray, cfg: SearchConfig) -> float:
    """Divisor applied to the mean seed loss: max(fg(x), fg_floor) ** score_fg_power (1.0 for the
    reference configuration). Computed on the host from the input frame; no graph changes needed."""
    if cfg.score_fg_power == 0:
        return 1.0
    return float(max(foreground_fraction(x), cfg.fg_floor) ** cfg.score_fg_power)


def adam_bias_corrections(t: int, beta1: float, beta2: float) -> tuple[float, float]:
    """Adam's bias corrections for step t (1-based), in float64 as torch computes them."""
    return 1.0 - beta1 ** t, 1.0 - beta2 ** t


def make_z0(n_seed: int, z_dim: int, seed: Optional[int] = None,
            rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Initial latents z_{j,0} ~ N(0, I): float32 (n_seed, z_dim). Same numbers on every backend."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    return rng.standard_normal((n_seed, z_dim)).astype(np.float32)


def frame_seed(seed: int, index: int) -> int:
    """Per-frame latent seed derived from a run seed and the frame's index (reproducible runs)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
