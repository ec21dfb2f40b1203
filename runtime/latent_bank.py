"""The latent memory's inputs (torch-free): a normal frame and its augmented copies, preprocessed.

A model's latent bank holds E(x) of normal frames; to cover everyday variation it also holds E of
each normal frame under a few augmentations (mirrored, shifted by a few pixels), named by their
``runtime.nuisance.parse_nuisance`` texts in the checkpoint (``scoring["latent_bank_info"]["augment"]``)
and the manifest (``latent_bank["augment"]``). The release (models/kinect-rgbd/make_release.py,
PyTorch encoder) and ``edge-ad calibrate`` (encoder.onnx) both build the inputs here, so a bank
rebuilt on the robot matches the shipped one's recipe. A bank is frame-major: per normal frame its
``bank_inputs`` rows in order (the frame first), so latent_memory.original_rows tells its original rows from
the augmented ones (SearchConfig.bank_augment_weight weighs the latter).

Augmentations act on the frame at the model's resolution (after the crop and resize, before
``align`` and the scaling), so "shift:2,0" means two model pixels whatever the camera's size.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from .nuisance import frame_rng, parse_nuisance
from .preprocess import PreprocessSpec, aligned_uint8, frame_to_uint8, normalize_uint8

# The shipped banks' augmentations (issue 12): mirrored, and shifted by 2 px in the 8 directions,
# with and without the mirror: 1 + 17 inputs per normal frame.
POSE_AUGMENT = ("mirror",) + tuple(f"{m}shift:{dy},{dx}" for m in ("", "mirror+") for dy in (-2, 0, 2)
                                   for dx in (-2, 0, 2) if (dy, dx) != (0, 0))
# Every shift of up to 2 px (1 px too), with and without the mirror: 1 + 49 inputs per normal frame
# (issue 12, cylinder: a memory of the 2-px shifts alone missed 1-px shifts).
GRID2_AUGMENT = ("mirror",) + tuple(f"{m}shift:{dy},{dx}" for m in ("", "mirror+") for dy in range(-2, 3)
                                    for dx in range(-2, 3) if (dy, dx) != (0, 0))
# Light and colour copies (issue 12, models trained with photometric jitter): +-20 % brightness and two
# colour casts, each of the frame as it is: 4 more inputs per normal frame.
LIGHT_AUGMENT = ("brightness:0.8", "brightness:1.2", "wb:1.1,1,0.9", "wb:0.9,1,1.1")


def bank_inputs(rgb, depth, spec: PreprocessSpec, augment: Sequence[str] = (), seed: int = 0,
                index: int = 0) -> np.ndarray:
    """float32 (1 + len(augment), 4, R, R): the preprocessed frame, then the frame under each
    augmentation (nuisance texts; random ones draw from frame_rng(seed, index, j)).
    Raises preprocess.FrameError for a frame that cannot be scored, ValueError for a bad text."""
    return bank_inputs_uint8(unaligned_uint8(rgb, depth, spec), spec, augment, seed, index)


def unaligned_uint8(rgb, depth, spec: PreprocessSpec) -> np.ndarray:
    """frame_to_uint8 without the ``align`` step: (R, R, 4) uint8 (where augmentations apply)."""
    return frame_to_uint8(rgb, depth, dataclasses.replace(spec, align="none"))


def bank_inputs_uint8(u8: np.ndarray, spec: PreprocessSpec, augment: Sequence[str] = (), seed: int = 0,
                      index: int = 0) -> np.ndarray:
    """bank_inputs from the frame's ``unaligned_uint8`` (R, R, 4)."""
    return normalize_uint8(bank_images_uint8(u8, spec, augment, seed, index), spec)


def bank_images_uint8(u8: np.ndarray, spec: PreprocessSpec, augment: Sequence[str] = (), seed: int = 0,
                      index: int = 0) -> np.ndarray:
    """The uint8 images (1 + len(augment), R, R, 4) ``bank_inputs_uint8`` normalizes (``normalize_uint8``): the
    frame's ``unaligned_uint8`` and its augmented copies, each aligned (``aligned_uint8``)."""
    out = [u8]
    for j, text in enumerate(augment):
        r, d = parse_nuisance(text)(u8[..., :3], u8[..., 3], frame_rng(seed, index, j))
        out.append(np.concatenate([r, d[..., None]], axis=2))
    return np.stack([aligned_uint8(a, spec) for a in out])
