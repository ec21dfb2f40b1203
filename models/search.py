"""Reference scorer (PyTorch): the ADGAN-RGBD latent search exactly as the algorithm text says.

For each frame x: n_seed latents z_j,0 and n_seed copies theta_j,0 = theta. For t = 1..k, one Adam
step on z_j (lr_z) and on theta_j (lr_theta) against l(G_theta_j(z_j), x) with l = MSE. The score is
(1/n_seed) sum_j l(G_theta_j,k(z_j,k), x), recomputed after the last step. Weights are reset to theta
for every frame (each call starts from the pristine generator).

Two implementations that must agree (a test checks it):
  ``search_eager``   the study-style transcription: per seed a deepcopy of G and two torch Adams;
  ``search``         batched: per-seed weights stacked on a leading axis, ``torch.func.vmap``.
Adam is elementwise, so one Adam over the stacked copies equals one Adam per seed.

Both score the frame as given. The test-time shift-min (SearchConfig.score_shift_radius > 0: the
minimum over shifted copies of the frame, runtime.preprocess.shift_frame) is ``search_min_shift``
for one frame and ``score_batch`` for many; the runtime's Scorer is checked against them.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from torch.func import functional_call, vmap

from edge_ad.runtime.config import SearchConfig, draw_seed, make_z0
from edge_ad.runtime.latent_memory import BankLayout, latent_memory, layout_rows_per_frame
from edge_ad.runtime.preprocess import shift_frame, shift_offsets
from edge_ad.runtime.score_scale import score_scale

from .dcgan import Generator


@dataclass
class SearchResult:
    score: float                 # mean over seeds of the final loss
    seed_losses: np.ndarray      # (n_seed,) final loss per seed
    error_map: np.ndarray        # (H, W) squared error, mean over seeds and channels
    reconstructions: np.ndarray  # (n_seed, C, H, W) G_theta_j,k(z_j,k)
    z: np.ndarray                # (n_seed, z_dim) final latents
    timings: dict = field(default_factory=dict)
    trajectory: Optional[list] = None  # per step: (n_seed, C, H, W) reconstructions, if asked
    score_scale: float = 1.0     # score = mean(seed_losses) / score_scale (fg power, latent factor; 1 = reference)
    latent_distance: Optional[float] = None  # d(E(x), latent bank) when the configuration uses it
    shift: Optional[tuple] = None  # (dy, dx) of the shift-min's winning copy (``search_min_shift``)
    pixel_distance: Optional[float] = None  # d_pix(x, pixel memory) when the configuration uses it


def _as_input(x, dtype) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x), dtype=dtype)
    if x.ndim != 3:
        raise ValueError(f"x must be (C, H, W), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    return x


def _as_given(cfg: SearchConfig) -> None:
    """search / search_eager score the frame as given: refuse a configuration with the shift-min."""
    if cfg.score_shift_radius:
        raise ValueError(f"score_shift_radius={cfg.score_shift_radius}: search scores the frame as given; the "
                         "shift-min is search_min_shift (one frame) or score_batch (many)")


def _z0(G: Generator, cfg: SearchConfig, z0, seed) -> np.ndarray:
    if z0 is None:
        return make_z0(cfg.n_seed, G.cfg.z_dim, seed)
    z0 = np.asarray(z0, dtype=np.float32)
    if z0.shape != (cfg.n_seed, G.cfg.z_dim):
        raise ValueError(f"z0 must have shape (n_seed, z_dim) = {(cfg.n_seed, G.cfg.z_dim)}, got {z0.shape}")
    return z0


def search(G: Generator, x, cfg: SearchConfig = SearchConfig(), z0=None, seed: Optional[int] = None,
           dtype: torch.dtype = torch.float32, keep_trajectory: bool = False,
           latent_distance: Optional[float] = None, pixel_distance: Optional[float] = None) -> SearchResult:
    """Batched reference search. x: (C, H, W) in [-1, 1]; z0: (n_seed, z_dim) or None (then ``seed``).
    ``latent_distance``: d(E(x), latent bank), required by configurations with score_latent_power > 0
    (``encoder.latent_distances``); ``pixel_distance``: d_pix(x), required with score_pixel_power > 0
    (runtime.pixel_memory.PixelMemory.distance of this x)."""
    t0 = time.perf_counter()
    _as_given(cfg)
    G = G.eval()
    x = _as_input(x, dtype)
    z0 = _z0(G, cfg, z0, seed)
    S = cfg.n_seed
    params = {n: p.detach().to(dtype).unsqueeze(0).repeat(S, *[1] * p.ndim).requires_grad_(cfg.updates_weights)
              for n, p in G.named_parameters()}                       # each (S, *shape)
    buffers = {n: b.detach().to(dtype) if b.is_floating_point() else b for n, b in G.named_buffers()}
    z = torch.tensor(z0, dtype=dtype).reshape(S, 1, -1, 1, 1).requires_grad_(True)  # (S, 1, z_dim, 1, 1)

    def g_one(p, zj):  # one seed: p per-seed params, zj (1, z_dim, 1, 1) -> (1, C, H, W)
        return functional_call(G, (p, buffers), (zj,))

    g_all = vmap(g_one)  # (S, ...) -> (S, 1, C, H, W)
    groups = [{"params": [z], "lr": cfg.lr_z}]
    if cfg.updates_weights:
        groups.append({"params": list(params.values()), "lr": cfg.lr_theta})
    opt = torch.optim.Adam(groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    traj = [] if keep_trajectory else None
    for _ in range(cfg.k):
        opt.zero_grad(set_to_none=True)
        recon = g_all(params, z)[:, 0]                               # (S, C, H, W)
        losses = ((recon - x) ** 2).flatten(1).mean(1)               # (S,)
        losses.sum().backward()  # d(sum)/d(seed j's tensors) = d(loss_j)/d(...)
        opt.step()
        if traj is not None:
            traj.append(recon.detach().cpu().numpy())
    with torch.no_grad():
        recon = g_all(params, z)[:, 0]
        sq = (recon - x) ** 2                                        # (S, C, H, W)
        losses = sq.flatten(1).mean(1)
    if traj is not None:
        traj.append(recon.cpu().numpy())
    scale = score_scale(x.cpu().numpy(), cfg, latent_distance, pixel_distance)
    return SearchResult(score=float(losses.mean()) / scale, score_scale=scale, latent_distance=latent_distance,
                        pixel_distance=pixel_distance,
                        seed_losses=losses.cpu().numpy().astype(np.float64),
                        error_map=sq.mean((0, 1)).cpu().numpy(), reconstructions=recon.cpu().numpy(),
                        z=z.detach().reshape(S, -1).cpu().numpy(),
                        timings={"search_s": time.perf_counter() - t0}, trajectory=traj)


def search_eager(G: Generator, x, cfg: SearchConfig = SearchConfig(), z0=None, seed: Optional[int] = None,
                 dtype: torch.dtype = torch.float32, latent_distance: Optional[float] = None,
                 pixel_distance: Optional[float] = None) -> SearchResult:
    """The algorithm transcribed literally (and the study-style baseline for benchmarks):
    per seed a fresh copy of G and two Adam optimizers, one on z and one on the weights.
    ``latent_distance``, ``pixel_distance`` as in ``search``."""
    t0 = time.perf_counter()
    _as_given(cfg)
    x = _as_input(x, dtype).unsqueeze(0)
    z0 = _z0(G, cfg, z0, seed)
    losses, recons, zs = [], [], []
    for j in range(cfg.n_seed):
        Gj = copy.deepcopy(G).to(dtype).eval().requires_grad_(True)  # theta_j,0 = theta, all trainable
        zj = torch.tensor(z0[j], dtype=dtype).reshape(1, -1, 1, 1).requires_grad_(True)
        opt_z = torch.optim.Adam([zj], lr=cfg.lr_z, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        opt_t = torch.optim.Adam(Gj.parameters(), lr=cfg.lr_theta, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        for _ in range(cfg.k):
            opt_z.zero_grad(), opt_t.zero_grad()
            loss = torch.nn.functional.mse_loss(Gj(zj), x)
            loss.backward()
            opt_z.step()
            if cfg.updates_weights:
                opt_t.step()
        with torch.no_grad():
            r = Gj(zj)
            losses.append(float(torch.nn.functional.mse_loss(r, x)))
            recons.append(r[0].numpy()), zs.append(zj.detach().reshape(-1).numpy())
    recons = np.stack(recons)
    err = ((recons - x.numpy()) ** 2).mean((0, 1))
    scale = score_scale(x[0].numpy(), cfg, latent_distance, pixel_distance)
    return SearchResult(score=float(np.mean(losses)) / scale, score_scale=scale, latent_distance=latent_distance,
                        pixel_distance=pixel_distance,
                        seed_losses=np.array(losses), error_map=err,
                        reconstructions=recons, z=np.stack(zs), timings={"search_s": time.perf_counter() - t0})


def search_min_shift(G: Generator, x, cfg: SearchConfig, z0=None, seed: Optional[int] = None,
                     dtype: torch.dtype = torch.float32, encoder=None, latent_bank: Optional[np.ndarray] = None,
                     eager: bool = False, bank_rows_per_frame: Optional[BankLayout] = None,
                     pixel_memory=None) -> SearchResult:
    """One frame x (C, H, W) scored as the runtime's ``Scorer.score_input`` scores it, shift-min included:
    every copy x' = shift_frame(x, dy, dx), (dy, dx) in shift_offsets(cfg.score_shift_radius), searched
    (``search``, or ``search_eager`` when ``eager``) with its own E(x') (z_init "encoder": z0 = E(x') +
    z_init_sigma * make_z0(n_seed, z_dim, seed)) and latent distance d(E(x'), latent_bank) (N, z_dim) (or a runtime
    LatentMemory already prepared, used as it is: the silhouette lever's dil version), and the FRAME's
    pixel distance to ``pixel_memory`` (runtime.pixel_memory.PixelMemory.frame_distance(x, pixel_shift_radius),
    score_pixel_power > 0), one factor for every copy; an explicit
    z0 is used for every copy (neither z0 nor seed: one random seed for all copies);
    ``bank_rows_per_frame``, the bank's layout (runtime.latent_memory.latent_memory): its augment list
    (``checkpoint_bank_augment``; needed for cfg.bank_trusted_augment) or 1 + len(augment)
    (``checkpoint_bank_rows_per_frame``), tells the bank's augmented rows (cfg.bank_augment_weight). Returns the lowest-scoring copy's result
    (the first on a tie) with error_map (fill 0) and reconstructions shifted back by (-dy, -dx) and
    ``shift`` = (dy, dx); with radius 0 that is the frame's own result, shift (0, 0). ``encoder``
    (models.encoder.Encoder) runs in its own dtype (pass a float64 copy for a float64 reference)."""
    from .encoder import z0_from_latents
    x = _as_input(x, torch.float64).numpy()
    if cfg.z_init == "encoder" and encoder is None:
        raise ValueError("this scoring configuration starts from an encoder (z_init='encoder'), but no encoder was given")
    if cfg.uses_latent_bank and latent_bank is None:
        raise ValueError(f"the scoring configuration {cfg.name!r} needs the model's latent bank (score_latent_power > 0)")
    memory = latent_memory(latent_bank, cfg, bank_rows_per_frame) if cfg.uses_latent_bank else None
    _check_pixel_memory(cfg, pixel_memory)
    plain = cfg.replace(score_shift_radius=0)
    if seed is None and z0 is None and cfg.score_shift_radius > 0:
        seed = draw_seed()      # one random seed for the frame: its copies share their z0 noise (runtime's rule)
    # the FRAME's pixel distance (its own shift search, pixel_shift_radius), once: every copy's factor
    pdist = (pixel_memory.frame_distance(x, cfg.pixel_shift_radius, gain=cfg.pixel_gain_limits) if cfg.uses_pixel_memory
             else None)
    best, at = None, None
    for dy, dx in shift_offsets(cfg.score_shift_radius):
        xs = shift_frame(x, dy, dx)                                                # (C, H, W)
        e = None
        if encoder is not None and (cfg.z_init == "encoder" or memory is not None):
            with torch.no_grad():
                e = encoder(torch.as_tensor(xs[None], dtype=next(encoder.parameters()).dtype)).reshape(-1)
            e = e.double().numpy()                                                 # (z_dim,) E(x')
        zs = z0 if z0 is not None or cfg.z_init != "encoder" else z0_from_latents(e[None], cfg, [seed])[0]
        r = (search_eager if eager else search)(G, xs, plain, z0=zs, seed=seed, dtype=dtype,
                                                latent_distance=memory.distance(e) if memory is not None else None,
                                                pixel_distance=pdist)
        if best is None or r.score < best.score:
            best, at = r, (dy, dx)
    best.error_map = shift_frame(best.error_map, -at[0], -at[1], fill=0.0)        # (H, W)
    best.reconstructions = shift_frame(best.reconstructions, -at[0], -at[1])      # (n_seed, C, H, W)
    best.shift = at
    return best


def score_batch(G: Generator, X: np.ndarray, cfg: SearchConfig = SearchConfig(), seed: int = 0,
                dtype: torch.dtype = torch.float32, progress: Optional[Callable] = None,
                batch_frames: int = 0, encoder=None, latent_bank: Optional[np.ndarray] = None,
                bank_rows_per_frame: Optional[BankLayout] = None, pixel_memory=None,
                pixel_exclude: Optional[Sequence[int]] = None, pixel_distances=None,
                first_index: int = 0) -> np.ndarray:
    """Scores of many frames X (N, C, H, W); frame i uses latents from ``frame_seed(seed, first_index + i)``
    (``first_index``: where X starts in a longer sequence scored in parts, e.g. edge-ad eval's resumable chunks).

    ``batch_frames`` > 0 with a z-only configuration (lr_theta == 0) scores that many frames at once
    (``search_zonly_batch``): the same numbers as frame by frame, up to float rounding, faster.
    ``encoder`` (models.encoder.Encoder) is required when cfg.z_init == "encoder"; ``latent_bank``
    (N, z_dim) (or a runtime LatentMemory already prepared, used as it is) when cfg.score_latent_power > 0, with ``bank_rows_per_frame`` (the bank's layout: its
    augment list, ``checkpoint_bank_augment``, or 1 + len(augment), ``checkpoint_bank_rows_per_frame``)
    when cfg.bank_augment_weight != 1 (the augment list when cfg.bank_trusted_augment names some).
    ``pixel_memory`` (runtime.pixel_memory.PixelMemory) when cfg.score_pixel_power > 0: each frame's pixel
    distance (``PixelMemory.frame_distances`` with cfg.pixel_shift_radius), without the rows of the memory's
    frames ``pixel_exclude`` (held-out scoring); ``pixel_distances`` (N,): those already measured. cfg.score_shift_radius R > 0:
    each frame's score is the minimum over its (2R + 1)^2 shifted copies (runtime.preprocess.shift_frame),
    each scored as a frame with the frame's own seed and the frame's pixel distance (``search_min_shift``'s score); ``progress`` then
    wraps the list of shifts (one step per shifted copy of all of X)."""
    from edge_ad.runtime.config import frame_seed
    if cfg.uses_silhouette_versions:
        raise ValueError(f"the scoring configuration {cfg.name!r} uses the silhouette lever (silhouette_versions_weight "
                         "> 0), made on raw frames: score_batch scores preprocessed frames; score each version with the "
                         "lever off (runtime/silhouette.py), or use the runtime's Scorer")
    _check_pixel_memory(cfg, pixel_memory)
    if cfg.uses_pixel_memory and pixel_distances is None:      # each FRAME's, as given: (N,)
        pixel_distances = pixel_memory.frame_distances(np.asarray(X), cfg.pixel_shift_radius, pixel_exclude,
                                                       gain=cfg.pixel_gain_limits)
    if cfg.score_shift_radius:
        plain = cfg.replace(score_shift_radius=0)
        offsets = shift_offsets(cfg.score_shift_radius)
        # one progress bar over the (2R + 1)^2 shifted copies of the whole X, not one per copy
        return np.min([score_batch(G, shift_frame(np.asarray(X), dy, dx), plain, seed, dtype, None, batch_frames,
                                   encoder, latent_bank, bank_rows_per_frame, pixel_memory, pixel_exclude,
                                   pixel_distances, first_index)
                       for dy, dx in (offsets if progress is None else progress(offsets))], axis=0)
    if cfg.z_init == "encoder" and encoder is None:
        raise ValueError("this scoring configuration starts from an encoder (z_init='encoder'), "
                         "but no encoder was given (the checkpoint's scoring section has none?)")
    latents = None      # E(X) (N, z_dim), computed once: the initial latents and the latent distances
    if cfg.z_init == "encoder":
        from .encoder import encoder_latents
        latents = encoder_latents(encoder, X)
    dists = [None] * len(X)
    if cfg.uses_latent_bank:
        if latent_bank is None:
            raise ValueError(f"the scoring configuration {cfg.name!r} needs the model's latent bank "
                             "(score_latent_power > 0), but none was given (the checkpoint's scoring section has none?)")
        from .encoder import latent_distances
        dists = list(latent_distances(encoder, X, latent_bank, cfg, latents=latents,
                                      bank_rows_per_frame=bank_rows_per_frame))
    pdists = list(pixel_distances) if cfg.uses_pixel_memory else [None] * len(X)   # d_pix of each frame (N,)

    def z0_for(idx):  # (len(idx), n_seed, z_dim)
        seeds = [frame_seed(seed, first_index + i) for i in idx]
        if latents is not None:
            from .encoder import z0_from_latents
            return z0_from_latents(latents[idx[0]:idx[-1] + 1], cfg, seeds)
        return np.stack([make_z0(cfg.n_seed, G.cfg.z_dim, s) for s in seeds])

    out = np.empty(len(X))
    if batch_frames > 0 and not cfg.updates_weights:
        starts = range(0, len(X), batch_frames)
        for a in (starts if progress is None else progress(starts)):
            idx = list(range(a, min(a + batch_frames, len(X))))
            out[a:a + len(idx)] = search_zonly_batch(G, X[a:a + len(idx)], cfg, z0_for(idx), dtype=dtype,
                                                     latent_distances=dists[a:a + len(idx)],
                                                     pixel_distances=pdists[a:a + len(idx)])
        return out
    it = range(len(X)) if progress is None else progress(range(len(X)))
    for i in it:
        out[i] = search(G, X[i], cfg, z0=z0_for([i])[0], dtype=dtype, latent_distance=dists[i],
                        pixel_distance=pdists[i]).score
    return out


def _check_pixel_memory(cfg: SearchConfig, pixel_memory) -> None:
    """ValueError when cfg scores with the pixel memory (score_pixel_power > 0) and none was given."""
    if cfg.uses_pixel_memory and pixel_memory is None:
        raise ValueError(f"the scoring configuration {cfg.name!r} needs the model's pixel memory (score_pixel_power "
                         "> 0), but none was given (the checkpoint's scoring section has none?)")


def held_out_bank_scores(G: Generator, X: np.ndarray, cfg: SearchConfig, encoder, latent_bank: np.ndarray,
                         bank_rows_per_frame: BankLayout, seed: int = 0, progress: Optional[Callable] = None,
                         pixel_memory=None) -> np.ndarray:
    """Scores (N,) of the latent bank's OWN normal frames X (N, C, H, W) as unseen frames would score:
    frame i against the bank without its rows latent_bank[i * A:(i + 1) * A] (A rows per frame of the
    layout ``bank_rows_per_frame``, an int or the augment list as ``score_batch``'s: the frame and its
    augmented copies, runtime.latent_memory.original_rows' frame-major layout), i.e.
    leave-one-out; everything else as ``score_batch`` (frame i with the seed ``score_batch`` gives frame
    0). On kinect-rgbd these scores are distributed as the val normals' (measured: Kolmogorov-Smirnov
    p 0.3-1.0 per class and nuisance), so they add the train frames to the normal sample a threshold
    is read from. With score_pixel_power > 0 the ``pixel_memory`` (runtime.pixel_memory.PixelMemory) must
    hold the same frames in the same order: frame i's pixel distance leaves out its rows too. Raises
    ValueError unless the bank holds A rows per frame of X, frame i's first row being E(X[i]) (and the
    pixel memory one frame per frame of X, frame i's first row X[i], for every i)."""
    from .encoder import encoder_latents
    if not cfg.uses_latent_bank:
        raise ValueError("held-out bank scores need a configuration with a latent memory (score_latent_power > 0)")
    bank = np.asarray(latent_bank, dtype=np.float32)
    A = layout_rows_per_frame(bank_rows_per_frame)
    if A < 1 or len(bank) != len(X) * A:
        raise ValueError(f"a latent bank of {len(bank)} rows does not hold {A} rows for each of the {len(X)} frames")
    own = encoder_latents(encoder, X)                                            # (N, z_dim) E(X)
    worst = float(np.abs(own - bank[::A]).max())
    if worst > 1e-3:
        raise ValueError(f"the bank's rows are not E of these frames in order (max |E(x_i) - bank[i * {A}]| = "
                         f"{worst:.3g}): held-out scores need the frames the bank was built from")
    _check_pixel_memory(cfg, pixel_memory)
    if cfg.uses_pixel_memory:
        if pixel_memory.n_frames != len(X):
            raise ValueError(f"the pixel memory holds {pixel_memory.n_frames} frames, not the {len(X)} frames scored: "
                             "held-out scores need the frames it was built from, in order")
        gaps = pixel_memory.frame_gaps(X)                      # (N,) frame i against its own stored frame
        bad = np.flatnonzero(gaps > 1e-6)
        if len(bad):
            raise ValueError(f"the pixel memory's frames are not these frames in order: {len(bad)} of {len(X)} "
                             f"differ (first: frame {bad[0]}, mean squared difference {gaps[bad[0]]:.3g}): held-out "
                             "scores need the frames it was built from, in order")
    keep = np.ones(len(bank), bool)
    out = np.empty(len(X))
    frames = range(len(X))
    for i in (progress(frames) if progress else frames):
        keep[i * A:(i + 1) * A] = False
        out[i] = score_batch(G, X[i:i + 1], cfg, seed=seed, encoder=encoder, latent_bank=bank[keep],
                             bank_rows_per_frame=bank_rows_per_frame, pixel_memory=pixel_memory,
                             pixel_exclude=[i])[0]
        keep[i * A:(i + 1) * A] = True
    return out


def search_zonly_batch(G: Generator, X: np.ndarray, cfg: SearchConfig, z0: np.ndarray,
                       dtype: torch.dtype = torch.float32, latent_distances=None, pixel_distances=None) -> np.ndarray:
    """z-only search (lr_theta must be 0) of B frames at once; returns their scores (B,).
    ``latent_distances`` / ``pixel_distances`` (B,) as ``search``'s latent_distance / pixel_distance, per frame.

    X: (B, C, H, W); z0: (B, n_seed, z_dim). With frozen weights and BatchNorm in eval mode the
    frames and seeds are independent, and Adam is elementwise, so one Adam over the (B*n_seed) latents
    is exactly B separate searches."""
    if cfg.updates_weights:
        raise ValueError("search_zonly_batch needs a z-only configuration (lr_theta == 0)")
    X = np.asarray(X)
    B, S = len(X), cfg.n_seed
    z0 = np.asarray(z0, dtype=np.float32)
    if X.ndim != 4 or z0.shape != (B, S, G.cfg.z_dim):
        raise ValueError(f"need X (B, C, H, W) and z0 (B, n_seed, z_dim); got {X.shape} and {z0.shape}")
    G = G.eval()
    params = {n: p.detach().to(dtype) for n, p in G.named_parameters()}
    buffers = {n: b.detach().to(dtype) if b.is_floating_point() else b for n, b in G.named_buffers()}
    x = torch.as_tensor(X, dtype=dtype).repeat_interleave(S, 0)          # (B*S, C, H, W)
    z = torch.tensor(z0.reshape(B * S, -1, 1, 1), dtype=dtype).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr_z, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    for _ in range(cfg.k):
        opt.zero_grad(set_to_none=True)
        recon = functional_call(G, (params, buffers), (z,))              # (B*S, C, H, W)
        ((recon - x) ** 2).flatten(1).mean(1).sum().backward()
        opt.step()
    with torch.no_grad():
        losses = ((functional_call(G, (params, buffers), (z,)) - x) ** 2).flatten(1).mean(1)
    losses = losses.reshape(B, S).mean(1).cpu().numpy().astype(np.float64)   # (B,)
    dists = [None] * B if latent_distances is None else list(latent_distances)
    pdists = [None] * B if pixel_distances is None else list(pixel_distances)
    scales = np.array([score_scale(xi, cfg, d, p) for xi, d, p in zip(X, dists, pdists)])
    return losses / scales


# One-line readers of a checkpoint's scoring section, kept for scripts and tests: each reads the file once
# through models.checkpoint.CheckpointScoring (read it once yourself when you need several entries).

def checkpoint_search_config(path) -> Optional[SearchConfig]:
    """The named scoring configuration a checkpoint carries (``CheckpointScoring.search_config``), or None
    (study files, checkpoints without one). CheckpointError for an invalid one."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).search_config()


def checkpoint_bank_rows_per_frame(path) -> int:
    """Rows per normal frame of a checkpoint's latent bank: 1 + len(scoring["latent_bank_info"]["augment"])
    (runtime.latent_memory.rows_per_frame_of; 1 for a checkpoint that records no augmentation)."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).bank_rows_per_frame()


def checkpoint_bank_augment(path) -> list:
    """The augmentation texts of a checkpoint's latent bank (scoring["latent_bank_info"]["augment"]; []
    when it records none): the bank's layout as ``score_batch`` and ``search_min_shift`` take it, which
    tells the copies SearchConfig.bank_trusted_augment names."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).bank_augment()


def checkpoint_latent_bank(path) -> Optional[np.ndarray]:
    """The latent bank (N, z_dim) float32 a checkpoint's scoring section carries, or None."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).latent_bank()


def checkpoint_pixel_memory(path):
    """The pixel memory a checkpoint's scoring section carries (runtime.pixel_memory.PixelMemory under the
    checkpoint's own preprocessing), or None."""
    from .checkpoint import CheckpointScoring, load_generator
    return CheckpointScoring.read(path).pixel_memory(load_generator(path).preprocess)


def checkpoint_encoder(path):
    """The izi encoder a checkpoint's scoring section carries (models.encoder.Encoder), or None."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).encoder()


def checkpoint_threshold(path, cfg: Optional[SearchConfig] = None) -> Optional[dict]:
    """The calibrated threshold a checkpoint carries (``ckpt["scoring"]["threshold"]``: value,
    target_fpr, ...), or None; also None when ``cfg`` is given and differs from the configuration the
    threshold was calibrated with (a threshold only means something for its own score)
    (``CheckpointScoring.threshold``)."""
    from .checkpoint import CheckpointScoring
    return CheckpointScoring.read(path).threshold(cfg)
