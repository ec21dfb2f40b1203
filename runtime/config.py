"""The search's hyperparameters (stored in manifests and checkpoints) and the initial latents.

Defaults are the algorithm's reference configuration (adgan-rgbd-algorithm.md):
lr_z = 5e-2, lr_theta = 6e-9, n_seed = 3, k = 19, Adam with torch's defaults, MSE loss.
The latent memory (runtime/latent_memory.py) and the score's divisor (runtime/score_scale.py) have
their own modules: import their names from there.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional, Sequence

import numpy as np

from .latent_memory import LATENT_METRICS

# the pixel memory's settings off (SearchConfig's defaults): to_dict leaves them out, so configurations
# without a pixel memory are recorded (and hashed: scorer.scoring_settings_sha256) as before the fields
PIXEL_DEFAULTS = {"score_pixel_power": 0.0, "pixel_floor": 1e-6, "pixel_shift_radius": 0, "pixel_gain_limits": ()}
# the opt-in settings left out of to_dict at their defaults (off): the pixel memory's and the silhouette lever's
OFF_DEFAULTS = {**PIXEL_DEFAULTS, "silhouette_versions_weight": 0.0}
MAX_SHIFT_RADIUS = 4     # score_shift_radius: (2 * 4 + 1)^2 = 81 scored copies per frame at most


# float settings checked below by their own rule, with their own message
OWN_FLOAT_CHECKS = ("bank_augment_weight", "score_pixel_power", "pixel_floor", "silhouette_versions_weight")


def _finite_number(v) -> bool:
    """True for a finite real number (int, float or NumPy scalar; not a bool, a string or NaN / inf)."""
    return isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) and math.isfinite(v)


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
    # Latent memory (issue 4): score *= max(d(E(x)), latent_floor) ** score_latent_power, where
    # d(e) = min_i dist(e, bank_i) is the distance of the encoder's latent E(x) to the nearest latent
    # of the normal training frames (the model's latent bank, E(train)), "cosine": squared distance of
    # the unit vectors (= 2 - 2 cos), "l2": mean squared difference. 0.0 = off (the reference).
    # Needs z_init == "encoder" (E(x) is the encoder's output, before any z_init_sigma noise).
    score_latent_power: float = 0.0
    latent_metric: str = "cosine"
    latent_floor: float = 1e-6
    # Soft weight of the bank's augmented rows (issue 12): a bank holds, per normal frame, the frame
    # itself and its augmented copies (mirrored, shifted, relit: runtime/latent_bank.py, the layout in
    # original_rows), and d(e) = min(min over the ORIGINAL rows, bank_augment_weight * min over the
    # AUGMENTED rows), same metric: a frame that only resembles a synthetic copy counts as farther
    # from normal than one that resembles a real frame. >= 1.0; 1.0 = every row alike (the plain memory).
    bank_augment_weight: float = 1.0
    # Trusted augmentations (issue 12): nuisance texts of the bank's recipe (manifest latent_bank["augment"],
    # matched exactly, e.g. "brightness:1.2") whose copies count as ORIGINAL rows (factor 1, not
    # bank_augment_weight): a copy that reproduces a real change of the scene (a brighter light saturates
    # bright boxes) is as normal as the frame. Stored sorted (a set: the order does not change a score).
    # Allowed with bank_augment_weight 1.0, where every row weighs 1 anyway and it changes nothing (so that
    # --bank-augment-weight 1 still compares a configuration that has it); its texts are still checked
    # against the bank's recipe. () = none (every copy weighed: the configurations before the field; not
    # written by to_dict, so their records are unchanged).
    bank_trusted_augment: tuple[str, ...] = ()
    # Test-time shift-min (issue 12): the frame's score is the MINIMUM over every shift (dy, dx),
    # |dy|, |dx| <= score_shift_radius, of the score of the preprocessed frame x (4, R, R) moved by
    # (dy, dx) whole pixels, vacated pixels background (-1 in all four channels):
    # runtime.preprocess.shift_frame / shift_offsets. Each shifted copy is scored exactly as a frame
    # (its own E(x') for z0 and the latent distance, its own fg(x'), the same seed / z0). It makes
    # the score tolerant of small camera shifts. 0 = off (the reference); at most MAX_SHIFT_RADIUS.
    score_shift_radius: int = 0
    # Pixel memory (session 18): score *= max(d_pix(x), pixel_floor) ** score_pixel_power, where
    # d_pix(x) = min_i mean((x - m_i)^2) is the mean squared difference of the preprocessed input x
    # (4, R, R) to the nearest row of the model's pixel memory (runtime/pixel_memory.py: the normal
    # training frames and their augmented copies, preprocessed, pixel_memory.npy). 0.0 = off (every
    # model before the field; not written by to_dict at its defaults, so their records are unchanged).
    score_pixel_power: float = 0.0
    pixel_floor: float = 1e-6
    # The pixel distance's own shift search (pixel MSE does not forgive a residual 1-px misalignment):
    # d_pix of a FRAME x is the minimum over the (2 R_p + 1)^2 shifts s in shift_offsets(R_p) of
    # d_pix(shift_frame(x, s)) (PixelMemory.frame_distance), measured once per frame on the frame as
    # given; the same factor multiplies every shift-min copy's score (score_shift_radius). 0 = the frame
    # itself; at most MAX_SHIFT_RADIUS; left out of to_dict at 0 (records unchanged).
    pixel_shift_radius: int = 0
    # The pixel distance's light fit (session 24): (lo, hi), 0 < lo <= 1 <= hi: per memory row the input's
    # foreground RGB (in [0, 1] colours) is scaled by the least-squares gain g = <v_x, v_m> / <v_x, v_x>
    # clipped to [lo, hi] before the mean squared difference (depth untouched; pixel_memory.gain_distance):
    # one gain for R, G and B, so a uniform brightness change inside the limits that saturates nothing leaves
    # d_pix as it was; a colour cast (white balance) or a change beyond the limits still counts.
    # () = the plain distance (every model before the field; left out of to_dict, records unchanged).
    pixel_gain_limits: tuple = ()
    # The silhouette lever (session 33, audit 31 #9; runtime/silhouette.py): w_e > 0 scores a RAW frame also as its
    # silhouette 1 px narrower (ero) and 1 px wider (dil), each in full, score = min(S_id, w_e * S_ero, S_dil), the
    # dil version also against the model's paired rows of opened training frames (silhouette_bank.npy). Needs the
    # latent memory (score_latent_power > 0); w_e >= 1 (2.0 measured). 0.0 = off (every model before the field;
    # left out of to_dict at 0, records and config_sha256 unchanged). Applies where the raw frame is scored
    # (Scorer.score, score_batch); an input already preprocessed is scored as it is.
    silhouette_versions_weight: float = 0.0

    def __post_init__(self):
        for key in ("n_seed", "k"):
            v = getattr(self, key)
            if isinstance(v, np.integer):
                object.__setattr__(self, key, int(v))   # JSON-able
            elif isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{key} must be a whole number, got {v!r}")
        # NaN passes every "x < 0" check below (and inf most of them): a NaN learning rate or sigma scored every
        # frame NaN, a NaN power switched its factor off; each float setting is a finite number (left as given:
        # to_dict, hence the settings hash, unchanged)
        bad = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.type == "float"
               and f.name not in OWN_FLOAT_CHECKS and not _finite_number(getattr(self, f.name))]
        if bad:
            raise ValueError(f"the search settings must be finite numbers, got {', '.join(bad)}")
        if self.n_seed < 1 or self.k < 0:
            raise ValueError(f"need n_seed >= 1 and k >= 0, got n_seed={self.n_seed}, k={self.k}")
        if self.lr_z < 0 or self.lr_theta < 0:
            raise ValueError("learning rates must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1 and self.eps > 0):
            raise ValueError(f"invalid Adam settings beta1={self.beta1} beta2={self.beta2} eps={self.eps}")
        if self.z_init not in ("random", "encoder") or self.z_init_sigma < 0:
            raise ValueError(f"z_init must be 'random' or 'encoder' and z_init_sigma >= 0, got "
                             f"{self.z_init!r}, {self.z_init_sigma}")
        if self.score_latent_power < 0 or self.latent_metric not in LATENT_METRICS or self.latent_floor <= 0:
            raise ValueError(f"need score_latent_power >= 0, latent_metric in {LATENT_METRICS} and "
                             f"latent_floor > 0, got {self.score_latent_power}, {self.latent_metric!r}, "
                             f"{self.latent_floor}")
        w = self.bank_augment_weight
        if isinstance(w, (int, float, np.number)) and not isinstance(w, bool):
            object.__setattr__(self, "bank_augment_weight", float(w))   # JSON-able
        if not isinstance(self.bank_augment_weight, float) or not 1.0 <= self.bank_augment_weight < float("inf"):
            raise ValueError(f"bank_augment_weight must be a finite number >= 1.0 (the factor on the distances to "
                             f"the latent bank's augmented rows; 1.0 = all rows alike), got {w!r}")
        trusted = self.bank_trusted_augment
        if isinstance(trusted, (list, tuple)) and all(isinstance(t, str) and t.strip() == t and t
                                                      for t in trusted) and len(set(trusted)) == len(trusted):
            object.__setattr__(self, "bank_trusted_augment", tuple(sorted(trusted)))   # a JSON list -> tuple
        else:
            raise ValueError(f"bank_trusted_augment must be a list of distinct augmentation texts of the latent "
                             f"bank (e.g. ['brightness:1.2']), got {trusted!r}")
        if self.score_latent_power > 0 and self.z_init != "encoder":
            raise ValueError("score_latent_power > 0 scores the encoder's latent E(x): it needs z_init='encoder'")
        if self.score_fg_power < 0 or not 0 < self.fg_floor <= 1:
            raise ValueError(f"need score_fg_power >= 0 and 0 < fg_floor <= 1, got "
                             f"score_fg_power={self.score_fg_power}, fg_floor={self.fg_floor}")
        for key in ("score_pixel_power", "pixel_floor"):
            v = getattr(self, key)
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                object.__setattr__(self, key, float(v))   # JSON-able
        if not isinstance(self.score_pixel_power, float) or not 0.0 <= self.score_pixel_power < float("inf") \
                or not isinstance(self.pixel_floor, float) or not 0.0 < self.pixel_floor < float("inf"):
            raise ValueError(f"need a finite score_pixel_power >= 0 (0: no pixel memory) and a finite pixel_floor > 0, "
                             f"got score_pixel_power={self.score_pixel_power!r}, pixel_floor={self.pixel_floor!r}")
        w = self.silhouette_versions_weight
        if isinstance(w, (int, float, np.number)) and not isinstance(w, bool):
            object.__setattr__(self, "silhouette_versions_weight", float(w))   # JSON-able
        w = self.silhouette_versions_weight
        if not isinstance(w, float) or not (w == 0.0 or 1.0 <= w < float("inf")):
            raise ValueError(f"silhouette_versions_weight must be 0 (the silhouette lever off) or a finite number >= 1 "
                             f"(the factor on the 1-px eroded version's score), got {w!r}")
        if w > 0 and not self.score_latent_power > 0:
            raise ValueError("silhouette_versions_weight > 0 (the silhouette lever) pairs the dil version with latent "
                             "rows of opened training frames: it needs the latent memory (score_latent_power > 0)")
        for key in ("score_shift_radius", "pixel_shift_radius"):
            v = getattr(self, key)
            if isinstance(v, np.integer):
                object.__setattr__(self, key, int(v))   # JSON-able
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_SHIFT_RADIUS:
                raise ValueError(f"{key} must be a whole number of pixels in [0, {MAX_SHIFT_RADIUS}] "
                                 f"((2R + 1)^2 shifted copies per frame), got {v!r}")

        g = self.pixel_gain_limits
        if not isinstance(g, (list, tuple)) or len(g) not in (0, 2) or any(isinstance(v, bool) for v in g):
            raise ValueError(f"pixel_gain_limits must be () (the plain pixel distance) or two numbers (lo, hi), "
                             f"got {g!r}")
        from .pixel_memory import check_gain_limits       # pixel_memory imports nothing of this module
        object.__setattr__(self, "pixel_gain_limits", check_gain_limits(g) if len(g) else ())   # JSON list -> tuple

    @property
    def uses_latent_bank(self) -> bool:
        """True when the score has the latent-memory factor (needs the model's latent bank)."""
        return self.score_latent_power > 0

    @property
    def uses_pixel_memory(self) -> bool:
        """True when the score has the pixel-memory factor (needs the model's pixel memory)."""
        return self.score_pixel_power > 0

    @property
    def uses_silhouette_versions(self) -> bool:
        """True when a raw frame is scored as its three silhouette versions (runtime/silhouette.py)."""
        return self.silhouette_versions_weight > 0

    @property
    def updates_weights(self) -> bool:
        """False for the z-only fast variant (lr_theta == 0): no weight gradients needed."""
        return self.lr_theta > 0

    def to_dict(self) -> dict:
        """The settings as JSON stores them; ``from_dict`` inverts it. bank_trusted_augment is a list, left
        out when empty (score_pixel_power and pixel_floor: left out at their defaults): a configuration without it is recorded (manifests, checkpoints, thresholds) exactly
        as before the field existed, so runtimes older than it still load such exports."""
        d = asdict(self)
        if self.bank_trusted_augment:
            d["bank_trusted_augment"] = list(self.bank_trusted_augment)
        else:
            del d["bank_trusted_augment"]
        for key, default in OFF_DEFAULTS.items():   # at their defaults (off): recorded as before the fields
            if d[key] == default:
                del d[key]
        if "pixel_gain_limits" in d:
            d["pixel_gain_limits"] = list(self.pixel_gain_limits)          # JSON's form
        return d

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

    def overridden(self, **kw) -> "SearchConfig":
        """``replace`` for a user's overrides (None: keep): a result that scores differently
        (``search_differences``) is no longer this named configuration, so it is renamed
        "<name>+<setting>=<value>,..." (e.g. "izi-mem-fg1.0+k=19,n_seed=3"); a name stands for one
        score (shipped results, thresholds, README tables)."""
        new = self.replace(**{k: v for k, v in kw.items() if k != "name"})
        changed = search_differences(self.to_dict(), new)
        if not changed:
            return new
        return new.replace(name=f"{self.name}+" + ",".join(f"{k}={_name_value(getattr(new, k))}" for k in changed))


def _name_value(v) -> str:
    """A setting's value in a configuration's name: a tuple of texts (bank_trusted_augment) as
    [text;text] (nuisance texts hold commas), anything else as str."""
    return "[" + ";".join(v) + "]" if isinstance(v, tuple) else str(v)


def trusted_override(texts: Sequence[str]) -> Optional[tuple]:
    """A command line's repeatable ``--bank-trusted-augment TEXT`` as an ``overridden`` value of
    bank_trusted_augment: None when not given (keep the configuration's), () for the single text "none",
    else the texts. Raises ValueError for "none" among other texts."""
    texts = tuple(texts or ())
    if not texts:
        return None
    if "none" in texts:
        if len(texts) > 1:
            raise ValueError(f"--bank-trusted-augment none (no trusted augmentation) cannot be combined with "
                             f"texts, got {list(texts)}")
        return ()
    return texts


# settings only the search steps read: with k = 0 (no step) they cannot change a score
OPTIMISER_ONLY = ("lr_z", "lr_theta", "beta1", "beta2", "eps")


def search_differences(calibrated: dict, cfg: SearchConfig) -> list:
    """Settings (other than the name) in which ``cfg`` differs from a configuration stored as a dict
    (e.g. the one a threshold was calibrated with); a setting absent from an older dict ran with its
    default. [] when they score alike: when both have k = 0 the optimiser's settings (OPTIMISER_ONLY)
    are not compared (no search step reads them)."""
    calibrated = {**SearchConfig().to_dict(), **calibrated}
    mine = cfg.to_dict()
    for d in (calibrated, mine):       # absent: none; stored in any order: a set
        t = d.get("bank_trusted_augment") or []
        d["bank_trusted_augment"] = sorted(t) if isinstance(t, (list, tuple)) else t
        for key, default in OFF_DEFAULTS.items():                   # absent: off, as before the fields
            d.setdefault(key, default)
        d["pixel_gain_limits"] = [float(v) for v in d["pixel_gain_limits"]]   # a list or a tuple: the same
    ignored = {"name"} | (set(OPTIMISER_ONLY) if calibrated.get("k") == 0 and cfg.k == 0 else set())
    if calibrated.get("bank_augment_weight") == 1.0 and cfg.bank_augment_weight == 1.0:
        ignored.add("bank_trusted_augment")        # every row weighs 1: trusted or not, the same score
    if calibrated.get("score_pixel_power") == 0.0 and mine["score_pixel_power"] == 0.0:
        ignored |= {"pixel_floor", "pixel_shift_radius", "pixel_gain_limits"}   # no pixel factor: they change no score
    return sorted(k for k in set(calibrated) | set(mine) if calibrated.get(k) != mine.get(k) and k not in ignored)


def adam_bias_corrections(t: int, beta1: float, beta2: float) -> tuple[float, float]:
    """Adam's bias corrections for step t (1-based), in float64 as torch computes them."""
    return 1.0 - beta1 ** t, 1.0 - beta2 ** t


def adam_scalars(cfg: SearchConfig, t: int) -> dict:
    """Adam's per-step hyper-parameters for step t (1-based), computed in float64 as torch does: the
    step graphs' scalar inputs (export/onnx_graphs.SCALARS), the TensorRT search's per-step buffers
    and the host Adam's coefficients (runtime/backends/host_adam.coefficients) all come from here."""
    bc1, bc2 = adam_bias_corrections(t, cfg.beta1, cfg.beta2)
    return {"beta1": cfg.beta1, "one_minus_beta1": 1.0 - cfg.beta1, "beta2": cfg.beta2,
            "one_minus_beta2": 1.0 - cfg.beta2, "eps": cfg.eps,
            "step_size_z": cfg.lr_z / bc1, "step_size_theta": cfg.lr_theta / bc1,
            "inv_sqrt_bc2": 1.0 / np.sqrt(bc2)}


def make_z0(n_seed: int, z_dim: int, seed: Optional[int] = None,
            rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Initial latents z_{j,0} ~ N(0, I): float32 (n_seed, z_dim). Same numbers on every backend."""
    rng = rng if rng is not None else np.random.default_rng(seed)
    return rng.standard_normal((n_seed, z_dim)).astype(np.float32)


def draw_seed() -> int:
    """A fresh random latent seed (OS entropy): the test-time shift-min draws one per frame when the
    caller gives neither seed nor z0, so every shifted copy of the frame starts from the same z0 noise."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def frame_seed(seed: int, index: int) -> int:
    """Per-frame latent seed derived from a run seed and the frame's index (reproducible runs)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
