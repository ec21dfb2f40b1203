"""The scene's frames scored: as the model scores them (``score_scene``: the score, its parts without the
memories' factors, and the latents the bank grows by) and HELD OUT, as unseen frames would score
(``held_out_scores``, ``held_out_pixel_distances``): a frame in the bank would score itself at distance 0, so
the frames are split into contiguous blocks (``scene_blocks``) and each frame's distances are measured to
the memories without its block's rows (its neighbours in a recording are near-duplicates of it)."""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ..latent_bank import bank_inputs_uint8
from ..latent_memory import latent_memory
from ..pixel_memory import PixelMemory
from ..preprocess import shift_frame
from ..score_scale import latent_factor, pixel_factor
from ..silhouette import OPENED_AUGMENT, VERSIONS, silhouette_min


def score_scene(scorer, u8: list, spec, augment=(), versions: Optional[list] = None) -> dict:
    """Score the scene's frames (``read_scene``'s u8) with ``scorer`` under preprocessing ``spec`` and,
    when it uses a latent memory, encode each frame and its augmented copies.
    Returns {"scores" (n,), "base" (n, S) the score of each of the frame's S shifted copies
    (SearchConfig.score_shift_radius; S = 1 without the shift-min) without the latent and pixel factors,
    "latents" (n, 1 + len(augment), z_dim) and "shifted_latents" (n, S, z_dim): E of each shifted
    copy (with S = 1 the frame's own, latents[:, 0]); None without a latent memory}.
    ``versions`` (the silhouette lever: ``read_scene``'s "versions", per frame {"ero", "dil", "opened"} (R, R, 4)
    uint8): also "version_scores" {"ero", "dil": that version's frames scored as above, without the augmented copies
    ({"scores", "base", "latents" (n, 1, z_dim), "shifted_latents"})} and "opened_latents" (n, 2, z_dim): E of each
    frame's opened frame and its mirror (silhouette.OPENED_AUGMENT), the paired rows the scene adds."""
    out = _score_frames(scorer, u8, spec, augment)
    if versions is not None:
        out["version_scores"] = {v: _score_frames(scorer, [f[v] for f in versions], spec, ()) for v in VERSIONS[1:]}
        out["opened_latents"] = np.stack([np.stack([scorer.encode(x) for x in
                                                    bank_inputs_uint8(f["opened"], spec, OPENED_AUGMENT)])
                                          for f in versions])                                   # (n, 2, z_dim)
    return out


def _score_frames(scorer, u8: list, spec, augment=()) -> dict:
    """``score_scene`` of frames u8 [(R, R, 4) uint8], without the silhouette lever's versions."""
    cfg = scorer.config
    scores, base, latents, shifted = [], [], [], []
    for n, a in enumerate(u8):
        X = bank_inputs_uint8(a, spec, augment if cfg.uses_latent_bank else (), index=n)   # (1 + A, 4, R, R)
        if cfg.score_shift_radius:
            offsets, rs = scorer.score_shifted(X[0], seed=0)
            score = min(r.score for r in rs)                                            # score_input's minimum
        else:
            offsets, rs = [(0, 0)], [scorer.score_input(X[0], seed=0)]
            score = rs[0].score
        if cfg.uses_latent_bank:
            latents.append(np.stack([scorer.encode(x) for x in X]))                    # (1 + A, z_dim)
            shifted.append(latents[-1][:1] if len(offsets) == 1 else
                           np.stack([scorer.encode(shift_frame(X[0], dy, dx)) for dy, dx in offsets]))   # (S, z_dim)
        if cfg.uses_latent_bank or cfg.uses_pixel_memory:        # the factors are re-measured held out
            base.append([r.score / (latent_factor(r.latent_distance, cfg) * pixel_factor(r.pixel_distance, cfg))
                         for r in rs])
        else:
            base.append([score])
        scores.append(score)
    return {"scores": np.array(scores), "base": np.array(base), "latents": np.stack(latents) if latents else None,
            "shifted_latents": np.stack(shifted) if shifted else None}


def scene_blocks(n: int, blocks: int) -> list:
    """The ``blocks`` contiguous blocks [(a, b), ...] of n scene frames in source order that held-out
    scoring leaves out one at a time (at least 2 blocks; blocks >= n: one frame each, leave-one-out)."""
    edges = np.linspace(0, n, min(max(int(blocks), 2), n) + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def held_out_pixel_distances(memory: PixelMemory, inputs: Callable, n: int, n_original: int,
                             blocks: int = 5, radius: int = 0, gain=()) -> np.ndarray:
    """Pixel distances (n,) of the n scene frames as unseen frames would have them: ``memory`` holds the
    model's n_original frames, then the n scene frames in source order (their rows frame-major); scene
    frame i ``inputs(i)`` (4, R, R), as scored, is measured (``PixelMemory.frame_distance`` with its own
    shift search up to ``radius``, SearchConfig.pixel_shift_radius; ``gain``: pixel_gain_limits) without the rows of every scene frame
    of its block (``scene_blocks``). One distance per frame: the factor of each of its shift-min copies."""
    if memory.n_frames != n_original + n:
        raise ValueError(f"the pixel memory holds {memory.n_frames} frames, not the {n_original} original + {n} scene frames")
    out = np.empty(n)
    for a, b in scene_blocks(n, blocks):
        for i in range(a, b):
            out[i] = memory.frame_distance(inputs(i), radius, exclude=range(n_original + a, n_original + b), gain=gain)
    return out


def held_out_scores(base: np.ndarray, latents: Optional[np.ndarray], original_bank: Optional[np.ndarray], cfg,
                    blocks: int = 5, shifted_latents: Optional[np.ndarray] = None,
                    augment: Optional[Sequence[str]] = None,
                    pixel_distances: Optional[np.ndarray] = None, paired: Optional[tuple] = None) -> np.ndarray:
    """Scores of the scene frames as unseen frames would score: the frames (in source order) split
    into ``blocks`` contiguous blocks, each frame's latent distance taken to the original bank plus
    the rows of the OTHER blocks (consecutive frames of a recording are near-duplicates, so leaving
    out only the frame itself would score it against its neighbours). base_i * latent_factor(d_i);
    latents (n, A, z_dim): each frame and its A - 1 augmented copies, the layout of ``original_bank``
    (A rows per frame; the copies weighed by cfg.bank_augment_weight); returns (n,). blocks >= n:
    leave-one-out. ``augment``: the A - 1 augmentation texts of that layout (the manifest's
    latent_bank["augment"]), needed when cfg.bank_trusted_augment counts some copies as original rows.
    With the shift-min (``score_scene``): base (n, S) and shifted_latents (n, S, z_dim), E of each
    shifted copy; the score is min_s base_is * latent_factor(d_is). Default: base (n,) or (n, 1) and
    the frame's own latent latents[:, 0]. original_bank None: only the other blocks' rows (the frames
    ARE the model's bank: scoring its own frames leave-one-out, models/kinect-rgbd/threshold_rate.py).
    ``pixel_distances`` (n,): each frame's held-out pixel distance (``held_out_pixel_distances``) when cfg
    scores with the pixel memory; the score is then min_s base_is * latent_factor(d_is) * pixel_factor(p_i)
    (one pixel factor for every copy of a frame).
    latents None: a configuration without the latent memory (only the pixel factor).
    ``paired`` (the silhouette lever's dil version, ``held_out_lever_scores``): (the model's paired rows (2 N0,
    z_dim) float32, the scene's (n, 2, z_dim): E of each frame's opened frame and its mirror), added at factor 1
    (LatentMemory.with_rows, as the scorer's dil memory), the scene's of the OTHER blocks only: a frame's distance
    is then to the original bank, its paired rows and the other blocks' rows and paired rows."""
    if cfg.uses_pixel_memory and pixel_distances is None:       # else the pixel factor would be left out silently
        raise ValueError(f"the scoring configuration {cfg.name!r} multiplies the score by the pixel-memory distance "
                         "(score_pixel_power > 0): held-out scores need each frame's held-out pixel distance "
                         "(pixel_distances, from held_out_pixel_distances)")
    pix = None if pixel_distances is None else np.asarray(pixel_distances, float)   # (n,)
    if pix is not None and pix.ndim != 1:
        raise ValueError(f"pixel_distances must hold one distance per frame (n,), got shape {pix.shape}")
    if latents is None:
        base = np.asarray(base, float).reshape(len(pix), -1)                         # (n, S)
        return np.array([base[i].min() * pixel_factor(float(pix[i]), cfg) for i in range(len(base))])
    n, A, z_dim = latents.shape
    if augment is not None and len(augment) != A - 1:
        raise ValueError(f"latents hold {A} rows per frame, but the bank's augment names {len(augment)} copies "
                         f"(1 + {len(augment)} rows): {list(augment)}")
    layout = A if augment is None else list(augment)      # the texts tell the trusted copies' rows
    base = np.asarray(base, float).reshape(n, -1)                                    # (n, S)
    shifted = latents[:, :1] if shifted_latents is None else shifted_latents         # (n, S, z_dim)
    orig = None if original_bank is None else latent_memory(original_bank, cfg, layout)
    if paired is not None:
        orig = orig.with_rows(paired[0])
    out = np.empty(n)
    S = shifted.shape[1]
    for a, b in scene_blocks(n, blocks):
        others = np.concatenate([latents[:a], latents[b:]]).reshape(-1, z_dim)     # whole frames: A rows each
        other_mem = latent_memory(others, cfg, layout) if len(others) else None
        if paired is not None and other_mem is not None:        # the other blocks' paired rows: 2 a frame
            other_mem = other_mem.with_rows(np.concatenate([paired[1][:a], paired[1][b:]]).reshape(-1, z_dim))
        block = shifted[a:b].reshape(-1, z_dim)                                     # ((b - a) * S, z_dim)
        # the block's latents at once (LatentMemory.distances: equal to distance per latent)
        d = np.full((b - a, S), np.inf) if orig is None else orig.distances(block).reshape(b - a, S)
        if other_mem is not None:
            d = np.minimum(d, other_mem.distances(block).reshape(b - a, S))
        for i in range(a, b):
            out[i] = min(base[i, s_] * latent_factor(float(d[i - a, s_]), cfg)
                         * (1.0 if pix is None else pixel_factor(float(pix[i]), cfg)) for s_ in range(S))
    return out


def held_out_lever_scores(scene: dict, original_bank: np.ndarray, original_paired: np.ndarray, cfg, blocks: int = 5,
                          augment: Optional[Sequence[str]] = None,
                          pixel_distances: Optional[dict] = None) -> np.ndarray:
    """The silhouette lever's held-out scores (n,) of the scene's frames (runtime/silhouette.py): each version
    (``score_scene``'s id frames and its "version_scores") held out as ``held_out_scores`` holds a frame out, against
    the grown bank (``original_bank`` + the scene's "latents") without the frame's block, the dil version also
    against the paired rows (``original_paired`` (2 N0, z_dim) + the scene's "opened_latents") without its block's:
    a frame never sees its own opened frame. ``pixel_distances``: {version: (n,) held-out pixel distances} with the
    pixel factor. Score: silhouette_min over the versions (cfg.silhouette_versions_weight)."""
    held = {}
    for v in VERSIONS:
        s = scene if v == "id" else scene["version_scores"][v]
        held[v] = held_out_scores(s["base"], scene["latents"], original_bank, cfg, blocks=blocks,
                                  shifted_latents=s["shifted_latents"], augment=augment,
                                  pixel_distances=None if pixel_distances is None else pixel_distances[v],
                                  paired=(original_paired, scene["opened_latents"]) if v == "dil" else None)
    return np.array([silhouette_min({v: held[v][i] for v in VERSIONS}, cfg.silhouette_versions_weight)[0]
                     for i in range(len(held["id"]))])
