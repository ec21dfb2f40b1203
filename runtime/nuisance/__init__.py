"""Everyday nuisances applied to RAW RGB-D frames, before preprocessing (NumPy only, torch-free).

Used by ``edge-ad eval --nuisance`` (the robustness suite), by the simulated new scene that checks
``edge-ad calibrate``, by the augmented latent bank (release and calibrate) and by runtime tests.

Every nuisance is a callable ``n(rgb, depth, rng) -> (rgb, depth)`` on one raw frame:
  rgb    H x W x 3 uint8
  depth  H x W uint8 (8-bit, 0 = background) or uint16 millimetres (0 = no reading)
returning NEW arrays of the same shapes and dtypes (the inputs are never modified). ``rng`` is a
``numpy.random.Generator``; deterministic nuisances ignore it. Background (depth 0) stays
background, so the masked capture of kinect-rgbd keeps its meaning, except for the kinds that add readings to it
(depth-edge-spurs, cable).

``parse_nuisance("brightness:1.25")`` builds one from a short text (``NUISANCE_SYNTAX``);
``DEFAULT_SUITE`` is the suite ``edge-ad eval --nuisance`` runs (the shipped numbers were measured with
it); the others (gamma, offset, contrast, blur, jpeg, depth-holes, depth-edge-holes, depth-edge-spurs,
rotate, scale, fg-blur, fg-rotate, fg-scale, light-ramp, shadow, sharpen, rgb-shift, cable, depth-band,
flicker-band) widen what ``edge-ad eval --nuisance-set`` can check.
``frame_rng(seed, frame, k)`` gives the per-frame generator so that a suite is reproducible frame by frame.
NumPy only, plus Pillow (a runtime dependency) for jpeg.

blur, rotate and scale resample the frame as captured: on a masked capture (kinect-rgbd's RGB is black
wherever depth is 0) the black surroundings bleed into the object's edge colours while the depth mask stays
sharp, a dark rim no camera re-mount or defocus makes (audit 30 #9). The shipped models' memory copies were
built with them, so they keep that meaning. fg-blur, fg-rotate and fg-scale (``foreground_only=True``) are
the same kernel / geometry with the RGB resampled from FOREGROUND pixels only (normalised convolution: the
weights of pixels without a depth reading are dropped and the rest renormalised); depth as the old kinds,
and on a frame with a reading everywhere each equals its old kind exactly.

Where each kind lives, by what it perturbs (this package's names are all re-exported here):
  photometric.py  the light and colour of the RGB: brightness, wb, gamma, offset, contrast, light-ramp, shadow,
                  flicker-band, rgb-noise, jpeg
  blur.py         the RGB's sharpness: blur, fg-blur, sharpen (one separable Gaussian)
  geometric.py    the camera's pose, depth and RGB together: shift, mirror, rotate, fg-rotate, scale, fg-scale;
                  the colour camera's registration to the depth: rgb-shift
  depth.py        the depth sensor: depth-noise, depth-offset, depth-holes, depth-edge-holes, depth-edge-spurs,
                  depth-edge-erode, depth-band
  clutter.py      something else in view beside the object: cable
  compose.py      several kinds in order (texts joined with '+')
  parse.py        texts -> nuisances: NUISANCE_SYNTAX, the registry of kinds, parse_nuisance
  suite.py        DEFAULT_SUITE, frame_rng, apply_to_frames
  limits.py       how far a nuisance moves or blurs, and the refusal of one that leaves nothing of the frame
  frame.py        the frame contract and the RGB-level / depth-unit conversions the kinds share
"""
from .blur import SHARPEN_SIGMA, Blur, Sharpen, gaussian_kernel, kernel_radius
from .clutter import CABLE_GAP, CABLE_RGB, Cable
from .compose import Compose
from .depth import DepthBand, DepthEdgeErode, DepthEdgeHoles, DepthEdgeSpurs, DepthHoles, DepthNoise, DepthOffset
from .frame import MM_PER_LEVEL_8BIT
from .geometric import Mirror, RandomShift, RgbShift, Rotate, Scale, Shift, ring_move
from .limits import largest_blur_radius, largest_shift, refuse_too_large, too_large_for
from .parse import NUISANCE_SYNTAX, parse_nuisance
from .photometric import (Brightness, Contrast, FlickerBand, Gamma, Jpeg, LightRamp, Offset, RgbNoise, Shadow,
                          WhiteBalance)
from .suite import DEFAULT_SUITE, apply_to_frames, frame_rng

__all__ = ["MM_PER_LEVEL_8BIT", "Brightness", "WhiteBalance", "Gamma", "Offset", "Contrast", "LightRamp", "Shadow",
           "RgbNoise", "Jpeg", "Blur", "Sharpen", "SHARPEN_SIGMA", "gaussian_kernel", "kernel_radius", "Shift",
           "RandomShift", "RgbShift", "ring_move", "Mirror", "Rotate", "Scale", "DepthNoise", "DepthOffset",
           "DepthHoles", "DepthEdgeHoles", "DepthEdgeSpurs", "DepthEdgeErode", "Cable", "CABLE_GAP", "CABLE_RGB", "Compose", "largest_shift", "largest_blur_radius",
           "DepthBand", "FlickerBand",
           "too_large_for", "refuse_too_large", "NUISANCE_SYNTAX", "parse_nuisance", "DEFAULT_SUITE", "frame_rng",
           "apply_to_frames"]
