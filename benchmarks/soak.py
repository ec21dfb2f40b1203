"""Soak benchmark: a long run of the shipped configuration with RSS sampled, and a fault-injection run.

Not a timed test. Two parts, each writing a JSON report (and a PNG of RSS over frames):

1. ``steady``: ``--frames`` frames (default 100 000) of the shipped kinect configuration (the
   k = 0 export of models/kinect-rgbd/rectangle.pt: izi encoder + latent memory) through
   ``run_capture``, exactly as ``edge-ad run`` scores them (results appended, rotated at
   ``--rotate-mb``, sensor checks, watchdog). Frames are the 1200 real kinect-rgbd frames replayed
   in a loop (each pass in a new order, so consecutive frames always differ). RSS (from
   /proc/self/statm) is sampled every ``--rss-every`` frames; the report gives the least-squares
   RSS slope over the second half of the run (after warm-up) in bytes per frame and MB per day at
   30 fps, against the RSS at the first sample after warm-up as the baseline.
2. ``faults``: a live fake camera of real frames with injected faults (no depth, black colour,
   colour noise, stuck frames, NaN depth, an oversized frame, an unreadable frame), a camera
   outage (the source raises, is reopened with backoff), then SIGTERM while a frame is scoring
   (a slow frame: it finishes within the grace period, exit 0) and SIGTERM on a frame stuck in
   native code (abandoned after the grace period, exit 1). Each in a child process.

  nice -n 10 python benchmarks/soak.py --frames 100000 --out-dir benchmarks/results/soak
  python benchmarks/soak.py --part faults --out-dir /tmp/soak
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.sources import Source

REPO = Path(__file__).resolve().parents[1]
KINECT = default_kinect_root()   # $EDGE_AD_DATA, else ../shared/data/kinect-rgbd beside the checkout
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def load_frames(root: Path) -> list:
    """The real kinect-rgbd frames: [(id, rgb H x W x 3 uint8, depth H x W uint8)]."""
    from PIL import Image
    out = []
    for cls in ("rectangle", "cylinder", "sphere"):
        for p in sorted((root / cls / "rgb").glob("*.jpg")):
            rgb = np.asarray(Image.open(p).convert("RGB"))
            d = np.asarray(Image.open(root / cls / "depth" / f"{p.stem}.png"))
            out.append((f"{cls}-{p.stem}", rgb, d))
    return out


def export_shipped(dst: Path) -> Path:
    """The k = 0 export of the shipped rectangle model (needs torch; reused when already there)."""
    if not (dst / "manifest.json").exists():
        from edge_ad.export.exporter import export_model
        export_model(REPO / "models" / "kinect-rgbd" / "rectangle.pt", dst, parity=False, log=lambda *a: None)
    return dst


class LoopSource(Source):
    """Replays ``frames`` until ``n`` frames were yielded, each pass in a new random order."""

    uri = "loop://kinect-rgbd"
    live = False

    def __init__(self, frames: list, n: int, seed: int = 0):
        self.frames, self.n, self.rng = frames, n, np.random.default_rng(seed)

    def __iter__(self):
        from edge_ad.runtime.sources import Frame
        k = 0
        while True:
            order = self.rng.permutation(len(self.frames))
            for j in order:
                if k >= self.n:
                    return
                fid, rgb, d = self.frames[j]
                yield Frame(f"{k}:{fid}", rgb, d, time.time())
                k += 1

    def close(self):
        pass


def steady(args) -> dict:
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.capture import run_capture, scorer_threshold
    model = Path(args.model) if args.model else export_shipped(Path(args.out_dir) / "rectangle-k0")
    scorer = Scorer.load(model)
    frames = load_frames(Path(args.data))
    out = Path(args.out_dir) / "steady.jsonl"
    for p in [out] + list(out.parent.glob(out.name + ".*")):
        p.unlink(missing_ok=True)                     # a fresh soak (the run itself only appends)
    samples = []                                      # (frame, seconds, rss bytes)
    t0 = time.perf_counter()

    def hook(rec, fr, res):
        i = rec["index"] + 1
        if i % args.rss_every == 0 or i == 1:
            samples.append((i, time.perf_counter() - t0, rss_bytes()))
            if i % (args.rss_every * 10) == 0:
                s = samples[-1]
                print(f"{i} frames  {s[1]:.0f} s  {i / s[1]:.1f} fps  RSS {s[2] / 2**20:.1f} MiB", flush=True)

    summary = run_capture(LoopSource(frames, args.frames), scorer, threshold=scorer_threshold(scorer),
                          out=out, on_result=hook, handle_signals=True,
                          rotate_bytes=int(args.rotate_mb * 1e6))
    a = np.array(samples, dtype=np.float64)
    half = a[a[:, 0] >= a[-1, 0] / 2]
    slope = float(np.polyfit(half[:, 0], half[:, 2], 1)[0]) if len(half) >= 3 else None  # bytes / frame
    warm = a[a[:, 0] >= min(10_000, a[-1, 0] / 10)][0]
    rotated = sorted(out.parent.glob(out.name + ".*"))
    report = {"frames": int(a[-1, 0]), "wall_s": round(float(a[-1, 1]), 1),
              "fps": round(a[-1, 0] / a[-1, 1], 2), "search": summary.get("search"),
              "rss_mib": {"first": round(a[0, 2] / 2**20, 1), "baseline_after_warmup": round(warm[2] / 2**20, 1),
                          "last": round(a[-1, 2] / 2**20, 1), "max": round(a[:, 2].max() / 2**20, 1)},
              "rss_last_over_baseline": round(float(a[-1, 2] / warm[2]), 4),
              "rss_slope_bytes_per_frame_second_half": None if slope is None else round(slope, 2),
              "rss_mb_per_day_at_30fps": None if slope is None else round(slope * 30 * 86400 / 1e6, 1),
              "results_files": 1 + len(rotated), "results_bytes": sum(p.stat().st_size for p in rotated + [out]),
              "summary": summary, "samples": samples}
    (Path(args.out_dir) / "steady.json").write_text(json.dumps(report, indent=1))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.plot(a[:, 0], a[:, 2] / 2**20)
        ax.set_xlabel("frames scored")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(f"soak: {report['frames']} frames, slope {report['rss_slope_bytes_per_frame_second_half']} B/frame")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(Path(args.out_dir) / "steady_rss.png", dpi=100)
    except ImportError:
        pass
    return report


# ----------------------------------------------------------------------------- fault injection

FAULT_CHILD = textwrap.dedent('''
    import ctypes, json, sys, threading, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, str(Path(sys.argv[1]) / "benchmarks"))
    from soak import load_frames
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.capture import run_capture, scorer_threshold
    from edge_ad.runtime.sources import Frame, Source, SourceError

    model, data, out, marker, mode = sys.argv[2:7]
    frames = load_frames(Path(data))[::7][:120]
    rng = np.random.default_rng(0)
    libc = ctypes.CDLL(None)
    MUTEX = ctypes.create_string_buffer(64)

    def faulty(i, rgb, d):
        """Every 10th frame a fault, in turn."""
        k = (i // 10) % 8 if i % 10 == 5 else None
        if k == 0: return rgb, np.zeros_like(d), None                       # dead depth
        if k == 1: return np.zeros_like(rgb), d, None                       # dead colour
        if k == 2: return rng.integers(0, 256, rgb.shape, dtype=np.uint8), d, None   # colour noise
        if k == 3: return rgb, np.full(d.shape, np.nan, np.float32), None   # NaN depth
        if k == 4: return np.zeros((5000, 5000, 3), np.uint8), np.ones((5000, 5000), np.uint8), None  # 25 MP
        if k == 5: return None, None, "unreadable colour image: truncated JPEG"
        return rgb, d, None

    class Camera(Source):
        live = True
        def __init__(self, tag, fail_after):
            self.tag, self.fail_after, self.uri, self.closed = tag, fail_after, f"fake://{tag}", False
        def __iter__(self):
            n = 0
            while not self.closed:
                if self.fail_after is not None and n >= self.fail_after:
                    raise SourceError(f"{self.tag}: USB device disconnected")
                fid, rgb, d = frames[n % len(frames)]
                time.sleep(0.05)
                if n % 40 == 20:                                # a stuck driver: the same frame 3 times
                    for r in range(3):
                        yield Frame(f"{self.tag}-{n}-stuck{r}", rgb, d, time.time())
                        time.sleep(0.05)
                r2, d2, err = faulty(n, rgb, d)
                yield Frame(f"{self.tag}-{n}", r2, d2, time.time(), error=err)
                n += 1
        def close(self):
            self.closed = True

    scorer = Scorer.load(model)

    class Wrapped:
        preprocess, mode, threshold = scorer.preprocess, scorer.mode, scorer.threshold
        n_seed, z_dim = scorer.n_seed, scorer.z_dim
        def __init__(self):
            self.calls = 0
        def score(self, rgb, depth, **kw):
            self.calls += 1
            if self.calls == 400:
                Path(marker).write_text("in frame")
                if mode == "slow":
                    time.sleep(2.0)                             # a slow frame: SIGTERM lands here
                else:
                    libc.pthread_mutex_lock(MUTEX)
                    libc.pthread_mutex_lock(MUTEX)              # stuck in native code for good
            return scorer.score(rgb, depth, **kw)

    opened = []
    def reopen():
        opened.append(time.time())
        if len(opened) < 3:
            raise SourceError("camera not found")
        return Camera("cam2", None)

    s = run_capture(Camera("cam1", 300), Wrapped(), threshold=scorer_threshold(scorer), out=out,
                    reopen=reopen, backoff=(0.2, 1.0), stop_grace=3.0)
    print(json.dumps({"stopped": s["stopped"], "abandoned": s.get("abandoned_frame")}), flush=True)
    import os
    os._exit(1 if s.get("abandoned_frame") else 0)
''')


def faults(args) -> dict:
    model = Path(args.model) if args.model else export_shipped(Path(args.out_dir) / "rectangle-k0")
    report = {}
    for mode in ("slow", "stuck"):
        out = Path(args.out_dir) / f"faults_{mode}.jsonl"
        out.unlink(missing_ok=True)
        marker = Path(tempfile.mkdtemp()) / "marker"
        p = subprocess.Popen([sys.executable, "-c", FAULT_CHILD, str(REPO), str(model), str(args.data),
                              str(out), str(marker), mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        deadline = time.time() + 600
        while not marker.exists() and p.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)                                        # well inside the frame
        t_sig = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        stdout, stderr = p.communicate(timeout=120)
        t_exit = time.perf_counter() - t_sig
        recs = [json.loads(x) for x in out.read_text().splitlines()]
        s = recs[-1]
        errs = [r for r in recs if r["type"] == "error"]
        report[mode] = {
            "exit_code": p.returncode, "sigterm_to_exit_s": round(t_exit, 2), "stopped": s["stopped"],
            "abandoned_frame": s.get("abandoned_frame"), "fatal_error": s.get("fatal_error"),
            "frames_scored": s["frames_scored"], "frame_errors": s["frame_errors"],
            "sensor_faults": s["sensor_faults"], "outages": s["outages"], "outage_s": s["outage_s"],
            "events": [r["event"] for r in recs if r["type"] == "event"],
            "other_errors": sorted({r["error"].split(":")[0] for r in errs if "fault" not in r}),
            "all_lines_parse": True, "last_line_is_summary": s["type"] == "summary",
            "stderr_tail": stderr[-300:] if p.returncode not in (0, 1) else "",
        }
        print(mode, json.dumps(report[mode]), flush=True)
    (Path(args.out_dir) / "faults.json").write_text(json.dumps(report, indent=1))
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["steady", "faults", "both"], default="both")
    ap.add_argument("--frames", type=int, default=100_000)
    ap.add_argument("--rss-every", type=int, default=500)
    ap.add_argument("--rotate-mb", type=float, default=20.0)
    ap.add_argument("--model", help="exported model dir (default: export the shipped rectangle model, k = 0)")
    ap.add_argument("--data", default=str(KINECT))
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks" / "results" / "soak"))
    args = ap.parse_args(argv)
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    if args.part in ("faults", "both"):
        faults(args)
    if args.part in ("steady", "both"):
        r = steady(args)
        print(json.dumps({k: v for k, v in r.items() if k not in ("samples", "summary")}, indent=1))


if __name__ == "__main__":
    main()
