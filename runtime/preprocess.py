"""The one preprocessing definition: raw RGB-D frames -> the model's 4-channel input.

Shared by training (models/), export (the manifest stores the spec) and the runtime/cameras.
NumPy + Pillow only, so it runs in the torch-free runtime.

Contract (all fields live in a ``PreprocessSpec`` and in ``manifest.json["preprocess"]``):
  rgb    H x W x 3 uint8
  depth  H x W uint8 (already 8-bit, as in kinect-rgbd: larger = farther, 0 = background)
         or H x W uint16 / float millimetres (0 = no reading). Millimetres are mapped to 8 bits as
         255 * (d - near_mm) / (far_mm - near_mm); readings outside [near_mm, far_mm] are background.
         Depth in metres is refused (FrameError, ``check_depth_unit``): float readings all <= 20.
         uint16 / float readings all within 1..255 are millimetres (a close-range scene), never
         refused; the folder source warns when 16-bit PNGs look like 8-bit levels (``sources/folder.py``).
  Background pixels (depth 0 after mapping) are black in RGB when ``mask_rgb_background``,
  as the capture of kinect-rgbd did.
  Centre-crop to a square, resize to ``resolution`` (area for downscale), then
  (v / 255 - 0.5) / 0.5 per channel -> float32 array (4, resolution, resolution) in [-1, 1].
  ``colour_norm`` (issue 12; default "none" = the above, as every older export): before the scaling,
  the foreground's RGB (depth > 0) is multiplied by a gain so that its mean colour equals
  ``colour_reference`` (0..1; the train frames' mean foreground colour): "gray" one gain for the three
  channels (brightness), "rgb" one per channel (brightness and white balance); gains clipped to
  [1/3, 3], values to [0, 1]. It makes the input invariant to global light and colour casts.
  ``colour_gain`` (default 1, 1, 1): the foreground's RGB times these per-channel gains first (clipped to
  [0, 1]); ``edge-ad calibrate`` sets it from a scene's frames (colour_reference / the scene's mean
  foreground colour), so one scene-wide light change is undone while frames keep their own colours.
  ``align`` (issue 12; default "none"): "centroid" shifts the resized frame by whole pixels so that the
  foreground's centroid sits at ``align_centre`` (y, x as shares of the side; the train frames' mean
  centroid), vacated pixels background, which makes the input invariant to small camera shifts.
  "component" (audit 34 #2) does the same with the centroid of the largest 4-connected foreground component
  (``largest_component``) instead of all readings: anything else within far_mm that does not touch the
  object (a cable or gripper finger at the frame edge) stays in the frame but no longer moves the object.
  ``scene_shift`` (default 0, 0): the resized frame moved by (dy, dx) whole pixels (vacated pixels
  background), before ``align``; ``edge-ad calibrate`` sets it to undo a scene's camera shift (the shift
  under which the model fits the scene's normal frames best).
  ``depth_fill`` (issue 12; default 0, off): K = 3, 5 or 7 fills depth dropouts first (``fill_depth_holes``:
  a missing reading whose K x K window is at least half valid gets the window's median), at the camera's
  resolution, before the RGB is masked, so that a sensor losing readings inside the object does not punch
  black holes into the frame the model sees.
  ``depth_close`` (issue 12; default 0, off): K = 3 or 5 closes notches of the silhouette next
  (``close_depth_notches``: a missing reading inside the morphological closing of the valid readings by a
  K x K square gets the median of the valid readings in its window), after ``depth_fill`` and before the RGB
  is masked, so that readings lost ON the object's edge (depth sensors lose them there) no longer leave the
  object notched and thinner; straight edges, convex corners and background stay.

Sensor-fault limits (``SensorLimits``, ``manifest.json["preprocess"]["sensor_faults"]``; manifests
without them get the defaults) say when a frame is a sensor fault rather than a scene to score:
no valid depth, no foreground, black, saturated or flat (one constant colour) colour, random colour
noise, a table or background within far_mm in view (foreground across most of a frame edge), a stuck camera.
The checks themselves are in ``sensor_faults.py``.
"""
from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import numpy as np
from PIL import Image

CHANNELS = ("R", "G", "B", "D")
COLOUR_NORMS = ("none", "gray", "rgb")
COLOUR_GAIN_LIMITS = (1 / 3, 3.0)
ALIGNS = ("none", "centroid", "component")
DEPTH_FILL_WINDOWS = (0, 3, 5, 7)                   # PreprocessSpec.depth_fill: off, or the window of fill_depth_holes
DEPTH_CLOSE_WINDOWS = (0, 3, 5)                     # PreprocessSpec.depth_close: off, or the square of close_depth_notches
MAX_SCENE_SHIFT = 8          # model pixels: scene_shift beyond this is not a camera that moved a little


class FrameError(ValueError):
    """A frame that cannot be scored (wrong shape/dtype, NaN, missing depth, ...)."""


# Frames larger than this many pixels are refused before they are decoded or preprocessed
# (``edge-ad run --max-frame-pixels``): 16.8 MP covers every RGB-D camera's colour stream (Azure
# Kinect 4096 x 3072 = 12.6 MP) while a 13000 x 13000 PNG (2 MB on disk, 6 GB decoded) is refused.
DEFAULT_MAX_PIXELS = 1 << 24


def open_image(fp, max_pixels, what: str = "image") -> Image.Image:
    """``PIL.Image.open`` (reads the header only) with the frame-size limit checked before anything
    is decoded. Raises FrameError for an image over ``max_pixels`` (also one PIL itself refuses as a
    decompression bomb); other PIL errors propagate."""
    try:
        im = Image.open(fp)
    except Image.DecompressionBombError as e:
        raise FrameError(f"{what} exceeds the frame-size limit of {int(max_pixels or 0):,} pixels "
                         f"({e})") from None
    try:
        check_pixels(im.size[0], im.size[1], max_pixels, what)
    except FrameError:
        im.close()
        raise
    return im


def check_pixels(width: int, height: int, max_pixels, what: str = "image") -> None:
    """Raise FrameError when a ``width`` x ``height`` image exceeds ``max_pixels`` (None: no limit)."""
    if max_pixels is not None and int(width) * int(height) > int(max_pixels):
        raise FrameError(f"{what} of {int(width)}x{int(height)} = {int(width) * int(height):,} pixels "
                         f"exceeds the frame-size limit of {int(max_pixels):,} pixels "
                         "(edge-ad run --max-frame-pixels)")


def colour_image_to_rgb(im: Image.Image, what: str = "RGB image") -> np.ndarray:
    """A decoded colour image -> H x W x 3 uint8 RGB; FrameError naming ``what`` and the mode for an
    image a colour camera does not send. The models take colour, so a greyscale image (modes 1, L, LA,
    I, I;16, F: ``ImageMode`` base mode L) is refused rather than expanded to grey RGB. An image with
    transparency (an alpha channel: RGBA, LA, PA; a transparent colour key, PNG tRNS: a palette or RGB
    image with ``info["transparency"]``) is read only when every pixel is opaque (alpha 255: what PNG
    writers store for a colour photo); a transparent pixel has no colour to score, so such an image is
    refused, naming how many pixels are transparent (``opaque_rgb``; the ROS rgba8 / bgra8 images too).
    Palette (P), CMYK, YCbCr and other colour modes are converted to RGB."""
    from PIL import ImageMode
    mode = im.mode
    if ImageMode.getmode(mode).basemode == "L":
        raise FrameError(f"{what} has mode {mode} (greyscale): a colour image (RGB) is needed, the models "
                         "were trained on colour; save the camera's colour frames")
    if mode in ("RGBA", "RGBa", "PA") or "transparency" in im.info:   # (LA, La: refused above)
        key = " and a transparent colour key" if "transparency" in im.info else ""
        return opaque_rgb(np.asarray(im.convert("RGBA")), what, f"mode {mode}{key}")
    return np.asarray(im if mode == "RGB" else im.convert("RGB"))


def opaque_rgb(rgba: np.ndarray, what: str, kind: str) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> its (H, W, 3) RGB when every pixel is opaque (alpha 255); else FrameError
    naming ``what``, ``kind`` (its mode or encoding) and how many pixels are (partly) transparent."""
    seen = int((rgba[:, :, 3] < 255).sum())
    if seen:
        raise FrameError(f"{what} has {kind} with {seen} of {rgba.shape[0] * rgba.shape[1]} pixels "
                         "(partly) transparent (alpha < 255): a transparent pixel has no colour to score; "
                         "save or send it without alpha (RGB)")
    return np.ascontiguousarray(rgba[:, :, :3])


NOISE_MEASURED_ON = ("camera", "model")   # SensorLimits.noise_measured_on


@dataclass(frozen=True)
class SensorLimits:
    """When a frame is reported as a sensor fault instead of scored (``sensor_faults.py``).

    A fault means a broken sensor (dead, covered, blinded, sending random noise), never a brighter or
    darker room, a noisy sensor or a small object. Fractions are of the model-resolution frame
    (``frame_to_uint8``); colour ones are of its foreground pixels. Measured on the 1200 real
    kinect-rgbd frames, clean and under nuisances well beyond issue 12's (brightness x0.5..x1.5,
    offset -60..+60 levels, gamma 0.6..1.6, contrast 0.6..1.5, white balance +-30 %, RGB noise sigma
    15..30, blur 1-2 px, JPEG q20, depth noise 30 mm, depth holes 30 %, shift 4 px, scale 0.8..1.2,
    rotate 10 deg, and combinations; ``scripts/sensor_limits_probe.py``), the extremes are:
    valid depth / foreground >= 1.37 % of pixels clean, 0.85 % (scale 0.8), 0.93 % (holes 30 %),
    0.51 % (both); black (max channel <= 16) <= 83.3 % of the foreground (offset -60); saturated
    (min channel >= 250) <= 98.3 % (brightness x1.5; offset +60: 93.7 %); mean |neighbour
    difference| <= 51.3 of 255 among frames whose R/G/B neighbour differences are uncorrelated
    (RGB noise sigma 30; clean frames' correlation >= 0.79; judged at the camera's resolution, where
    sigma 30 gives <= 40 on the frames upsampled to 128 x 128 .. 1280 x 720, uniform noise >= 82);
    foreground colour spread (largest per-channel std) >= 14.75 clean, 7.37 (brightness x0.5,
    contrast x0.5). The faults: all-black or covered colour
    (>= 96 % black), blinded (>= 99 % saturated), uniform random noise (mean difference 73.5..101,
    correlation |c| <= 0.25), one flat colour (spread 0), no depth (0 or a few readings). None of the nuisances fires with the
    defaults below; every one of those faults does. Caveat: the camera-resolution noise margins (60
    vs <= 51.3) come from kinect-rgbd's 64 x 64 frames upsampled bilinearly, smoother than a real
    camera's; fine real textures at full resolution (fabric, foliage) have not been measured.
    """

    enabled: bool = True
    min_valid_depth: float = 0.0025     # fraction of pixels with any depth reading (~10 of 64 x 64)
    min_foreground: float = 0.0025      # fraction of pixels inside [near_mm, far_mm]
    black_level: int = 16               # a foreground pixel whose brightest channel is <= this is black
    max_black: float = 0.95             # fraction of black foreground pixels (dark scenes: <= 0.84)
    saturated_level: int = 250          # a foreground pixel whose darkest channel is >= this is saturated
    max_saturated: float = 0.99         # fraction of saturated foreground pixels (bright scenes: <= 0.984)
    min_channel_correlation: float = 0.5  # mean R/G/B correlation of neighbour differences (noise: ~0)
    noise_level: float = 60.0           # ... judged only where the mean |neighbour difference| exceeds this
                                        # (sensor noise sigma 30: <= 51.3; uniform random colour: >= 73.5)
    max_identical_frames: int = 1       # identical consecutive frames allowed before "stuck" (1: none repeated)
    min_colour_spread: float = 2.0      # flat_rgb below this: the foreground's largest per-channel colour std
                                        # on the camera's pixels (8-bit levels; one constant colour: 0; real
                                        # frames >= 14.7 clean, >= 7.37 under brightness x0.5 or contrast x0.5;
                                        # synth:// >= 11.2; 0 turns the check off). Stored limits without it
                                        # (written before it) get this default
    noisy_flat_spread: float = 12.0     # flat_rgb too below this spread when the foreground's R, G, B vary
                                        # independently (largest |correlation| of two channels' colours below
                                        # sensor_faults.NOISY_FLAT_CORRELATION 0.5): one colour plus sensor
                                        # noise, a covered or fogged lens (audit 32 #1; caps sigma 2-8: spread
                                        # <= 10.2, correlation <= 0.39; real frames with a correlation below 0.5:
                                        # spread >= 18.9). 0 turns it off; stored limits without it get this
    featureless_spread: float = 6.0     # flat_rgb below this spread whatever the R/G/B correlation: one colour plus
                                        # noise correlated across channels (luminance, YUYV 4:2:2) or a little
                                        # vignetting (audit 32 #4: such caps <= 4.7; real frames >= 7.37 under
                                        # contrast or brightness x0.5, >= 11.06 under x0.75). 0 turns it off;
                                        # stored limits without it get this
    max_edge_foreground: float = 0.7    # background_in_view above this: the largest share of one edge of the
                                        # square the model sees with foreground within 1/32 of the side from it
                                        # (sensor_faults.edge_occupancy): a table or background within far_mm
                                        # (audit 33 #18; tables over 20-60 % of the frame, 30 % of their readings
                                        # missing or 3/4 of the width: >= 0.75, a wall: 1.0; the 1200 real
                                        # frames, the objects alone: <= 0.375 clean, <= 0.59 under zoom x1.2,
                                        # scripts/background_probe.py). 1.0 turns it off (a model trained on
                                        # frames that show the table); stored limits without it get this
    noise_measured_on: str = "camera"   # where noise_level is measured (NOISE_MEASURED_ON): "camera" = the
                                        # camera's own pixels; "model" = the 64 x 64 model frame, as every
                                        # stored limits dict without this field (written before it) meant

    @classmethod
    def from_dict(cls, d: dict) -> "SensorLimits":
        """Limits from a stored dict (checkpoint or manifest). A dict without ``noise_measured_on`` was
        written when noise was measured on the model frame: it reads as "model", so its noise_level
        (e.g. the old 16) keeps its meaning."""
        if not isinstance(d, dict):
            raise ValueError(f"preprocess.sensor_faults must be an object, got {type(d).__name__}")
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown sensor_faults fields {sorted(unknown)}; "
                             f"this edge-ad understands {sorted(cls.__dataclass_fields__)}")
        lim = cls(**{"noise_measured_on": "model", **d})
        if lim.noise_measured_on not in NOISE_MEASURED_ON:
            raise ValueError(f"sensor_faults.noise_measured_on must be one of {NOISE_MEASURED_ON}, "
                             f"got {lim.noise_measured_on!r}")
        for name in ("min_valid_depth", "min_foreground", "max_black", "max_saturated", "max_edge_foreground"):
            v = getattr(lim, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"sensor_faults.{name} must be a fraction in [0, 1], got {v!r}")
        for name in ("black_level", "saturated_level"):
            v = getattr(lim, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 255:
                raise ValueError(f"sensor_faults.{name} must be an integer 0..255, got {v!r}")
        v = lim.min_channel_correlation
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not -1.0 <= v <= 1.0:
            raise ValueError(f"sensor_faults.min_channel_correlation must be in [-1, 1], got {v!r}")
        v = lim.noise_level
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 255.0:
            raise ValueError(f"sensor_faults.noise_level must be in [0, 255], got {v!r}")
        for name in ("min_colour_spread", "noisy_flat_spread", "featureless_spread"):
            v = getattr(lim, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 255.0:
                raise ValueError(f"sensor_faults.{name} must be in [0, 255], got {v!r}")
        v = lim.max_identical_frames
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"sensor_faults.max_identical_frames must be an integer >= 1, got {v!r}")
        if not isinstance(lim.enabled, bool):
            raise ValueError(f"sensor_faults.enabled must be true or false, got {lim.enabled!r}")
        return lim


@dataclass(frozen=True)
class PreprocessSpec:
    """Input contract of a model: stored in checkpoints and manifests, never guessed."""

    resolution: int = 64
    mean: float = 0.5
    std: float = 0.5
    # kinect-rgbd's 8-bit depth is consistent with millimetres * 255 / 700 (0..700 mm).
    near_mm: float = 0.0
    far_mm: float = 700.0
    mask_rgb_background: bool = True
    channels: tuple = field(default=CHANNELS)
    sensor_faults: SensorLimits = field(default_factory=SensorLimits)
    colour_norm: str = "none"                        # "none" | "gray" | "rgb" (module docstring)
    align: str = "none"                              # "none" | "centroid" | "component" (module docstring)
    align_centre: tuple = (0.5, 0.5)                 # where the align step puts the centroid (y, x), share of R
    colour_reference: Optional[tuple] = None         # the train frames' mean foreground RGB, 0..1 (None: unknown)
    colour_gain: tuple = (1.0, 1.0, 1.0)             # the scene's light: foreground RGB * gain (edge-ad calibrate)
    scene_shift: tuple = (0, 0)                      # the scene's camera shift undone (dy, dx) model px (edge-ad calibrate)
    depth_fill: int = 0                              # K (odd, 3..7): fill depth dropouts inside the object (fill_depth_holes); 0 off
    depth_close: int = 0                             # K (3, 5): close notches of the silhouette (close_depth_notches); 0 off

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["colour_reference"] = None if self.colour_reference is None else [float(v) for v in self.colour_reference]
        d["colour_gain"] = [float(v) for v in self.colour_gain]
        d["align_centre"] = [float(v) for v in self.align_centre]
        d["scene_shift"] = [int(v) for v in self.scene_shift]
        if not self.depth_fill:
            # off: left out, as before the field existed (config_sha256 and so a results file's resume, and
            # older edge-ads reading the manifest, stay as they were for every model that does not fill)
            del d["depth_fill"]
        if not self.depth_close:
            del d["depth_close"]                                     # off: left out, as depth_fill
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown preprocessing fields {sorted(unknown)}; "
                             f"this edge-ad understands {sorted(cls.__dataclass_fields__)}")
        for k in ("channels", "colour_reference", "align_centre", "colour_gain", "scene_shift"):
            if known.get(k) is not None:
                known[k] = tuple(known[k])
        if "sensor_faults" in known:
            known["sensor_faults"] = SensorLimits.from_dict(known["sensor_faults"])
        spec = cls(**known)
        if spec.align not in ALIGNS or len(spec.align_centre) != 2 or not all(0 <= float(v) < 1 for v in spec.align_centre):
            raise ValueError(f"align must be one of {ALIGNS} and align_centre two shares in [0, 1), got "
                             f"{spec.align!r}, {spec.align_centre}")
        ref = spec.colour_reference
        if spec.colour_norm not in COLOUR_NORMS or (ref is None and spec.colour_norm != "none") \
                or (ref is not None and (len(ref) != 3 or not all(0 < float(v) <= 1 for v in ref))):
            raise ValueError(f"colour_norm must be one of {COLOUR_NORMS}, with colour_reference three values in "
                             f"(0, 1] (required unless colour_norm is 'none'), got {spec.colour_norm!r}, {ref}")
        if len(spec.colour_gain) != 3 or not all(0 < float(v) <= 10 for v in spec.colour_gain):
            raise ValueError(f"colour_gain must be three values in (0, 10], got {spec.colour_gain}")
        if len(spec.scene_shift) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                 and abs(v) <= MAX_SCENE_SHIFT for v in spec.scene_shift):
            raise ValueError(f"scene_shift must be two whole numbers of model pixels within +-{MAX_SCENE_SHIFT}, "
                             f"got {spec.scene_shift}")
        if spec.channels != CHANNELS:
            raise ValueError(f"unsupported channel order {spec.channels}, expected {CHANNELS}")
        if isinstance(spec.depth_fill, bool) or not isinstance(spec.depth_fill, (int, np.integer)) \
                or spec.depth_fill not in DEPTH_FILL_WINDOWS:
            raise ValueError(f"depth_fill must be one of {DEPTH_FILL_WINDOWS} (0: off; else the odd window K of "
                             f"fill_depth_holes), got {spec.depth_fill!r}")
        if isinstance(spec.depth_close, bool) or not isinstance(spec.depth_close, (int, np.integer)) \
                or spec.depth_close not in DEPTH_CLOSE_WINDOWS:
            raise ValueError(f"depth_close must be one of {DEPTH_CLOSE_WINDOWS} (0: off; else the square K of "
                             f"close_depth_notches), got {spec.depth_close!r}")
        if not spec.far_mm > spec.near_mm >= 0:
            raise ValueError(f"need 0 <= near_mm < far_mm, got {spec.near_mm}, {spec.far_mm}")
        if not (np.isfinite(spec.mean) and 0 < spec.std < np.inf):        # (v - mean) / std
            raise ValueError(f"need a finite mean and a finite std > 0, got {spec.mean}, {spec.std}")
        return spec


# The fields added as scoring levers on top of a model's input contract (issue 12): set on a trained
# generator by make_release.py --preprocess and by edge-ad calibrate, never seen by the GAN's training.
LEVER_FIELDS = ("colour_norm", "colour_reference", "colour_gain", "align", "align_centre", "scene_shift", "depth_fill",
                "depth_close")


def plain_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """``spec`` without its scoring levers (LEVER_FIELDS back to their defaults: no colour normalisation,
    no alignment, no scene light gain or camera shift), keeping its input contract (resolution, scaling,
    depth range, masking, channels, sensor-fault limits): the preprocessing the shipped generators were
    trained with, which the reference configuration scores with (``edge-ad eval/export --scoring
    reference``) and the nearest-neighbour baseline compares on."""
    default = PreprocessSpec()
    return replace(spec, **{f: getattr(default, f) for f in LEVER_FIELDS})


def levers_text(spec) -> str:
    """The scoring levers ``spec`` adds to plain preprocessing, as a short text (e.g. 'colour_norm rgb +
    align centroid'); '' when it preprocesses as plain (a colour_reference without colour_norm, or an
    align_centre without align, changes nothing: the shipped rectangle)."""
    plain = plain_spec(spec)
    parts = []
    if spec.colour_norm != plain.colour_norm:
        parts.append(f"colour_norm {spec.colour_norm}")
    if spec.align != plain.align:
        parts.append(f"align {spec.align}")
    if tuple(spec.colour_gain) != tuple(plain.colour_gain):
        parts.append("colour_gain " + ",".join(f"{float(g):g}" for g in spec.colour_gain))
    if tuple(spec.scene_shift) != tuple(plain.scene_shift):
        parts.append("scene_shift " + ",".join(str(int(v)) for v in spec.scene_shift))
    if spec.depth_fill != plain.depth_fill:
        parts.append(f"depth_fill {int(spec.depth_fill)}")
    if spec.depth_close != plain.depth_close:
        parts.append(f"depth_close {int(spec.depth_close)}")
    return " + ".join(parts)


def image_array(a, what: str, wants: str) -> np.ndarray:
    """``a`` as a NumPy array, or FrameError naming what it is instead when it is no image array at all (a file
    path, a dict, a number, nested lists of unequal lengths: what ``np.asarray`` makes a 0-d or object array of,
    or refuses); ``what``: "RGB" / "depth", ``wants``: its form, e.g. "an H x W x 3 uint8 array"."""
    try:
        arr = np.asarray(a)
    except ValueError:       # nested sequences of unequal lengths
        arr = None
    if arr is not None and arr.ndim > 0 and arr.dtype != object:
        return arr
    if isinstance(a, (str, bytes, os.PathLike)):
        raise FrameError(f"{what} must be {wants}, got the {type(a).__name__} {str(a)[:200]!r}: a file path? read the "
                         "image first, e.g. np.asarray(PIL.Image.open(path))")
    raise FrameError(f"{what} must be {wants}, got a value of type {type(a).__name__}")


def _check_rgb(rgb) -> np.ndarray:
    if rgb is None:
        raise FrameError("missing RGB image")
    rgb = image_array(rgb, "RGB", "an H x W x 3 uint8 array")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise FrameError(f"RGB must be H x W x 3, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise FrameError(f"RGB must be uint8, got {rgb.dtype}")
    if rgb.shape[0] < 8 or rgb.shape[1] < 8:
        raise FrameError(f"RGB image too small: {rgb.shape[:2]}")
    return rgb


METRES_MAX = 20.0     # float readings that all lie at or below this many "mm" are metres (module docstring)


def check_depth_unit(d: np.ndarray, dtype, spec: PreprocessSpec) -> None:
    """Raise FrameError for float depth d (H x W float64 of a float frame) in metres: readings all
    <= METRES_MAX (20); a millimetre frame would put the whole scene within 2 cm of the camera, closer
    than any RGB-D camera measures (unless the model's own range ends there: far_mm <= 20).
    Small uint16 / float readings (all within 1..255) are millimetres: a close-range camera or an
    object lifted towards it, accepted. A frame with too few readings to judge (fewer than
    ``sensor_faults.min_valid_depth`` of the pixels: the ``no_depth`` fault reports it) is accepted."""
    if not np.issubdtype(dtype, np.floating):
        return
    valid = d > 0
    n = int(np.count_nonzero(valid))
    if n == 0 or n < spec.sensor_faults.min_valid_depth * d.size:
        return
    top = float(d.max())              # the farthest reading (readings are > 0, the rest <= 0)
    if top <= METRES_MAX < spec.far_mm:
        raise FrameError(f"float depth with max {top:.3g} looks like metres; expected millimetres "
                         f"(this model reads {spec.near_mm:g}-{spec.far_mm:g} mm): multiply by 1000")


def depth_to_8bit(depth, spec: PreprocessSpec) -> np.ndarray:
    """Depth (H x W uint8, or uint16/float millimetres) -> H x W uint8, 0 = background."""
    if depth is None:
        raise FrameError("missing depth image")
    depth = image_array(depth, "depth", "an H x W array (uint8, or uint16 / float millimetres)")
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[:, :, 0]
    if depth.ndim != 2:
        raise FrameError(f"depth must be H x W, got shape {depth.shape}")
    if depth.dtype == np.uint8:
        return depth
    if depth.dtype == np.uint16:     # every reading looked up: the float path's result, without its per-pixel maths
        return _uint16_table(float(spec.near_mm), float(spec.far_mm))[depth]
    if np.issubdtype(depth.dtype, np.floating):
        d = depth.astype(np.float64)
        bad = int((~np.isfinite(d)).sum())
        if bad:   # refused, not guessed; the message names the fix (audit 32 #7: cv_bridge's 32FC1 marks NaN)
            raise FrameError(f"depth contains NaN or infinite values ({bad} of {d.size} pixels): set missing readings "
                             "to 0 (no reading) first; ROS 32FC1 / cv_bridge mark them NaN")
        check_depth_unit(d, depth.dtype, spec)
        return _mm_to_8bit(d, spec.near_mm, spec.far_mm)
    raise FrameError(f"depth must be uint8, uint16 (mm) or float (mm), got {depth.dtype}")


def _mm_to_8bit(d: np.ndarray, near_mm: float, far_mm: float) -> np.ndarray:
    """Millimetres d (float64, any shape) -> uint8 of the same shape: [near_mm, far_mm] scaled to 1..255, every
    other reading (0 = none, out of range) 0 = background (a valid reading never maps to 0)."""
    valid = (d > 0) & (d >= near_mm) & (d <= far_mm)
    scaled = 255.0 * (d - near_mm) / (far_mm - near_mm)
    return np.where(valid, np.clip(np.rint(scaled), 1, 255), 0).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _uint16_table(near_mm: float, far_mm: float) -> np.ndarray:
    """(65536,) uint8: ``_mm_to_8bit`` of every uint16 reading, read-only (one per depth range, kept): a uint16
    frame's conversion is one lookup per pixel (audit 29 #10: the float64 maths ran twice per camera frame)."""
    table = _mm_to_8bit(np.arange(1 << 16, dtype=np.float64), near_mm, far_mm)
    table.flags.writeable = False
    return table


def _square_resize(img: np.ndarray, size: int, resample) -> np.ndarray:
    h, w = img.shape[:2]
    if h == size and w == size:
        return img
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    img = img[top:top + s, left:left + s]
    if s == size:
        return np.ascontiguousarray(img)
    return np.asarray(Image.fromarray(img).resize((size, size), resample))


def fill_depth_holes(d8: np.ndarray, k: int) -> np.ndarray:
    """Depth dropouts filled: a missing reading (0) whose k x k window (k odd) holds valid readings in at
    least half of its pixels gets their median (rounded); every other pixel as it was. Holes inside the
    object (structured-light and time-of-flight sensors lose readings on dark, shiny or grazing surfaces, and
    at edges) close; background (a window mostly 0) stays background, so the silhouette grows at most into
    single-pixel notches. d8: (H, W) uint8 (0 = no reading) -> a new (H, W) uint8 array. Sensor faults
    (no_depth, ...) are checked on the frame as captured, before this."""
    d8 = np.asarray(d8)
    if d8.ndim != 2 or d8.dtype != np.uint8:
        raise ValueError(f"fill_depth_holes takes an (H, W) uint8 depth, got {d8.shape} {d8.dtype}")
    if k not in DEPTH_FILL_WINDOWS[1:]:
        raise ValueError(f"depth fill window must be one of {DEPTH_FILL_WINDOWS[1:]}, got {k!r}")
    return _with_window_medians(d8, fill_mask(d8, k), k)


def fill_mask(d8: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: the missing readings of d8 (H, W) uint8 that ``fill_depth_holes`` fills (k x k window at
    least half valid readings)."""
    n_valid = _window_counts(np.pad(d8 > 0, k // 2), k)                      # (H, W) valid readings per window
    return (d8 == 0) & (2 * n_valid >= k * k)


def _window_counts(mask: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool -> (H - k + 1, W - k + 1) int32: how many True pixels each k x k window holds (the windows lie
    inside ``mask``, pad it first). Separable: k shifted row slices added, then k column slices, in uint8 (a count
    is at most k * k <= 49); 10-17x faster than the int32 integral image it replaced at 640 x 480 and 1280 x 720
    (audit 29 #10: the fill's and close's three counts were a third of a camera frame's preprocessing), same counts."""
    m = np.asarray(mask, dtype=bool).view(np.uint8)
    h, w = m.shape[0] - k + 1, m.shape[1] - k + 1
    acc = np.uint8 if k * k <= 255 else np.int32
    rows = m[:h].astype(acc)                                                  # (h, W): k rows summed
    for i in range(1, k):
        rows += m[i:i + h]
    out = rows[:, :w].copy()                                                  # (h, w): then k columns
    for j in range(1, k):
        out += rows[:, j:j + w]
    return out.astype(np.int32)


_MEDIAN_CHUNK = 1 << 16      # fill pixels per window gather in ``_with_window_medians`` (k = 7: 3.2 MB of uint8
                             # windows each, gathered a row at a time: 1 MB of int64 indices)


@functools.lru_cache(maxsize=None)
def _sorting_network(n: int) -> tuple:
    """The compare-exchange pairs (i, j), i < j, of Batcher's odd-even merge sort of n values (the network
    for the next power of two without the pairs that touch its padding, which would sort last: no-ops);
    9 values: 28 pairs, 25: 140, 49: 394."""
    size = 1 << max(0, (n - 1).bit_length())
    pairs, p = [], 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return tuple(pairs)


def _with_window_medians(d8: np.ndarray, fill: np.ndarray, k: int) -> np.ndarray:
    """A copy of d8 (H, W) uint8 where each pixel of ``fill`` (H, W) bool gets the median (rounded half to
    even) of the valid (> 0) readings in its k x k window (the frame padded with no readings; each needs
    one): the fill step of ``fill_depth_holes`` and ``close_depth_notches``. Per chunk of _MEDIAN_CHUNK
    pixels the windows are gathered as k * k rows of uint8 (k * k, n) and sorted column-wise by a sorting
    network (``_sorting_network``: np.minimum / np.maximum on whole rows), so a pixel's c valid readings
    are its last c and their median is read off by index: exact (the mean of the two uint8 middles is a
    whole or half number). 720 x 1280 with half the readings lost, K = 5, a loaded 2-core machine: close
    1.51 -> 0.16 s, fill 0.59 -> 0.05 s against the nanmedian this replaced (benchmarks/depth_window_median.py)."""
    ys, xs = np.nonzero(fill)
    out = d8.copy()
    if not len(ys):
        return out
    r, kk = k // 2, k * k
    padded = np.pad(d8, r)                                                    # (H + 2r, W + 2r), no readings outside
    flat = padded.reshape(-1)
    window = (np.arange(k)[:, None] * padded.shape[1] + np.arange(k)[None, :]).reshape(kk)   # (k*k,) offsets
    network = _sorting_network(kk)
    for a in range(0, len(ys), _MEDIAN_CHUNK):
        y, x = ys[a:a + _MEDIAN_CHUNK], xs[a:a + _MEDIAN_CHUNK]
        n = len(y)
        corner = y * padded.shape[1] + x                                     # (n,) flat index of each window's corner
        vals = np.empty((kk, n), np.uint8)                                    # row i*k+j = pixel (y+i-r, x+j-r)
        for i, offset in enumerate(window):                                   # a row at a time: (n,) indices, not (k*k, n)
            np.take(flat, corner + offset, out=vals[i])
        low = np.empty(n, np.uint8)
        for i, j in network:                                                  # each column sorted, 0s (no reading) first
            np.minimum(vals[i], vals[j], out=low)
            np.maximum(vals[i], vals[j], out=vals[j])
            vals[i] = low
        c = kk - (vals == 0).sum(0)                                           # (n,) valid readings, >= 1
        if not c.all():                       # the callers' masks guarantee one; else the index below is out of range
            j = int(np.argmin(c))
            raise ValueError(f"depth pixel ({y[j]}, {x[j]}) has no valid reading in its {k} x {k} window: no median "
                             "to fill it with")
        first = (kk - c) * n + np.arange(n)                                   # flat index of each column's first valid
        lo = np.take(vals, first + (c - 1) // 2 * n).astype(np.int32)         # the lower middle of the c valid
        hi = np.take(vals, first + c // 2 * n).astype(np.int32)               # the upper middle (= lo for odd c)
        out[y, x] = np.rint((lo + hi) / 2.0).astype(np.uint8)
    return out


def close_depth_notches(d8: np.ndarray, k: int) -> np.ndarray:
    """Notches of the silhouette closed: a missing reading (0) inside the morphological closing of the
    valid-reading mask by a k x k square (dilation, then erosion; outside the frame there are no readings)
    gets the median (rounded) of the valid readings in its k x k window (it has one: a pixel of the
    closing lies in the dilation); every other pixel as it was. Depth sensors lose readings ON the object's
    edge, where ``fill_depth_holes``' windows are mostly background, so the object looks notched and
    thinner. The closing fills exactly the missing readings that no k x k square of missing readings
    (outside the frame counts as missing) covers: straight edges (also diagonal ones), convex corners,
    90-degree concave corners and wide background stay as they are; k = 3 closes notches and gaps up to
    2 px wide, of any depth (a single lost edge reading, two side by side, a 1-2 px crack), k = 5 in
    addition those 3-4 px wide (a 3-px bite out of the edge stays with k = 3). Not closed: a lost reading
    on a convex bend of the silhouette or on a 1-px-wide structure (a wire). An isolated reading does not
    spread (its dilation is eroded back to it).
    d8: (H, W) uint8 (0 = no reading) -> a new (H, W) uint8 array. Sensor faults are checked on the frame
    as captured, before this."""
    d8 = np.asarray(d8)
    if d8.ndim != 2 or d8.dtype != np.uint8:
        raise ValueError(f"close_depth_notches takes an (H, W) uint8 depth, got {d8.shape} {d8.dtype}")
    if k not in DEPTH_CLOSE_WINDOWS[1:]:
        raise ValueError(f"depth close square must be one of {DEPTH_CLOSE_WINDOWS[1:]}, got {k!r}")
    return _with_window_medians(d8, close_mask(d8, k), k)                    # >= 1 valid reading per window


def close_mask(d8: np.ndarray, k: int) -> np.ndarray:
    """(H, W) bool: the missing readings of d8 (H, W) uint8 that ``close_depth_notches`` fills (inside the
    closing of the valid readings by a k x k square)."""
    r = k // 2
    valid = np.pad(d8 > 0, 2 * r)                                             # (H + 4r, W + 4r), no readings outside
    dilated = _window_counts(valid, k) > 0                                    # (H + 2r, W + 2r): the frame + r around it
    closed = _window_counts(dilated, k) == k * k                              # (H, W): eroded back
    return (d8 == 0) & closed


def frame_to_uint8(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """Raw frame -> (resolution, resolution, 4) uint8 RGBD, background masked, before scaling."""
    rgb, d8 = _camera_rgbd(rgb, depth, spec)
    return _model_uint8(rgb, _repaired_depth(d8, spec), spec)


def frame_to_uint8_pair(rgb, depth, spec: PreprocessSpec) -> tuple:
    """Raw frame -> (model, captured), both (resolution, resolution, 4) uint8: ``model`` = frame_to_uint8(rgb,
    depth, spec), ``captured`` = the same without the spec's depth_fill / depth_close (the frame the
    sensor-fault checks see: ``sensor_faults.frame_faults``), from one check and one depth conversion at the
    camera's resolution (audit 29 #10: a depth-repairing model converted each camera frame twice). Without
    depth_fill and depth_close the two are one array."""
    rgb, d8 = _camera_rgbd(rgb, depth, spec)
    model = _model_uint8(rgb, _repaired_depth(d8, spec), spec)
    return model, (_model_uint8(rgb, d8, spec) if spec.depth_fill or spec.depth_close else model)


def _camera_rgbd(rgb, depth, spec: PreprocessSpec) -> tuple:
    """The checked raw frame at the camera's resolution: (rgb (H, W, 3) uint8, d8 (H, W) uint8, 0 = no reading)."""
    rgb = _check_rgb(rgb)
    d8 = depth_to_8bit(depth, spec)
    if d8.shape != rgb.shape[:2]:
        raise FrameError(f"RGB {rgb.shape[1]}x{rgb.shape[0]} and depth {d8.shape[1]}x{d8.shape[0]} (W x H) sizes "
                         "differ: depth must be aligned to colour (the same size)")
    return rgb, d8


def _repaired_depth(d8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """d8 (H, W) uint8 with the spec's depth_fill, then depth_close applied (d8 itself when neither is set)."""
    if spec.depth_fill:
        d8 = fill_depth_holes(d8, spec.depth_fill)                            # before masking: a filled pixel keeps its RGB
    if spec.depth_close:
        d8 = close_depth_notches(d8, spec.depth_close)                        # after the fill, before masking too
    return d8


def _model_uint8(rgb: np.ndarray, d8: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """rgb (H, W, 3) uint8 and d8 (H, W) uint8 at the camera's resolution -> (R, R, 4) uint8: background masked,
    resized, the scene shift undone, aligned (the spec's depth_fill / depth_close are not applied here)."""
    if spec.mask_rgb_background:
        rgb = rgb * (d8 > 0)[:, :, None]       # (H, W, 3) uint8, background 0: np.where's bytes, ~10x faster
    rgb = _square_resize(rgb, spec.resolution, Image.BOX)
    # nearest for depth: averaging across the object edge would invent depths
    d8 = _square_resize(d8, spec.resolution, Image.NEAREST)
    out = np.concatenate([rgb, d8[:, :, None]], axis=2)                       # (R, R, 4)
    return aligned_uint8(move_uint8(out, *spec.scene_shift), spec)         # the scene's camera shift undone


def move_uint8(rgbd: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(R, R, 4) uint8 moved by (dy, dx) whole pixels, vacated pixels 0 (background): preprocess
    scene_shift, and the candidates of edge-ad calibrate's camera-shift search. (0, 0): rgbd itself."""
    if (dy, dx) == (0, 0):
        return rgbd
    return np.moveaxis(shift_frame(np.moveaxis(rgbd, 2, 0), dy, dx, fill=0), 0, 2)


def aligned_uint8(rgbd: np.ndarray, spec: "PreprocessSpec") -> np.ndarray:
    """The spec's ``align`` step on a (R, R, 4) uint8 frame: align_centroid for "centroid" (every reading) and
    "component" (the largest 4-connected foreground component's readings, ``alignment_mask``), else rgbd."""
    if spec.align == "none":
        return rgbd
    return align_centroid(rgbd, spec.align_centre, alignment_mask(rgbd[..., 3], spec.align))


def alignment_mask(depth: np.ndarray, align: str) -> Optional[np.ndarray]:
    """The readings whose centroid the ``align`` step moves: depth (..., R, R) uint8 -> None for "centroid" (every
    reading: depth > 0), (..., R, R) bool for "component" (``largest_component`` of each frame's readings)."""
    if align == "centroid":
        return None
    if align != "component":
        raise ValueError(f"align must be one of {ALIGNS[1:]} here, got {align!r}")
    fg = np.asarray(depth) > 0
    return np.stack([largest_component(f) for f in fg.reshape(-1, *fg.shape[-2:])]).reshape(fg.shape)


def largest_component(fg: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: the largest 4-connected component of ``fg`` (ties: the one reached first in
    row-major order); all False when fg is. NumPy only: the rows' runs of True, joined by a union-find where
    runs of adjacent rows share a column (~0.1-0.3 ms at 64 x 64)."""
    fg = np.asarray(fg, bool)
    H, W = fg.shape
    edges = np.diff(np.pad(fg, ((0, 0), (1, 1))).astype(np.int8), axis=1)         # (H, W + 1)
    rows, starts = np.nonzero(edges == 1)                                           # runs [start, end), row-major
    ends = np.nonzero(edges == -1)[1]
    if len(rows) == 0:
        return np.zeros((H, W), bool)
    parent = list(range(len(rows)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(H + 1)).tolist()                        # row r's runs: first[r]:first[r + 1]
    s, e = starts.tolist(), ends.tolist()
    for r in range(H - 1):
        i, j = first[r], first[r + 1]
        while i < first[r + 1] and j < first[r + 2]:
            if s[i] < e[j] and s[j] < e[i]:                                         # share a column: 4-connected
                a, b = root(i), root(j)
                parent[max(a, b)] = min(a, b)                                      # a component's root: its first run
            if e[i] < e[j]:
                i += 1
            else:
                j += 1
    roots = np.array([root(i) for i in range(len(rows))])
    size = np.bincount(roots, weights=ends - starts, minlength=len(rows))
    out = np.zeros((H, W), bool)
    for i in np.nonzero(roots == int(np.argmax(size)))[0]:
        out[rows[i], starts[i]:ends[i]] = True
    return out


def align_centroid(rgbd: np.ndarray, centre=(0.5, 0.5), fg: Optional[np.ndarray] = None) -> np.ndarray:
    """(R, R, 4) uint8 -> the same shifted by whole pixels so that the centroid of ``fg`` ((R, R) bool; None:
    the foreground, depth > 0) lands on pixel rint(centre * R); vacated pixels 0. No such pixel: unchanged."""
    fg = rgbd[..., 3] > 0 if fg is None else fg
    if not fg.any():
        return rgbd
    R0, R1 = rgbd.shape[:2]
    ys, xs = np.nonzero(fg)
    # floor(m + 0.5), not rint (half to even): a frame shifted by whole pixels gets the same result
    dy = int(np.rint(centre[0] * R0)) - int(np.floor(ys.mean() + 0.5))
    dx = int(np.rint(centre[1] * R1)) - int(np.floor(xs.mean() + 0.5))
    out = np.zeros_like(rgbd)
    (sy, ty), (sx, tx) = _shift_slices(R0, dy), _shift_slices(R1, dx)
    out[ty, tx] = rgbd[sy, sx]
    return out


def _shift_slices(n: int, d: int) -> tuple:
    """(source, target) slices of an axis of length n moved by d pixels (d > 0: towards the end)."""
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


BACKGROUND = -1.0   # a background pixel of the model input in every channel (value 0 -> (0 - 0.5) / 0.5)


def shift_frame(x: np.ndarray, dy: int, dx: int, fill: float = BACKGROUND) -> np.ndarray:
    """A preprocessed frame (..., H, W) (e.g. x (4, R, R) or a batch (N, 4, R, R)) moved by (dy, dx)
    whole pixels (dy > 0: down, dx > 0: right); vacated pixels ``fill`` (default: background, -1 in
    every channel). A new array of x's dtype. The one shift of the test-time shift-min score
    (SearchConfig.score_shift_radius) for the runtime and the PyTorch reference; error maps are
    shifted back with fill=0."""
    x = np.asarray(x)
    H, W = x.shape[-2:]
    if abs(dy) >= H or abs(dx) >= W:
        raise ValueError(f"shift ({dy}, {dx}) does not fit a {H} x {W} frame")
    out = np.full_like(x, fill)
    (sy, ty), (sx, tx) = _shift_slices(H, int(dy)), _shift_slices(W, int(dx))
    out[..., ty, tx] = x[..., sy, sx]
    return out


def check_shift_fill(spec: "PreprocessSpec", radius: int, field: str = "score_shift_radius") -> None:
    """Refuse (ValueError) a shift search (radius > 0: the shift-min, ``field`` score_shift_radius, or the
    pixel distance's own, pixel_shift_radius) under a spec whose zero pixel does not normalise to
    BACKGROUND (-1: mean = std = 0.5): shift_frame's fill would then not be background. The one check
    for the runtime (Scorer.load), the exporter and edge-ad eval."""
    zero = float((np.float32(0.0) - spec.mean) / spec.std)            # as normalize_uint8 maps value 0
    if radius > 0 and zero != BACKGROUND:
        raise ValueError(f"{field}={radius} fills the vacated pixels with background {BACKGROUND}, "
                         f"but this model's preprocessing (mean {spec.mean}, std {spec.std}) maps a zero pixel "
                         f"to {zero:.6g}; use {field} 0 with this model")


def shift_offsets(radius: int) -> list:
    """The (2 radius + 1)^2 shifts (dy, dx), |dy|, |dx| <= radius, of the shift-min score in their fixed
    order: (0, 0) first (a tie keeps the frame as it is), then row by row (dy, then dx, ascending)."""
    r = int(radius)
    if r < 0:
        raise ValueError(f"shift radius must be >= 0, got {radius}")
    return [(0, 0)] + [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if (dy, dx) != (0, 0)]


def normalize_uint8(rgbd: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(..., H, W, 4) uint8 -> (..., 4, H, W) float32 in [-1, 1]: (v/255 - mean) / std."""
    v = rgbd.astype(np.float32) / 255.0
    if tuple(spec.colour_gain) != (1.0, 1.0, 1.0):
        fg = v[..., 3:4] > 0
        v = np.concatenate([np.where(fg, np.clip(v[..., :3] * np.asarray(spec.colour_gain, np.float32), 0, 1),
                                     v[..., :3]), v[..., 3:]], axis=-1)
    if spec.colour_norm != "none":
        v = normalize_colour(v, spec)
    x = (v - spec.mean) / spec.std
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def normalize_colour(v: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(..., H, W, 4) float32 RGBD in [0, 1] -> the same with the foreground's RGB scaled so that its
    mean colour is spec.colour_reference (one gain for "gray", per channel for "rgb"; clipped to
    COLOUR_GAIN_LIMITS). Frames without foreground are returned unchanged."""
    fg = (v[..., 3] > 0)[..., None]                                          # (..., H, W, 1)
    gain = colour_norm_gains(v, spec)[..., None, None, :]                    # (..., 1, 1, 3)
    out = v.copy()
    out[..., :3] = np.where(fg, np.clip(v[..., :3] * gain, 0.0, 1.0), v[..., :3])
    return out


def colour_norm_gains(v: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(..., H, W, 4) float32 RGBD in [0, 1] -> (..., 3) float32: the gains ``normalize_colour`` multiplies the
    foreground's RGB by (then clipped to [0, 1]); runtime/pixel_memory.py stores them to rebuild a row."""
    fg = (v[..., 3] > 0)[..., None]                                          # (..., H, W, 1)
    n = np.maximum(fg.sum(axis=(-3, -2)), 1)                                 # (..., 1)
    mean = (v[..., :3] * fg).sum(axis=(-3, -2)) / n                          # (..., 3)
    ref = np.asarray(spec.colour_reference, np.float32)
    if spec.colour_norm == "gray":
        gain = np.repeat(ref.mean() / np.maximum(mean.mean(-1, keepdims=True), 1e-3), 3, -1)
    else:
        gain = ref / np.maximum(mean, 1e-3)
    return np.clip(gain, *COLOUR_GAIN_LIMITS).astype(np.float32)


def preprocess(rgb, depth, spec: PreprocessSpec | None = None) -> np.ndarray:
    """Raw frame -> float32 (4, R, R) model input. Raises FrameError naming the problem."""
    spec = spec or PreprocessSpec()
    return normalize_uint8(frame_to_uint8(rgb, depth, spec), spec)


def to_display(x: np.ndarray, spec: PreprocessSpec | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Model-space (4, H, W) in [-1, 1] -> (RGB H x W x 3 uint8, depth H x W uint8) for pictures."""
    spec = spec or PreprocessSpec()
    v = np.clip((np.asarray(x, dtype=np.float32) * spec.std + spec.mean) * 255.0, 0, 255)
    v = np.rint(v).astype(np.uint8)
    return np.moveaxis(v[:3], 0, -1).copy(), v[3].copy()
