"""A labelled folder: frames whose truth is their class folder, as in kinect-rgbd.

``folder://DIR?normal=CLASS[&split=SPLIT]``

* DIR is a frame folder (``DIR/rgb``, ``DIR/depth``): its class is DIR's name, e.g.
  ``folder://kinect-rgbd/sphere?normal=rectangle`` (every frame anomalous). In a dataset layout (DIR's
  parent holds ``splits.json``, as kinect-rgbd) the frame folders beside DIR are its classes and CLASS
  must be DIR's name or one of them (a typo is refused). Elsewhere folders beside DIR may be days or
  sessions, not classes (``recordings/day2?normal=rectangle`` beside ``recordings/day1``): a CLASS that
  is neither DIR's name nor a folder beside it is accepted with a warning (``warnings``, a
  ``source_warning`` event).
* DIR holds class folders (``DIR/<class>/rgb``, ...): the frames of every class, interleaved (one
  frame of each class in turn: the normal class, then the others in name order; each class's frames
  in id order), e.g. ``folder://kinect-rgbd?normal=rectangle&split=val`` (rectangles normal, the rest
  anomalies) yields rectangle/0, cylinder/0, sphere/0, rectangle/1, ...: any prefix (``edge-ad run
  --max-frames 6``) holds normal frames and anomalies, so its AUROC is defined. A class with more
  frames than the others ends the run alone. Frames are named ``<class>/<id>`` whatever their
  order; a run resumed onto an ``--out`` continues its index and scores every frame again (it skips
  none), so files written when the classes came one after the other stay consistent.

Each frame's ``meta`` is ``{"kind": class, "anomalous": class != normal}``, so the run's results
carry ``truth`` and its summary AUROC, recall and false-alarm rate. ``split`` picks the ids listed
for that split in ``DIR/splits.json`` (``{class: {split: [ids]}}``, the kinect-rgbd layout).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Optional

from ..preprocess import DEFAULT_MAX_PIXELS
from .base import Frame, Source, SourceError
from .folder import FolderSource


def _is_frame_folder(p: Path) -> bool:
    return (p / "rgb").is_dir() or (p / "depth").is_dir()


class LabelledFolderSource(Source):
    """Frames of one or several class folders, labelled anomalous unless their class is ``normal``.
    ``max_pixels``: images over this many pixels are refused from their header (an error frame).
    Files, not a stream (``stream = False``, as ``FolderSource``)."""

    stream = False
    labelled = True    # each frame's meta carries its truth

    def __init__(self, root, normal: str, split: Optional[str] = None, max_pixels=DEFAULT_MAX_PIXELS):
        self.root = Path(root)
        self.warnings: list = []   # what the opener should show (edge-ad run prints them on stderr)
        if not normal:
            raise SourceError("a labelled folder needs normal=CLASS (the class the model was trained on)")
        self.normal = normal
        if _is_frame_folder(self.root):
            folders = [self.root]
            split_root = self.root.parent
        elif self.root.is_dir():
            folders = sorted(p for p in self.root.iterdir() if p.is_dir() and _is_frame_folder(p))
            split_root = self.root
            if not folders:
                raise SourceError(f"{self.root} is neither a frame folder ({self.root}/rgb, /depth) nor "
                                  "a folder of class folders (<class>/rgb, <class>/depth)")
        else:
            raise SourceError(f"cannot open labelled folder {self.root}: no such directory")
        classes = [p.name for p in folders]
        self.events: list = []     # a warning for the run's results (run_capture writes source events)
        if len(folders) > 1 and normal not in classes:
            raise SourceError(f"normal class {normal!r} is not one of the class folders {classes}")
        if len(folders) == 1 and normal != self.root.name:
            self._check_normal_of_one_folder(normal)
        splits = self._splits(split_root, split, classes) if split else {}
        folders.sort(key=lambda p: (p.name != normal, p.name))     # the normal class first, then by name
        self.parts = []  # [(class, FolderSource)], in the order __iter__ takes turns
        for p in folders:
            self.parts.append((p.name, FolderSource(p, splits.get(p.name), max_pixels=max_pixels)))
        self.uri = f"folder://{self.root}?normal={normal}" + (f"&split={split}" if split else "")

    def _check_normal_of_one_folder(self, normal: str) -> None:
        """A frame folder whose class is not ``normal`` (all its frames anomalous): in a dataset layout
        (its parent holds splits.json) ``normal`` must name one of the sibling class folders (anything
        else is a typo, SourceError). Elsewhere sibling frame folders may be days or sessions, not
        classes, so ``normal`` cannot be checked: a name that is not a sibling gets ``warnings`` (and a
        ``source_warning`` event)."""
        parent = self.root.resolve().parent
        siblings = sorted(p.name for p in parent.iterdir()
                          if p.is_dir() and _is_frame_folder(p) and p.name != self.root.name)
        if normal in siblings:
            return
        if (parent / "splits.json").is_file():
            raise SourceError(f"normal class {normal!r} is neither this folder's class {self.root.name!r} nor one "
                              f"of its sibling class folders {siblings} ({parent / 'splits.json'}: a dataset "
                              "layout)")
        beside = f" (beside it: {', '.join(siblings[:5])}{', ...' if len(siblings) > 5 else ''})" if siblings else ""
        msg = (f"normal class {normal!r} is not this folder's class {self.root.name!r} and no folder beside it "
               f"has that name{beside}: every frame of {self.root} is labelled anomalous")
        self.warnings.append(msg)
        self.events.append({"event": "source_warning", "warning": msg})

    @staticmethod
    def _splits(root: Path, split: str, classes: list) -> dict:
        path = root / "splits.json"
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise SourceError(f"split={split} needs {path}: {e}") from None
        out = {}
        for c in classes:
            ids = (table.get(c) or {}).get(split) if isinstance(table, dict) else None
            if ids is None:
                raise SourceError(f"{path} has no {split!r} split for class {c!r}")
            out[c] = [str(i) for i in ids]
        return out

    def __len__(self) -> int:
        return sum(len(src) for _, src in self.parts)

    def normal_positions(self) -> list:
        """The 0-based positions, in ``__iter__``'s order, of the frames labelled normal (the ``normal``
        class's), known before any image is read: edge-ad calibrate spreads its frames over them."""
        left = [len(src) for _, src in self.parts]
        out, pos = [], 0
        while any(left):
            for k, (cls, _) in enumerate(self.parts):     # one frame of each class that has some left, in turn
                if left[k]:
                    if cls == self.normal:
                        out.append(pos)
                    pos, left[k] = pos + 1, left[k] - 1
        return out

    def __iter__(self) -> Iterator[Frame]:
        """One frame of each class in turn (``parts`` order), until every class has run out."""
        many = len(self.parts) > 1
        turns = [(cls, src, iter(src)) for cls, src in self.parts]
        while turns:
            still = []
            for cls, src, frames in turns:
                fr = next(frames, None)
                if fr is None:
                    continue
                still.append((cls, src, frames))
                self.warnings += src.warnings          # e.g. 16-bit PNG depth that looks like 8-bit levels
                self.events += src.events
                src.warnings.clear(), src.events.clear()
                fr.id = f"{cls}/{fr.id}" if many else fr.id
                fr.meta = {**fr.meta, "kind": cls, "anomalous": cls != self.normal}
                yield fr
            turns = still
