"""Measure what tells a frame with a table or background in view (within far_mm) from the real frames the
shipped models were trained on (audit 33 #18), to choose the ``background_in_view`` limits (runtime/
sensor_faults.py): the foreground share of the model frame and its edge occupancy (``sensor_faults.edge_occupancy``:
the largest share of one edge of the square the model sees whose columns hold foreground within 1/32 of the side).

Real frames: the 1200 kinect-rgbd frames (whose table and background were removed at capture), clean and under
sensor_limits_probe.py's 34 nuisances, the eval suite (``edge-ad eval --nuisance``) and zoom x1.1 / shift 4 px.
Table frames: the same 1200 frames with their background pixels (depth 0) replaced by what a live camera sees
(audit 33's mk.py construction: a grey-brown plane, closer at the bottom, sensor noise 4 levels): a table over
the lower 20 / 30 / 45 / 60 % of the frame at 450-650 mm, the lower 45 % far (600-690 mm), with 30 % of its
readings missing, spanning only 3/4 of the width, seen from the side (the left 45 %, a camera rolled 90 deg),
and a wall (the whole background at 690 mm). It prints each set's extremes and how many frames each fault of
the given limits flags (default: ``SensorLimits()``; ``--max-edge-foreground`` overrides).

    python scripts/background_probe.py [--data ../shared/data/kinect-rgbd] [--every 1]
"""
from __future__ import annotations

import argparse
import importlib.util
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.nuisance import DEFAULT_SUITE, frame_rng, parse_nuisance
from edge_ad.runtime.preprocess import PreprocessSpec, frame_to_uint8
from edge_ad.runtime.sensor_faults import edge_occupancy, frame_faults

_spec = importlib.util.spec_from_file_location("sensor_limits_probe",
                                               Path(__file__).with_name("sensor_limits_probe.py"))
_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_probe)
NUISANCES = tuple(dict.fromkeys(_probe.NUISANCES + DEFAULT_SUITE + ("scale:1.1", "shift:4", "scale:1.1+shift:4")))

MM = 255.0 / 700.0   # kinect-rgbd's 8-bit depth levels per millimetre


def with_table(rgb, d8, rng, *, share=0.45, near=450.0, far=650.0, holes=0.0, width=1.0, side=False):
    """(rgb, d8) with its background pixels (depth 0) in the lower ``share`` of the frame (the left one when
    ``side``) replaced by a table plane from ``far`` mm (its top) to ``near`` mm (the frame's edge), over the
    left ``width`` of the frame, grey-brown with noise 4; ``holes`` of its readings missing (rgb (H, W, 3)
    uint8, d8 (H, W) uint8 -> the same)."""
    rgb, d8 = (np.rot90(rgb).copy(), np.rot90(d8).copy()) if side else (rgb.copy(), d8.copy())
    h, w = d8.shape
    y0 = int(h * (1 - share))
    yy, xx = np.mgrid[:h, :w]
    mm = far - (far - near) * (yy - y0) / max(1, h - 1 - y0)                        # (H, W)
    plane = (yy >= y0) & (xx < round(width * w)) & (d8 == 0) & (rng.random((h, w)) >= holes)
    d8[plane] = np.round(mm[plane] * MM).astype(np.uint8)
    rgb[plane] = np.clip(np.array([120, 100, 80]) + rng.normal(0, 4, (int(plane.sum()), 3)), 0, 255).astype(np.uint8)
    return (np.rot90(rgb, -1).copy(), np.rot90(d8, -1).copy()) if side else (rgb, d8)


def with_wall(rgb, d8, rng, mm=690.0):
    """(rgb, d8) with every background pixel a wall at ``mm`` (grey, noise 4)."""
    rgb, d8 = rgb.copy(), d8.copy()
    bg = d8 == 0
    d8[bg] = int(round(mm * MM))
    rgb[bg] = np.clip(np.array([150, 150, 145]) + rng.normal(0, 4, (int(bg.sum()), 3)), 0, 255).astype(np.uint8)
    return rgb, d8


SCENES = {"table 20 %": dict(share=0.20), "table 30 %": dict(share=0.30), "table 45 % (audit)": dict(share=0.45),
          "table 60 %": dict(share=0.60), "table 45 % far 600-690": dict(share=0.45, near=600, far=690),
          "table 45 % 30 % holes": dict(share=0.45, holes=0.3), "table 45 % 3/4 width": dict(share=0.45, width=0.75),
          "table 45 % at the side": dict(share=0.45, side=True)}


def stats(rgb, d8, spec: PreprocessSpec) -> dict:
    fg = frame_to_uint8(rgb, d8, spec)[:, :, 3] > 0      # (R, R) the model frame's foreground
    return {"fg": float(fg.mean()), "edge": edge_occupancy(d8, spec)[0]}


def report(name: str, rows: list, faults: Counter, n: int) -> None:
    fg = np.array([r["fg"] for r in rows]); edge = np.array([r["edge"] for r in rows])
    print(f"{name:30s} fg {fg.min():.3f}..{np.median(fg):.3f}..{fg.max():.3f}  edge {edge.min():.3f}.."
          f"{np.percentile(edge, 99):.3f}(p99)..{edge.max():.3f}  background_in_view {faults['background_in_view']}/{n}"
          f"  other faults {dict((k, v) for k, v in faults.items() if k != 'background_in_view')}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_kinect_root())
    ap.add_argument("--every", type=int, default=1, help="use every N-th frame of each class")
    ap.add_argument("--max-edge-foreground", type=float, default=None,
                    help="the limit to count (default: SensorLimits')")
    ap.add_argument("--scenes-only", action="store_true", help="skip the nuisances (the table frames only)")
    args = ap.parse_args(argv)
    spec = PreprocessSpec()
    if args.max_edge_foreground is not None:
        spec = replace(spec, sensor_faults=replace(spec.sensor_faults, max_edge_foreground=args.max_edge_foreground))
    frames = _probe.load_frames(args.data, args.every)
    print(f"{len(frames)} frames; limits {spec.sensor_faults}")
    print("real frames:")
    for k, text in enumerate(("none",) if args.scenes_only else NUISANCES):
        n = None if text == "none" else parse_nuisance(text)
        rows, cnt = [], Counter()
        for i, (rgb, d8) in enumerate(frames):
            r, d = (rgb, d8) if n is None else n(rgb, d8, frame_rng(0, i, k))
            rows.append(stats(r, d, spec))
            cnt.update(f.name for f in frame_faults(r, d, spec))
        report(text, rows, cnt, len(frames))
    print("with a table or background in view:")
    for name, make in list(SCENES.items()) + [("wall 690 mm", None)]:
        rng = np.random.default_rng(0)
        rows, cnt = [], Counter()
        for rgb, d8 in frames:
            r, d = with_wall(rgb, d8, rng) if make is None else with_table(rgb, d8, rng, **make)
            rows.append(stats(r, d, spec))
            cnt.update(f.name for f in frame_faults(r, d, spec))
        report(name, rows, cnt, len(frames))
    print("at a camera's size (every 8th frame upsampled 8x, nearest: 512 x 512; and 640 x 480 with the frame "
          "in its centre crop):")
    for name, make in (("clean", {}), ("scale:1.2", "scale:1.2"), ("table 45 % (audit)", dict(share=0.45)),
                       ("table 45 % 30 % holes", dict(share=0.45, holes=0.3))):
        for size in ("512", "640x480"):
            rng = np.random.default_rng(0)
            rows, cnt = [], Counter()
            for i, (rgb, d8) in enumerate(frames[::8]):
                if isinstance(make, str):
                    rgb, d8 = parse_nuisance(make)(rgb, d8, frame_rng(0, i, 0))
                elif make:
                    rgb, d8 = with_table(rgb, d8, rng, **make)
                r, d = (np.repeat(np.repeat(a, 8, axis=0), 8, axis=1) for a in (rgb, d8))   # (512, 512, ...)
                if size == "640x480":
                    r, d = r[16:496], d[16:496]                                            # (480, 512, ...)
                    r, d = np.pad(r, ((0, 0), (64, 64), (0, 0))), np.pad(d, ((0, 0), (64, 64)))
                    if make and not isinstance(make, str):     # the table goes on under the frame's sides
                        r[:, :64][-int(0.45 * 480):], r[:, -64:][-int(0.45 * 480):] = 110, 110
                        d[:, :64][-int(0.45 * 480):], d[:, -64:][-int(0.45 * 480):] = 200, 200
                rows.append(stats(r, d, spec))
                cnt.update(f.name for f in frame_faults(r, d, spec))
            report(f"{name} {size}", rows, cnt, len(rows))


if __name__ == "__main__":
    main()
