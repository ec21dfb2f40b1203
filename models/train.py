"""Training a one-class RGB-D DCGAN (BCE or WGAN-GP), with progress, sample grids, loss curves
and resumable checkpoints that carry their config."""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from edge_ad.runtime.preprocess import PreprocessSpec

from .checkpoint import read_checkpoint, save_checkpoint
from .data import augment, to_tensor
from .dcgan import Discriminator, GanConfig, Generator, init_weights
from .distributed import Dist, state_checksum, unwrap
from .plots import save_loss_curve, save_sample_grid

OBJECTIVES = ("bce", "wgan-gp")
# TrainConfig fields added after runs were saved, with the value those runs trained with (resume)
ADDED_FIELDS = {"white_balance": 0.0}


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in the checkpoint)."""

    objective: str = "bce"
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.9
    features_g: int = 64
    features_d: int = 64
    z_dim: int = 100
    seed: int = 0
    hflip: bool = True
    max_shift: int = 0
    brightness: float = 0.0
    white_balance: float = 0.0   # colour casts: R and B gains 1 + U(-wb, wb) (data.photometric)
    critic_iters: int = 5
    critic_norm: str = "batch"  # "instance" keeps WGAN-GP's per-sample gradient penalty valid
    gp_lambda: float = 10.0
    sample_every: int = 10
    snapshot_every: int = 0  # also keep epoch_XXXX.pt every N epochs (0: only last.pt)

    def __post_init__(self):
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


@dataclass
class TrainState:
    epoch: int = 0
    history: dict = field(default_factory=lambda: {"epoch": [], "loss_g": [], "loss_d": [], "seconds": []})


# data summary fields (models/data.summarize) measured from the frames, not naming them: not compared on resume
DERIVED_DATA_FIELDS = ("foreground_fraction",)


# data summary fields that checkpoints written before them lack: compared only when both summaries have them
ADDED_DATA_FIELDS = ("frames_sha256_16",)


def _other_data(old: dict, new: dict) -> list:
    """The fields by which two data summaries (models/data.summarize, derived fields left out) name other frames
    ([]: the same frames): any differing field but the source path, which counts only when the frames' content
    hash is not on both sides (the same frames copied to another disk resume; without it, the path tells)."""
    unknown = {k for k in ADDED_DATA_FIELDS if k not in old or k not in new}
    differ = sorted(k for k in (set(old) | set(new)) - unknown if old.get(k) != new.get(k))
    return differ if [k for k in differ if k != "source"] or unknown else []


def _changes(old: dict, new: dict, keys=None) -> str:
    """'key old -> new' for each key whose value differs between two dicts (missing: None), or of ``keys``."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)) if keys is None else keys
    return ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in keys)


def _data_text(d: dict) -> str:
    """A data summary (models/data.summarize) in words: source, class and split when given, frames, id hash."""
    where = " ".join(str(x) for x in (d.get("source"), d.get("cls") and f"class {d['cls']}",
                                       d.get("split") and f"split {d['split']}") if x)
    return f"{where or 'unnamed data'} ({d.get('n_frames')} frames, ids {d.get('ids_sha256_16')})"


def _gradient_penalty(D: nn.Module, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    eps = torch.rand(real.shape[0], 1, 1, 1, generator=gen)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def train(data_u8: np.ndarray, out_dir: str | Path, cfg: TrainConfig, *, data_summary: dict,
          spec: PreprocessSpec = PreprocessSpec(), resume: bool = True, progress: bool = True,
          log=print, dist: Optional[Dist] = None) -> Path:
    """Train on uint8 RGBD frames (N, R, R, 4). Writes out_dir/last.pt (resumable; also a generator
    checkpoint for ``load_generator``), samples_XXXX.png, loss_curve.png. Returns the checkpoint path.

    dist: this process's rank under torchrun (``Dist.from_env()``); None = one process, as always.
    Distributed: G and D in DistributedDataParallel, each epoch's permutation split by a
    DistributedSampler, ``batch_size`` the global batch (batch_size // world_size per rank), losses
    averaged over ranks; rank 0 alone writes checkpoints, sample grids and logs; each rank's noise
    stream is seeded with seed + rank and saved for an exact resume. One training per ``out_dir`` at a time:
    rank 0 holds out_dir/.lock (runtime.results.try_lock), a second one is refused (ValueError) on every rank."""
    from edge_ad.runtime.results import try_lock
    dist = dist or Dist()
    out = Path(out_dir)
    lock = None
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / ".lock", "a")
    try:
        if not dist.broadcast(try_lock(lock) if dist.is_main else None):
            raise ValueError(f"{out} is being written by another edge-ad train (it holds {out / '.lock'}): two "
                             "trainings never write one --out (the last one's last.pt would replace the other's); "
                             "use another --out")
        return _train(data_u8, out, cfg, data_summary=data_summary, spec=spec, resume=resume, progress=progress,
                      log=log, dist=dist)
    finally:
        if lock is not None:
            lock.close()


def _train(data_u8: np.ndarray, out_dir: Path, cfg: TrainConfig, *, data_summary: dict, spec: PreprocessSpec,
           resume: bool, progress: bool, log, dist: Dist) -> Path:
    """``train``'s work, under out_dir's lock: the models (fresh, or resumed from out_dir/last.pt), then
    per epoch: its steps, the mean losses, sample grids and checkpoints when due."""
    if not dist.is_main:
        log, progress = (lambda *a, **k: None), False
    if dist.enabled and cfg.objective != "bce":
        raise ValueError("distributed training supports --objective bce: the WGAN-GP gradient penalty "
                         "differentiates through the critic twice, which DistributedDataParallel does not support")
    out = Path(out_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed + dist.rank)   # this rank's noise: batches, augmentation, z
    G, D, opt_g, opt_d = _models(cfg, spec, dist.device)
    state = TrainState()
    ckpt_path = out / "last.pt"
    ck = _checkpoint_to_resume(ckpt_path, resume, dist)
    if ck is not None:
        _check_resumable(ck, ckpt_path, cfg, data_summary, spec, log)
        _load_training_state(ck, G, D, opt_g, opt_d, gen, state, cfg, dist)
        log(f"resuming {ckpt_path} at epoch {state.epoch}")
    dev = dist.device
    G, D = dist.wrap(G), dist.wrap(D)      # DistributedDataParallel when distributed, else unchanged
    G_mod, D_mod = unwrap(G), unwrap(D)
    X = to_tensor(data_u8, spec)  # (N, 4, R, R)
    N = len(X)
    step_bs, steps = _batch_sizes(N, cfg, dist, log)
    fixed_z = torch.randn(16, cfg.z_dim, 1, 1, generator=torch.Generator().manual_seed(1234))
    bce = nn.BCELoss()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.epochs, initial=state.epoch, desc=f"train {cfg.objective}", unit="epoch")
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        G.train(), D.train()
        lg_sum = ld_sum = 0.0
        for sel in _epoch_batches(N, epoch, step_bs, steps, cfg.seed, dist, gen):
            real = augment(X[sel], gen, cfg.hflip, cfg.max_shift, cfg.brightness, cfg.white_balance).to(dev)
            loss_g, loss_d = _gan_step(G, D, opt_g, opt_d, real, cfg, gen, dev, bce)
            lg_sum += loss_g.item()
            ld_sum += loss_d.item()
        secs = time.perf_counter() - t0
        lg, ld = dist.mean(lg_sum / steps), dist.mean(ld_sum / steps)
        if not (math.isfinite(lg) and math.isfinite(ld)):
            raise FloatingPointError(f"training diverged at epoch {epoch}: loss_g={lg}, loss_d={ld}")
        h = state.history
        h["epoch"].append(epoch), h["loss_g"].append(lg), h["loss_d"].append(ld), h["seconds"].append(secs)
        state.epoch = epoch
        if bar is not None:
            bar.set_postfix(loss_g=f"{lg:.3f}", loss_d=f"{ld:.3f}", s_per_epoch=f"{secs:.2f}")
            bar.update(1)
        last = epoch == cfg.epochs
        if cfg.sample_every and (epoch % cfg.sample_every == 0 or last) and dist.is_main:
            _save_pictures(G_mod, fixed_z.to(dev), out, epoch, spec, h)
        if cfg.sample_every and (epoch % cfg.sample_every == 0) or last or \
                (cfg.snapshot_every and epoch % cfg.snapshot_every == 0):
            extra = _replicas(dist, G_mod, D_mod, gen)      # a collective: every rank takes part
            if dist.is_main:
                try:
                    _save(ckpt_path, G_mod, D_mod, opt_g, opt_d, gen, cfg, state, spec, data_summary, extra)
                except OSError as e:      # a full disk: save_checkpoint's line, and what a rerun does
                    then = "the same command resumes from it" if ckpt_path.exists() else "rerun the same command"
                    if bar is not None:
                        bar.close()                 # the line goes below the progress bar, not after it
                    raise OSError(e.errno, f"{e.strerror}: free space, then {then}", e.filename) from None
                if cfg.snapshot_every and epoch % cfg.snapshot_every == 0:
                    _save(out / f"epoch_{epoch:04d}.pt", G_mod, D_mod, None, None, None, cfg, state, spec,
                          data_summary, extra)
    if bar is not None:
        bar.close()
    dist.barrier()                            # rank 0's last checkpoint is on disk for everyone
    if dist.is_main and not ckpt_path.exists():  # resumed a finished run
        raise FileNotFoundError(ckpt_path)
    return ckpt_path


def _models(cfg: TrainConfig, spec: PreprocessSpec, device) -> tuple:
    """(G, D, opt_g, opt_d): a freshly initialised generator and discriminator (a critic for WGAN-GP) at the
    preprocessing's resolution on ``device``, each with its Adam optimizer."""
    gcfg = GanConfig(z_dim=cfg.z_dim, features_g=cfg.features_g, features_d=cfg.features_d,
                     resolution=spec.resolution)
    G, D = Generator(gcfg), Discriminator(gcfg, sigmoid=cfg.objective == "bce", norm=cfg.critic_norm)
    init_weights(G), init_weights(D)
    G, D = G.to(device), D.to(device)   # the optimizers' state follows (a no-op on the CPU)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    return G, D, opt_g, opt_d


def _checkpoint_to_resume(ckpt_path: Path, resume: bool, dist: Dist) -> Optional[dict]:
    """The checkpoint ``ckpt_path`` a run continues from, or None (a fresh run). Rank 0 reads it and hands it
    to every rank (no shared filesystem needed across nodes). ValueError when ``resume`` is off and an
    earlier run's checkpoint is there: a checkpoint is never replaced."""
    if not resume and dist.broadcast(ckpt_path.exists() if dist.is_main else None):   # never replaced
        raise ValueError(f"{ckpt_path} exists (an earlier run's checkpoint) and --no-resume would start afresh "
                         "over it: a checkpoint is never replaced; use another --out (or move the earlier run away)")
    ck = read_checkpoint(ckpt_path) if resume and dist.is_main and ckpt_path.exists() else None
    return dist.broadcast(ck)


def _check_resumable(ck: dict, ckpt_path: Path, cfg: TrainConfig, data_summary: dict, spec: PreprocessSpec,
                     log) -> None:
    """ValueError unless checkpoint ``ck`` was trained with this configuration (``epochs`` aside), on the
    same frames and with the same preprocessing: resuming would mix two runs. The same frames read from
    another place resume, said in ``log``."""
    stored = {**ADDED_FIELDS, **(ck["train"].get("config") or {})}   # runs from before a field existed
    now = asdict(cfg) | {"epochs": stored.get("epochs")}
    if stored != now:
        raise ValueError(f"{ckpt_path} was trained with a different configuration ({_changes(stored, now)}); "
                         "use another --out")
    stored_data = {k: v for k, v in (ck["train"].get("data") or {}).items() if k not in DERIVED_DATA_FIELDS}
    new_data = {k: v for k, v in (data_summary or {}).items() if k not in DERIVED_DATA_FIELDS}
    differ = _other_data(stored_data, new_data) if stored_data and new_data else []   # {}: not recorded
    if differ:
        raise ValueError(f"{ckpt_path} was trained on {_data_text(stored_data)}; this run's data is "
                         f"{_data_text(new_data)} ({_changes(stored_data, new_data, differ)}): resuming would "
                         "mix the two; use another --out")
    if stored_data and new_data and stored_data.get("source") != new_data.get("source"):
        log(f"{ckpt_path}: the same frames (content sha256 {new_data.get('frames_sha256_16')}), now read from "
            f"{new_data.get('source')} (trained from {stored_data.get('source')})")
    stored_spec = ck.get("preprocess")
    if stored_spec is not None and PreprocessSpec.from_dict(stored_spec).to_dict() != spec.to_dict():
        raise ValueError(f"{ckpt_path} was trained with other preprocessing ({stored_spec}); resuming "
                         f"under {spec.to_dict()} would mix the two: use another --out")


def _load_training_state(ck: dict, G, D, opt_g, opt_d, gen: torch.Generator, state: TrainState,
                         cfg: TrainConfig, dist: Dist) -> None:
    """Continue from checkpoint ``ck``: the models' and optimizers' state, the epoch and loss history (into
    ``state``) and this rank's noise stream (a fresh stream per rank when the world size changed)."""
    G.load_state_dict(ck["generator"]), D.load_state_dict(ck["discriminator"])
    opt_g.load_state_dict(ck["optimizers"]["g"]), opt_d.load_state_dict(ck["optimizers"]["d"])
    state.epoch, state.history = ck["train"]["epoch"], ck["train"]["history"]
    ranks = ck["optimizers"].get("rng_ranks")
    if ranks and len(ranks) == dist.world_size:
        gen.set_state(ranks[dist.rank])
    elif dist.rank == 0:
        gen.set_state(ck["optimizers"]["rng"])
    else:   # resumed with another world size: a fresh stream per rank
        gen.manual_seed(cfg.seed + dist.rank + 7919 * state.epoch)


def _batch_sizes(n: int, cfg: TrainConfig, dist: Dist, log) -> tuple:
    """(frames per step on this rank, steps per epoch) for ``n`` training frames: ``cfg.batch_size`` (at
    most n) is the global batch, split over the ranks when distributed (said in ``log``)."""
    bs = min(cfg.batch_size, n)
    if not dist.enabled:
        return bs, max(1, n // bs)
    bs_rank = bs // dist.world_size      # the global batch stays batch_size
    if bs_rank < 1:
        raise ValueError(f"batch size {bs} is smaller than the world size {dist.world_size}")
    steps = max(1, (n // dist.world_size) // bs_rank)
    log(f"DistributedDataParallel: world size {dist.world_size}, backend {dist.backend}, "
        f"{bs_rank} frames per rank per step, {steps} steps per epoch")
    return bs_rank, steps


def _epoch_batches(n: int, epoch: int, step_bs: int, steps: int, seed: int, dist: Dist,
                   gen: torch.Generator) -> list:
    """The frame indices of each of the epoch's ``steps`` steps (``step_bs`` each): this rank's shard of the
    epoch when distributed, else a permutation of the ``n`` frames drawn from ``gen``."""
    if dist.enabled:
        idx = torch.tensor(dist.shard(n, epoch, seed))   # this rank's part of the epoch
    else:
        idx = torch.randperm(n, generator=gen)
    return [idx[s * step_bs:(s + 1) * step_bs] for s in range(steps)]


def _gan_step(G, D, opt_g, opt_d, real: torch.Tensor, cfg: TrainConfig, gen: torch.Generator, dev,
              bce: nn.Module) -> tuple:
    """One training step on the batch ``real`` (B, 4, R, R) on ``dev``: the discriminator (BCE) or critic
    (WGAN-GP: ``cfg.critic_iters`` updates with the gradient penalty), then the generator. Returns
    (loss_g, loss_d) as 0-d tensors."""
    b = real.shape[0]
    if cfg.objective == "bce":
        fake = G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen).to(dev))
        d_real, d_fake = D(real).flatten(), D(fake.detach()).flatten()
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad(), loss_d.backward(), opt_d.step()
        out_f = D(fake).flatten()
        loss_g = bce(out_f, torch.ones_like(out_f))
        opt_g.zero_grad(), loss_g.backward(), opt_g.step()
    else:
        for _ in range(cfg.critic_iters):
            fake = G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen)).detach()
            loss_d = (D(fake).mean() - D(real).mean()
                      + cfg.gp_lambda * _gradient_penalty(D, real, fake, gen))
            opt_d.zero_grad(), loss_d.backward(), opt_d.step()
        loss_g = -D(G(torch.randn(b, cfg.z_dim, 1, 1, generator=gen))).mean()
        opt_g.zero_grad(), loss_g.backward(), opt_g.step()
    return loss_g, loss_d


def _save_pictures(G, fixed_z: torch.Tensor, out: Path, epoch: int, spec: PreprocessSpec, history: dict) -> None:
    """out/samples_EEEE.png (the generator's frames for the fixed latents ``fixed_z`` (16, z_dim, 1, 1)) and
    out/loss_curve.png (the losses so far)."""
    G.eval()
    with torch.no_grad():
        save_sample_grid(G(fixed_z).cpu().numpy(), out / f"samples_{epoch:04d}.png", spec, title=f"epoch {epoch}")
    save_loss_curve(history, out / "loss_curve.png")


def _replicas(dist: Dist, G, D, gen) -> dict:
    """What the checkpoint records about the ranks: world size, each rank's noise-stream state, and a
    check that DistributedDataParallel kept the replicas' parameters identical (RuntimeError if not)."""
    sums = dist.gather((state_checksum(G, parameters_only=True), state_checksum(D, parameters_only=True)))
    rng = dist.gather(gen.get_state())
    if any(s != sums[0] for s in sums):
        raise RuntimeError(f"the ranks' model replicas diverged (parameter checksums {sums})")
    return {"world_size": dist.world_size, "rng_ranks": rng if dist.enabled else None,
            "replica_checksums": [list(s) for s in sums] if dist.enabled else None}


def _save(path, G, D, opt_g, opt_d, gen, cfg, state, spec, data_summary, replicas: dict):
    h = state.history
    train_info = {"config": asdict(cfg), "epoch": state.epoch, "history": h, "data": data_summary,
                  "final_loss_g": h["loss_g"][-1], "final_loss_d": h["loss_d"][-1],
                  "wall_seconds": float(sum(h["seconds"])), "torch": str(torch.__version__),
                  "world_size": replicas["world_size"]}
    if replicas["replica_checksums"] is not None:
        train_info["replica_checksums"] = replicas["replica_checksums"]
    opts = ({"g": opt_g.state_dict(), "d": opt_d.state_dict(), "rng": gen.get_state()}
            if opt_g is not None else None)
    if opts is not None and replicas["rng_ranks"] is not None:
        opts["rng_ranks"] = replicas["rng_ranks"]
    save_checkpoint(path, G.eval(), preprocess=spec, discriminator=D, train=train_info, optimizers=opts)
