"""The exact one-sided binomial test, shared by ``edge-ad calibrate`` (is a scene's count of frames above
the model's threshold plausible for its rate?) and the run loop's alarm-rate watch (is a window's count of
flagged frames plausible for the threshold's calibrated rate?), and ``is_count``, the check of the frame
counts they read from a manifest. Pure Python, NumPy-free."""
from __future__ import annotations

import math

__all__ = ["binomial_tail", "accepted_count", "frames_above_quantile", "exceedance_upper_bound", "is_count"]


def is_count(x, least: int = 0) -> bool:
    """True when ``x`` is a whole count >= ``least``: a Python int, not a bool (True is an int) and not a
    float such as 4.0 (a manifest's n_normal / frames_above, an alarm window)."""
    return isinstance(x, int) and not isinstance(x, bool) and x >= least


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


def accepted_count(n: int, p: float, alpha: float) -> int:
    """The largest k in 0 .. n with P(X >= k) >= ``alpha``, X ~ Binomial(n, p), 0 when none (alpha > 1):
    the most of ``n`` frames that may be above a rate-``p`` threshold before the one-sided binomial test at
    ``alpha`` refutes it (calibrate's ``frames_accepted``; the alarm watch's ``count_limits``: fire = this
    + 1). Bisection on k (the tail falls as k grows; P(X >= 0) = 1): log2(n) tails instead of one per k.
    n = 0 or p = 0: 0; p = 1 or alpha = 0: n; alpha = 1: the k whose computed tail is 1.0 (0, unless
    1 - P(X = 0) rounds to 1)."""
    lo, hi = 0, n                           # the tail at lo is >= alpha; the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if binomial_tail(mid, n, p) >= alpha:
            lo = mid
        else:
            hi = mid - 1
    return lo


def frames_above_quantile(n: int, rate: float) -> int:
    """How many of ``n`` frames score above their (1 - ``rate``) quantile taken as calibration takes it
    (``np.quantile(scores, 1 - rate, method="higher")``: the sorted score at index ceil((1 - rate)(n - 1)))."""
    return n - 1 - math.ceil((1.0 - rate) * (n - 1) - 1e-9)


def exceedance_upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """Upper ``confidence`` bound of the true exceedance rate of a threshold that ``k`` of the ``n``
    frames it was read from score above: that rate is Beta(k + 1, n - k) distributed, whose
    ``confidence`` quantile p solves P(X >= k + 1) = confidence, X ~ Binomial(n, p) (bisection; the
    tail grows with p)."""
    if not 0 <= k < n or not 0 < confidence < 1:
        raise ValueError(f"need 0 <= k < n and confidence in (0, 1), got k={k}, n={n}, confidence={confidence}")
    lo, hi = 0.0, 1.0
    for _ in range(60):                     # |hi - lo| < 1e-18
        mid = (lo + hi) / 2
        if binomial_tail(k + 1, n, mid) < confidence:
            lo = mid
        else:
            hi = mid
    return hi
