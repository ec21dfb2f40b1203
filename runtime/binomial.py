"""The exact one-sided binomial test, shared by ``edge-ad calibrate`` (is a scene's count of frames above
the model's threshold plausible for its rate?) and the run loop's alarm-rate watch (is a window's count of
flagged frames plausible for the threshold's calibrated rate?). Pure Python, NumPy-free."""
from __future__ import annotations

import math

__all__ = ["binomial_tail"]


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exact (log-space terms; NumPy-free)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0 or p >= 1.0:
        return float(p >= 1.0)
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * lp + (n - j) * lq
             for j in range(k, n + 1)]
    top = max(terms)
    return float(min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms)))
