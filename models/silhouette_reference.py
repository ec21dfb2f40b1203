"""The silhouette lever (runtime/silhouette.py) scored by the PyTorch reference: ``edge-ad eval`` (clean and the
nuisance suite), export's parity row of the combined score (export/parity.py) and make_release.py's lever numbers
share it. One version maker and one min for the runtime and the reference (runtime.silhouette.silhouette_versions,
silhouette_min): each raw frame's versions made into the model input as the runtime makes them
(runtime.scorer.frame_input, no sensor-fault checks; a version whose input cannot be made is left out, as
``Scorer.score`` leaves it out), each scored with the lever off against its own memories (``lever_memories``: the
dil version also against the paired rows of the opened training frames), the least weighted score kept."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.latent_memory import BankLayout, latent_memory
from edge_ad.runtime.preprocess import FrameError, PreprocessSpec
from edge_ad.runtime.silhouette import (OPENED_AUGMENT, VERSIONS, PairedPixelMemory, silhouette_min, spec_range,
                                        silhouette_versions)


def lever_latent_memories(cfg: SearchConfig, bank, bank_rows: Optional[BankLayout], rows: np.ndarray) -> dict:
    """{version: runtime LatentMemory} of the lever, as runtime.scorer.load_silhouette_rows loads them: id and ero the
    model's own (``latent_memory(bank, cfg, bank_rows)``, bank (N, z_dim), or a runtime LatentMemory already prepared,
    used as it is), dil that memory plus the paired rows ``rows`` (2 M, z_dim) float32 at factor 1
    (LatentMemory.with_rows). The one definition of what each version is measured against (``lever_memories``,
    make_release.py's release numbers)."""
    base = latent_memory(bank, cfg, bank_rows)
    return {"id": base, "ero": base, "dil": base.with_rows(rows)}


def lever_pixel_memories(cfg: SearchConfig, pixels, opened) -> dict:
    """{version: pixel memory or None} of the lever: None for every version without the pixel factor; else id and
    ero the model's own ``pixels`` (runtime PixelMemory), dil the nearer of it and ``opened`` (the opened frames'
    runtime PixelMemory, expanded with OPENED_AUGMENT): PairedPixelMemory."""
    if not cfg.uses_pixel_memory:
        return {v: None for v in VERSIONS}
    if opened is None:
        raise ValueError(f"the scoring configuration {cfg.name!r} has the pixel factor and the silhouette lever, "
                         "but no opened frames were given for the dil version's pixel memory")
    return {"id": pixels, "ero": pixels, "dil": PairedPixelMemory(pixels, opened)}


def lever_memories(cfg: SearchConfig, spec: PreprocessSpec, bank: np.ndarray, bank_rows: Optional[BankLayout],
                   pixels, rows: np.ndarray, opened: Optional[np.ndarray]) -> dict:
    """{version: (runtime LatentMemory, pixel memory or None)} of the lever, as runtime.scorer.load_silhouette_rows
    loads them from an export: ``lever_latent_memories`` (bank, bank_rows, the paired rows ``rows``) and
    ``lever_pixel_memories`` (``pixels``: its runtime PixelMemory, None without the pixel factor; the opened frames
    ``opened`` (M, R, R, 4) uint8 expanded here with OPENED_AUGMENT)."""
    from edge_ad.runtime.pixel_memory import PixelMemory
    latent = lever_latent_memories(cfg, bank, bank_rows, rows)
    opened_memory = None
    if cfg.uses_pixel_memory and opened is not None:
        opened_memory = PixelMemory(opened, spec, list(OPENED_AUGMENT))
    pix = lever_pixel_memories(cfg, pixels, opened_memory)
    return {v: (latent[v], pix[v]) for v in VERSIONS}


def version_inputs(frames: Sequence[tuple], spec: PreprocessSpec) -> tuple:
    """({version: float32 (N, 4, R, R) model inputs}, {version: bool (N,) made}) of raw frames [(rgb, depth)]:
    runtime.silhouette.silhouette_versions at the model's resolution, each version through runtime.scorer.frame_input
    (no fault checks). A version whose input cannot be made (FrameError) is marked not made and holds the frame's
    own input in its place (frame i stays row i of every version: its seed is the same in each, as the runtime's
    one seed for a frame's three versions); the frame's own FrameError is raised."""
    from edge_ad.runtime.scorer import frame_input
    X = {v: [] for v in VERSIONS}
    made = {v: np.ones(len(frames), bool) for v in VERSIONS}
    for i, (rgb, depth) in enumerate(frames):
        versions = silhouette_versions(rgb, depth, spec.resolution, spec_range(spec))
        for v in VERSIONS:
            try:
                X[v].append(frame_input(*versions[v], spec, check_faults=False))      # (4, R, R)
            except FrameError:
                if v == "id":
                    raise
                X[v].append(X["id"][i])
                made[v][i] = False
    return {v: np.stack(x) if x else np.zeros((0, 4, spec.resolution, spec.resolution), np.float32)
            for v, x in X.items()}, made


def combine(per_version: dict, weight: float) -> tuple:
    """(scores float64 (N,), winning versions [N]) of every frame's versions' scores {version: (N,) float, NaN where
    the version was not made}: runtime.silhouette.silhouette_min per frame."""
    n = len(per_version["id"])
    best = [silhouette_min({v: float(s[i]) for v, s in per_version.items() if not np.isnan(s[i])}, weight)
            for i in range(n)]
    return np.array([b[0] for b in best], dtype=float), [b[1] for b in best]


def winner_counts(won: Sequence[str]) -> dict:
    """{version: how many frames it won} in VERSIONS' order (0 for one that won none)."""
    return {v: sum(w == v for w in won) for v in VERSIONS}


def score_versions(G, frames: Sequence[tuple], cfg: SearchConfig, memories: dict, spec: PreprocessSpec,
                   seed: int = 0, first_index: int = 0, batch_frames: int = 0, encoder=None,
                   exclude: Optional[Sequence[int]] = None, dtype: torch.dtype = torch.float32) -> tuple:
    """The lever's scores of raw frames [(rgb, depth)] by the PyTorch reference: (scores float64 (N,), winning
    versions [N], {version: (N,) its own scores, NaN where not made}). Each version's inputs (``version_inputs``)
    scored by models.search.score_batch with the lever off, frame i from ``frame_seed(seed, first_index + i)`` in
    every version, against ``memories[version]`` (``lever_memories``); ``exclude``: pixel-memory frames left out
    (held-out scoring); then ``combine`` (cfg.silhouette_versions_weight)."""
    from .search import score_batch
    plain = cfg.replace(silhouette_versions_weight=0.0)
    X, made = version_inputs(frames, spec)
    per = {}
    for v in VERSIONS:
        latent, pixels = memories[v]
        s = score_batch(G, X[v], plain, seed=seed, dtype=dtype, batch_frames=batch_frames, encoder=encoder,
                        latent_bank=latent, pixel_memory=pixels, pixel_exclude=exclude, first_index=first_index)
        per[v] = np.where(made[v], s, np.nan)
    scores, won = combine(per, cfg.silhouette_versions_weight)
    return scores, won, per
