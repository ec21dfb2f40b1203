"""``calibrate_model``: the steps of a calibration in order, each done by its own module (the package's
docstring, runtime/calibrate/__init__.py, lists them)."""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from pathlib import Path
from typing import Callable, Iterable, Optional

from .camera_shift import search_radius, undo_camera_shift
from .errors import CalibrationError
from .light import chosen_scene_light, in_scene_light
from .manifest_threshold import model_fpr, threshold_entry, threshold_inputs
from .memories import check_scene_fits_pixel_memory, grow_memories
from .new_model import calibrated_manifest, check_out_dir, provenance, signer_key_id, write_model_dir
from .scene_frames import (MIN_FRAMES, check_enough_frames, cut_text, frames_record, read_scene, recording_cut,
                           stream_gaps)
from .scene_scores import score_scene
from .selection import frame_plan, labelled_normals, selection_text, source_length, uncounted_text
from .threshold import choose_threshold, scene_doubt, scene_vs_model, threshold_record, threshold_warning


def calibrate_model(model_dir: os.PathLike, frames: Iterable, out_dir: os.PathLike, *, fpr: Optional[float] = None,
                    max_frames: Optional[int] = None, min_frames: int = MIN_FRAMES, source: str = "",
                    progress: Optional[Callable] = None, threads: Optional[int] = None,
                    colour_gain=True, blocks: int = 5, floor: bool = True,
                    max_shift: Optional[int] = None, shift_progress: Optional[Callable] = None,
                    trusted_keys: Optional[list] = None, sign_key=None, log: Optional[Callable] = None,
                    on_threshold_inputs: Optional[Callable] = None, every: Optional[int] = None,
                    accept_raise: bool = False, light_progress: Optional[Callable] = None) -> dict:
    """Write ``out_dir``: ``model_dir`` adapted to the scene of ``frames`` (the package's docstring:
    runtime/calibrate/__init__.py; the steps below, one module each).
    ``trusted_keys`` (public keys, as Scorer.load): ``model_dir`` must be signed by one of them
    (checked before anything is read from it). The new directory's manifest differs from the signed
    one, so it is unsigned unless ``sign_key`` (an Ed25519 private key: PEM path or key object,
    runtime/signing.py) signs it (manifest.sig written before the directory takes its name).
    ``colour_gain``: True: the scene's colour gain measured and applied when the scene's frames fit better with it
    (``chosen_scene_light``, checked after the camera shift is undone; the shift searched in the measured gain's
    light); "always": applied unchecked; False: none. ``light_progress(done, total, stage)``: the check's two passes
    over the scene's frames (light.LIGHT_STAGES).
    ``fpr``: the scene threshold's target false-alarm rate; None: the rate the model's own threshold was
    calibrated at (``model_fpr``; DEFAULT_FPR for a model without one), so that the floor applies.
    ``max_shift``: the camera-shift search radius; None: ``default_max_shift`` (off for k > 0, said
    through ``log(message)``).
    ``max_frames``: use at most this many frames; ``every``: use every K-th frame of ``frames`` until
    ``max_frames`` are used (read_scene; 1: the first ``max_frames``; for a camera, N frames spread over N K
    frames of time); None: ``max_frames`` frames spread evenly over a source of known length
    (``source_length``: a folder, a list, synth://?n=N, a ROS bag, a RealSense recording; ``spread_positions``),
    else every frame. Said through
    ``log``; the calibration record holds "every" (None when spread), "source_length", "frames_selected" and
    the "frame_ids" used.
    A recording cut short (a killed recorder: ``recording_cut``) is calibrated on the frames before the cut
    (its count, ``source_length``, is theirs) when they are enough (``min_frames``); ``log`` says so
    (``cut_text``) and the record's "recording_truncated" holds where it ends (None for an intact source);
    with too few the CalibrationError says it is cut short. Frames lost to a stream that stalled mid-recording
    (its ``stream_gap`` events) are said too and recorded ("stream_gaps").
    Frames that are likely not normal frames of the model's objects (more than half of them above the model's
    own threshold, or a threshold more than 4x its own: ``scene_doubt``; the record's "scene_vs_model" holds
    both numbers) raise CalibrationError after scoring, nothing written, unless ``accept_raise``: then written,
    the reason in "threshold_warning".
    ``on_threshold_inputs(ThresholdInputs)``: called once the new directory is written, with what the
    threshold rule read (``choose_threshold`` of it replays the rule; models/kinect-rgbd/new_scene.py saves it).
    A model with the silhouette lever (runtime/silhouette.py) is calibrated with it: the scene's frames read with
    their versions made on the raw frames, its paired rows grown with theirs, the threshold on the lever's held-out
    scores (docs/calibrate.md, "A model with the silhouette lever").
    Returns the new manifest. Raises CalibrationError (too few usable frames: the message names the
    counts and the sensor faults; bad --out), ManifestError (a tampered, unsigned or untrusted model
    directory) and SigningError (an unreadable signing key)."""
    from ..scorer import Scorer
    from ..signing import load_private_key
    if fpr is not None and not 0 < fpr < 1:
        raise CalibrationError(f"the target false-alarm rate must be in (0, 1), got {fpr}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_out_dir(model_dir, out_dir)
    length = source_length(frames, count=every is None)      # --every K: no counting pass (only the spread needs it)
    normals = labelled_normals(frames) if every is None else None    # a labelled folder: spread over its normals
    plan = frame_plan(length, max_frames, every, normals)
    if sign_key is not None:
        sign_key = load_private_key(sign_key)       # a bad key or passphrase fails now, not after the scene
    scorer = Scorer.load(model_dir, threads=threads, trusted_keys=list(trusted_keys) if trusted_keys else None)
    with scorer:                                     # its buffers and threads released once the scene is scored
        signed_by = signer_key_id(model_dir) if trusted_keys else None    # verified by Scorer.load
        man, cfg = scorer.manifest, scorer.config
        fpr = model_fpr(man) if fpr is None else fpr
        augment = list((man.get("latent_bank") or {}).get("augment") or [])
        max_shift = search_radius(max_shift, cfg, log)      # said before the scene is read
        spec = scorer.preprocess_spec
        for said in (uncounted_text(frames, plan, max_frames), selection_text(plan, length, max_frames, normals)):
            if log is not None and said:
                log(said)
        # scene: {"ids" (n,), "u8" n x (R, R, 4) uint8, "read", "selected", the counts of the frames dropped, ...}
        lever = cfg.uses_silhouette_versions     # + "versions" of each frame, made on the raw frame
        scene = read_scene(frames, spec, max_frames, progress, every=plan.every or 1, positions=plan.positions,
                           silhouette=lever)
        cut = recording_cut(frames)               # a recording cut short: said, recorded, and the CLI exits 3
        if cut is not None and log is not None:
            log(cut_text(cut, scene["read"], max_frames, every))
        gaps = stream_gaps(frames, log)           # frames lost to a stalled stream: said, recorded, CLI exits 3
        check_enough_frames(scene, plan, cut, min_frames)
        n = len(scene["ids"])
        if cfg.uses_pixel_memory:     # the grown pixel memory must fit before the scene is scored
            check_scene_fits_pixel_memory(man.get("pixel_memory") or {}, n, spec.resolution,
                                          man.get("silhouette") if lever else None)
        # the scene's light: its gain measured on the frames as read (their brightness, wherever they lie); the
        # camera-shift search in that light (as every calibration searched before the check, session 34); then the
        # check, on the frames where the shift puts them (misplaced, both of its scores would be inflated)
        measured = in_scene_light(spec, scene["u8"])[1] if colour_gain else None
        shift_fit = None
        if max_shift:
            searched = spec if measured is None else dataclasses.replace(spec, colour_gain=measured)
            searched, shift_fit = undo_camera_shift(scorer, scene, searched, max_shift, shift_progress)
            spec = dataclasses.replace(spec, scene_shift=searched.scene_shift)
        spec, gain, light = (chosen_scene_light(scorer, spec, scene["u8"], check=colour_gain != "always",
                                                progress=light_progress, gain=measured)
                             if measured is not None else (spec, None, None))
        if light is not None and log is not None:
            log(light["said"])
        # + "scores" (n,), "base" (n, S), "latents" (n, 1 + A, z_dim), "shifted_latents" (n, S, z_dim); the lever:
        # + "version_scores" {"ero", "dil": the same of each version}, "opened_latents" (n, 2, z_dim)
        scene.update(score_scene(scorer, scene["u8"], spec, augment, scene.get("versions")))
    memories = grow_memories(model_dir, man, cfg, scene, spec, augment, blocks)     # + held-out scores (n,)
    inputs = threshold_inputs(man, memories.scores, fpr, floor)
    choice = choose_threshold(inputs)
    warning = threshold_warning(choice, inputs, n)
    doubt = scene_doubt(scene_vs_model(choice, inputs), n)     # frames of another object, or another model
    if doubt is not None and not accept_raise:
        raise CalibrationError(f"{doubt} Nothing was written; --accept-raise calibrates on them anyway")
    if doubt is not None:
        warning = doubt + " (accepted: --accept-raise)" + ("; " + warning if warning else "")
    if warning is not None and log is not None:
        log("warning: " + warning)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    record = {"source": str(source), **frames_record(scene, plan, length, max_frames, cut, gaps), "date": now,
              "target_fpr": fpr, **provenance(model_dir, signed_by, man, source), "scores": memories.scores_text(cfg),
              "colour_gain": list(gain) if gain is not None else None, "colour_gain_check": light,
              "scene_shift": shift_fit,
              **threshold_record(choice, inputs, warning), **memories.record()}
    threshold = threshold_entry(man, inputs, choice, n, fpr, source, cfg.to_dict(), now, preprocess=spec.to_dict())
    new = calibrated_manifest(man, spec, threshold, memories.manifest_entries(source, gain, now), record)
    write_model_dir(model_dir, out_dir, man, new, memories, sign_key, log)
    if on_threshold_inputs is not None:        # what the threshold rule read, for offline studies of the rule
        on_threshold_inputs(inputs)
    return new
