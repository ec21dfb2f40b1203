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
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from edge_ad.runtime.alarm_watch import DEFAULT_ALPHA, DEFAULT_WINDOW, AlarmRateWatch


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
    a = ap.parse_args(argv)
    reports = []
    for rate, alpha in itertools.product(a.rate, a.alpha):
        reports.append(report(rate, alpha, round(rate * a.raised_x, 4), a.window, a.frames, a.streams, a.seed))
        print(json.dumps(reports[-1]), flush=True)
    if a.out is not None:
        a.out.write_text(json.dumps(reports, indent=1) + "\n")
    return reports


if __name__ == "__main__":
    main()
