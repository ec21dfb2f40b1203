"""Sensor faults: frames that show a broken camera, not a scene, and must never be scored as normal.

A dead depth sensor (all zeros) makes every frame score alike whatever the colour shows; a dead
colour sensor (black) hides real anomalies; random colour noise scores as normal. The checks run
on the model-resolution frame (``frame_to_uint8``: what the model would see) with the limits of the
model's ``PreprocessSpec.sensor_faults`` (``SensorLimits``):

  no_depth       fewer than ``min_valid_depth`` of the pixels have a depth reading
  no_foreground  fewer than ``min_foreground`` of the pixels lie inside [near_mm, far_mm]
  black_rgb      more than ``max_black`` of the foreground is black (colour sensor dead or covered)
  saturated_rgb  more than ``max_saturated`` of the foreground is saturated (blinded)
  flat_rgb       the foreground is one constant colour (``colour_spread``, its largest per-channel
                 standard deviation on the camera's own pixels, below ``min_colour_spread``): a colour
                 sensor sending a frozen constant, a YUYV decoder's all-zero "green frame", a lens
                 behind cloth; real frames (kinect-rgbd, synth://) have a spread of >= 7 levels even
                 under brightness or contrast x0.5. Or one colour plus sensor noise (a cap, a sticker,
                 fog over the lens): a spread below ``noisy_flat_spread`` whose R, G, B vary independently
                 (``colour_correlation`` below NOISY_FLAT_CORRELATION; real shading moves them together)
                 and from pixel to pixel (``pixel_noise_share`` above NOISY_FLAT_PIXEL_SHARE; not a gradient),
                 or any spread below ``featureless_spread`` (noise correlated across R, G, B: luminance,
                 YUYV; a little vignetting)
  colour_noise   strong (mean neighbour difference above ``noise_level``) and uncorrelated R, G, B
                 neighbour differences (mean correlation below ``min_channel_correlation``):
                 independent per-channel noise, not an image; measured on the camera's own pixels
                 of the model's foreground (``camera_differences``), as resizing averages noise away
                 (limits stored without ``noise_measured_on``: on the model frame, as they meant)
  background_in_view  a table or background within far_mm is in view (audit 33 #18): foreground within
                 1/EDGE_BAND of the side from one edge of the square the model sees spans more than
                 ``max_edge_foreground`` of that edge (``edge_occupancy``, on the depth as captured). The
                 models score an object alone (the kinect-rgbd capture removed table and background); with a
                 table in view the shipped rectangle scored 90 % of normal frames anomalous. Real frames: <= 0.375
                 clean, <= 0.594 zoomed x1.2; tables over 20-60 % of the frame, 3/4 of its width or missing 30 %
                 of their readings, walls: >= 0.75 (``scripts/background_probe.py``)
  stuck_frame    the frame is bit-identical to the previous one(s) of a stream (a camera, a recording,
                 a ROS bag, synth://): a frozen driver re-sending it. Not made for a folder of
                 files (``Source.stream`` False): its files are independent inputs, and copies of one
                 frame are each scored (a determinism check, a test set with duplicates)
  stuck_rgb      the colour image alone is bit-identical to the previous one(s) of a stream while the
                 depth changes: a frozen colour sensor beside a live depth sensor (a real colour
                 sensor's noise never repeats a whole image bit for bit); a frame that shows another
                 fault (a black or flat colour repeats by nature) is reported with that one instead
  stuck_depth    the depth image alone repeats while the colour changes: a frozen depth sensor
                 (real depth is noisy too; a synthetic or heavily filtered depth stream of a static
                 scene could repeat: raise ``max_identical_frames`` for such a stream)

``SensorFaultDetector`` keeps the one piece of state (the previous frame's digests) for the stuck
checks; ``frame_faults`` is the stateless part, which ``Scorer.score`` / ``score_batch`` run on every
frame by default (``raise_frame_faults``: a ``SensorFaultError``), so the Python API never scores a
fault either. The stuck check needs a stream, so only the run loop (``run_capture``) and calibration's
``read_scene`` make it, each with ``stuck=is_stream(source)``.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from .preprocess import FrameError, PreprocessSpec, SensorLimits, frame_to_uint8

FAULTS = ("no_depth", "no_foreground", "black_rgb", "saturated_rgb", "flat_rgb", "colour_noise", "background_in_view",
          "stuck_frame", "stuck_rgb", "stuck_depth")
MIN_NOISE_PAIRS = 32   # fewer foreground neighbour pairs than this: too little to judge noise
MAX_NOISE_LINES = 128  # rows and columns of a large frame the colour-noise check samples
NOISY_FLAT_CORRELATION = 0.5   # flat_rgb's noisy case: the colours' largest |R/G/B correlation| below this
NOISY_FLAT_PIXEL_SHARE = 0.4   # ... and every varying channel's pixel_noise_share above this (caps: >= 0.61)


@dataclass(frozen=True)
class SensorFault:
    """One fault: ``name`` (one of FAULTS) and a message with the measured value and the limit."""

    name: str
    message: str

    def __str__(self) -> str:
        return f"sensor fault {self.name}: {self.message}"


class SensorFaultError(FrameError):
    """A frame that shows a sensor fault, not a scene (``Scorer.score``'s check): ``faults`` lists
    every SensorFault found, ``fault`` names the first (e.g. "black_rgb"); the message is the run
    loop's error line for the same frame."""

    def __init__(self, faults: list):
        self.faults = list(faults)
        self.fault = self.faults[0].name
        super().__init__("; ".join(str(f) for f in self.faults))


def neighbour_differences(rgb: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Horizontal and vertical neighbour differences (n, 3) float32 of pixel pairs inside the
    foreground (rgb (H, W, 3) uint8, fg (H, W) bool)."""
    x = rgb.astype(np.float32)     # (H, W, 3)
    diffs = [(x[:, 1:] - x[:, :-1])[fg[:, 1:] & fg[:, :-1]],   # (n_h, 3)
             (x[1:] - x[:-1])[fg[1:] & fg[:-1]]]               # (n_v, 3)
    return np.concatenate(diffs, axis=0)


def _lines(n: int) -> np.ndarray:
    """Indices i (i + 1 < n) of at most MAX_NOISE_LINES rows (or columns) spread evenly over n."""
    if n - 1 <= MAX_NOISE_LINES:
        return np.arange(n - 1)
    return np.unique(np.linspace(0, n - 2, MAX_NOISE_LINES).round().astype(np.intp))


def in_range(d: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(...) bool: depth readings the model keeps (its foreground): > 0 for 8-bit depth (0 = background),
    inside [near_mm, far_mm] for uint16 / float millimetres (as ``depth_to_8bit``)."""
    if d.dtype == np.uint8:
        return d > 0
    return (d > 0) & (d >= spec.near_mm) & (d <= spec.far_mm)


def camera_differences(rgb: np.ndarray, depth, spec: PreprocessSpec) -> np.ndarray:
    """Neighbour differences (n, 3) float32 of the colour image at the camera's own resolution, between
    horizontally and vertically adjacent pixels that both lie in the model's foreground (``in_range``:
    a background beyond far_mm, which the model masks out, never counts) (rgb (H, W, 3) uint8, depth
    (H, W) or (H, W, 1), same size). The resize to the model's resolution averages noise away
    (uniform random colour: mean |difference| 85 at 64 x 64, ~40 when resized from 128 x 128, ~13 from
    640 x 480), so the noise check looks before it. At most MAX_NOISE_LINES rows and columns, spread
    over the frame, are used (a 1280 x 720 frame costs as little as a 128 x 128 one); a frame that
    small is used whole."""
    rgb = np.asarray(rgb)
    d = np.asarray(depth)
    d = d[:, :, 0] if d.ndim == 3 else d
    h, w = d.shape
    if h - 1 <= MAX_NOISE_LINES and w - 1 <= MAX_NOISE_LINES:
        return neighbour_differences(rgb, in_range(d, spec))
    r, c = _lines(h), _lines(w)
    x0 = rgb[np.ix_(r, c)].astype(np.float32)          # (nr, nc, 3) the sampled pixels
    v0 = in_range(d[np.ix_(r, c)], spec)                # (nr, nc)
    right, down = (r, c + 1), (r + 1, c)
    diffs = [(rgb[np.ix_(*nb)] - x0)[v0 & in_range(d[np.ix_(*nb)], spec)] for nb in (right, down)]   # (n_h, 3), (n_v, 3)
    return np.concatenate(diffs, axis=0)


def channel_correlation(d: np.ndarray) -> Optional[float]:
    """Mean pairwise R/G/B correlation of neighbour differences d (n, 3); None when too few pairs
    or a channel does not vary."""
    if len(d) < MIN_NOISE_PAIRS:
        return None
    d = d - d.mean(axis=0)
    sd = np.sqrt((d * d).mean(axis=0))
    if (sd < 1e-6).any():
        return None  # a flat channel: no evidence either way
    c = (d.T @ d) / len(d) / np.outer(sd, sd)   # (3, 3) correlation matrix
    return float((c[0, 1] + c[0, 2] + c[1, 2]) / 3.0)


def foreground_colours(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """The colours (n, 3) uint8 of the camera's own pixels inside the model's foreground (``in_range``),
    rgb (H, W, 3) uint8, depth (H, W) or (H, W, 1); at most MAX_NOISE_LINES rows and columns, spread over
    the frame, are used (as ``camera_differences``), every pixel of a small frame."""
    rgb = np.asarray(rgb)
    d = np.asarray(depth)
    d = d[:, :, 0] if d.ndim == 3 else d
    h, w = d.shape
    r, c = _lines(h + 1), _lines(w + 1)                          # every row / column of a small frame
    return rgb[np.ix_(r, c)][in_range(d[np.ix_(r, c)], spec)]   # (n, 3) uint8


def colour_spread(rgb, depth, spec: PreprocessSpec) -> Optional[float]:
    """The largest per-channel standard deviation (8-bit levels) of ``foreground_colours``: 0 for one
    constant colour; None when no pixel is in the foreground. Measured before the resize, as the model
    frame mixes the object's colour with the masked-black background at its edges (a flat 640 x 480
    frame reads ~4.5 there)."""
    return largest_channel_std(foreground_colours(rgb, depth, spec))


def largest_channel_std(colours: np.ndarray) -> Optional[float]:
    """The largest per-channel standard deviation (8-bit levels) of ``colours`` (n, 3) uint8; None for none."""
    if len(colours) == 0:
        return None
    return float(colours.astype(np.float64).std(axis=0).max())


def colour_correlation(colours: np.ndarray) -> Optional[float]:
    """The largest |Pearson correlation| between two channels of ``colours`` (n, 3) (e.g.
    ``foreground_colours``), over the pairs whose channels both vary; None when no pair does (one channel
    alone varying: no evidence either way) or for fewer than 2 colours. A real object's shading moves R,
    G and B together (kinect-rgbd: >= 0.70 clean, >= 0.63 under light and colour changes); one colour plus
    independent sensor noise does not (~0: a covered lens)."""
    x = np.asarray(colours, np.float64)
    if len(x) < 2:
        return None
    x = x - x.mean(axis=0)
    sd = np.sqrt((x * x).mean(axis=0))                            # (3,)
    pairs = [abs(float((x[:, i] * x[:, j]).mean() / (sd[i] * sd[j])))
             for i, j in ((0, 1), (0, 2), (1, 2)) if sd[i] > 1e-6 and sd[j] > 1e-6]
    return max(pairs) if pairs else None


def pixel_noise_share(colours: np.ndarray, differences: np.ndarray) -> Optional[float]:
    """The smallest, over the channels that vary, of mean(d^2) / (2 var): the share of a channel's variance
    that changes from one pixel to its neighbour, with ``colours`` (n, 3) the foreground's colours
    (``foreground_colours``) and ``differences`` (m, 3) its neighbour differences (``camera_differences``).
    ~1 for independent pixel noise, ~0 for a smooth image (a shading gradient); None when no channel varies
    or there are fewer than 2 of either."""
    x, d = np.asarray(colours, np.float64), np.asarray(differences, np.float64)
    if len(x) < 2 or len(d) < 2:
        return None
    var = x.var(axis=0)                                            # (3,)
    ms = (d * d).mean(axis=0)                                      # (3,) mean squared neighbour difference
    shares = [float(ms[c] / (2 * var[c])) for c in range(3) if var[c] > 1e-6]
    return min(shares) if shares else None


EDGES = ("top", "bottom", "left", "right")
EDGE_BAND = 32    # edge_occupancy's band: 1/32 of the square's side (2 px of a 64 x 64 frame, 15 px of 480)


def edge_occupancy(depth, spec: PreprocessSpec) -> tuple:
    """(share, edge): the largest share of one edge of the square the model sees (the centre crop of the raw
    frame, as ``preprocess.frame_to_uint8`` crops it) whose pixel columns (rows for the left / right edges)
    hold foreground (``in_range``) within a band of 1/EDGE_BAND of the side from the edge, and which edge
    (one of EDGES). depth (H, W) or (H, W, 1) raw. 1.0 when something within [near_mm, far_mm] spans a whole
    edge (a table under the object, a wall behind it), 0 for an object clear of the edges. Measured on the
    depth as captured, before the model's scene shift or alignment move the frame; a band rather than the
    outermost line, so a table's missing readings (30 % of them) do not hide it."""
    d = np.asarray(depth)
    d = d[:, :, 0] if d.ndim == 3 else d
    h, w = d.shape
    side = min(h, w)
    if side == 0:
        return 0.0, EDGES[0]
    top, left = (h - side) // 2, (w - side) // 2
    sq = d[top:top + side, left:left + side]                           # (S, S) the centre crop
    k = max(1, int(round(side / EDGE_BAND)))
    shares = (in_range(sq[:k], spec).any(axis=0).mean(), in_range(sq[-k:], spec).any(axis=0).mean(),
              in_range(sq[:, :k], spec).any(axis=1).mean(), in_range(sq[:, -k:], spec).any(axis=1).mean())
    i = int(np.argmax(shares))
    return float(shares[i]), EDGES[i]


def limits_for_training_frames(frames_u8: np.ndarray, spec: PreprocessSpec) -> tuple:
    """(spec, note): the preprocessing a model trained on ``frames_u8`` (N, R, R, 4) uint8 should carry. When any
    training frame shows foreground across a frame edge beyond ``spec.sensor_faults.max_edge_foreground``
    (``edge_occupancy``: a table or wall in view in the user's own data), background_in_view would refuse the very
    frames the model learnt, so the returned spec turns it off (max_edge_foreground 1.0) and ``note`` says why, naming
    the count and the largest share; otherwise ``spec`` unchanged and note None."""
    lim = spec.sensor_faults
    if lim.max_edge_foreground >= 1.0 or len(frames_u8) == 0:
        return spec, None
    shares = np.array([edge_occupancy(f[..., 3], spec)[0] for f in frames_u8])      # (N,)
    over = int((shares > lim.max_edge_foreground).sum())
    if over == 0:
        return spec, None
    note = (f"{over} of {len(shares)} training frames show foreground across a frame edge (largest share "
            f"{100 * shares.max():.0f}%, the background_in_view limit {100 * lim.max_edge_foreground:.0f}%): a table or "
            "background in view is part of this model's normal frames, so background_in_view is off for it "
            "(sensor_faults.max_edge_foreground 1.0)")
    return replace(spec, sensor_faults=replace(lim, max_edge_foreground=1.0)), note


def frame_faults(rgb, depth, spec: PreprocessSpec, *, captured: Optional[np.ndarray] = None) -> list:
    """The stateless faults of one raw frame (a list of SensorFault, empty for a good frame).
    ``captured``: the frame as captured at model resolution, (R, R, 4) uint8, the second array of
    ``preprocess.frame_to_uint8_pair`` when the caller already made it (the scorer and the run loop make
    it with the model's frame from one depth conversion); else it is converted here. Raises FrameError for
    frames that cannot be read at all (shape, dtype, NaN). The checks see the depth as captured: a spec's
    ``depth_fill`` and ``depth_close`` (which close dropouts for scoring) are not applied here, so a
    filled-in frame cannot hide a fault."""
    lim: SensorLimits = spec.sensor_faults
    if not lim.enabled:
        return []
    if spec.depth_fill or spec.depth_close:                       # the frame as captured, not filled
        spec = replace(spec, depth_fill=0, depth_close=0)
    x = captured if captured is not None else frame_to_uint8(rgb, depth, spec)   # (R, R, 4) uint8, background masked
    raw = np.asarray(depth)
    valid = float((raw > 0).mean()) if raw.size else 0.0
    if valid < lim.min_valid_depth:
        return [SensorFault("no_depth", f"{100 * valid:.2f}% of the pixels have a depth reading "
                                        f"(limit {100 * lim.min_valid_depth:.2f}%)")]
    fg = x[:, :, 3] > 0                        # (R, R) inside [near_mm, far_mm]
    share = float(fg.mean())
    if share < lim.min_foreground:
        return [SensorFault("no_foreground", f"{100 * share:.2f}% of the pixels lie within "
                                             f"{spec.near_mm:g}-{spec.far_mm:g} mm "
                                             f"(limit {100 * lim.min_foreground:.2f}%)")]
    out = []
    rgb_fg = x[:, :, :3][fg]                   # (n_fg, 3)
    black = float((rgb_fg.max(axis=1) <= lim.black_level).mean())
    if black > lim.max_black:
        out.append(SensorFault("black_rgb", f"{100 * black:.1f}% of the foreground is black "
                                            f"(limit {100 * lim.max_black:.1f}%)"))
    sat = float((rgb_fg.min(axis=1) >= lim.saturated_level).mean())
    if sat > lim.max_saturated:
        out.append(SensorFault("saturated_rgb", f"{100 * sat:.1f}% of the foreground is saturated "
                                                f"(limit {100 * lim.max_saturated:.1f}%)"))
    if not out and (lim.min_colour_spread > 0 or lim.featureless_spread > 0 or lim.noisy_flat_spread > 0):
        colours = foreground_colours(rgb, depth, spec)            # (n, 3) uint8, the camera's own pixels
        spread = largest_channel_std(colours)                     # None: no pixel in the foreground
        mean = np.round(rgb_fg.mean(axis=0)).astype(int).tolist()
        if spread is not None and spread < lim.min_colour_spread:
            out.append(SensorFault("flat_rgb", f"the foreground is one flat colour (largest per-channel "
                                               f"std {spread:.2f} levels, limit {lim.min_colour_spread:g}; "
                                               f"mean colour {mean}): "
                                               "colour sensor frozen, covered or decoding nothing"))
        elif spread is not None and spread < lim.featureless_spread:      # a covered / fogged lens, whatever the noise
            out.append(SensorFault("flat_rgb", f"the foreground is featureless (largest per-channel std {spread:.2f} "
                                               f"levels, limit {lim.featureless_spread:g}; mean colour {mean}): "
                                               "colour sensor covered or fogged"))
        elif spread is not None and spread < lim.noisy_flat_spread:
            corr = colour_correlation(colours)
            share = pixel_noise_share(colours, camera_differences(rgb, depth, spec))
            noisy = (corr is not None and corr < NOISY_FLAT_CORRELATION           # R, G, B vary independently
                     and share is not None and share > NOISY_FLAT_PIXEL_SHARE)     # ... and from pixel to pixel
            if noisy:
                out.append(SensorFault("flat_rgb", f"the foreground is one colour plus independent noise (largest "
                                                   f"per-channel std {spread:.2f} levels, limit "
                                                   f"{lim.noisy_flat_spread:g}; R/G/B correlation {corr:.2f} < "
                                                   f"{NOISY_FLAT_CORRELATION:g}, pixel noise share {share:.2f} > "
                                                   f"{NOISY_FLAT_PIXEL_SHARE:g}; mean colour {mean}): colour sensor "
                                                   "covered or fogged"))
    if not out:
        if lim.noise_measured_on == "model":   # limits stored before noise_measured_on: the old measurement
            d = neighbour_differences(x[:, :, :3], fg)   # (n, 3) on the model frame
        else:
            d = camera_differences(rgb, depth, spec)    # (n, 3) at the camera's resolution
        level = float(np.abs(d).mean()) if len(d) else 0.0
        corr = channel_correlation(d) if level > lim.noise_level else None
        if corr is not None and corr < lim.min_channel_correlation:
            out.append(SensorFault("colour_noise", f"colour channels vary independently (neighbour-"
                                                   f"difference correlation {corr:.2f}, limit "
                                                   f"{lim.min_channel_correlation:.2f}; mean difference "
                                                   f"{level:.1f} > {lim.noise_level:g}): random noise"))
    if lim.max_edge_foreground < 1.0:
        edge, which = edge_occupancy(raw, spec)
        if edge > lim.max_edge_foreground:
            out.append(SensorFault("background_in_view", f"{100 * edge:.0f}% of the frame's {which} edge is "
                                   f"foreground (limit {100 * lim.max_edge_foreground:.0f}%): is a table or background "
                                   f"within far_mm {spec.far_mm:g} mm in view? The model scores an object alone: "
                                   "remove it (depth 0) or place the camera so that it lies beyond far_mm (a model "
                                   "trained with it in view: sensor_faults.max_edge_foreground 1 turns this off)"))
    return out


def raise_frame_faults(rgb, depth, spec: PreprocessSpec, *, captured: Optional[np.ndarray] = None) -> None:
    """Raise SensorFaultError when ``frame_faults`` finds any (FrameError when the frame cannot be
    read at all); return None for a good frame. ``captured``: as ``frame_faults``."""
    faults = frame_faults(rgb, depth, spec, captured=captured)
    if faults:
        raise SensorFaultError(faults)


def image_digest(a) -> str:
    """A digest of one raw image's pixels: its shape, dtype and a CRC-32 of its bytes. The stuck
    checks only ask "same bytes as the previous frame?" of a camera, not an adversary: CRC-32 runs at
    ~4 GB/s (1.6 ms for a 1280 x 720 RGB + uint16 depth frame; blake2b took 7.5 ms, as long as the
    k = 0 search)."""
    a = np.ascontiguousarray(a)
    return f"{a.shape}{a.dtype}:{zlib.crc32(memoryview(a).cast('B')):08x}"


def frame_digest(rgb, depth) -> bytes:
    """A digest of a raw frame's pixels (``image_digest`` of each image); two different frames agree
    on both CRCs with probability ~2^-64."""
    return "|".join(image_digest(a) for a in (rgb, depth)).encode()


class SensorFaultDetector:
    """Checks each frame of a source in order: ``check(rgb, depth)`` -> list of SensorFault.
    ``stuck``: also the stuck checks (True for a stream: ``sources.is_stream(source)``; a folder's
    identical files are independent frames): the whole frame repeated (stuck_frame), or only its
    colour (stuck_rgb) or only its depth (stuck_depth), each more than ``max_identical_frames``
    times in a row."""

    def __init__(self, spec: PreprocessSpec, stuck: bool = True):
        self.spec = spec
        self.stuck = bool(stuck)
        self._last = (None, None)       # the previous frame's (colour, depth) image_digest
        self._repeats = [0, 0]          # identical consecutive colour / depth images so far (1 = new)

    def check(self, rgb, depth, *, captured: Optional[np.ndarray] = None) -> list:
        """Faults of the next frame of the stream (``captured``: the frame as captured at model resolution,
        (R, R, 4) uint8, ``frame_to_uint8_pair``'s second array, if already made: ``frame_faults``)."""
        lim = self.spec.sensor_faults
        if not lim.enabled:
            return []
        out = []
        if self.stuck and rgb is not None and depth is not None:
            digests = (image_digest(rgb), image_digest(depth))
            self._repeats = [n + 1 if d == last else 1
                             for n, d, last in zip(self._repeats, digests, self._last)]
            self._last = digests
            stuck_rgb, stuck_depth = (n > lim.max_identical_frames for n in self._repeats)
            if stuck_rgb and stuck_depth:
                n = min(self._repeats)
                out.append(SensorFault("stuck_frame", f"identical to the previous frame "
                                                      f"({n} identical in a row, limit "
                                                      f"{lim.max_identical_frames})"))
            elif stuck_rgb or stuck_depth:
                faults = frame_faults(rgb, depth, self.spec, captured=captured)
                if faults:   # a black / flat colour or a missing depth repeats by nature: that fault says more
                    return faults
                which, other, n = (("colour", "depth", self._repeats[0]) if stuck_rgb
                                   else ("depth", "colour", self._repeats[1]))
                return [SensorFault("stuck_rgb" if stuck_rgb else "stuck_depth",
                                    f"the {which} image is identical to the previous frame's while "
                                    f"the {other} changes ({n} identical in a row, limit "
                                    f"{lim.max_identical_frames}): the {which} sensor is frozen")]
        return out + frame_faults(rgb, depth, self.spec, captured=captured)
