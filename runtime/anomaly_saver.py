"""``edge-ad run --save-anomalies DIR``: the pictures of each flagged frame, as PNG files.

A per-result hook (``hook(rec, frame, res)``, see ``capture.run_capture``) on top of
``pictures.frame_panels``: <DIR>/<index>_<frame>_{rgb,depth,recon,error,overlay}.png. Files are
never overwritten, and a picture that could not be finished (a full disk) is removed. Pictures never
take the last of the disk: while DIR's filesystem has less free than a reserve (``min_free_bytes``),
they are paused (a hook error: one ``hook_failed`` event per streak, the run goes on and its results
keep being written), and they resume once space is freed. With ``keep`` N (``--save-anomalies-keep``) the
pictures of the newest N flagged frames are kept: after each frame's pictures, the oldest sets in DIR
beyond N (this run's and earlier runs', by modification time) are deleted, so a service that runs for
months keeps its newest anomalies' pictures instead of filling the disk and stopping them for good.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import deque
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .pictures import frame_panels, grey3, heatmap, panel_row

PARTS = ("rgb", "depth", "recon", "error", "overlay")
SCALE = 4   # the error and overlay pictures are enlarged 4 x (model space is 64 x 64)
MIN_FREE_BYTES = 500 << 20   # the default reserve: max(500 MiB, MIN_FREE_SHARE of the filesystem)
MIN_FREE_SHARE = 0.05
# <stem>_<part>.png, stem <index>_<frame>[-n]: the index has 8 digits at least (free_stem's {:08d}: 9 past 99 999 999)
PICTURE_NAME = re.compile(r"^(\d{8,}_.+)_(?:%s)\.png$" % "|".join(PARTS))


def min_free_bytes(total: int, min_free_mb: Optional[float] = None) -> int:
    """The free bytes pictures leave on a filesystem of ``total`` bytes: ``min_free_mb`` MiB when given,
    else max(MIN_FREE_BYTES, MIN_FREE_SHARE x total)."""
    if min_free_mb is not None:
        return int(float(min_free_mb) * (1 << 20))
    return max(MIN_FREE_BYTES, int(MIN_FREE_SHARE * total))


def safe_name(name: str, max_chars: int = 80) -> str:
    """A frame id as part of a file name: ASCII letters, digits, '-_.' (others become '_'), at most
    ``max_chars`` long (a file name has at most 255 bytes)."""
    return "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in str(name))[:max_chars]


def _save_png(img, path: Path) -> None:
    """Write ``img`` (a PIL image) to a new file ``path``; an existing file is never replaced
    (FileExistsError) and a file that could not be finished (a full disk) is removed."""
    with open(path, "xb") as f:
        try:
            img.save(f, format="PNG")
        except BaseException:
            f.close()
            path.unlink(missing_ok=True)
            raise


class AnomalySaver:
    """Writes <dir>/<index>_<frame>_{rgb,depth,recon,error,overlay}.png for each flagged frame
    (``index``: the results' frame index, 8 digits, so the files sort in run order). rgb / depth: the
    frame as captured; recon: the reconstruction's RGB | depth, error: the heat map, overlay: input
    RGB | depth | reconstruction RGB | depth | error, in model space. Needs the reconstruction
    (``keep_reconstructions=True``): RuntimeError without one (a hook error: the run goes on).

    Never overwrites: when a picture of that name exists (another run into the same directory
    without --out, or a camera whose frame numbers restarted), the name gets ``-2``, ``-3``, ...
    before the part name.

    ``keep`` N (None: keep every picture): after each flagged frame's pictures, the sets beyond the newest
    N in the directory (earlier runs' included, oldest by modification time first) are deleted, only
    files named like this saver's pictures; the first deletion is said through ``log``, ``deleted``
    counts the sets deleted."""

    name = "--save-anomalies"   # how hook_failed events and the summary's hook_failures name it
    only_flagged = True         # run_capture calls it for flagged frames only (a paused streak is not ended between)
    PARTS = PARTS

    def __init__(self, out_dir: str, spec, min_free_mb: Optional[float] = None, keep: Optional[int] = None,
                 log: Callable[[str], None] = lambda msg: None):
        if keep is not None and (isinstance(keep, bool) or int(keep) != keep or keep < 1):
            raise ValueError(f"keep (--save-anomalies-keep) must be a whole number >= 1, got {keep!r}")
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.spec = spec
        self.min_free_mb = min_free_mb      # None: min_free_bytes' default rule
        self.keep = None if keep is None else int(keep)
        self.log = log
        self.saved = 0
        self.deleted = 0
        self._sets = deque(self._existing_sets()) if keep is not None else deque()   # stems, oldest first

    def _existing_sets(self) -> list:
        """The stems of the picture sets already in the directory (earlier runs'), oldest first."""
        newest: dict = {}
        for entry in os.scandir(self.dir):
            m = PICTURE_NAME.match(entry.name)
            if m and entry.is_file(follow_symlinks=False):
                t = entry.stat(follow_symlinks=False).st_mtime
                newest[m.group(1)] = max(t, newest.get(m.group(1), t))
        return [self.dir / stem for stem in sorted(newest, key=lambda k: (newest[k], k))]

    def _prune(self) -> None:
        """Delete the oldest picture sets beyond ``keep`` (each part that exists)."""
        while self.keep is not None and len(self._sets) > self.keep:
            stem = self._sets.popleft()
            for part in PARTS:
                Path(f"{stem}_{part}.png").unlink(missing_ok=True)
            if not self.deleted:
                self.log(f"deleting the oldest anomaly pictures in {self.dir} to keep the newest {self.keep} "
                         f"flagged frames' (--save-anomalies-keep): first {stem.name}_*.png")
            self.deleted += 1

    def check_room(self) -> None:
        """RuntimeError (pictures paused) while the pictures' filesystem has less free than the reserve."""
        usage = shutil.disk_usage(self.dir)
        need = min_free_bytes(usage.total, self.min_free_mb)
        if usage.free < need:
            raise RuntimeError(f"pictures paused: {usage.free / (1 << 20):.0f} MiB free on the filesystem of "
                               f"{self.dir}, less than the {need / (1 << 20):.0f} MiB kept free for the results "
                               "(--save-anomalies-min-free-mb); they resume once space is freed")

    def free_stem(self, rec: dict) -> Path:
        """<dir>/<index>_<frame>[-n]: the first name none of whose pictures exists."""
        base = f"{int(rec.get('index', 0)):08d}_{safe_name(rec['frame'])}"
        n = 1
        while True:
            stem = base if n == 1 else f"{base}-{n}"
            if not any((self.dir / f"{stem}_{part}.png").exists() for part in PARTS):
                return self.dir / stem
            n += 1

    def pictures(self, frame, res) -> dict:
        """part name -> PIL image of a scored frame."""
        from PIL import Image
        p = frame_panels(frame, res, self.spec)
        if p.recon_rgb is None:
            raise RuntimeError("--save-anomalies: the scorer returned no reconstruction")
        err = Image.fromarray(heatmap(p.error))
        return {
            "rgb": Image.fromarray(np.asarray(frame.rgb, dtype=np.uint8)),
            "depth": Image.fromarray(np.asarray(frame.depth)),  # uint8 or uint16 mm
            "recon": Image.fromarray(np.concatenate([p.recon_rgb, grey3(p.recon_depth)], axis=1)),
            "error": err.resize((SCALE * err.width, SCALE * err.height), Image.NEAREST),
            "overlay": Image.fromarray(panel_row(p, SCALE)),
        }

    def __call__(self, rec: dict, frame, res) -> None:
        if not rec.get("anomalous"):
            return
        self.check_room()
        pictures = self.pictures(frame, res)
        stem = self.free_stem(rec)
        for part in PARTS:
            _save_png(pictures[part], Path(f"{stem}_{part}.png"))
        self.saved += 1
        if self.keep is not None:
            self._sets.append(stem)
            self._prune()
