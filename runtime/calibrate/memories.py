"""The model's memories grown with the scene's frames, and the scene's held-out scores against them.

The latent bank: the original bank (E of the training frames) plus E of every usable scene frame and
of its augmented copies (the recipe the bank was built with: manifest
latent_bank["augment"], runtime/latent_bank.py), appended frame by frame in the bank's
own layout (the frame, then its copies: latent_memory.original_rows), so the configuration's
bank_augment_weight weighs the scene's copies as the training frames' (and its
bank_trusted_augment counts the same augmentations' copies as original); models without
a latent memory keep their files as they are.

The pixel memory (models scoring with one: score_pixel_power > 0): the original frames (pixel_memory.npy) plus
every usable scene frame as the scene shows it, in the model's own light
(pixel_memory.in_model_light: the scene's colour_gain applied, as to the frames scored), expanded
with the memory's own augment; models without it keep their files as they are. A scene that
would grow it past its caps (pixel_memory.MAX_PIXEL_FRAMES, MAX_PIXEL_BYTES of rows, as the row store keeps them, and search tables)
is refused before it is scored (``check_scene_fits_pixel_memory``).

The silhouette lever's paired rows (models with silhouette_versions_weight > 0, runtime/silhouette.py): the model's
(silhouette_bank.npy: E of each opened training frame and of its mirror) plus the scene frames' (the opened frame of
each usable scene frame, made on the raw frame: read_scene's "versions", encoded by ``score_scene``), frame-major,
2 rows a frame, and where the model has them the opened frames (silhouette_pixels.npy) plus the scene's opened
frames in the model's light, as the pixel memory; the manifest's "silhouette" entry says how many frames
(n_frames) and where they came from. The held-out scores are then the lever's (``held_out_lever_scores``): each
version held out, the dil version against the paired rows without the frame's block's too.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from ..latent_bank import bank_inputs_uint8
from ..manifest import sha256_file
from ..model_arrays import load_npy
from ..pixel_memory import PixelMemory, check_pixel_memory_size, in_model_light
from .errors import CalibrationError
from .scene_scores import held_out_lever_scores, held_out_pixel_distances, held_out_scores


def check_scene_fits_pixel_memory(entry: dict, n: int, resolution: int, silhouette: Optional[dict] = None) -> None:
    """CalibrationError naming the counts when the model's pixel memory (manifest entry ``entry``: shape
    [N0, R, R, 4], augment) plus the scene's n usable frames would exceed the pixel memory's caps
    (pixel_memory.check_pixel_memory_size: MAX_PIXEL_FRAMES, MAX_PIXEL_BYTES), which the new model's load
    would refuse: checked before the scene is scored. ``silhouette``: the manifest's "silhouette" entry of a model
    with the lever, whose opened frames (pixels_shape, pixels_augment) grow by the scene's n too: checked alike."""
    memories = [("pixel memory", int(entry["shape"][0]), len(entry.get("augment") or []))]
    if silhouette is not None and silhouette.get("pixels") is not None:
        memories.append(("silhouette lever's opened frames (silhouette_pixels.npy)",
                         int(silhouette["pixels_shape"][0]), len(silhouette.get("pixels_augment") or [])))
    for what, n0, n_augment in memories:
        try:
            check_pixel_memory_size(n0 + n, resolution, n_augment)
        except ValueError as e:
            raise CalibrationError(f"the model's {what} ({n0} frames) with the scene's {n} usable frames would be "
                                   f"too large for a model to load: {e}; calibrate on fewer frames (--max-frames)") from None


@dataclasses.dataclass
class SceneMemories:
    """The model's memories grown with the scene's n frames (``grow_memories``) and the scene's scores."""
    scores: np.ndarray                # (n,) held out against the grown memories (as scored without memories)
    frames: int                       # n, the scene's usable frames
    blocks: int                       # the held-out scoring's contiguous blocks
    augment: list                     # the bank's augmentation texts (manifest latent_bank["augment"])
    bank_entry: dict                  # the model's manifest latent_bank entry ({} without one)
    pixel_entry: dict                 # the model's manifest pixel_memory entry ({} without one)
    bank: Optional[np.ndarray] = None       # (N0 x (1 + A) + n x (1 + A), z_dim) float32; None: no latent bank
    scene_rows: int = 0                     # n x (1 + A): the bank's rows of the scene
    pixels: Optional[np.ndarray] = None     # (N0 + n, R, R, 4) uint8 in the model's light; None: no pixel memory
    silhouette_entry: dict = dataclasses.field(default_factory=dict)   # the manifest's "silhouette" entry ({}: no lever)
    paired: Optional[np.ndarray] = None     # (2 (N0s + n), z_dim) float32 the lever's paired rows; None: no lever
    paired_pixels: Optional[np.ndarray] = None   # (N0s + n, R, R, 4) uint8 the opened frames; None: none

    def scores_text(self, cfg) -> str:
        """How the scene's scores were measured (the calibration record's "scores"), under the scoring
        configuration ``cfg``."""
        new_bank, new_pixels, blocks = self.bank, self.pixels, self.blocks
        return (("held out: " + " and ".join(
                  (["latent distances to the bank"] if new_bank is not None else [])
                  + (["pixel distances to the pixel memory"] if new_pixels is not None else []))
                  + f" without the frame's block ({blocks} contiguous blocks)"
                  if new_bank is not None or new_pixels is not None else "as scored")
                + (f"; shift-min: the minimum over the frame's {(2 * cfg.score_shift_radius + 1) ** 2} "
                   f"copies shifted by up to {cfg.score_shift_radius} px" if cfg.score_shift_radius else "")
                + (f"; the silhouette lever: min(S_id, {cfg.silhouette_versions_weight:g} x S_ero, S_dil) over the raw "
                   "frame's versions, the dil version also against the paired rows of the opened frames without "
                   "the frame's block's" if self.paired is not None else ""))

    def manifest_entries(self, source: str, gain: Optional[tuple], now: str) -> dict:
        """The calibrated manifest's "latent_bank" and "pixel_memory" entries (only the memories grown): their
        new shapes and what they hold (the original's rows, the scene's from ``source`` at date ``now``;
        ``gain``: the scene's colour gain, the pixel memory's light)."""
        n, entries = self.frames, {}
        if self.bank is not None:
            entries["latent_bank"] = {**self.bank_entry, "shape": list(self.bank.shape),
                                      "info": {"original": {"n": int(len(self.bank) - self.scene_rows),
                                                            "info": self.bank_entry.get("info")},
                                               "scene": {"n": int(self.scene_rows), "frames": n,
                                                         "source": str(source), "augment": self.augment,
                                                         "date": now}}}
        if self.pixels is not None:
            n0 = int(len(self.pixels) - n)
            entries["pixel_memory"] = {**self.pixel_entry, "shape": list(self.pixels.shape),
                                       "info": {"original": {"n_frames": n0, "info": self.pixel_entry.get("info")},
                                                "scene": {"n_frames": n, "source": str(source), "date": now,
                                                          "colour_gain": list(gain) if gain is not None else None,
                                                          "stored": "in the model's light (pixel_memory.in_model_light)"}}}
        if self.paired is not None:
            e = self.silhouette_entry
            entries["silhouette"] = {
                **e, "bank_shape": list(self.paired.shape), "n_frames": int(e["n_frames"]) + n,
                **({} if self.paired_pixels is None else {"pixels_shape": list(self.paired_pixels.shape)}),
                "info": {"original": {"n_frames": int(e["n_frames"]), "info": e.get("info")},
                         "scene": {"n_frames": n, "source": str(source), "date": now,
                                   "what": "each usable scene frame opened (dil(ero(frame)), made on the raw frame) "
                                           "and its mirror, encoded under the scene's preprocessing"
                                           + ("; the opened frames in the model's light" if self.paired_pixels
                                              is not None else "")}}}
        return entries

    def record(self) -> dict:
        """The calibration record's "bank" and "pixel_memory" counts (only the memories grown)."""
        out = {}
        if self.bank is not None:
            out["bank"] = {"original_rows": int(len(self.bank) - self.scene_rows), "scene_rows": int(self.scene_rows)}
        if self.pixels is not None:
            out["pixel_memory"] = {"original_frames": int(len(self.pixels) - self.frames), "scene_frames": self.frames}
        if self.paired is not None:
            out["silhouette"] = {"original_frames": int(self.silhouette_entry["n_frames"]), "scene_frames": self.frames,
                                 "paired_rows": int(len(self.paired)),
                                 "opened_pixel_frames": None if self.paired_pixels is None else int(len(self.paired_pixels))}
        return out

    def save(self, directory: Path) -> dict:
        """Write the grown memories into ``directory`` under the model's file names; {file name: sha256}."""
        written = {}
        arrays = [(self.bank_entry.get("file"), self.bank), (self.pixel_entry.get("file"), self.pixels),
                  (self.silhouette_entry.get("bank"), self.paired),
                  (self.silhouette_entry.get("pixels"), self.paired_pixels)]
        for name, a in arrays:
            if a is not None:
                np.save(directory / name, a)
                written[name] = sha256_file(directory / name)
        return written


def grow_memories(model_dir: Path, manifest: dict, cfg, scene: dict, spec, augment: list,
                  blocks: int = 5) -> SceneMemories:
    """The model's memories (``model_dir``'s files, as ``manifest`` names them) grown with the scene's frames
    (``scene``: ``read_scene``'s, scored by ``score_scene``) under the scene's preprocessing ``spec``, and the
    frames' scores held out against them in ``blocks`` contiguous blocks (the scores as scored for a model
    without memories). ``augment``: the bank's augmentation texts. With the silhouette lever (the scene read and
    scored with its versions): the paired rows grown too (``grow_paired``) and the scores the lever's
    (``held_out_lever_scores``; the versions' held-out pixel distances, the dil version's the nearer of the pixel
    memory and the opened frames, each without the frame's block, as runtime.silhouette.PairedPixelMemory)."""
    n = len(scene["ids"])
    bank_entry = manifest.get("latent_bank") or {}
    pixel_entry = manifest.get("pixel_memory") or {}
    out = SceneMemories(None, n, blocks, augment, bank_entry, pixel_entry)
    lever = cfg.uses_silhouette_versions
    if lever:
        out.silhouette_entry = manifest["silhouette"]
        original_paired, out.paired, out.paired_pixels = grow_paired(model_dir, manifest, scene, spec)
    pixel_distances = None
    if cfg.uses_pixel_memory:
        original_frames = load_npy(model_dir, pixel_entry["file"], pixel_entry["shape"], np.uint8,   # (N0, R, R, 4)
                                   sha256=manifest["files"][pixel_entry["file"]],     # the verified bytes, or refused
                                   said_by="manifest.json: pixel_memory.shape")
        # the scene's frames as scored (its colour gain applied), the memory's stored form
        new_pixels = np.concatenate([original_frames, in_model_light(np.stack(scene["u8"]), spec)])   # (N0 + n, R, R, 4)
        memory = PixelMemory(new_pixels, spec, pixel_entry.get("augment") or [])

        def held_out(memory, n_original, u8):
            # frame i (4, R, R) of u8 as score_scene scored it (before the shift-min's copies)
            return held_out_pixel_distances(memory, lambda i: bank_inputs_uint8(u8[i], spec)[0], n, n_original,
                                            blocks, cfg.pixel_shift_radius, cfg.pixel_gain_limits)
        pixel_distances = held_out(memory, len(original_frames), scene["u8"])
        if lever:
            opened = PixelMemory(out.paired_pixels, spec, out.silhouette_entry.get("pixels_augment") or [])
            ero, dil = ([f[v] for f in scene["versions"]] for v in ("ero", "dil"))
            pixel_distances = {"id": pixel_distances, "ero": held_out(memory, len(original_frames), ero),
                               "dil": np.minimum(held_out(memory, len(original_frames), dil),
                                                 held_out(opened, len(out.paired_pixels) - n, dil))}
        out.pixels = new_pixels
    if cfg.uses_latent_bank:
        original = load_npy(model_dir, bank_entry["file"], bank_entry["shape"], np.float32,   # header checked, no symlinks,
                            sha256=manifest["files"][bank_entry["file"]],            # the verified bytes, or refused
                            said_by="manifest.json: latent_bank.shape")
        if lever:
            out.scores = held_out_lever_scores(scene, original, original_paired, cfg, blocks, augment, pixel_distances)
        else:
            out.scores = held_out_scores(scene["base"], scene["latents"], original, cfg, blocks=blocks,
                                         shifted_latents=scene["shifted_latents"], augment=augment,
                                         pixel_distances=pixel_distances)
        scene_rows = scene["latents"].reshape(-1, scene["latents"].shape[-1])               # (n x (1 + A), z_dim)
        out.bank = np.concatenate([original, scene_rows]).astype(np.float32)
        out.scene_rows = len(scene_rows)
    elif cfg.uses_pixel_memory:
        out.scores = held_out_scores(scene["base"], None, None, cfg, blocks=blocks, pixel_distances=pixel_distances)
    else:
        out.scores = scene["scores"]
    return out


def grow_paired(model_dir: Path, manifest: dict, scene: dict, spec) -> tuple:
    """The silhouette lever's paired rows grown with the scene's frames: (the model's rows (2 N0, z_dim) float32
    (silhouette_bank.npy, the verified bytes), those + the scene's "opened_latents" (2 (N0 + n), z_dim) float32
    (frame-major: each frame's opened frame, then its mirror), and, where the model has them, its opened frames
    (silhouette_pixels.npy) + the scene's (read_scene's "versions"' "opened", in the model's light as the pixel
    memory stores a frame: pixel_memory.in_model_light) (N0 + n, R, R, 4) uint8, else None)."""
    e = manifest["silhouette"]
    rows = load_npy(model_dir, e["bank"], e["bank_shape"], np.float32, sha256=manifest["files"][e["bank"]],
                    said_by="manifest.json: silhouette.bank_shape")                              # (2 N0, z_dim)
    grown = np.concatenate([rows, scene["opened_latents"].reshape(-1, rows.shape[1])]).astype(np.float32)
    pixels = None
    if e.get("pixels") is not None:
        frames = load_npy(model_dir, e["pixels"], e["pixels_shape"], np.uint8, sha256=manifest["files"][e["pixels"]],
                          said_by="manifest.json: silhouette.pixels_shape")                       # (N0, R, R, 4)
        pixels = np.concatenate([frames, in_model_light(np.stack([f["opened"] for f in scene["versions"]]), spec)])
    return rows, grown, pixels
