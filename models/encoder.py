"""An izi encoder (f-AnoGAN, Schlegl et al. 2019) trained after the GAN: E(x) -> z with the generator
frozen, minimising mean((G(E(x)) - x)^2) on the normal training frames. At scoring time E(x) gives
the search's initial latents (SearchConfig.z_init == "encoder"), which the search then refines.

Architecture (export: a plain conv stack, no BatchNorm): Conv(4->w, 4, s2, p1) LeakyReLU(0.2),
Conv(w->2w) LReLU, Conv(2w->4w) LReLU, Conv(4w->8w) LReLU  (64 -> 4x4), Conv(8w->z_dim, 4, s1, p0)
-> (N, z_dim, 1, 1), no output nonlinearity.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from edge_ad.runtime.config import SearchConfig, make_z0
from edge_ad.runtime.latent_memory import BankLayout, latent_memory
from edge_ad.runtime.preprocess import PreprocessSpec

from .data import geometric, photometric, to_tensor
from .dcgan import Generator


@dataclass(frozen=True)
class EncoderConfig:
    z_dim: int = 100
    width: int = 16
    channels: int = 4

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    """x (N, 4, 64, 64) in [-1, 1] -> z (N, z_dim, 1, 1)."""

    def __init__(self, cfg: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.enc = nn.Sequential(
            nn.Conv2d(cfg.channels, w, 4, 2, 1), nn.LeakyReLU(0.2),      # 32x32
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.LeakyReLU(0.2),             # 16x16
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.LeakyReLU(0.2),         # 8x8
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.LeakyReLU(0.2),         # 4x4
            nn.Conv2d(8 * w, cfg.z_dim, 4, 1, 0),                        # 1x1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x)


def train_encoder(G: Generator, data_u8: np.ndarray, *, epochs: int = 100, width: int = 16,
                  batch_size: int = 64, lr: float = 1e-3, seed: int = 0, hflip: bool = True,
                  max_shift: int = 0, brightness: float = 0.0, white_balance: float = 0.0,
                  photometric_target: str = "augmented", log=print) -> tuple[Encoder, dict]:
    """izi training on uint8 frames (N, R, R, 4) with G frozen. Returns (encoder in eval mode, info).

    Each batch is flipped / shifted (hflip, max_shift) then photometrically jittered (brightness,
    white_balance: models.data.photometric). photometric_target "augmented": the loss compares G(E(x'))
    with the jittered x' itself (G must be able to draw it: a GAN trained with the same jitter);
    "clean": with the frame before the jitter, so that E learns to ignore the light (E(x') ~ E(x))."""
    if photometric_target not in ("augmented", "clean"):
        raise ValueError(f"photometric_target must be 'augmented' or 'clean', got {photometric_target!r}")
    jitter = (brightness, white_balance, photometric_target)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    G = G.eval()
    was_trainable = {n: p.requires_grad for n, p in G.named_parameters()}
    G.requires_grad_(False)  # frozen while the encoder trains; restored below (no side effect)
    try:
        return _train_encoder(G, data_u8, epochs, width, batch_size, lr, seed, gen, hflip, max_shift, jitter, log)
    finally:
        for n, p in G.named_parameters():
            p.requires_grad_(was_trainable[n])


def _train_encoder(G, data_u8, epochs, width, batch_size, lr, seed, gen, hflip, max_shift, jitter, log):
    brightness, white_balance, photometric_target = jitter
    E = Encoder(EncoderConfig(z_dim=G.cfg.z_dim, width=width))
    opt = torch.optim.Adam(E.parameters(), lr=lr, betas=(0.5, 0.999))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    X = to_tensor(data_u8, getattr(G, "preprocess", None) or PreprocessSpec())   # (N, 4, R, R)
    N, bs = len(X), min(batch_size, len(X))
    hist, t0 = [], time.perf_counter()
    for ep in range(1, epochs + 1):
        E.train()
        perm = torch.randperm(N, generator=gen)
        tot = 0.0
        for s in range(0, N - bs + 1, bs):
            x = geometric(X[perm[s:s + bs]], gen, hflip, max_shift)               # (bs, 4, R, R)
            x_in = photometric(x, gen, brightness, white_balance)
            target = x if photometric_target == "clean" else x_in
            loss = ((G(E(x_in)) - target) ** 2).mean()
            opt.zero_grad(), loss.backward(), opt.step()
            tot += loss.item() * len(x)
        sched.step()
        hist.append(tot / (N // bs * bs))
        if log and (ep % 10 == 0 or ep == epochs):
            log(f"encoder epoch {ep}/{epochs} izi loss {hist[-1]:.5f}")
    objective = ("izi (f-AnoGAN) on jittered inputs x': mean((G(E(x')) - x)^2) against the clean frame, G frozen"
                 if photometric_target == "clean" and (brightness or white_balance)
                 else "izi (f-AnoGAN): mean((G(E(x)) - x)^2), G frozen")
    info = {"objective": objective, "epochs": epochs,
            "width": width, "batch_size": bs, "lr": lr, "adam_betas": [0.5, 0.999], "schedule": "cosine",
            "seed": seed, "hflip": hflip, "max_shift": max_shift, "brightness": brightness,
            "white_balance": white_balance, "photometric_target": photometric_target, "loss_history": hist,
            "wall_seconds": time.perf_counter() - t0}
    return E.eval(), info


def encoder_to_dict(E: Encoder) -> dict:
    """What a checkpoint's scoring section stores: {"config": ..., "state_dict": ...}."""
    return {"config": E.cfg.to_dict(), "state_dict": {k: v.detach().cpu() for k, v in E.state_dict().items()}}


def encoder_from_dict(d: dict) -> Encoder:
    """Inverse of ``encoder_to_dict``; raises ValueError on a mismatch."""
    try:
        E = Encoder(EncoderConfig(**d["config"]))
        E.load_state_dict(d["state_dict"], strict=True)
    except (KeyError, TypeError, RuntimeError) as e:
        raise ValueError(f"invalid encoder in checkpoint: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    return E.eval()


def encoder_z0(E: Encoder, X: np.ndarray, cfg: SearchConfig, seeds: Optional[list] = None) -> np.ndarray:
    """Initial latents for frames X (B, 4, R, R): z0_j = E(x) + z_init_sigma * N(0, I)_j (the noise from
    make_z0 with the frame's seed), float32 (B, n_seed, z_dim)."""
    return z0_from_latents(encoder_latents(E, X), cfg, seeds)


def z0_from_latents(z: np.ndarray, cfg: SearchConfig, seeds: Optional[list] = None) -> np.ndarray:
    """encoder_z0 from already computed latents z = E(X) (B, z_dim)."""
    z0 = np.repeat(z[:, None], cfg.n_seed, 1)                                     # (B, n_seed, z_dim)
    if cfg.z_init_sigma:
        if seeds is None:
            raise ValueError("z_init_sigma > 0 needs per-frame seeds")
        z0 = z0 + cfg.z_init_sigma * np.stack([make_z0(cfg.n_seed, z.shape[1], s) for s in seeds])
    return z0.astype(np.float32)


def encoder_latents(E: Encoder, X: np.ndarray, batch: int = 256) -> np.ndarray:
    """E(x) for frames X (N, 4, R, R) in [-1, 1]: float32 (N, z_dim)."""
    X = np.asarray(X, dtype=np.float32)
    out = []
    with torch.no_grad():
        for a in range(0, len(X), batch):
            out.append(E(torch.as_tensor(X[a:a + batch])).flatten(1).numpy())
    return np.concatenate(out).astype(np.float32)


def latent_bank(E: Encoder, train_X: np.ndarray) -> np.ndarray:
    """The latent memory of a model: E(x) of its normal training frames (N, z_dim) float32, stored
    in the checkpoint's scoring section (``scoring["latent_bank"]``) and exported as latent_bank.npy."""
    return encoder_latents(E, train_X)


def latent_distances(E: Encoder, X: np.ndarray, bank: np.ndarray, cfg: SearchConfig,
                     latents: Optional[np.ndarray] = None,
                     bank_rows_per_frame: Optional[BankLayout] = None) -> np.ndarray:
    """d(E(x), bank) per frame (runtime.latent_memory.latent_memory: cfg's metric, bank_augment_weight and
    bank_trusted_augment; ``bank_rows_per_frame`` the bank's layout: its augment list, or 1 + len(augment)
    when no augmentation is trusted), or a runtime LatentMemory already prepared (used as it is, e.g. the
    silhouette lever's bank + paired rows): float64 (N,). ``latents``: E(X) if already computed."""
    memory = latent_memory(bank, cfg, bank_rows_per_frame)
    return np.array([memory.distance(e) for e in (encoder_latents(E, X) if latents is None else latents)])
