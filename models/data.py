"""Training/evaluation data as uint8 RGBD arrays (N, R, R, 4), through the one preprocessing
definition in runtime/preprocess.py; torch-side augmentation for training."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
import warnings
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from edge_ad.runtime.preprocess import PreprocessSpec, alignment_mask, frame_to_uint8, normalize_uint8
from edge_ad.runtime.sources.folder import LevelsWatch, list_ids, read_pair_from
from edge_ad.runtime.sources.synth import render_set

KINECT_CLASSES = ("rectangle", "cylinder", "sphere")


class DataError(ValueError):
    """A dataset that is missing, empty or malformed."""


SHOWN_BAD_FRAMES = 20    # unreadable frames named in load_folder's error (the rest counted)


def load_folder(root: os.PathLike, ids: Optional[Sequence] = None,
                spec: PreprocessSpec = PreprocessSpec(),
                on_warning: Optional[Callable[[str], None]] = None) -> tuple[list[str], np.ndarray]:
    """Read frames of a folder source -> (ids, uint8 (N, R, R, 4)). Unreadable frames raise DataError, after
    the whole pass: one error naming how many cannot be read and the first ``SHOWN_BAD_FRAMES`` of them with
    why (not only the first: a set copied off a robot with a dozen truncated files took a dozen runs to clean).
    16-bit PNG depth that looks like 8-bit levels (``LevelsWatch``) is read as millimetres and said
    once to ``on_warning`` (default: ``warnings.warn``)."""
    root = Path(root)
    ids = [str(i) for i in ids] if ids is not None else list_ids(root)
    if not ids:
        raise DataError(f"no frames in {root}")
    out = np.empty((len(ids), spec.resolution, spec.resolution, 4), np.uint8)
    levels = LevelsWatch()
    bad = []             # why each unreadable frame cannot be read, in order
    for n, fid in enumerate(ids):
        try:
            rgb, depth, depth_path = read_pair_from(root, fid)
            out[n] = frame_to_uint8(rgb, depth, spec)
        except Exception as e:
            bad.append(str(e) if str(e).startswith(f"frame {fid}") else f"frame {fid}: {e}")
            continue
        warning = levels.observe(depth, depth_path)
        if warning:
            (on_warning or (lambda m: warnings.warn(m, stacklevel=3)))(warning)
    if bad:
        more = f"; ... and {len(bad) - SHOWN_BAD_FRAMES} more" if len(bad) > SHOWN_BAD_FRAMES else ""
        raise DataError(f"{len(bad)} of {len(ids)} frames in {root} cannot be read (fix or remove them): "
                        + "; ".join(bad[:SHOWN_BAD_FRAMES]) + more)
    return ids, out


def kinect_split_ids(root: os.PathLike, cls: str, split: str) -> list[int]:
    """Ids of one class and split ('train' or 'val') from kinect-rgbd's splits.json."""
    root = Path(root)
    splits_file = root / "splits.json"
    if not splits_file.is_file():
        raise DataError(f"{splits_file} not found: --data must point at the kinect-rgbd folder")
    splits = json.loads(splits_file.read_text())
    if cls not in splits:
        raise DataError(f"class {cls!r} not in {splits_file} (has {sorted(splits)})")
    if split not in splits[cls]:
        raise DataError(f"split {split!r} not in {splits_file} for {cls} (has {sorted(splits[cls])})")
    return list(splits[cls][split])


def split_class_note(folder: os.PathLike) -> Optional[str]:
    """When the frame folder ``folder`` is a class folder of a split dataset (a splits.json beside it that lists
    the folder's name as a class, the layout ``check_kinect_split`` reads), what training on the whole folder
    means: every frame, the held-out splits' ids included, and how to train on the train split only. None for
    any other folder (no splits.json beside it, an unreadable one, or one without this class)."""
    folder = Path(folder).resolve()
    splits_file = folder.parent / "splits.json"
    try:
        splits = json.loads(splits_file.read_text()) if splits_file.is_file() else None
    except (OSError, ValueError):
        return None
    parts = splits.get(folder.name) if isinstance(splits, dict) else None
    if not isinstance(parts, dict):
        return None
    held_out = {k: len(v) for k, v in parts.items() if k != "train" and isinstance(v, list) and v}
    if not held_out:
        return None
    listed = " and ".join(f"its {n} {k!r} ids" for k, n in held_out.items())
    return (f"{folder} is the {folder.name!r} class of a split dataset ({splits_file} beside it): training on all "
            f"its frames, {listed} included, so an evaluation on them is not held out; "
            f"`--data {folder.parent} --class {folder.name}` trains on its 'train' split only")


def trained_on_note(train_data: Optional[dict], folder: os.PathLike) -> Optional[str]:
    """When a checkpoint's training data (its ``train["data"]`` summary, ``summarize``) is the whole frame folder
    ``folder`` (its source, no split), that the frames an evaluation reads from ``folder`` were trained on.
    None otherwise (another source, a split of a dataset, nothing recorded)."""
    if not isinstance(train_data, dict) or "split" in train_data or not isinstance(train_data.get("source"), str):
        return None
    if train_data["source"] != str(Path(folder).resolve()):
        return None
    n = train_data.get("n_frames")
    return (f"the model was trained on every frame of {folder} ({n} frames, its checkpoint says), the frames scored "
            "here included: these metrics are not held out")


def check_kinect_split(root: os.PathLike, cls: str, split: str, classes: Sequence[str] = KINECT_CLASSES) -> list:
    """The ids of one class/split of a kinect-rgbd layout (``kinect_split_ids``), checked before any
    frame is read: the class folder exists (``classes``: what the caller needs, named in the error) and
    every id has a file in its rgb/ and depth/ folders. Raises DataError naming the missing folder, or
    how many ids lack files and the first few (frames are never skipped: metrics over fewer frames than
    splits.json lists would mean something else)."""
    root = Path(root)
    folder = root / cls
    if not folder.is_dir() and (root / "splits.json").is_file():
        raise DataError(f"--data {root} has no class folder {cls!r} (needs {', '.join(classes)})")
    ids = kinect_split_ids(root, cls, split)

    def stems(sub: str) -> set:
        d = folder / sub
        return {p.stem for p in d.iterdir() if p.is_file()} if d.is_dir() else set()

    present = stems("rgb") & stems("depth")
    missing = [str(i) for i in ids if str(i) not in present]
    if missing:
        more = ", ..." if len(missing) > 5 else ""
        raise DataError(f"{root / 'splits.json'} lists {len(missing)} of its {len(ids)} {cls} {split!r} ids that "
                        f"{folder} has no rgb/ + depth/ files for (first: {', '.join(missing[:5])}{more}); frames are "
                        "not skipped (the metrics would cover other frames than the split's): copy them, or give a "
                        "splits.json that lists only the frames present")
    return ids


def load_kinect(root: os.PathLike, cls: str, split: str,
                spec: PreprocessSpec = PreprocessSpec()) -> tuple[list[str], np.ndarray]:
    """One class/split of kinect-rgbd -> (ids, uint8 (N, 64, 64, 4)); ``check_kinect_split`` first."""
    return load_folder(Path(root) / cls, check_kinect_split(root, cls, split), spec)


def load_synth(n: int, seed: int = 0, anomaly_rate: float = 0.0,
               spec: PreprocessSpec = PreprocessSpec()) -> tuple[list[str], np.ndarray, list[str]]:
    """Rendered frames -> (ids, uint8 (N, R, R, 4), kinds)."""
    rgb, depth, kinds = render_set(n, seed, anomaly_rate, spec.resolution)
    arr = np.stack([frame_to_uint8(r, d, spec) for r, d in zip(rgb, depth)])
    return [f"synth-{i:06d}" for i in range(n)], arr, kinds


def summarize(ids: Sequence, arr: np.ndarray, source: str, **extra) -> dict:
    """A short description of a dataset for checkpoints: source, count, id hash, the frames' content hash
    (sha256 of the uint8 array (N, R, R, 4): the same frames wherever they are read from), foreground share."""
    h = hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()[:16]
    content = hashlib.sha256(np.ascontiguousarray(arr).data).hexdigest()[:16]          # (an empty array too)
    return {"source": source, "n_frames": int(len(ids)), "ids_sha256_16": h, "frames_sha256_16": content,
            "foreground_fraction": float((arr[..., 3] > 0).mean()), **extra}


def spec_with(spec: PreprocessSpec, fields: dict, train_u8: np.ndarray) -> PreprocessSpec:
    """spec with ``fields`` (PreprocessSpec fields) set; "auto" for colour_reference / align_centre is
    measured on train_u8 (N, R, R, 4) uint8 (unaligned): the mean foreground colour (0..1) / the mean
    foreground centroid (y, x as shares of the side), of the readings the align step aligns (every reading;
    for align "component" each frame's largest component: ``alignment_mask``)."""
    fg = train_u8[..., 3] > 0                                                  # (N, R, R)
    fields = dict(fields)
    if fields.get("colour_reference") == "auto":
        fields["colour_reference"] = [round(float(train_u8[..., c][fg].mean() / 255), 4) for c in range(3)]
    if fields.get("align_centre") == "auto":
        if fields.get("align", spec.align) == "component":
            fg = alignment_mask(train_u8[..., 3], "component")                # (N, R, R)
        R = train_u8.shape[1]
        ys, xs = np.mgrid[:R, :R]
        n = np.maximum(fg.sum((1, 2)), 1)
        fields["align_centre"] = [round(float(((fg * g).sum((1, 2)) / n).mean() / R), 4) for g in (ys, xs)]
    return PreprocessSpec.from_dict({**spec.to_dict(), **fields})


def to_tensor(arr: np.ndarray, spec: PreprocessSpec = PreprocessSpec()) -> torch.Tensor:
    """uint8 (N, R, R, 4) -> float32 (N, 4, R, R) in [-1, 1]."""
    return torch.from_numpy(normalize_uint8(arr, spec))


def augment(x: torch.Tensor, gen: torch.Generator, hflip: bool = True, max_shift: int = 0,
            brightness: float = 0.0, white_balance: float = 0.0) -> torch.Tensor:
    """Light augmentation of a batch x (B, 4, R, R) in [-1, 1]: horizontal flips, integer shifts
    (background-filled), then ``photometric``. Depth values are not changed."""
    return photometric(geometric(x, gen, hflip, max_shift), gen, brightness, white_balance)


def geometric(x: torch.Tensor, gen: torch.Generator, hflip: bool = True, max_shift: int = 0) -> torch.Tensor:
    """x (B, 4, R, R) flipped left-right with probability 1/2 and shifted by (dy, dx) uniform in
    [-max_shift, max_shift]^2 per frame (vacated pixels background, -1)."""
    B = x.shape[0]
    if hflip:
        flip = torch.rand(B, generator=gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if max_shift > 0:
        out = torch.full_like(x, -1.0)
        sh = torch.randint(-max_shift, max_shift + 1, (B, 2), generator=gen)
        R = x.shape[-1]
        for b in range(B):
            dy, dx = int(sh[b, 0]), int(sh[b, 1])
            ys, yd = (slice(0, R - dy), slice(dy, R)) if dy >= 0 else (slice(-dy, R), slice(0, R + dy))
            xs, xd = (slice(0, R - dx), slice(dx, R)) if dx >= 0 else (slice(-dx, R), slice(0, R + dx))
            out[b, :, yd, xd] = x[b, :, ys, xs]
        x = out
    return x


def photometric(x: torch.Tensor, gen: torch.Generator, brightness: float = 0.0,
                white_balance: float = 0.0) -> torch.Tensor:
    """Light and colour changes of the foreground's RGB (depth > -1) per frame of x (B, 4, R, R):
    RGB (as 0..1) times 1 + U(-brightness, brightness), then R and B each times 1 + U(-white_balance,
    white_balance) (a colour cast; G kept), clipped to [0, 1]. Background and depth unchanged.
    Draws nothing from ``gen`` for a zero amount (so older runs keep their random stream)."""
    B = x.shape[0]
    if brightness > 0:
        f = 1 + (torch.rand(B, 1, 1, 1, generator=gen) * 2 - 1) * brightness
        x = _scale_rgb(x, f)
    if white_balance > 0:
        rb = 1 + (torch.rand(B, 2, generator=gen) * 2 - 1) * white_balance           # (B, 2): R, B gains
        g = torch.stack([rb[:, 0], torch.ones(B), rb[:, 1]], 1)[:, :, None, None]     # (B, 3, 1, 1)
        x = _scale_rgb(x, g)
    return x


def _scale_rgb(x: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """x's foreground RGB (as 0..1) times gain (broadcast to (B, 3, R, R)), clipped to [0, 1]."""
    rgb01 = (x[:, :3] + 1) / 2
    fg = x[:, 3:4] > -1
    rgb = torch.where(fg, (rgb01 * gain).clamp(0, 1) * 2 - 1, x[:, :3])
    return torch.cat([rgb, x[:, 3:]], 1)
