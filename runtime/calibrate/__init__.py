"""Adapt an exported model to a new scene from normal frames of that scene, torch-free.

    new_manifest = calibrate_model("model_dir", frames, "model_dir-scene", fpr=0.05, source="recording.bag")

What the scoring needs per scene is rebuilt with the exported graphs (encoder.onnx and the search's
graphs through ``Scorer``), and a NEW model directory is written (never inside the original, which is
never touched). ``calibrate_model`` (pipeline.py) runs the steps in order, one module each:

  selection.py           which frames of the source are used: ``max_frames`` spread evenly over a source of
                         known length, or every K-th (``frame_plan``), and the log lines that say so
  scene_frames.py        the scene's usable frames (``read_scene``: sensor faults, frames labelled anomalous
                         and bit-identical copies dropped and counted), a recording cut short
                         (``recording_cut``), too few frames refused (``check_enough_frames``)
  light.py               the scene's colour gain, so a scene-wide light change is undone
                         (``scene_colour_gain``), measured first, taken only when the scene's frames fit better
                         with it (``chosen_scene_light``, checked after the camera shift is undone)
  camera_shift.py        the scene's camera shift, searched (in the measured gain's light) and taken only when the
                         frames can tell (``scene_camera_shift``, ``choose_camera_shift``), undone as preprocess
                         scene_shift
  scene_scores.py        the scene's frames scored, and scored held out as unseen frames would be
                         (``score_scene``, ``held_out_scores``, ``held_out_pixel_distances``,
                         with the silhouette lever ``held_out_lever_scores``)
  memories.py            the latent bank and the pixel memory grown with the scene's frames (and the silhouette
                         lever's paired rows: ``grow_paired``), and the frames' held-out scores against them
                         (``grow_memories``; the lever's: scene_scores.held_out_lever_scores)
  threshold.py           the threshold rule: the model's own threshold kept unless the scene's held-out
                         scores refute it (one-sided binomial test), then raised only as far as they ask
                         (``choose_threshold`` of ``ThresholdInputs``)
  manifest_threshold.py  the model's own threshold read from its manifest (``model_threshold_at``,
                         ``model_fpr``) and the threshold entry the new manifest carries
  new_model.py           the new directory: the manifest with the calibration record, written under a
                         temporary name, verified and renamed (``write_model_dir``)
  errors.py              ``CalibrationError``

Every name is importable from ``edge_ad.runtime.calibrate`` (below).
"""
from .camera_shift import (DEFAULT_MAX_SHIFT, MIN_SHIFT_GAIN, SHIFT_TIE_ALPHA, SIGN_TEST_MIN_FRAMES,
                           camera_shift_fits, choose_camera_shift, default_max_shift, scene_camera_shift,
                           search_radius, shift_score_power, shift_search_memory, undo_camera_shift)
from .errors import CalibrationError
from .light import LIGHT_STAGES, chosen_scene_light, in_scene_light, scene_colour_gain, scene_fit_logs
from .manifest_threshold import (DEFAULT_FPR, model_fpr, model_threshold_at, model_threshold_floor, threshold_entry,
                                 threshold_inputs)
from .memories import SceneMemories, check_scene_fits_pixel_memory, grow_memories, grow_paired
from .new_model import calibrated_manifest, check_out_dir, provenance, signer_key_id, write_model_dir
from .pipeline import calibrate_model
from .scene_frames import (MIN_FRAMES, check_enough_frames, cut_text, frames_record, read_scene,
                           recording_cut, stream_gaps)
from .scene_scores import (held_out_lever_scores, held_out_pixel_distances, held_out_scores, scene_blocks,
                           score_scene)
from .selection import (FramePlan, check_every, frame_plan, how_selected, labelled_normals, ordinal,
                        selected_text, selection_text, source_length, spread_positions, uncounted_text)
from .threshold import (MIN_EXPECTED_ABOVE, SCENE_TEST_ALPHA, ThresholdChoice, ThresholdInputs, binomial_tail,
                        few_expected_above,
                        choose_threshold, frames_above, frames_accepted, lowest_accepted_threshold, quantile_threshold,
                        scene_exceeds, scene_doubt, scene_vs_model, threshold_record, threshold_warning)
