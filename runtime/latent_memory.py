"""A model's latent memory: the latent bank's row layout and the nearest-row distance of an encoder latent.

The bank (latent_bank.npy, (N, z_dim)) holds E(x) of the normal training frames and of their
augmented copies, frame-major: per normal frame the frame itself first, then one row per
augmentation text (``rows_per_frame_of``, ``original_rows``, ``trusted_original_rows``).
``LatentMemory`` prepares it once and measures d(E(x), bank); ``latent_memory`` builds the one a
scoring configuration (runtime.config.SearchConfig) scores with.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from .nuisance import largest_shift, parse_nuisance

if TYPE_CHECKING:
    from .config import SearchConfig

LATENT_METRICS = ("cosine", "l2")


def rows_per_frame_of(augment) -> int:
    """Rows per normal frame of a latent bank built with the augmentation texts ``augment`` (the
    manifest's latent_bank["augment"], the checkpoint's scoring["latent_bank_info"]["augment"]; None or
    absent: none): the frame itself and one row per augmentation."""
    augment = [] if augment is None else augment
    if isinstance(augment, str) or not all(isinstance(t, str) for t in augment):
        raise ValueError(f"a latent bank's augment must be a list of nuisance texts, got {augment!r}")
    return 1 + len(augment)


def original_rows(n_rows: int, rows_per_frame: int) -> np.ndarray:
    """Which rows of a latent bank (n_rows, z_dim) are normal frames as they are: bool (n_rows,), False for
    their augmented copies. Banks are frame-major (runtime/latent_bank.py bank_inputs): per normal frame
    the frame itself FIRST, then one row per augmentation, so rows_per_frame = 1 + len(augment) and row i
    is original iff i % rows_per_frame == 0. Raises ValueError when n_rows is not a multiple of it."""
    if isinstance(rows_per_frame, bool) or not isinstance(rows_per_frame, (int, np.integer)) or rows_per_frame < 1:
        raise ValueError(f"rows_per_frame must be a whole number >= 1 (1 + the number of augmentations), "
                         f"got {rows_per_frame!r}")
    if n_rows < 1 or n_rows % rows_per_frame:
        raise ValueError(f"a latent bank of {n_rows} rows cannot hold {rows_per_frame} rows per normal frame "
                         f"(the frame and {rows_per_frame - 1} augmented copies): {n_rows} is not a positive "
                         f"multiple of {rows_per_frame}")
    return np.arange(n_rows) % rows_per_frame == 0


def unshifted_rows(n_rows: int, augment: Sequence[str]) -> np.ndarray:
    """Which rows of a latent bank (n_rows, z_dim) built with the augmentation texts ``augment`` (frame-major,
    ``original_rows``) show the frame where the camera saw it: bool (n_rows,), True for the frame itself and
    its copies under texts that move no content (runtime.nuisance.largest_shift (0, 0): mirror, light,
    colour, zoom, roll, blur), False for the copies under a text with a shift ("shift:2,0",
    "brightness:1.15+shift:2,-2"). Raises ValueError for a text that is not a nuisance or a bank of another
    layout."""
    original = original_rows(n_rows, rows_per_frame_of(augment))        # (n_rows,): checks the layout
    # per frame: the frame itself, then the copy under each text (row 1 + j: augment[j])
    kept = np.array([True] + [largest_shift(parse_nuisance(text)) == (0, 0) for text in augment])   # (A,)
    return np.tile(kept, len(original) // len(kept))


# A latent bank's layout, as the callers know it: its rows per normal frame (1 + len(augment)), or the
# augmentation texts themselves (the manifest's latent_bank["augment"]), which bank_trusted_augment needs.
BankLayout = Union[int, Sequence[str]]


def layout_rows_per_frame(layout: BankLayout) -> int:
    """Rows per normal frame of a bank layout: an int as given, an augment list 1 + len(augment)."""
    if isinstance(layout, (int, np.integer)) and not isinstance(layout, bool):
        return int(layout)
    return rows_per_frame_of(layout)


def trusted_original_rows(n_rows: int, augment: Sequence[str], trusted: Sequence[str] = ()) -> np.ndarray:
    """``original_rows`` of a bank built with the augmentation texts ``augment`` (frame-major: per frame
    the frame, then one row per text, in this order), with the rows of the augmentations named in
    ``trusted`` (SearchConfig.bank_trusted_augment) marked original too: bool (n_rows,). Raises
    ValueError naming a trusted text that is not in ``augment`` and the bank's list."""
    A = rows_per_frame_of(augment)
    mask = original_rows(n_rows, A)
    unknown = [t for t in trusted if t not in augment]
    if unknown:
        raise ValueError(f"bank_trusted_augment {unknown} names augmentations the latent bank was not built with; "
                         f"the bank's augment: {list(augment)}")
    for j, text in enumerate(augment):                # row 1 + j of every frame is the copy under augment[j]
        if text in trusted:
            mask[1 + j::A] = True
    return mask


class LatentMemory:
    """A model's latent bank (N, z_dim) prepared once (float64; rows normalised for "cosine"), so that
    scoring a frame costs one nearest-neighbour search: ``distance(e)``.

    ``original`` bool (N,) marks the rows that are normal frames as they are (``original_rows``); the
    distances to the other (augmented) rows are multiplied by ``augment_weight`` (>= 1, the
    configuration's bank_augment_weight) before the minimum. augment_weight 1.0: every row alike."""

    def __init__(self, bank: np.ndarray, metric: str = "cosine", original: Optional[np.ndarray] = None,
                 augment_weight: float = 1.0):
        if metric not in LATENT_METRICS:
            raise ValueError(f"unknown latent metric {metric!r}; known: {', '.join(LATENT_METRICS)}")
        bank = np.asarray(bank, dtype=np.float64)
        self.metric, self.shape = metric, bank.shape
        if metric == "cosine" and bank.ndim == 2:
            bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
        self._bank = bank
        # |b|^2 per row (N,) for distances' GEMM expansion, computed once here: the memory is shared by threads
        self._bank_sq = (bank ** 2).sum(1) if bank.ndim == 2 else None
        if not 1.0 <= augment_weight < float("inf"):
            raise ValueError(f"augment_weight must be finite and >= 1.0, got {augment_weight!r}")
        self._weights = None     # (N,) float64 factor per row: 1 (original) or augment_weight; None = all 1
        if augment_weight != 1.0:
            if original is None:
                raise ValueError(f"augment_weight {augment_weight} weighs the bank's augmented rows, but no "
                                 "'original' mask says which rows those are (original_rows)")
            original = np.asarray(original)
            if original.dtype != bool or original.shape != bank.shape[:1]:
                raise ValueError(f"original must be a bool mask ({bank.shape[0]},) over the bank's rows, got "
                                 f"{original.dtype} {original.shape}")
            self._weights = np.where(original, 1.0, float(augment_weight))

    def subset(self, keep: np.ndarray) -> "LatentMemory":
        """This memory over its rows ``keep`` only (bool (N,), at least one True): the same metric, each kept
        row as prepared here and with its factor here (1 original, augment_weight augmented), so ``distance``
        is the nearest of those rows exactly as this memory measures it (edge-ad calibrate's camera-shift
        search: the bank without its shifted copies, ``unshifted_rows``)."""
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != self.shape[:1]:
            raise ValueError(f"keep must be a bool mask ({self.shape[0]},) over the bank's rows, got {keep.dtype} {keep.shape}")
        if not keep.any():
            raise ValueError("keep selects none of the bank's rows: a latent memory needs at least one")
        out = object.__new__(LatentMemory)
        out.metric, out.shape = self.metric, (int(keep.sum()),) + tuple(self.shape[1:])
        out._bank, out._bank_sq = self._bank[keep], self._bank_sq[keep]              # (K, z_dim), (K,)
        out._weights = None if self._weights is None else self._weights[keep]        # (K,) or None
        return out

    def with_rows(self, rows: np.ndarray) -> "LatentMemory":
        """This memory plus ``rows`` (M, z_dim) after its own rows, each new row prepared as ``__init__`` prepares
        a row (same metric) and at factor 1 (as an original row): the silhouette lever's dil version's memory, the
        bank and the paired rows of the opened training frames (runtime/silhouette.py). ``subset`` masks run over
        (N + M,) rows, this memory's first."""
        extra = LatentMemory(rows, self.metric)
        if len(extra.shape) != 2 or extra.shape[1:] != tuple(self.shape[1:]) or extra.shape[0] == 0:
            raise ValueError(f"rows must be (M >= 1, z_dim) like the bank's {self.shape}, got {extra.shape}")
        out = object.__new__(LatentMemory)
        out.metric, out.shape = self.metric, (self.shape[0] + extra.shape[0],) + tuple(self.shape[1:])
        out._bank = np.concatenate([self._bank, extra._bank])                        # (N + M, z_dim)
        out._bank_sq = np.concatenate([self._bank_sq, extra._bank_sq])               # (N + M,)
        out._weights = None if self._weights is None else np.concatenate([self._weights, np.ones(len(extra._bank))])
        return out

    def distance(self, e: np.ndarray) -> float:
        """Distance of an encoder latent e (z_dim,) to the nearest bank row, in float64:
        "cosine": min_i w_i ||e/|e| - b_i/|b_i|||^2 (= 2 - 2 cos, in [0, 4]); "l2": min_i w_i mean((e - b_i)^2),
        w_i = 1 for an original row, augment_weight for an augmented one."""
        e = np.asarray(e, dtype=np.float64).reshape(-1)
        bank = self._bank
        if bank.ndim != 2 or bank.shape[1] != e.shape[0] or len(bank) == 0:
            raise ValueError(f"latent bank must be (N, z_dim={e.shape[0]}), got shape {self.shape}")
        if not np.isfinite(e).all():
            raise ValueError("encoder latent contains NaN or inf")
        if self.metric == "cosine":
            e = e / max(np.linalg.norm(e), 1e-12)
            return float(max(self._weighted(((bank - e) ** 2).sum(1)).min(), 0.0))
        return float(self._weighted(((bank - e) ** 2).mean(1)).min())

    def _weighted(self, d: np.ndarray, rows=slice(None)) -> np.ndarray:
        """Per-row distances d to the bank's ``rows`` with the augmented rows' factor applied."""
        return d if self._weights is None else d * self._weights[rows]

    def distances(self, E: np.ndarray) -> np.ndarray:
        """``distance`` of every row of E (B, z_dim) -> (B,) float64, equal to ``distance(E[b])``.

        One float64 GEMM finds each row's candidates: ||e - b||^2 = |e|^2 - 2 e.b + |b|^2 for all
        (row, bank row) pairs at once, instead of B passes that each stream the (N, z_dim) bank. That
        expansion is off by float64 rounding (~1e-15 of the norms), so every bank row whose weighted
        expanded distance is within a margin far above it (times the largest row factor) of the row's
        smallest is measured again with ``distance``'s own formula and factor, whose minimum is returned:
        the nearest row is always among them."""
        E = np.asarray(E, dtype=np.float64)
        bank = self._bank
        if E.ndim != 2 or bank.ndim != 2 or bank.shape[1] != E.shape[1] or len(bank) == 0:
            raise ValueError(f"latent bank must be (N, z_dim), latents (B, z_dim): got {self.shape} and {E.shape}")
        if not np.isfinite(E).all():
            raise ValueError("encoder latent contains NaN or inf")
        if self.metric == "cosine":                              # each row as distance() normalises it
            E = np.stack([e / max(np.linalg.norm(e), 1e-12) for e in E])
        e_sq = (E ** 2).sum(1)                                   # (B,)
        D = self._weighted(e_sq[:, None] - 2.0 * (E @ bank.T) + self._bank_sq[None, :])   # (B, N) weighted, expanded
        w_max = 1.0 if self._weights is None else float(self._weights.max())
        margin = 1e-9 * w_max * (1.0 + e_sq + self._bank_sq.max())    # >> the expansion's rounding error
        out = np.empty(len(E))
        for b, e in enumerate(E):
            near = np.flatnonzero(D[b] <= D[b].min() + margin[b])     # (k,) candidate rows, k >= 1
            d = ((bank[near] - e) ** 2).sum(1) if self.metric == "cosine" else ((bank[near] - e) ** 2).mean(1)
            d = self._weighted(d, near)
            out[b] = max(d.min(), 0.0) if self.metric == "cosine" else d.min()
        return out


def latent_memory(bank: np.ndarray, cfg: SearchConfig, layout: Optional[BankLayout] = None) -> LatentMemory:
    """The LatentMemory a configuration scores with: cfg's latent_metric and bank_augment_weight over
    ``bank`` (N, z_dim), whose augmented rows follow from its ``layout`` (checked whenever given): the
    bank's augment list (the manifest's latent_bank["augment"]; the copies of cfg.bank_trusted_augment's
    texts count as original rows: ``trusted_original_rows``) or only its rows per frame, 1 + len(augment)
    (``original_rows``). Raises ValueError: layout None (unknown) when cfg weighs the augmented rows
    (bank_augment_weight != 1); cfg.bank_trusted_augment non-empty without the augment list (an int or
    None: which rows are whose copies is unknown); a trusted text not in the bank's augment list. A LatentMemory
    already prepared (e.g. the silhouette lever's bank + paired rows, LatentMemory.with_rows) is returned as it is."""
    if isinstance(bank, LatentMemory):
        return bank
    if cfg.bank_trusted_augment and (layout is None or isinstance(layout, (int, np.integer))):
        raise ValueError(f"the scoring configuration {cfg.name!r} counts the latent bank's copies under "
                         f"{list(cfg.bank_trusted_augment)} as original rows (bank_trusted_augment), but the bank's "
                         "augment list was not given (only " + ("its rows per frame" if layout is not None else
                                                               "the bank") + "): pass the augment list")
    rows_per_frame = None if layout is None else layout_rows_per_frame(layout)
    if layout is None:
        original = None
    elif isinstance(layout, (int, np.integer)):
        original = original_rows(len(bank), rows_per_frame)
    else:
        original = trusted_original_rows(len(bank), layout, cfg.bank_trusted_augment)
    if original is None and cfg.bank_augment_weight != 1.0:
        raise ValueError(f"the scoring configuration {cfg.name!r} weighs the latent bank's augmented rows "
                         f"(bank_augment_weight={cfg.bank_augment_weight}), but the bank's layout (rows per "
                         "normal frame, 1 + len(augment)) was not given")
    check_augment_weight(cfg, rows_per_frame)
    return LatentMemory(bank, cfg.latent_metric, original, cfg.bank_augment_weight)


def check_augment_weight(cfg: SearchConfig, rows_per_frame: Optional[int]) -> None:
    """Refuse (ValueError) a bank_augment_weight != 1 for a bank without augmented rows (1 row per
    normal frame, no augment recorded): the weight would change nothing while its record says otherwise."""
    if cfg.bank_augment_weight != 1.0 and rows_per_frame == 1:
        raise ValueError(f"bank_augment_weight={cfg.bank_augment_weight} weighs the latent bank's augmented "
                         "rows, but this bank has none (1 row per normal frame, no augment recorded); use "
                         "bank_augment_weight 1.0 or a bank built with augmented copies")

