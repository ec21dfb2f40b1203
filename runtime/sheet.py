"""The contact sheet of a run (``edge-ad run --sheet FILE.png``): one PNG written when the run ends.

Rows: when the source carries truth (synth://, a labelled folder), first its mistakes: the false alarms
(truth normal, flagged) and the missed anomalies (truth anomalous, not flagged), each highest score first;
then the other flagged frames (highest scores first), then a few of the lowest-scoring normal frames for
comparison. Each row: RGB | depth | reconstruction RGB | reconstruction depth | error heat map (the
scorer's 64 x 64 model-space input, enlarged), labelled with frame id, score, threshold and, when
the source carries it, the truth. All rows' heat maps share one colour scale.

Bounded memory on long runs: at most ``max_errors`` false alarms and as many missed anomalies, ``max_flagged``
flagged frames (the highest scores) and ``n_normal`` normal ones are kept (a few kB each); the sheet says how
many flagged frames and mistakes it left out.
"""
from __future__ import annotations

import heapq
import itertools
import os
from pathlib import Path
from typing import Optional

import numpy as np

from .pictures import frame_panels, free_path, grey3, heatmap
from .preprocess import PreprocessSpec

_COLUMNS = ("RGB", "depth", "reconstruction", "recon. depth", "error")


class ContactSheet:
    """A per-result hook (``hook(rec, frame, res)``) that keeps the frames to show; ``write()`` at
    the end. ``rec`` is the run's JSON record of the frame (``frame``, ``score``, ``threshold``,
    ``anomalous``, ``truth``)."""

    name = "--sheet"   # how hook_failed events and the summary's hook_failures name it (its flag)

    def __init__(self, path: os.PathLike, spec: Optional[PreprocessSpec] = None, *,
                 max_flagged: int = 12, n_normal: int = 3, scale: int = 2, max_errors: int = 4):
        self.path = Path(path)
        if self.path.suffix.lower() != ".png":
            raise ValueError(f"--sheet writes a PNG: {self.path} does not end in .png")
        self.spec = spec or PreprocessSpec()
        self.max_flagged, self.n_normal, self.scale, self.max_errors = max_flagged, n_normal, scale, max_errors
        self._flagged: list = []  # min-heap of (score, n, rec, panels): keeps the highest scores
        self._normal: list = []   # min-heap of (-score, n, rec, panels): keeps the lowest scores
        self._false_alarms: list = []   # min-heap of (score, ...): truth normal, flagged; the highest scores
        self._missed: list = []         # min-heap of (score, ...): truth anomalous, not flagged; the highest
        self._unjudged: list = []       # min-heap of (score, ...): no threshold (anomalous None); the highest
        self._n = itertools.count()
        self.flagged_total = 0
        self.errors_total = 0           # false alarms + missed anomalies (frames with truth only)
        self.false_alarms_total = 0
        self.frames = 0

    def __call__(self, rec: dict, frame, res) -> None:
        self.frames += 1
        s = float(rec["score"])
        flagged, truth = bool(rec.get("anomalous")), rec.get("truth")
        if flagged:
            self.flagged_total += 1
        if truth and rec.get("anomalous") is not None and bool(truth.get("anomalous")) != flagged:
            self.errors_total += 1       # a mistake: shown first, in its own bounded list
            self.false_alarms_total += flagged
            self._keep(self._false_alarms if flagged else self._missed, s, rec, frame, res, self.max_errors)
        elif flagged:
            self._keep(self._flagged, s, rec, frame, res, self.max_flagged)
        else:
            if rec.get("anomalous") is None:     # no threshold: the highest scores are the ones to look at first
                self._keep(self._unjudged, s, rec, frame, res, self.max_flagged)
            self._keep(self._normal, -s, rec, frame, res, self.n_normal)

    def _keep(self, heap: list, key: float, rec, frame, res, cap: int) -> None:
        if cap <= 0:
            return
        if len(heap) >= cap and key <= heap[0][0]:
            return  # not among the ones shown: skip the (small) cost of the panels
        item = (key, next(self._n), dict(rec), frame_panels(frame, res, self.spec))
        (heapq.heappush if len(heap) < cap else heapq.heapreplace)(heap, item)

    def rows(self) -> list:
        """[(rec, Panels)] in sheet order: false alarms, then missed anomalies (each by falling score), then the
        other flagged frames and the frames without a verdict (no threshold) by falling score, then the lowest
        scores by rising score (a frame shown once)."""
        ordered = [sorted(h, key=lambda t: (-t[0], t[1]))
                   for h in (self._false_alarms, self._missed, self._flagged, self._unjudged, self._normal)]
        shown, out = set(), []
        for rows in ordered:
            for _, _, r, p in rows:
                key = (r.get("index"), r.get("frame"))
                if key not in shown:
                    shown.add(key)
                    out.append((r, p))
        return out

    def free_path(self) -> Path:
        """The sheet's path, or, when a file of that name exists (an earlier run's sheet), the first of
        ``<stem>-2.png``, ``<stem>-3.png``, ... that does not: a sheet never replaces a file."""
        return free_path(self.path)

    def write(self) -> Optional[Path]:
        """Render and write the PNG (atomically: a temp file renamed) at ``free_path()``. Returns the
        path written, or None when no frame was scored; OSError when it cannot be written (the temp
        file removed)."""
        rows = self.rows()
        if not rows:
            return None
        img = render_sheet(rows, scale=self.scale, frames=self.frames,
                           left_out=self.flagged_total - self.false_alarms_total - len(self._flagged),
                           errors_left_out=self.errors_total - len(self._false_alarms) - len(self._missed))
        from PIL import Image
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            Image.fromarray(img).save(tmp, format="PNG", optimize=True)
            path = self.free_path()
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)      # a full disk leaves no half-written temp file behind
            except OSError:
                pass
            raise
        return path


def _label(rec: dict) -> list:
    """The text lines of a row's label."""
    thr = rec.get("threshold")
    flag = ("FLAGGED" if rec.get("anomalous") else "normal") if rec.get("anomalous") is not None else "not judged"
    lines = [str(rec.get("frame")), f"score {rec['score']:.4g}",
             f"threshold {thr:.4g}" if thr is not None else "no threshold", flag]
    t = rec.get("truth")
    if t:
        kind = f" ({t['kind']})" if t.get("kind") else ""
        verdict = "anomaly" if t["anomalous"] else "normal"
        ok = ("correct" if bool(t["anomalous"]) == bool(rec.get("anomalous"))
              else "MISSED" if t["anomalous"] else "FALSE ALARM")
        lines.append(f"truth: {verdict}{kind}")
        if rec.get("anomalous") is not None:
            lines.append(ok)
    return lines


def render_sheet(rows: list, scale: int = 2, left_out: int = 0, frames: Optional[int] = None,
                 errors_left_out: int = 0) -> np.ndarray:
    """rows [(rec, Panels)] -> the sheet (H, W, 3) uint8 with a header and a label column."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    h, w = rows[0][1].rgb.shape[:2]
    ph, pw = h * scale, w * scale
    gap, label_w, head_h = 4, 190, 40
    vmax = max(float(np.max(p.error)) for _, p in rows) or 1.0   # one colour scale for all rows
    ncol = len(_COLUMNS)
    W = label_w + ncol * (pw + gap) + gap
    notes = ([f"+ {errors_left_out} more false alarm(s) / missed anomalies not shown (lower scores)"]
             if errors_left_out else []) + \
        ([f"+ {left_out} more flagged frame(s) not shown (lower scores)"] if left_out else [])
    H = head_h + len(rows) * (ph + gap) + gap + 18 * len(notes)
    sheet = Image.new("RGB", (W, H), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    title = "edge-ad contact sheet" + (f" ({frames} frames scored)" if frames else "")
    draw.text((6, 4), title, fill=(230, 230, 230), font=font)
    for c, name in enumerate(_COLUMNS):
        draw.text((label_w + gap + c * (pw + gap) + 4, 22), name, fill=(200, 200, 200), font=font)
    blank = np.full((h, w, 3), 60, np.uint8)
    for r, (rec, p) in enumerate(rows):
        y = head_h + r * (ph + gap)
        tiles = [p.rgb, grey3(p.depth),
                 p.recon_rgb if p.recon_rgb is not None else blank,
                 grey3(p.recon_depth) if p.recon_depth is not None else blank,
                 heatmap(p.error, vmax)]
        for c, t in enumerate(tiles):
            tile = np.repeat(np.repeat(np.asarray(t, np.uint8), scale, 0), scale, 1)
            sheet.paste(Image.fromarray(tile), (label_w + gap + c * (pw + gap), y))
        t = rec.get("truth")
        wrong = t is not None and rec.get("anomalous") is not None and \
            bool(t["anomalous"]) != bool(rec.get("anomalous"))
        colour = ((255, 90, 80) if rec.get("anomalous") else (120, 220, 120)) if rec.get("anomalous") is not None \
            else (170, 170, 170)                                  # no threshold: no verdict, not "normal"
        for i, line in enumerate(_label(rec)):
            fill = colour if i == 3 else ((255, 200, 60) if wrong and i == 5 else (225, 225, 225))
            draw.text((6, y + 2 + 16 * i), line, fill=fill, font=font)
    for i, note in enumerate(notes):
        draw.text((6, H - 18 * (len(notes) - i)), note, fill=(200, 200, 200), font=font)
    return np.asarray(sheet)

