"""A live view of a run in Rerun (``edge-ad run --rerun FILE.rrd | spawn | serve``), the viewer
robotics users already use. Needs the optional ``rerun-sdk`` (``pip install "edge-ad[rerun]"``).

Per scored frame, on the timelines ``frame`` (the run's frame index) and ``capture_time`` (the
frame's timestamp):

  camera/rgb, camera/depth            the frame as captured (depth with its metric scale)
  model/reconstruction/rgb, .../depth the generator's reconstruction (the scorer's 64 x 64 space)
  model/error                         the error map as a heat map (scaled to the frame's largest
                                      error, as --display and --save-anomalies show it)
  plots/score, plots/threshold        time series
  events                              a text log line per flagged frame (level WARN), with truth

Targets: a path ending in ``.rrd`` saves a recording (open it later with ``rerun FILE.rrd``; when
FILE.rrd exists, FILE-2.rrd, FILE-3.rrd, ...: a recording never replaces a file);
``spawn`` starts the native viewer; ``serve`` serves the web viewer (gRPC + http, URLs printed).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .pictures import frame_panels, free_path, heatmap
from .preprocess import PreprocessSpec

TARGETS = ("spawn", "serve")  # or a path ending in .rrd


def import_rerun():
    """``rerun`` (rerun-sdk >= 0.23: ``set_time``, ``Scalars``), or ImportError naming the fix."""
    try:
        import rerun as rr
    except ImportError as e:
        raise ImportError(f"--rerun needs rerun-sdk: pip install 'edge-ad[rerun]' ({e})") from None
    if not (hasattr(rr, "Scalars") and hasattr(rr.RecordingStream, "set_time")):
        raise ImportError(f"--rerun needs rerun-sdk >= 0.23 (installed: {getattr(rr, '__version__', '?')}); "
                          "pip install -U rerun-sdk")
    return rr


def viewer_executable() -> Optional[str]:
    """The Rerun viewer launcher ``spawn`` starts: ``rerun`` on PATH, else the one rerun-sdk put beside this
    interpreter (a venv's edge-ad called by its path, as demo.sh and the systemd unit do, has the venv's bin
    folder off PATH); None when there is neither (rerun-sdk's own search then says so)."""
    found = shutil.which("rerun")
    if found:
        return found
    beside = Path(sys.executable).parent / "rerun"
    return str(beside) if beside.is_file() else None


def check_target(target: str) -> str:
    """'spawn', 'serve' or a .rrd path; ValueError otherwise."""
    if target in TARGETS or str(target).lower().endswith(".rrd"):
        return target
    raise ValueError(f"--rerun takes FILE.rrd, 'spawn' or 'serve', not {target!r}")


class RerunView:
    """A per-result hook (``hook(rec, frame, res)``) logging each scored frame to Rerun;
    ``close()`` at the end (finishes the .rrd file; in serve mode, ``linger`` keeps serving until
    Ctrl-C so a browser can still load the recording)."""

    name = "--rerun"   # how hook_failed events and the summary's hook_failures name it (its flag)

    def __init__(self, target: str, spec: Optional[PreprocessSpec] = None, *,
                 log: Optional[Callable[[str], None]] = None, web_port: Optional[int] = None,
                 grpc_port: Optional[int] = None, open_browser: bool = False,
                 application_id: str = "edge-ad"):
        self.target = check_target(target)
        self.spec = spec or PreprocessSpec()
        self.log = log or (lambda msg: None)
        rr = self.rr = import_rerun()
        self.rec = rr.RecordingStream(application_id)
        self.url = None
        self.path: Optional[Path] = None   # the .rrd written: FILE.rrd, or FILE-2.rrd, ... when FILE.rrd exists
        if target == "spawn":
            try:
                rr.spawn(executable_path=viewer_executable(), recording=self.rec)
            except Exception as e:       # rerun-sdk: RuntimeError "Failed to find Rerun Viewer executable in PATH"
                raise RuntimeError(f"--rerun spawn cannot start the Rerun viewer ({str(e).splitlines()[0]}): "
                                   "`pip install rerun-sdk` puts `rerun` in the environment's bin folder; put it on "
                                   "PATH, or use --rerun FILE.rrd / --rerun serve") from None
        elif target == "serve":
            self.url = self.rec.serve_grpc(grpc_port=grpc_port)
            rr.serve_web_viewer(web_port=web_port, open_browser=open_browser, connect_to=self.url)
            from urllib.parse import quote
            self.log(f"rerun: web viewer at http://localhost:{web_port or 9090}/?url={quote(self.url, safe='')}")
        else:
            self.path = free_path(Path(target))     # an earlier run's recording is never replaced
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(str(self.path))
            if self.path != Path(target):
                self.log(f"rerun: recording to {self.path} ({target} exists: never replaced)")
        self.frames = 0
        self._styled = False

    def _style(self) -> None:
        """Static series styles (names, colours) of the two time series."""
        rr = self.rr
        self.rec.log("plots/score", rr.SeriesLines(names="score", colors=[[80, 160, 255]]), static=True)
        self.rec.log("plots/threshold", rr.SeriesLines(names="threshold", colors=[[255, 80, 80]]), static=True)
        self._styled = True

    def __call__(self, rec: dict, frame, res) -> None:
        rr, r = self.rr, self.rec
        if not self._styled:
            self._style()
        r.set_time("frame", sequence=int(rec.get("index", self.frames)))
        r.set_time("capture_time", timestamp=float(rec.get("timestamp") or 0.0))
        r.log("camera/rgb", rr.Image(np.ascontiguousarray(frame.rgb, dtype=np.uint8)))
        depth = np.ascontiguousarray(frame.depth)
        # 8-bit depth is millimetres * 255 / far_mm; uint16 depth is millimetres
        meter = 1000.0 if depth.dtype == np.uint16 else 1000.0 * 255.0 / float(self.spec.far_mm)
        r.log("camera/depth", rr.DepthImage(depth, meter=meter))
        p = frame_panels(frame, res, self.spec)
        if p.recon_rgb is not None:
            r.log("model/reconstruction/rgb", rr.Image(p.recon_rgb))
            r.log("model/reconstruction/depth", rr.Image(p.recon_depth))
        thr = rec.get("threshold")
        r.log("model/error", rr.Image(heatmap(p.error)))
        r.log("plots/score", rr.Scalars([float(rec["score"])]))
        if thr is not None:
            r.log("plots/threshold", rr.Scalars([float(thr)]))
        if rec.get("anomalous"):
            t = rec.get("truth")
            truth = "" if not t else f" (truth: {'anomaly' if t['anomalous'] else 'normal'}" + \
                (f", {t['kind']})" if t.get("kind") else ")")
            r.log("events", rr.TextLog(f"ANOMALY frame {rec['frame']}: score {rec['score']:.4g} > "
                                       f"threshold {thr:.4g}{truth}", level="WARN"))
        self.frames += 1

    def close(self, linger: bool = False) -> None:
        """Flush (and finish the .rrd file). ``linger`` in serve mode: keep serving until Ctrl-C."""
        try:
            self.rec.flush()
        finally:
            if self.target == "serve" and linger:
                import time
                self.log("rerun: still serving the recording; Ctrl-C to stop")
                try:
                    while True:
                        time.sleep(1.0)
                except KeyboardInterrupt:
                    pass
            self.rec.disconnect()
