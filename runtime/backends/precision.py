"""Precision guard: would this arithmetic precision swallow the generator's weight update?

The search takes Adam steps on the generator weights with lr_theta = 6e-9 (the reference
configuration). One Adam step moves a weight by about lr_theta (|m_hat / (sqrt(v_hat) + eps)| is
about 1 for any gradient much larger than eps), so the step survives only where the weight's storage
format can represent w + lr_theta as a number different from w:

* float16: 6e-9 is below float16's smallest subnormal (2**-24 = 5.96e-8), so lr_theta itself rounds
  to 0 and *every* weight update is a no-op: the search silently degrades to a z-only search.
* float32: the step survives for small weights but is rounded away wherever half a unit in the last
  place exceeds it, i.e. for |w| >= 0.125 when lr_theta = 6e-9 (BatchNorm scales near 1, large
  kernel taps). The float32 reference scorer (torch) has exactly the same behaviour, so this is
  reported, not refused.
* tf32: a matmul/convolution *input* format (10-bit mantissa inside tensor-core products); weights,
  moments and the update stay float32, so the update check is float32's. What changes is the
  forward/backward accuracy: it must be measured (score drift, AUROC) before it is used.

``check_precision`` computes this from the actual weights and refuses (``PrecisionError``) a
precision that loses more updates than float32 does, unless explicitly allowed, in which case it
warns loudly (``PrecisionWarning``). NumPy only: usable on the robot and at engine-build time.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

log = logging.getLogger(__name__)

# precision name -> dtype in which weights, Adam moments and the update are stored/computed
STORAGE = {"fp32": np.float32, "tf32": np.float32, "fp16": np.float16}
PRECISIONS = tuple(STORAGE)
# |z| up to this is what N(0, I) latents reach in practice (6 sigma)
Z_TYPICAL_MAX = 6.0


class PrecisionError(ValueError):
    """A precision that would turn the requested search into a different algorithm."""


class PrecisionWarning(UserWarning):
    """A precision that loses part of the weight update (loud, but allowed)."""


@dataclass
class PrecisionReport:
    """What a precision does to one Adam step of size lr on the given weights."""

    precision: str
    lr_theta: float
    lr_theta_stored: float            # lr_theta rounded to the storage dtype (0.0 for fp16 at 6e-9)
    n_weights: int
    swallowed: int                    # weights for which w +- lr_theta == w in the storage dtype
    swallowed_fp32: int               # the same count in float32 (the reference behaviour)
    per_tensor: dict = field(default_factory=dict)   # name -> fraction swallowed
    z_ok: bool = True                 # lr_z survives for |z| <= Z_TYPICAL_MAX
    threshold_abs_w: float = float("inf")  # smallest |w| from which the update is always lost

    @property
    def fraction(self) -> float:
        return self.swallowed / max(self.n_weights, 1)

    @property
    def fraction_fp32(self) -> float:
        return self.swallowed_fp32 / max(self.n_weights, 1)

    @property
    def worse_than_fp32(self) -> bool:
        return self.swallowed > self.swallowed_fp32

    def summary(self) -> str:
        """One paragraph naming the numbers (used in warnings, errors and build-engine output)."""
        if self.lr_theta == 0:
            return f"{self.precision}: lr_theta = 0 (z-only search), no weight update to lose" + (
                "" if self.z_ok else f"; but lr_z is rounded away for |z| <= {Z_TYPICAL_MAX}")
        lines = [f"{self.precision}: an Adam step of lr_theta = {self.lr_theta:.3g} is stored as "
                 f"{self.lr_theta_stored:.3g}; it is rounded away for {self.swallowed}/{self.n_weights} "
                 f"generator weights ({100 * self.fraction:.1f}%)"]
        if self.lr_theta_stored == 0:
            lines.append("(lr_theta underflows to 0 in this format: every weight)")
        elif np.isfinite(self.threshold_abs_w):
            lines.append(f"(every weight with |w| >= {self.threshold_abs_w:.3g})")
        if self.precision != "fp32":
            lines.append(f"vs {100 * self.fraction_fp32:.1f}% in fp32, the reference behaviour")
        worst = sorted(self.per_tensor.items(), key=lambda kv: -kv[1])[:3]
        if worst and worst[0][1] > 0:
            lines.append("; most affected: " + ", ".join(f"{n} {100 * f:.0f}%" for n, f in worst))
        if self.precision == "tf32":
            lines.append("; tf32 keeps fp32 storage, but rounds conv inputs to 10 mantissa bits: "
                         "measure score drift and AUROC before using it")
        return " ".join(lines)


def update_threshold(lr: float, dtype=np.float32) -> float:
    """Smallest power of two |w| from which w + lr == w in ``dtype`` (round to nearest even).

    For float32 and lr = 6e-9 this is 0.125 (ulp/2 = 7.45e-9 > 6e-9 in [0.125, 0.25)); for float16
    lr itself underflows, so it is 0. (Exactly at a power of two the downward step may still land.)
    """
    dt = np.dtype(dtype).type
    if lr <= 0 or dt(lr) == 0:
        return 0.0
    lo = dt(np.finfo(dt).tiny)          # 2**e, bottom of a binade
    while lo < np.finfo(dt).max / 4:
        w = dt(lo * dt(1.5))            # inside the binade [2**e, 2**(e+1)), where ulp is constant
        if dt(w + dt(lr)) == w and dt(w - dt(lr)) == w:
            return float(lo)
        lo = dt(lo * 2)
    return float("inf")


def _swallowed(w: np.ndarray, lr: float, dt) -> np.ndarray:
    """Boolean mask: the step is lost in both directions when computed and stored in ``dt``."""
    wd = w.astype(dt)
    step = dt(lr)
    with np.errstate(over="ignore"):
        return ((wd + step).astype(dt) == wd) & ((wd - step).astype(dt) == wd)


def analyze(weights: Mapping[str, np.ndarray], lr_theta: float, precision: str = "fp32",
            lr_z: float = 5e-2) -> PrecisionReport:
    """Count, per tensor and overall, the weights whose lr_theta step the precision rounds away."""
    if precision not in STORAGE:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if lr_theta < 0:
        raise PrecisionError(f"lr_theta must be >= 0, got {lr_theta}")
    dt = STORAGE[precision]
    n = lost = lost32 = 0
    per = {}
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64).ravel()
        if w.size == 0:
            continue
        if not np.all(np.isfinite(w)):
            raise PrecisionError(f"weight {name!r} contains NaN or inf")
        if lr_theta > 0:
            m = int(_swallowed(w, lr_theta, dt).sum())
            m32 = int(_swallowed(w, lr_theta, np.float32).sum())
        else:
            m = m32 = 0
        per[name] = m / w.size
        n, lost, lost32 = n + w.size, lost + m, lost32 + m32
    zs = np.linspace(-Z_TYPICAL_MAX, Z_TYPICAL_MAX, 241)
    z_ok = lr_z == 0 or not _swallowed(zs, lr_z, dt).any()
    return PrecisionReport(precision=precision, lr_theta=float(lr_theta),
                           lr_theta_stored=float(dt(lr_theta)), n_weights=n, swallowed=lost,
                           swallowed_fp32=lost32, per_tensor=per, z_ok=bool(z_ok),
                           threshold_abs_w=update_threshold(lr_theta, dt) if lr_theta > 0 else float("inf"))


def check_precision(weights: Mapping[str, np.ndarray], lr_theta: float, precision: str = "fp32",
                    lr_z: float = 5e-2, allow_lossy: bool = False) -> PrecisionReport:
    """Refuse (PrecisionError) or loudly warn (PrecisionWarning) about a precision that loses updates.

    * loses more weight updates than fp32 (or rounds lr_z away): PrecisionError, unless
      ``allow_lossy``, then a PrecisionWarning;
    * loses some updates, but no more than fp32 (fp32 itself, tf32): PrecisionWarning, since the
      float32 reference scorer behaves the same way;
    * tf32: always a PrecisionWarning that drift must be measured.
    """
    rep = analyze(weights, lr_theta, precision, lr_z)
    text = rep.summary()
    bad = rep.worse_than_fp32 or not rep.z_ok
    if bad and not allow_lossy:
        hint = (" With lr_theta > 0 use fp32 (the default), or export a z-only search (lr_theta = 0) "
                "to run in fp16." if rep.lr_theta > 0 else "")
        raise PrecisionError(f"refusing precision {precision}: {text}.{hint}")
    if bad or rep.swallowed or precision == "tf32":
        prefix = "LOSSY PRECISION ALLOWED: " if bad else ""
        log.warning("%s%s", prefix, text)
        warnings.warn(prefix + text, PrecisionWarning, stacklevel=2)
    return rep
