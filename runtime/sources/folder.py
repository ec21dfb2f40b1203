"""A folder of frames: ``<dir>/rgb/<id>.(png|jpg|jpeg)`` + ``<dir>/depth/<id>.(png|npy)``, ids matched by stem.

Suffixes are matched in any case (``3.JPG``, ``3.PNG``, ``3.Jpg``: cameras and Windows tools write
them). RGB files must hold colour: a greyscale image (mode L, ...) or one with transparent pixels is
an error frame naming the file and its mode (``preprocess.colour_image_to_rgb``; RGBA with every pixel
opaque, palette and CMYK images are read as RGB). Depth is read from ``<id>.png`` (8-bit grey, or 16-bit millimetres) or, when there is no PNG,
``<id>.npy`` (an H x W uint8 or uint16 array, read without pickle; the frame-size limit is checked
from its header); a frame whose depth was saved in another format (``3.tif``, ...) is an error frame
that names the file found."""
from __future__ import annotations

import functools
import itertools
import os
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from ..preprocess import DEFAULT_MAX_PIXELS, FrameError, check_pixels, colour_image_to_rgb, open_image
from .base import Frame, Source, SourceError

RGB_SUFFIXES = (".png", ".jpg", ".jpeg")
DEPTH_SUFFIXES = (".png", ".npy")
# depth formats people save that are not read: named when a frame's depth is missing
OTHER_DEPTH_SUFFIXES = (".npz", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp", ".pgm", ".exr", ".raw")


def _sort_key(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def list_ids(root: os.PathLike) -> list[str]:
    """All ids that have an RGB or a depth file, numerically sorted where ids are numbers."""
    root = Path(root)
    if not (root / "rgb").is_dir() and not (root / "depth").is_dir():
        if not root.exists():
            raise SourceError(f"{root} does not exist")
        classes = sorted(p.name for p in root.iterdir() if (p / "rgb").is_dir() and (p / "depth").is_dir()) \
            if root.is_dir() else []
        if classes:       # a dataset root (kinect-rgbd): class folders, each a frame folder
            raise SourceError(f"{root} is not a frame folder but holds class folders {', '.join(classes)}: use "
                              f"folder://{root}?normal=CLASS (every class, labelled) or {root}/CLASS (one class)")
        raise SourceError(f"{root} is not a frame folder: expected {root}/rgb/ and {root}/depth/")
    stems = set()
    for sub, sufs in (("rgb", RGB_SUFFIXES), ("depth", DEPTH_SUFFIXES)):
        if (root / sub).is_dir():
            spellings = set(_spellings(sufs))
            stems |= {p.stem for p in (root / sub).iterdir() if p.suffix in spellings}
    return sorted(stems, key=_sort_key)


@functools.lru_cache(maxsize=None)
def _spellings(suffixes: tuple) -> tuple:
    """Every case spelling of each suffix, suffix by suffix: lower, upper, then mixed case
    (".png", ".PNG", ".Png", ..., ".jpg", ...): the one definition of "suffixes match in any case"."""
    out = []
    for suf in suffixes:
        mixed = ("".join(t) for t in itertools.product(*({c.lower(), c.upper()} for c in suf)))
        out += [suf.lower(), suf.upper()] + sorted(set(mixed) - {suf.lower(), suf.upper()})
    return tuple(out)


def _find(folder: Path, fid: str, suffixes: tuple) -> Optional[Path]:
    """``folder/<fid><suffix>`` for the first of ``suffixes`` (in any case) that exists; a few stat
    calls per frame (lower and upper case first), never a listing of the folder."""
    for suf in _spellings(suffixes):
        p = folder / f"{fid}{suf}"
        if p.is_file():
            return p
    return None


def _rgb_path(root: Path, fid: str) -> Optional[Path]:
    return _find(root / "rgb", fid, RGB_SUFFIXES)


def _missing_depth(root: Path, fid: str) -> str:
    """Why frame ``fid`` has no depth: the PNG is missing, and which other depth file is there, if any."""
    other = _find(root / "depth", fid, OTHER_DEPTH_SUFFIXES)
    if other is not None:
        return (f"frame {fid}: missing depth file {root}/depth/{fid}.(png|npy); {other} exists, but only PNG depth "
                "(8-bit grey, or 16-bit millimetres) and .npy depth (uint8 or uint16) are read")
    return f"frame {fid}: missing depth file {root}/depth/{fid}.(png|npy)"


def _open_checked(path: Path, max_pixels, what: str):
    """Image.open (reads the header only) with the frame-size limit checked before decoding."""
    try:
        return open_image(path, max_pixels, f"{what} {path}")
    except FrameError as e:
        raise SourceError(str(e)) from None


def read_pair(root: os.PathLike, fid: str, max_pixels=DEFAULT_MAX_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Read one frame's RGB (H x W x 3 uint8) and depth (H x W uint8/uint16). Raises SourceError,
    also for an image over ``max_pixels`` (from its header, before it is decoded)."""
    rgb, depth, _ = read_pair_from(root, fid, max_pixels)
    return rgb, depth


def read_pair_from(root: os.PathLike, fid: str, max_pixels=DEFAULT_MAX_PIXELS) -> tuple:
    """``read_pair`` plus the depth file read: (rgb, depth, depth path)."""
    root = Path(root)
    rgb_path, depth_path = _rgb_path(root, fid), _find(root / "depth", fid, DEPTH_SUFFIXES)
    if rgb_path is None:
        raise SourceError(f"frame {fid}: missing RGB file {root}/rgb/{fid}.(png|jpg|jpeg)")
    if depth_path is None:
        raise SourceError(_missing_depth(root, fid))
    try:
        with _open_checked(rgb_path, max_pixels, "RGB") as im:
            im.load()
            rgb = colour_image_to_rgb(im, f"RGB {rgb_path}")    # refuses greyscale and transparent images
    except (SourceError, FrameError) as e:
        raise SourceError(f"frame {fid}: {e}") from None
    except Exception as e:  # PIL raises many types for corrupt files
        raise SourceError(f"frame {fid}: unreadable RGB {rgb_path}: {e}") from None
    if depth_path.suffix.lower() == ".npy":
        depth = _read_npy_depth(depth_path, fid, max_pixels)
        return rgb, _same_size(fid, rgb, rgb_path, depth, depth_path), depth_path
    try:
        with _open_checked(depth_path, max_pixels, "depth") as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                depth = np.asarray(im).astype(np.uint16)
            elif im.mode == "L":
                depth = np.asarray(im)
            else:
                raise SourceError(f"frame {fid}: depth {depth_path} has mode {im.mode}, "
                                  "expected 8-bit grey (L) or 16-bit millimetres (I;16)")
    except SourceError as e:
        raise SourceError(str(e) if str(e).startswith("frame ") else f"frame {fid}: {e}") from None
    except Exception as e:
        raise SourceError(f"frame {fid}: unreadable depth {depth_path}: {e}") from None
    return rgb, _same_size(fid, rgb, rgb_path, depth, depth_path), depth_path


def _same_size(fid: str, rgb: np.ndarray, rgb_path: Path, depth: np.ndarray, depth_path: Path) -> np.ndarray:
    """``depth`` (H, W) when it is the size of ``rgb`` (H, W, 3); SourceError naming both files and sizes
    otherwise (preprocessing would refuse the pair without knowing which files they came from)."""
    if depth.shape[:2] != rgb.shape[:2]:
        raise SourceError(f"frame {fid}: RGB {rgb_path} is {rgb.shape[1]}x{rgb.shape[0]} but depth {depth_path} is "
                          f"{depth.shape[1]}x{depth.shape[0]} (W x H): depth must be aligned to colour (the same size)")
    return depth


DEPTH_NPY_NEED = "a .npy depth must be an H x W uint8 (8-bit levels) or uint16 (millimetres) array"


def npy_problem(path: Path, need: str = DEPTH_NPY_NEED) -> Optional[str]:
    """What is wrong with the .npy file ``path``, read from its header (no data read): empty, not a NumPy .npy
    file (an .npz archive named as one), an unreadable header, an object array (Python objects: never unpickled;
    ``need`` says what the caller needs instead), or truncated (fewer data bytes than its header declares); None
    when it looks whole. Never numpy's own words (they advise unpickling)."""
    fmt = np.lib.format
    size = path.stat().st_size
    if size == 0:
        return "the file is empty"
    with open(path, "rb") as f:
        head = f.read(len(fmt.MAGIC_PREFIX))
        if head.startswith(b"PK\x03\x04"):
            return "an .npz archive, not a .npy file: save one array with np.save"
        if head != fmt.MAGIC_PREFIX:
            return "not a NumPy .npy file (no .npy header)"
        f.seek(0)
        try:
            version = fmt.read_magic(f)
            shape, fortran, dtype = (fmt.read_array_header_1_0(f) if version == (1, 0)
                                     else fmt.read_array_header_2_0(f))
        except (ValueError, EOFError, SyntaxError) as e:
            return f"its .npy header cannot be read ({e})"
        if dtype.hasobject:
            return f"it holds an object array ({dtype}), not numbers; {need}"
        need = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        have = size - f.tell()
        if have < need:
            return f"the file is truncated: its header declares {need:,} data bytes, it holds {have:,}"
    return None


def _read_npy_depth(path: Path, fid: str, max_pixels) -> np.ndarray:
    """Depth from a .npy file: H x W (or H x W x 1) uint8 levels or uint16 millimetres, read without
    pickle; shape, dtype and the frame-size limit are checked from the header (memory-mapped) before
    the pixels are read. Raises SourceError naming the file and the problem."""
    why = npy_problem(path)          # named from the header: not numpy's mechanism (nor its advice to unpickle)
    if why is not None:
        raise SourceError(f"frame {fid}: unreadable depth {path}: {why}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # anything the header check above did not foresee
        raise SourceError(f"frame {fid}: unreadable depth {path}: {e}") from None
    shape = arr.shape[:2] if arr.ndim == 3 and arr.shape[2] == 1 else arr.shape
    if len(shape) != 2 or arr.dtype.newbyteorder("=") not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise SourceError(f"frame {fid}: depth {path} is {arr.dtype} {arr.shape}; a .npy depth must be an H x W "
                          "uint8 (8-bit levels) or uint16 (millimetres) array")
    try:
        check_pixels(shape[1], shape[0], max_pixels, f"depth {path}")
    except FrameError as e:
        raise SourceError(f"frame {fid}: {e}") from None
    return np.array(arr.reshape(shape), dtype=arr.dtype.newbyteorder("="))     # read now, native byte order


LEVELS_RUN = 3   # consecutive 16-bit PNG depth frames with every reading in 1..255 before LevelsWatch warns


class LevelsWatch:
    """Says once when 16-bit PNG depth looks like 8-bit depth levels saved in 16 bits (kinect-rgbd's
    levels written by a 16-bit tool): ``LEVELS_RUN`` frames in a row whose every reading lies in
    1..255. Such frames are still read as millimetres (a close-range camera gives the same readings),
    so this is a warning, never a refusal. Frames without readings neither count nor break the run."""

    def __init__(self):
        self.run = 0
        self.warned = False

    def observe(self, depth: np.ndarray, path: Path) -> Optional[str]:
        """The warning text the first time the run reaches LEVELS_RUN frames, else None.
        ``depth``: H x W as read from ``path``."""
        if self.warned or depth.dtype != np.uint16 or path.suffix.lower() != ".png":
            return None
        top = int(depth.max()) if depth.size else 0
        if top == 0:
            return None
        self.run = self.run + 1 if top <= 255 else 0
        if self.run < LEVELS_RUN:
            return None
        self.warned = True
        return (f"depth {path} and the {LEVELS_RUN - 1} frames before it are 16-bit PNGs whose readings all lie "
                f"in 1..255 (max {top}): they are read as millimetres (a scene within 25.5 cm); if they "
                "hold 8-bit depth levels, save them as 8-bit PNGs (mode L)")


class FolderSource(Source):
    """Frames of a folder in id order; unreadable frames are yielded with ``error`` set.
    ``warnings`` / ``events`` (a ``source_warning`` event, written into the run's results): 16-bit
    PNG depth that looks like 8-bit levels (``LevelsWatch``), said once. ``stream = False``: the
    files are independent inputs, so identical consecutive files are scored (no ``stuck_frame``)."""

    stream = False

    def __init__(self, root: os.PathLike, ids: Optional[Iterable] = None, max_pixels=DEFAULT_MAX_PIXELS):
        self.root = Path(root)
        self.max_pixels = max_pixels
        self.uri = str(root)
        self.ids = [str(i) for i in ids] if ids is not None else list_ids(self.root)
        self.warnings: list = []
        self.events: list = []
        self._levels = LevelsWatch()

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Frame]:
        for fid in self.ids:
            t = time.time()
            try:
                rgb, depth, depth_path = read_pair_from(self.root, fid, self.max_pixels)
            except SourceError as e:
                yield Frame(fid, None, None, t, error=str(e))
                continue
            warning = self._levels.observe(depth, depth_path)
            if warning:
                self.warnings.append(warning)
                self.events.append({"event": "source_warning", "warning": warning})
            yield Frame(fid, rgb, depth, t)
