"""How often the alarm-rate watch fires on a normal stream, and how fast it reacts to a raised rate.

Not a timed test: a simulation with runtime/alarm_watch.AlarmRateWatch itself, fed seeded streams of
independent flags. ``false``: streams at exactly the calibrated rate, fires per 10 000 frames (each
fire is one alarm_rate_high; the watch calms before it can fire again). ``react``: streams at a raised
rate from the first frame, the frame of the first alarm_rate_high (median, 90th percentile, how many
streams fired). Real cameras give correlated frames: a run of real anomalies fires it too.

  python benchmarks/alarm_watch_rates.py --rate 0.07 0.05 --alpha 1e-3 1e-4 --raised-x 2.57 \
      --out benchmarks/results/alarm_watch_rates.json

(--raised-x 2.57: 0.18 at the calibrated 0.07, the rectangle model's false alarms with the camera
shifted by (-2, +2) px.)

``--n-normal N ...``: thresholds as calibration makes them, each stream's threshold the (1 - rate)
quantile (method "higher") of N seeded uniform normal scores, so its true rate (1 - threshold) is
the stream's rate; the watch as a run builds it (``watch_for`` with n_normal N: the rate's upper 95 %
bound) and, for comparison, against the rate itself (``exact``):

  python benchmarks/alarm_watch_rates.py --rate 0.05 --n-normal 50 400 --raised-x 3 --out A.json
  python benchmarks/alarm_watch_rates.py --rate 0.07 --n-normal 400 --raised-x 2.5714 --out B.json
  (benchmarks/results/alarm_watch_n_normal.json: the reports of both)
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from edge_ad.runtime.alarm_watch import DEFAULT_ALPHA, DEFAULT_WINDOW, AlarmRateWatch, watch_for


def fires(rate: float, true_rate: float, window: int, alpha: float, frames: int, streams: int, seed: int) -> list:
    """Per stream: the frame numbers (1-based) at which alarm_rate_high was reported."""
    out = []
    for s in range(streams):
        flags = np.random.default_rng([seed, s]).random(frames) < true_rate
        watch = AlarmRateWatch(rate, window, alpha)
        out.append([i + 1 for i, f in enumerate(flags)
                    if (ev := watch.add(bool(f), i)) is not None and ev["event"] == "alarm_rate_high"])
    return out


def report(rate: float, alpha: float, raised: float, window: int, frames: int, streams: int, seed: int) -> dict:
    """One (rate, alpha): false fires at the calibrated rate, the reaction to ``raised``."""
    normal = fires(rate, rate, window, alpha, frames, streams, seed)
    n_fires = sum(len(f) for f in normal)
    first = [f[0] for f in fires(rate, raised, window, alpha, 2000, 200, seed + 1) if f]
    return {"rate": rate, "window": window, "alpha": alpha,
            "false": {"streams": streams, "frames": frames, "fires": n_fires,
                      "fires_per_10000_frames": round(n_fires / (streams * frames) * 1e4, 3),
                      "streams_with_a_fire": sum(bool(f) for f in normal)},
            "react": {"raised_rate": raised, "streams": 200, "frames": 2000, "fired": len(first),
                      "first_fire_median": float(np.median(first)) if first else None,
                      "first_fire_p90": float(np.percentile(first, 90)) if first else None}}


def drawn_threshold_fires(rate: float, n_normal: int, raised, window: int, alpha: float, frames: int,
                          streams: int, seed: int, bounded: bool) -> list:
    """Per stream: the frames of alarm_rate_high with a threshold read from ``n_normal`` seeded normal
    scores (uniform: its true rate is 1 - threshold), the frames flagged at that true rate (``raised``
    None: normal frames) or at ``raised``; the watch tests against the rate's upper bound (``bounded``)
    or the rate itself."""
    out = []
    for s in range(streams):
        rng = np.random.default_rng([seed, n_normal, s])
        thr = float(np.quantile(rng.random(n_normal), 1 - rate, method="higher"))
        watch = watch_for(thr, thr, rate, window, alpha, n_normal if bounded else None)[0]
        flags = rng.random(frames) < ((1 - thr) if raised is None else raised)
        out.append([i + 1 for i, f in enumerate(flags)
                    if (ev := watch.add(bool(f), i)) is not None and ev["event"] == "alarm_rate_high"])
    return out


def n_normal_report(rate: float, n_normal: int, alpha: float, raised_x: float, window: int, frames: int,
                    streams: int, seed: int) -> dict:
    """False fires (thresholds from ``n_normal`` frames, normal streams) with the bound and without
    (``exact``), and the reaction to frames flagged at ``raised_x`` times the calibrated rate."""
    out = {"rate": rate, "n_normal": n_normal, "window": window, "alpha": alpha, "streams": streams, "frames": frames}
    for name, bounded in (("bounded", True), ("exact", False)):
        normal = drawn_threshold_fires(rate, n_normal, None, window, alpha, frames, streams, seed, bounded)
        n_fires = sum(len(f) for f in normal)
        out[name] = {"fires_per_10000_frames": round(n_fires / (streams * frames) * 1e4, 3), "fires": n_fires,
                     "streams_with_a_fire": sum(bool(f) for f in normal)}
    first = [f[0] for f in drawn_threshold_fires(rate, n_normal, rate * raised_x, window, alpha, 2000, 200, seed + 1,
                                                   True) if f]
    out["react_bounded"] = {"raised_rate": rate * raised_x, "streams": 200, "frames": 2000, "fired": len(first),
                            "first_fire_median": float(np.median(first)) if first else None,
                            "first_fire_p90": float(np.percentile(first, 90)) if first else None}
    return out


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, nargs="+", default=[0.07], help="calibrated false-alarm rate(s)")
    ap.add_argument("--window", type=int, default=DEFAULT_WINDOW)
    ap.add_argument("--alpha", type=float, nargs="+", default=[DEFAULT_ALPHA])
    ap.add_argument("--raised-x", type=float, default=18 / 7, help="the reaction streams' rate / the calibrated rate")
    ap.add_argument("--frames", type=int, default=10_000, help="frames per normal stream")
    ap.add_argument("--streams", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="also write the reports here (JSON)")
    ap.add_argument("--n-normal", type=int, nargs="+",
                    help="thresholds drawn from this many normal frames (see the module docstring)")
    a = ap.parse_args(argv)
    reports = []
    if a.n_normal:
        for rate, n, alpha in itertools.product(a.rate, a.n_normal, a.alpha):
            reports.append(n_normal_report(rate, n, alpha, a.raised_x, a.window, a.frames, a.streams, a.seed))
            print(json.dumps(reports[-1]), flush=True)
        if a.out is not None:
            a.out.write_text(json.dumps(reports, indent=1) + "\n")
        return reports
    for rate, alpha in itertools.product(a.rate, a.alpha):
        reports.append(report(rate, alpha, round(rate * a.raised_x, 4), a.window, a.frames, a.streams, a.seed))
        print(json.dumps(reports[-1]), flush=True)
    if a.out is not None:
        a.out.write_text(json.dumps(reports, indent=1) + "\n")
    return reports


if __name__ == "__main__":
    main()
