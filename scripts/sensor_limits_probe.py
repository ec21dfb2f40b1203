"""Measure the sensor-fault statistics (runtime/sensor_faults.py) of the 1200 real kinect-rgbd frames
under everyday nuisances, and of the faults the checks exist for, to choose ``SensorLimits``.

For each nuisance it prints, over all frames, the extreme of each statistic the limits compare:
valid depth and foreground share (lowest), black and saturated share of the foreground (highest),
mean |neighbour difference| and R/G/B correlation of neighbour differences (the colour-noise pair:
the highest level among frames whose correlation is below the limit), the foreground's colour spread
(lowest; flat_rgb), the R/G/B correlation of its colours (lowest) and the lowest spread among frames whose
colour correlation is below NOISY_FLAT_CORRELATION (flat_rgb's noisy case: a covered lens), and how many
frames each fault of the given limits (default: SensorLimits()) flags.

    python scripts/sensor_limits_probe.py [--data ../shared/data/kinect-rgbd] [--every 1]
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from edge_ad.runtime.nuisance import frame_rng, parse_nuisance
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8
from edge_ad.runtime.sensor_faults import (NOISY_FLAT_CORRELATION, camera_differences, channel_correlation,
                                           colour_correlation, colour_spread, foreground_colours, frame_faults)

# well beyond issue 12's strength (about +-25 % light, a few pixels, sensor noise)
NUISANCES = ("none", "brightness:0.5", "brightness:1.5", "offset:-60", "offset:60", "gamma:0.6", "gamma:1.6",
             "contrast:0.6", "contrast:1.5", "wb:1.3,1,0.7", "wb:0.7,1,1.3", "rgb-noise:15", "rgb-noise:25",
             "rgb-noise:30", "blur:1", "blur:2", "jpeg:20", "depth-noise:30", "depth-holes:0.3", "shift:4",
             "scale:0.8", "scale:1.2", "rotate:10", "mirror", "brightness:1.5+rgb-noise:25",
             "brightness:0.5+rgb-noise:25", "offset:60+jpeg:20", "rgb-noise:30+jpeg:20",
             "depth-holes:0.3+scale:0.8", "brightness:0.75", "brightness:0.65", "contrast:0.5", "gamma:1.25",
             "jpeg:30")


def frame_stats(rgb, depth, spec: PreprocessSpec) -> dict:
    """The statistics frame_faults compares with the limits, for one raw frame."""
    lim = spec.sensor_faults
    x = frame_to_uint8(rgb, depth, spec)                 # (R, R, 4) uint8
    fg = x[:, :, 3] > 0
    rgb_fg = x[:, :, :3][fg]                             # (n_fg, 3)
    d = camera_differences(rgb, depth, spec)             # (n, 3) at the camera's resolution, as the check
    corr = channel_correlation(d)
    return {"valid": float((np.asarray(depth) > 0).mean()), "fg": float(fg.mean()),
            "black": float((rgb_fg.max(axis=1) <= lim.black_level).mean()) if len(rgb_fg) else 1.0,
            "sat": float((rgb_fg.min(axis=1) >= lim.saturated_level).mean()) if len(rgb_fg) else 0.0,
            "level": float(np.abs(d).mean()) if len(d) else 0.0, "corr": 1.0 if corr is None else corr,
            "spread": colour_spread(rgb, depth, spec) or 0.0,
            "ccorr": colour_correlation(foreground_colours(rgb, depth, spec)) or 0.0}


def load_frames(root: Path, every: int = 1) -> list:
    out = []
    for cls in ("rectangle", "cylinder", "sphere"):
        for p in sorted((root / cls / "rgb").glob("*.jpg"))[::every]:
            out.append((np.asarray(Image.open(p).convert("RGB")),
                        np.asarray(Image.open(root / cls / "depth" / f"{p.stem}.png"))))
    return out


def fault_cases(rgb, d8, rng) -> dict:
    """The faults the limits exist for, made from one real frame: name -> (rgb, depth)."""
    fg = d8 > 0
    idx = np.flatnonzero(fg)
    flat = lambda colour: np.broadcast_to(np.array(colour, np.uint8), rgb.shape).copy()  # noqa: E731
    cases = {"all black": (np.zeros_like(rgb), d8),
             "uniform noise": (rng.integers(0, 256, rgb.shape, dtype=np.uint8), d8),
             "flat grey 160": (flat((160, 160, 160)), d8), "flat green 0,135,0": (flat((0, 135, 0)), d8),
             "flat own mean": (flat(np.round(rgb[fg].mean(axis=0))), d8)}
    for level in (24, 128, 220, (150, 120, 100)):     # a covered / fogged lens: one colour + sensor noise
        for sigma in (2, 8):
            base = np.broadcast_to(np.asarray(level, np.float64), rgb.shape)
            cases[f"cap {level} s{sigma}"] = (np.clip(np.rint(base + rng.normal(0, sigma, rgb.shape)), 0, 255)
                                              .astype(np.uint8), d8)
        y, x = np.mgrid[:rgb.shape[0], :rgb.shape[1]]     # luminance noise (the same on R, G, B), vignetting
        base = np.asarray(level, np.float64)
        vignette = 1 - 0.3 * ((y - rgb.shape[0] / 2) ** 2 + (x - rgb.shape[1] / 2) ** 2) / (rgb.shape[0] ** 2 / 2)
        for what, img in (("luma s3", base + rng.normal(0, 3, rgb.shape[:2] + (1,))
                           + rng.normal(0, 0.7, rgb.shape)),
                          ("vignette", base * vignette[..., None] + rng.normal(0, 3, rgb.shape))):
            cases[f"cap {level} {what}"] = (np.clip(np.rint(img), 0, 255).astype(np.uint8), d8)
    for what, level, share in (("covered", 0, 0.97), ("covered", 0, 1.0), ("blinded", 255, 0.995),
                               ("blinded", 255, 1.0)):   # that share of the foreground black / saturated
        hit = np.zeros(fg.size, bool)
        hit[rng.choice(idx, int(round(share * len(idx))), replace=False)] = True
        hit = hit.reshape(fg.shape)
        cases[f"{what} {share:.1%}"] = (np.where(hit[:, :, None], level, rgb).astype(np.uint8), d8)
    return cases


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_kinect_root())
    ap.add_argument("--every", type=int, default=1, help="use every N-th frame of each class")
    args = ap.parse_args(argv)
    spec = PreprocessSpec()
    lim = spec.sensor_faults
    frames = load_frames(args.data, args.every)
    print(f"{len(frames)} frames; limits {lim}")
    print(f"{'nuisance':30s} {'valid':>6s} {'fg':>6s} {'black':>6s} {'sat':>6s} {'level':>6s} "
          f"{'lvl|nc':>6s} {'corr':>6s} {'spread':>6s} {'ccorr':>6s} {'spr|nc':>6s}  faults")
    for k, text in enumerate(NUISANCES):
        n = None if text == "none" else parse_nuisance(text)
        st, cnt = [], Counter()
        for i, (rgb, d8) in enumerate(frames):
            r, d = (rgb, d8) if n is None else n(rgb, d8, frame_rng(0, i, k))
            st.append(frame_stats(r, d, spec))
            cnt.update(f.name for f in frame_faults(r, d, spec))
        col = {key: np.array([s[key] for s in st]) for key in st[0]}
        uncorr = col["corr"] < lim.min_channel_correlation
        lvl_nc = col["level"][uncorr].max() if uncorr.any() else 0.0
        noisy = col["ccorr"] < NOISY_FLAT_CORRELATION
        spr_nc = col["spread"][noisy].min() if noisy.any() else float("nan")
        print(f"{text:30s} {100 * col['valid'].min():6.2f} {100 * col['fg'].min():6.2f} "
              f"{100 * col['black'].max():6.1f} {100 * col['sat'].max():6.1f} {col['level'].max():6.1f} "
              f"{lvl_nc:6.1f} {col['corr'].min():6.2f} {col['spread'].min():6.2f} {col['ccorr'].min():6.2f} "
              f"{spr_nc:6.2f}  {dict(cnt)}")
    rng = np.random.default_rng(0)
    print("\nfaults (every frame above made faulty):")
    res = {}
    for rgb, d8 in frames:
        for name, (r, d) in fault_cases(rgb, d8, rng).items():
            s = frame_stats(r, d, spec)
            got = {f.name for f in frame_faults(r, d, spec)}
            e = res.setdefault(name, {"caught": 0, "n": 0, "black": [], "sat": [], "level": [], "corr": [],
                                      "spread": [], "ccorr": []})
            e["caught"] += bool(got)
            e["n"] += 1
            for key in ("black", "sat", "level", "corr", "spread", "ccorr"):
                e[key].append(s[key])
    for name, e in res.items():
        print(f"  {name:16s} caught {e['caught']}/{e['n']}  black {100 * min(e['black']):.1f}-{100 * max(e['black']):.1f}% "
              f"sat {100 * min(e['sat']):.1f}-{100 * max(e['sat']):.1f}% level {min(e['level']):.1f}-{max(e['level']):.1f} "
              f"corr {min(e['corr']):.2f}-{max(e['corr']):.2f} spread {min(e['spread']):.2f}-{max(e['spread']):.2f} "
              f"ccorr {min(e['ccorr']):.2f}-{max(e['ccorr']):.2f}")


if __name__ == "__main__":
    main()
