#!/usr/bin/env python3
"""A rerunnable mutation check: curated single-line bugs, each applied to a temporary copy of the checkout
and run against the tests that should catch it; prints killed / survived per mutant.

    nice -n 10 .venv/bin/python scripts/mutants.py              # every mutant (~20-30 min on 2 busy cores)
    .venv/bin/python scripts/mutants.py --list                  # names, files, tests
    .venv/bin/python scripts/mutants.py pre-depth-box cap-thr   # some of them (names or prefixes)

How: the tracked and untracked-but-not-ignored files and the compiled kernels (runtime/**/*.so) are copied
to a temporary folder beside a link to ../shared (the tests' data); in the copy, links edge_ad/<pkg> ->
<folder> (pyproject.toml's package-dir) make ``edge_ad`` and its subpackages import from the copy (the
copy is first on PYTHONPATH, ahead of the editable install's finder), with no bytecode caches. First every test subset runs on the unmutated copy (a failure there stops the run: a mutant is
only "killed" by tests that pass without it); then, per mutant, its one line is replaced in the copy, its
subset runs (pytest -x, one timeout), and the line is restored. Killed = the subset failed (or timed out).

A mutant's ``old`` text must occur exactly once in its file (tests/test_mutants_list.py checks that every
mutant still applies, so the list cannot rot silently). ``equivalent`` marks a mutant kept on purpose that
no test can kill (a change that does not alter any result, e.g. a performance constant), with the reason.
Not part of the test suite: a tool, run by hand after changing the code or its tests.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]


def package_links(root: Path = REPO) -> dict:
    """{subpackage of edge_ad: its folder} from pyproject.toml's [tool.setuptools] package-dir, for the
    top-level subpackages that live outside edge_ad/ (e.g. edge_ad.runtime -> runtime)."""
    import tomllib
    dirs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {name.split(".")[1]: folder for name, folder in dirs.items()
            if name.count(".") == 1 and folder != f"edge_ad/{name.split('.')[1]}"}

# test subsets, chosen to be quick (no exports where a unit test catches the bug)
PRE = ("tests/test_preprocess_camera_sizes.py", "tests/test_preprocess.py", "-k", "not scores_like")
CAP = ("tests/test_capture_contract.py", "tests/test_capture.py")
LATENT = ("tests/test_latent_memory.py", "-k", "by_hand or validation_and_factor or encoder_latent_not")
GRAD = ("tests/test_gradient_graphs.py", "-k", "float64")        # the float64 builds: no export
HOST_PARITY = ("tests/test_variant_parity.py", "-k", "0.001 and (fused or host)")
RUNNER = ("tests/test_tensorrt_runner.py", "-k", "float64_reference")
FUSED = ("tests/test_fused_adam.py", "-k", "kernel or adam_update or host_adam_equals")
HEAD = ("tests/test_host_head.py", "-k", "twin or layers_0_1 or refuses_bad or checks_its or deterministic")
TRT = ("tests/test_tensorrt_builder.py",)
TRT_RUN = ("tests/test_tensorrt_scorer.py", "-k", "usable_engine_or_gpu_memory")
CKPT_FIELDS = ("tests/test_checkpoint_scoring.py", "-k", "contradict")
THR_MODEL = ("tests/test_export_threshold.py", "-k", "of_another_model")
MODEL_CARD = ("tests/test_verify_loads.py", "-k", "model- or dtype or variant-unknown or targets or n_normal")
SHIFT = ("tests/test_shift_min.py", "-k", "not export_with and not run_records")
BANKW = ("tests/test_bank_augment_weight.py",)
BANKT = ("tests/test_bank_trusted_augment.py",)
WATCH = ("tests/test_alarm_watch.py",)
FLAT = ("tests/test_sensor_faults_flat.py", "-k", "flat_colour_frame or error_line")
STUCK = ("tests/test_sensor_faults_stuck_streams.py",)
RS_STALE = ("tests/test_realsense_stale.py",)
PIXEL = ("tests/test_pixel_memory.py",)
PIXEL_UNIT = ("tests/test_pixel_memory.py", "-k", "brute_force or nearer or frame_distances_equal")   # no export
PIXEL_BOUND = ("tests/test_pixel_memory.py", "-k", "bounded_search or frame_distances_equal")            # no export
SILH = ("tests/test_silhouette_lever.py",)
SILH_CAL_HELD = ("tests/test_calibrate_lever.py", "-k", "paired_rows_out")
SILH_UNIT = ("tests/test_silhouette_lever.py", "-k", "recorded_as_before or weighted_min")          # no export
SILH_EVAL = ("tests/test_silhouette_lever.py", "-k", "eval")
SILH_PARITY = ("tests/test_silhouette_lever.py", "-k", "parity_checks")


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str                 # file, relative to the repository root
    old: str                  # exact text, found exactly once in the file (may span the line's context)
    new: str                  # what replaces it (one line changed)
    tests: tuple              # pytest arguments: files, and optionally -k EXPR
    equivalent: Optional[str] = None   # why no test can kill it, for a mutant kept on purpose


MUTANTS = [
    # -- preprocessing (runtime/preprocess.py) --------------------------------------------------------------
    Mutant("pre-depth-box", "runtime/preprocess.py", "d8 = _square_resize(d8, spec.resolution, Image.NEAREST)",
           "d8 = _square_resize(d8, spec.resolution, Image.BOX)", PRE),
    Mutant("pre-close-dilation-only", "runtime/preprocess.py", "closed = _window_counts(dilated, k) == k * k",
           "closed = _window_counts(dilated, k) > 0", ("tests/test_depth_close.py",)),
    Mutant("pre-window-counts-short", "runtime/preprocess.py", "for i in range(1, k):\n        rows += m[i:i + h]",
           "for i in range(2, k):\n        rows += m[i:i + h]", ("tests/test_depth_close.py", "-k", "window_counts")),
    Mutant("pre-median-even-lower", "runtime/preprocess.py",
           "hi = np.take(vals, first + c // 2 * n).astype(np.int32)",
           "hi = np.take(vals, first + (c - 1) // 2 * n).astype(np.int32)", ("tests/test_depth_fill.py", "-k", "loop")),
    Mutant("pre-median-chunk-restarts", "runtime/preprocess.py",
           "y, x = ys[a:a + _MEDIAN_CHUNK], xs[a:a + _MEDIAN_CHUNK]",
           "y, x = ys[:_MEDIAN_CHUNK], xs[:_MEDIAN_CHUNK]", ("tests/test_depth_close.py", "-k", "pixel_by_pixel")),
    Mutant("pre-close-faults-see-closed", "runtime/sensor_faults.py",
           "spec = replace(spec, depth_fill=0, depth_close=0)",
           "spec = replace(spec, depth_fill=0)", ("tests/test_depth_close.py", "-k", "sensor_fault")),
    # audit 29 #9: parity opens one scorer at a time, each closed before the next one
    Mutant("parity-scorer-left-open", "export/parity.py",
           "return scorer.score(fr[\"rgb\"], fr[\"depth\"], check_faults=False, **start)\n    finally:\n        _close(scorer)",
           "return scorer.score(fr[\"rgb\"], fr[\"depth\"], check_faults=False, **start)\n    finally:\n        pass",
           ("tests/test_export_gate.py", "-k", "one_scorer")),
    Mutant("parity-fp64-first-seed-only", "export/parity.py",
           "threads)[\"seed_losses\"] for j in range(len(z0))]", "threads)[\"seed_losses\"] for j in range(1)]",
           ("tests/test_export_gate.py", "-k", "one_seed")),
    # audit 29 #10: one depth conversion per frame, the checks' frame as captured from it
    Mutant("pre-faults-convert-again", "runtime/sensor_faults.py",
           "x = captured if captured is not None else frame_to_uint8(rgb, depth, spec)",
           "x = frame_to_uint8(rgb, depth, spec)", ("tests/test_frame_conversion_once.py",)),
    Mutant("pre-pair-captured-is-repaired", "runtime/preprocess.py",
           "return model, (_model_uint8(rgb, d8, spec) if spec.depth_fill or spec.depth_close else model)",
           "return model, model", ("tests/test_frame_conversion_once.py",)),
    # audit 34 #2: align "component" aligns the largest 4-connected foreground component's centroid
    Mutant("pre-align-component-every-reading", "runtime/preprocess.py",
           "return align_centroid(rgbd, spec.align_centre, alignment_mask(rgbd[..., 3], spec.align))",
           "return align_centroid(rgbd, spec.align_centre)", ("tests/test_align_component.py",)),
    Mutant("pre-component-8-connected", "runtime/preprocess.py", "if s[i] < e[j] and s[j] < e[i]:",
           "if s[i] <= e[j] and s[j] <= e[i]:", ("tests/test_align_component.py", "-k", "by_hand")),
    Mutant("data-auto-centre-every-reading", "models/data.py",
           '        if fields.get("align", spec.align) == "component":', "        if False:",
           ("tests/test_align_component.py", "-k", "auto_centre")),
    # audit 34 #1: rgb-shift moves the colour alone, the way the text says
    Mutant("nuisance-rgb-shift-backwards", "runtime/nuisance/geometric.py",
           "return rgb_levels(_bilinear_at(yy - self.dy, xx - self.dx)(rgb.astype(np.float64))), depth.copy()",
           "return rgb_levels(_bilinear_at(yy + self.dy, xx - self.dx)(rgb.astype(np.float64))), depth.copy()",
           ("tests/test_nuisance.py", "-k", "rgb_shift")),
    # audit 34 #3: depth in another optical frame than colour is refused (bag) / unscorable (node)
    Mutant("rosbag-registration-unchecked", "runtime/sources/rosbag.py",
           '        if problem:\n            raise SourceError(f"bag {self.path}: depth topic',
           '        if False:\n            raise SourceError(f"bag {self.path}: depth topic',
           ("tests/test_depth_registration.py", "-k", "refused_at_open")),
    Mutant("msgconv-registration-slash-kept", "runtime/msgconv.py",
           'c, d = (str(getattr(h, "frame_id", "") or "").lstrip("/") for h in (rgb_header, depth_header))',
           'c, d = (str(getattr(h, "frame_id", "") or "") for h in (rgb_header, depth_header))',
           ("tests/test_depth_registration.py", "-k", "by_hand")),
    Mutant("ros-node-registration-unchecked", "jetson/ros2_node.py",
           '    if problem:\n        return Frame(fid, None, None, t, meta={"header": header},',
           '    if False:\n        return Frame(fid, None, None, t, meta={"header": header},',
           ("tests/test_depth_registration.py", "-k", "ros2_node")),
    # audit 34 #4: calibrate's scene colour gain only when the scene's frames fit better with it
    Mutant("cal-light-gain-always", "runtime/calibrate/light.py", "    applied = with_gain < without",
           "    applied = True", ("tests/test_calibrate_light.py", "-k", "one_unseen_box")),
    Mutant("pre-mask-all", "runtime/preprocess.py", "rgb = rgb * (d8 > 0)[:, :, None]",
           "rgb = rgb * (d8 >= 0)[:, :, None]", PRE),
    Mutant("pre-no-far-limit", "runtime/preprocess.py",
           "valid = (d > 0) & (d >= near_mm) & (d <= far_mm)", "valid = (d > 0) & (d >= near_mm)", PRE),
    Mutant("pre-valid-to-zero", "runtime/preprocess.py", "np.clip(np.rint(scaled), 1, 255)",
           "np.clip(np.rint(scaled), 0, 255)", PRE),
    Mutant("pre-crop-corner", "runtime/preprocess.py", "top, left = (h - s) // 2, (w - s) // 2\n    img = img[",
           "top, left = 0, 0\n    img = img[", PRE),
    Mutant("pre-std-zero-accepted", "runtime/preprocess.py",
           "if not (np.isfinite(spec.mean) and 0 < spec.std < np.inf):", "if not np.isfinite(spec.mean):",
           ("tests/test_verify_loads.py", "-k", "positive_std")),
    Mutant("verify-manifest-only", "edge_ad/commands/verify.py",
           "with Scorer.load(model_dir, threads=1, trusted_keys=list(trusted_keys) or None) as scorer:",
           "with __import__('contextlib').nullcontext(__import__('types').SimpleNamespace(threshold=None, manifest="
           "__import__('edge_ad.runtime.manifest', fromlist=['m']).load_manifest(model_dir, verify=True, "
           "trusted_keys=list(trusted_keys) or None))) as scorer:", ("tests/test_verify_loads.py", "-k", "bank-nan")),
    Mutant("pre-scale", "runtime/preprocess.py", "x = (v - spec.mean) / spec.std", "x = (v - spec.mean) * spec.std", PRE),
    Mutant("pre-nan-accepted", "runtime/preprocess.py", "bad = int((~np.isfinite(d)).sum())",
           "bad = int(np.isinf(d).sum())", PRE),
    Mutant("pre-size-unchecked", "runtime/preprocess.py", "if rgb.shape[0] < 8 or rgb.shape[1] < 8:",
           "if rgb.shape[0] < 1 or rgb.shape[1] < 1:", PRE),
    # -- scoring (runtime/scorer.py, config.py, score_scale.py, latent_memory.py) -----------------------------------
    Mutant("score-latent-from-z0", "runtime/scorer.py",
           "dist = memory.distance(e) if memory is not None else None",
           "dist = memory.distance(z0[0]) if memory is not None else None", LATENT),
    Mutant("score-sigma-sign", "runtime/scorer.py",
           "z0 = z0 + np.float32(self.config.z_init_sigma) * make_z0(self.n_seed, self.z_dim, seed)",
           "z0 = z0 - np.float32(self.config.z_init_sigma) * make_z0(self.n_seed, self.z_dim, seed)", LATENT),
    Mutant("score-scale-times", "runtime/scorer.py", "return cls(score=float(sl.mean()) / scale,",
           "return cls(score=float(sl.mean()) * scale,", LATENT),
    Mutant("cfg-fg-threshold", "runtime/score_scale.py", "return float((x[3] > -1 + 1e-3).mean())",
           "return float((x[3] >= -1).mean())", LATENT),
    Mutant("cfg-fg-floor-min", "runtime/score_scale.py", "float(max(foreground_fraction(x), cfg.fg_floor) ** cfg.score_fg_power)",
           "float(min(foreground_fraction(x), cfg.fg_floor) ** cfg.score_fg_power)", LATENT),
    Mutant("cfg-latent-farthest", "runtime/latent_memory.py",
           "return float(max(self._weighted(((bank - e) ** 2).sum(1)).min(), 0.0))",
           "return float(max(self._weighted(((bank - e) ** 2).sum(1)).max(), 0.0))", LATENT),
    Mutant("cfg-latent-floor", "runtime/score_scale.py",
           "return float(max(distance, floor) ** power)",
           "return float(distance ** power)", LATENT),
    Mutant("cfg-bias-correction", "runtime/config.py", "return 1.0 - beta1 ** t, 1.0 - beta2 ** t",
           "return 1.0 - beta1 ** (t + 1), 1.0 - beta2 ** t", GRAD),
    # -- the soft weight of the latent bank's augmented rows (SearchConfig.bank_augment_weight) --------------
    Mutant("bankw-ignored", "runtime/latent_memory.py", "self._weights = np.where(original, 1.0, float(augment_weight))",
           "self._weights = np.where(original, 1.0, 1.0)", BANKW),
    Mutant("bankw-on-originals", "runtime/latent_memory.py", "self._weights = np.where(original, 1.0, float(augment_weight))",
           "self._weights = np.where(original, float(augment_weight), 1.0)", BANKW),
    Mutant("bankw-mask-offset", "runtime/latent_memory.py", "return np.arange(n_rows) % rows_per_frame == 0",
           "return np.arange(n_rows) % rows_per_frame == rows_per_frame - 1", BANKW),
    Mutant("bankw-gemm-unweighted-candidates", "runtime/latent_memory.py",
           "D = self._weighted(e_sq[:, None] - 2.0 * (E @ bank.T) + self._bank_sq[None, :])",
           "D = (e_sq[:, None] - 2.0 * (E @ bank.T) + self._bank_sq[None, :])", BANKW),
    Mutant("bankw-scorer-no-layout", "runtime/scorer.py",
           "latent_memory(bank, cfg, [] if augment is None else augment)",
           "latent_memory(bank, cfg, 1)", BANKW),
    Mutant("bankw-reference-no-weight", "models/search.py",
           "memory = latent_memory(latent_bank, cfg, bank_rows_per_frame) if cfg.uses_latent_bank else None",
           "memory = latent_memory(latent_bank, cfg.replace(bank_augment_weight=1.0)) if cfg.uses_latent_bank "
           "else None", BANKW),
    Mutant("bankw-export-reference-plain", "export/parity.py",
           "return latent_memory(bank, cfg, bank_rows_per_frame).distance(e)",
           "return latent_memory(bank, cfg.replace(bank_augment_weight=1.0)).distance(e)", BANKW),
    Mutant("bankw-calibrate-scene-rows-plain", "runtime/calibrate/scene_scores.py",
           "other_mem = latent_memory(others, cfg, layout) if len(others) else None",
           "other_mem = latent_memory(others, cfg.replace(bank_augment_weight=1.0)) if len(others) else None", BANKW),
    Mutant("bankw-manifest-layout-unchecked", "runtime/manifest.py",
           "original_rows(rows, rows_per_frame_of(bank.get(\"augment\")))", "pass", BANKW),
    # -- trusted augmentations: their copies count as original rows (SearchConfig.bank_trusted_augment) -------
    Mutant("bankt-mask-column-offset", "runtime/latent_memory.py", "mask[1 + j::A] = True", "mask[j::A] = True", BANKT),
    Mutant("bankt-mask-first-frame-only", "runtime/latent_memory.py", "mask[1 + j::A] = True", "mask[1 + j] = True", BANKT),
    Mutant("bankt-mask-ignored", "runtime/latent_memory.py", "mask[1 + j::A] = True", "pass", BANKT),
    Mutant("bankt-unknown-text-accepted", "runtime/latent_memory.py", "unknown = [t for t in trusted if t not in augment]",
           "unknown = []", BANKT),
    Mutant("bankt-scorer-ignores", "runtime/scorer.py",
           "latent_memory(bank, cfg, [] if augment is None else augment)",
           "latent_memory(bank, cfg.replace(bank_trusted_augment=()), [] if augment is None else augment)", BANKT),
    Mutant("bankt-reference-ignores", "models/search.py",
           "memory = latent_memory(latent_bank, cfg, bank_rows_per_frame) if cfg.uses_latent_bank else None",
           "memory = latent_memory(latent_bank, cfg.replace(bank_trusted_augment=()), bank_rows_per_frame) "
           "if cfg.uses_latent_bank else None", BANKT),
    Mutant("bankt-export-reference-ignores", "export/parity.py",
           "return latent_memory(bank, cfg, bank_rows_per_frame).distance(e)",
           "return latent_memory(bank, cfg.replace(bank_trusted_augment=()), bank_rows_per_frame).distance(e)", BANKT),
    Mutant("bankt-calibrate-scene-rows-untrusted", "runtime/calibrate/scene_scores.py",
           "other_mem = latent_memory(others, cfg, layout) if len(others) else None",
           "other_mem = latent_memory(others, cfg.replace(bank_trusted_augment=()), layout) if len(others) else None",
           BANKT),
    Mutant("bankt-search-differences-order", "runtime/config.py",
           'd["bank_trusted_augment"] = sorted(t) if isinstance(t, (list, tuple)) else t',
           'd["bank_trusted_augment"] = list(t) if isinstance(t, (list, tuple)) else t', BANKT),
    # -- the test-time shift-min (SearchConfig.score_shift_radius) ------------------------------------------
    Mutant("shift-frame-direction", "runtime/preprocess.py", "    out[..., ty, tx] = x[..., sy, sx]",
           "    out[..., sy, sx] = x[..., ty, tx]", SHIFT),
    Mutant("shift-min-argmax", "runtime/scorer.py", "i = int(np.argmin([r.score for r in results]))",
           "i = int(np.argmax([r.score for r in results]))", SHIFT),
    Mutant("shift-error-map-not-back", "runtime/scorer.py",
           "r.error_map = shift_frame(r.error_map, -dy, -dx, fill=0.0)", "r.error_map = r.error_map", SHIFT),
    Mutant("shift-batch-ignored", "runtime/batch_scoring.py",
           "offsets = shift_offsets(scorer.config.score_shift_radius)  ", "offsets = shift_offsets(0)  ", SHIFT),
    Mutant("shift-reference-unshifted", "models/search.py",
           "        xs = shift_frame(x, dy, dx)                                                # (C, H, W)",
           "        xs = x", SHIFT),
    Mutant("shift-held-out-first-copy", "runtime/calibrate/scene_scores.py",
           "pixel_factor(float(pix[i]), cfg)) for s_ in range(S))",
           "pixel_factor(float(pix[i]), cfg)) for s_ in range(1))", SHIFT),
    # -- the capture loop (runtime/capture.py) --------------------------------------------------------------
    Mutant("cap-threshold-ge", "runtime/capture.py", '"anomalous": None if threshold is None else bool(score > threshold)',
           '"anomalous": None if threshold is None else bool(score >= threshold)', CAP),
    Mutant("eval-overwrites", "edge_ad/commands/evaluate.py", "found = earlier_report(out_dir)", "found = []",
           ("tests/test_evaluate.py", "-k", "eval_command_on_real_frames")),
    Mutant("cap-cut-recording-exit-0", "runtime/capture.py",
           'lost = summary.get("recording_truncated") or summary.get("stream_gaps")',
           'lost = summary.get("stream_gaps")',
           ("tests/test_salvage.py", "-k", "cut_recording")),
    Mutant("batch-cut-recording-exit-0", "edge_ad/batch/driver.py",
           'if t["frame_errors"] or t.get("truncated") or t.get("stream_gap_frames")',
           'if t["frame_errors"] or t.get("stream_gap_frames")',
           ("tests/test_salvage.py", "-k", "cut_recording")),
    Mutant("cal-bank-unverified", "runtime/calibrate/memories.py",
           'sha256=manifest["files"][bank_entry["file"]],', 'sha256=None,',
           ("tests/test_calibrate.py", "-k", "verified_bank")),
    Mutant("cal-pixels-unverified", "runtime/calibrate/memories.py",
           'sha256=manifest["files"][pixel_entry["file"]],', 'sha256=None,',
           ("tests/test_pixel_memory.py", "-k", "verified_pixel")),
    Mutant("scorer-bank-unverified", "runtime/scorer.py",
           'sha256=man["files"][entry["file"]],                    # the bytes verified, not a later swap\n'
           '                    said_by=f"{MANIFEST}: latent_bank',
           'sha256=None,\n                    said_by=f"{MANIFEST}: latent_bank',
           ("tests/test_calibrate.py", "-k", "verified_bank")),
    Mutant("npy-hash-of-a-prefix", "runtime/model_arrays.py",
           "                while src.read(1 << 20):", "                while False:",
           ("tests/test_model_integrity.py", "-k", "load_npy_with_its_sha256")),
    Mutant("export-replaces-calibrated", "export/install.py",
           "    if calibrated is not None:", "    if False:",
           ("tests/test_export_replace.py", "-k", "calibrated")),
    Mutant("eval-fpr-any-float", "edge_ad/commands/evaluate.py",
           '@click.option("--calibrate-fpr", type=FiniteFloat(0, 1, min_open=True, max_open=True), default=0.05,',
           '@click.option("--calibrate-fpr", type=float, default=0.05,',
           ("tests/test_evaluate.py", "-k", "bad_number")),
    Mutant("finite-float-lets-nan", "edge_ad/commands/options.py",
           "if math.isnan(number) or (math.isinf(number) and not self.allow_inf):",
           "if math.isinf(number) and not self.allow_inf:",
           ("tests/test_evaluate.py", "-k", "bad_number")),
    Mutant("eval-report-dir-first", "models/evaluate.py",
           "    metrics = evaluate_scores(normal, anomalies)",
           "    metrics = (out_dir.mkdir(parents=True, exist_ok=True), evaluate_scores(normal, anomalies))[1]",
           ("tests/test_evaluate.py", "-k", "fails_writes")),
    Mutant("run-rotate-mb-nan", "edge_ad/commands/run.py",
           '@click.option("--rotate-mb", type=FiniteFloat(min=0, min_open=True),',
           '@click.option("--rotate-mb", type=click.FloatRange(min=0, min_open=True),',
           ("tests/test_finite_options.py", "-k", "run_refuses")),
    Mutant("export-tolerance-nan", "edge_ad/commands/export.py",
           '@click.option("--tolerance", type=FiniteFloat(),', '@click.option("--tolerance", type=float,',
           ("tests/test_finite_options.py", "-k", "other_commands")),
    Mutant("run-frame-timeout-no-inf", "edge_ad/commands/run.py",
           "type=FiniteFloat(min=0, min_open=True, allow_inf=True)", "type=FiniteFloat(min=0, min_open=True)",
           ("tests/test_finite_options.py", "-k", "no_limit")),
    Mutant("scorer-manifest-live", "runtime/scorer.py",
           "        return json.loads(json.dumps(self._manifest))", "        return self._manifest",
           ("tests/test_scorer_safety.py", "-k", "manifest_handed")),
    Mutant("pairer-gap-at-start", "runtime/sources/pairing.py",
           "            period = self._period.get(missing)        # None before the first pair, or without history",
           "            period = self._period.get(missing) or 1e-9", ("tests/test_stream_gaps.py",)),
    Mutant("cap-stream-gap-exit-0", "runtime/capture.py",
           'lost = summary.get("recording_truncated") or summary.get("stream_gaps")',
           'lost = summary.get("recording_truncated")', ("tests/test_stream_gaps.py",)),
    Mutant("batch-stream-gap-exit-0", "edge_ad/batch/driver.py",
           'if t["frame_errors"] or t.get("truncated") or t.get("stream_gap_frames")',
           'if t["frame_errors"] or t.get("truncated")', ("tests/test_stream_gaps.py",)),
    Mutant("cal-race-traceback", "runtime/calibrate/new_model.py",
           "if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):", "if False:",
           ("tests/test_calibrate.py", "-k", "second_calibrate")),
    Mutant("cal-stream-gap-exit-0", "edge_ad/commands/calibrate.py",
           'if c.get("recording_truncated") or c.get("stream_gaps"):', 'if c.get("recording_truncated"):',
           ("tests/test_stream_gaps.py", "-k", "calibrate")),
    Mutant("results-never-pruned", "runtime/results.py",
           "        old = rotated_files(self.path)[:-self.rotate_keep]", "        old = []",
           ("tests/test_reliability.py", "-k", "rotate_keep")),
    Mutant("results-prune-unsaid", "runtime/results.py",
           "            self.pruned.append(gone)", "            pass",
           ("tests/test_reliability.py", "-k", "rotate_keep")),
    Mutant("results-rotated-nameless", "runtime/results.py",      # audit 29 #1
           '            rotated["model"] = self.model', "            pass",
           ("tests/test_reliability.py", "-k", "names_its_model")),
    Mutant("pictures-never-pruned", "runtime/anomaly_saver.py",      # audit 29 #6
           "        while self.keep is not None and len(self._sets) > self.keep:", "        while False:",
           ("tests/test_run.py", "-k", "keep_keeps")),
    Mutant("hook-streak-ended-by-idle-call", "runtime/capture.py",      # audit 29 #7
           '            if getattr(hook, "only_flagged", False) and not rec.get("anomalous"):', "            if False:",
           ("tests/test_run.py", "-k", "pause_below")),
    Mutant("oak-wall-clock-timeout", "runtime/sources/oak.py",      # audit 29 #2
           "                    if time.monotonic() - t0 > self.timeout_s:",
           "                    if time.time() - t0 > self.timeout_s:",
           ("tests/test_sources.py", "-k", "oak_that_sends_nothing")),
    Mutant("synth-resolution-unchecked", "runtime/sources/synth_source.py",      # audit 29 #4
           "                or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:", "                or False:",
           ("tests/test_sources.py", "-k", "name_the_problem")),
    Mutant("rosbag-slop-unchecked", "runtime/sources/rosbag.py",      # audit 29 #3
           "        self.slop = check_slop(slop)", "        self.slop = float(slop)",
           ("tests/test_run.py", "-k", "never_pair")),
    Mutant("run-no-pairs-unsaid", "runtime/sources/pairing.py",      # audit 29 #3
           '    if "pairs" not in stats or stats["pairs"] or not (c or d):', "    if True:",
           ("tests/test_run.py", "-k", "never_pair")),
    Mutant("cal-max-below-min-read", "edge_ad/commands/calibrate.py",      # audit 29 #12
           "    if max_frames < min_frames:", "    if False:",
           ("tests/test_calibrate.py", "-k", "below_min_frames")),
    Mutant("ros-params-statically-typed", "jetson/ros2_node.py",      # audit 29 #5
           "ParameterDescriptor(dynamic_typing=True)", "ParameterDescriptor(dynamic_typing=False)",
           ("tests/test_ros.py", "-k", "whole_number_for_a_float")),
    Mutant("train-split-class-unsaid", "models/data.py",      # audit 29 #8
           "    if not held_out:\n        return None\n    listed",
           "    if True:\n        return None\n    listed",
           ("tests/test_train.py", "-k", "split_dataset")),
    Mutant("eval-trained-on-unsaid", "models/data.py",      # audit 29 #8 (eval side)
           '    if train_data["source"] != str(Path(folder).resolve()):', "    if True:",
           ("tests/test_train.py", "-k", "split_dataset")),
    Mutant("depth-table-off-by-one", "runtime/preprocess.py",      # audit 29 #10
           "    table = _mm_to_8bit(np.arange(1 << 16, dtype=np.float64), near_mm, far_mm)",
           "    table = _mm_to_8bit(np.arange(1, (1 << 16) + 1, dtype=np.float64), near_mm, far_mm)",
           ("tests/test_preprocess.py", "-k", "looked_up")),
    Mutant("pictures-index-8-digits-only", "runtime/anomaly_saver.py",      # audit 29 #14
           'PICTURE_NAME = re.compile(r"^(\\d{8,}_.+)', 'PICTURE_NAME = re.compile(r"^(\\d{8}_.+)',
           ("tests/test_run.py", "-k", "keep_keeps")),
    Mutant("z0-dtype-unchecked", "edge_ad/commands/run.py",      # audit 29 #13
           "    if not (np.issubdtype(z0.dtype, np.floating) or np.issubdtype(z0.dtype, np.integer)):",
           "    if False:", ("tests/test_run.py", "-k", "seed_and_z0")),
    Mutant("npy-npz-unnamed", "runtime/sources/folder.py",      # audit 29 #13
           '        if head.startswith(b"PK\\x03\\x04"):', "        if False:",
           ("tests/test_run.py", "-k", "seed_and_z0")),
    Mutant("eval-model-dir-click-line", "edge_ad/commands/options.py",      # audit 29 #17
           "    if value is not None and os.path.isdir(value):", "    if False:",
           ("tests/test_first_contact.py", "-k", "exported_model_given")),
    Mutant("run-out-dash-file", "edge_ad/commands/run.py",      # audit 29 #18
           '    if out == "-":', "    if False:", ("tests/test_run.py", "-k", "out_dash")),
    Mutant("docs-synopsis-lacks-wait", "docs/sources-and-results.md",      # audit 29 #15
           "`edge-ad run [--camera [--wait-for-camera] | --source URI]", "`edge-ad run [--camera | --source URI]",
           ("tests/test_run.py", "-k", "docs_synopsis")),
    Mutant("parity-frame-unannounced", "export/parity.py",      # audit 29 #9 (progress part)
           """        log(f"  parity frame {i + 1}/{len(frames)} ({fr['id']}): the float64 reference search and \"""",
           """        (f"  parity frame {i + 1}/{len(frames)} ({fr['id']}): the float64 reference search and \"""",
           ("tests/test_export_gate.py", "-k", "announced")),
    Mutant("results-rotates-a-device", "runtime/results.py",      # audit 29 #19
           "    if stat.S_ISREG(mode):\n        return None\n    return (f\"{path} is not a regular file",
           "    if True:\n        return None\n    return (f\"{path} is not a regular file",
           ("tests/test_run.py", "-k", "no_regular_file")),
    Mutant("results-rotation-recurses", "runtime/results.py",      # found with audit 29 #19
           "self._size >= self.rotate_bytes and not self._rotating:", "self._size >= self.rotate_bytes:",
           ("tests/test_reliability.py", "-k", "once_per_line")),
    Mutant("trace-replaces-out", "edge_ad/commands/trace.py",
           "        if p.exists():", "        if False:",
           ("tests/test_trace.py", "-k", "never_replaces")),
    Mutant("rerun-replaces-rrd", "runtime/rerun_view.py",
           "            self.path = free_path(Path(target))     # an earlier run's recording is never replaced",
           "            self.path = Path(target)",
           ("tests/test_first_contact.py", "-k", "rerun_recording")),
    Mutant("results-full-disk-fatal", "runtime/results.py",
           "            if e.errno not in NO_SPACE:", "            if True:",
           ("tests/test_reliability.py", "-k", "disk_is_full")),
    Mutant("results-lost-line-left-torn", "runtime/results.py",
           "            os.ftruncate(fd, self._size)        # cutting needs no space", "            pass",
           ("tests/test_reliability.py", "-k", "disk_is_full")),
    Mutant("cli-oserror-traceback", "edge_ad/cli.py", "            if e.filename is None:", "            if True:",
           ("tests/test_out_unwritable.py", "-k", "oserror_naming")),
    Mutant("eval-out-checked-late", "edge_ad/commands/evaluate.py",
           "    check_out_place(out_dir)      # before any frame is scored (an eval takes minutes), not after",
           "    pass", ("tests/test_out_unwritable.py", "-k", "before_the_work")),
    Mutant("cal-out-checked-late", "edge_ad/commands/calibrate.py",
           "    check_out_place(out_dir)     # before the scene is read and scored", "    pass",
           ("tests/test_out_unwritable.py", "-k", "before_the_work")),
    Mutant("cap-restart-rescoring-unsaid", "runtime/capture.py",
           "at frame index {first_index}\" + (\"\" if live else", "at frame index {first_index}\" + (\"\" if True else",
           ("tests/test_reliability.py", "-k", "finite_source")),
    Mutant("batch-stop-unsaid", "edge_ad/batch/driver.py",
           "            if stop.is_set():     # stopped by a signal", "            if False:     # stopped by a signal",
           ("tests/test_batch.py", "-k", "stopped_batch")),
    Mutant("batch-worker-takes-ctrl-c", "edge_ad/batch/local.py",
           "    signal.signal(signal.SIGINT, signal.SIG_IGN)", "    pass",
           ("tests/test_batch.py", "-k", "stopped_batch")),
    Mutant("run-rotate-keep-ignored", "edge_ad/commands/run.py",
           "                              rotate_keep=rotate_keep,", "                              rotate_keep=None,",
           ("tests/test_reliability.py", "-k", "rotate_keep")),
    Mutant("cal-doubt-share-ignored", "runtime/calibrate/threshold.py",
           "    if share <= DOUBT_SHARE_ABOVE and factor <= DOUBT_RAISE:", "    if factor <= DOUBT_RAISE:",
           ("tests/test_calibrate.py", "-k", "not_the_models_normal or scene_doubt")),
    Mutant("cal-doubt-raise-ignored", "runtime/calibrate/threshold.py",
           "    if share <= DOUBT_SHARE_ABOVE and factor <= DOUBT_RAISE:", "    if share <= DOUBT_SHARE_ABOVE:",
           ("tests/test_calibrate.py", "-k", "scene_doubt")),
    Mutant("cal-doubt-written-anyway", "runtime/calibrate/pipeline.py",
           "    if doubt is not None and not accept_raise:", "    if False:",
           ("tests/test_calibrate.py", "-k", "not_the_models_normal")),
    Mutant("npy-problem-unchecked", "runtime/sources/folder.py", "    why = npy_problem(path)", "    why = None",
           ("tests/test_sources.py", "-k", "npy_depth_problems")),
    Mutant("folder-pair-size-unnamed", "runtime/sources/folder.py", "    if depth.shape[:2] != rgb.shape[:2]:",
           "    if False:", ("tests/test_sources.py", "-k", "sizes_differ_names_both")),
    Mutant("arrays-mismatch-source-unnamed", "runtime/model_arrays.py", '                            f"({said_by})")',
           '                            "")', ("tests/test_verify_loads.py", "-k", "bank-wrong or misshapen")),
    Mutant("encoder-mismatch-not-manifest-error", "runtime/scorer.py",
           "            except ValueError as e:                       # its inputs or outputs are not the manifest's",
           "            except KeyError as e:", ("tests/test_verify_loads.py", "-k", "encoder-of-another")),
    Mutant("staging-live-swept", "runtime/staging.py", "        if _running(owner) or stage.is_symlink()",
           "        if stage.is_symlink()", ("tests/test_staging.py",)),
    Mutant("staging-never-swept", "runtime/staging.py", "    sweep_stale(out_dir.parent, log)", "    pass",
           ("tests/test_staging.py", "-k", "killed_calibrate")),
    Mutant("staging-reused-pid-alive", "runtime/staging.py",
           "    return then is None or now is None or then == now", "    return True",
           ("tests/test_staging.py", "-k", "reused_pid")),
    Mutant("staging-unowned-swept", "runtime/staging.py", "        owner = _read_owner(owner_path(stage))",
           '        owner = _read_owner(owner_path(stage)) or {"pid": 999999999, "host": socket.gethostname()}',
           ("tests/test_staging.py", "-k", "reused_pid")),
    Mutant("wheel-without-commands", "pyproject.toml", '"edge_ad.batch", "edge_ad.commands", "edge_ad.models"',
           '"edge_ad.batch", "edge_ad.models"', ("tests/test_packaging.py", "-k", "wheel_ships")),
    Mutant("cli-missing-command-module-unnamed", "edge_ad/cli.py",
           '            if e.name and (e.name == "edge_ad.commands" or e.name.startswith("edge_ad.commands.")):',
           "            if False:", ("tests/test_packaging.py", "-k", "missing_from_the_install")),
    Mutant("train-resume-any-data", "models/train.py",
           "    if differ:\n", "    if False:\n",
           ("tests/test_train.py", "-k", "other_data")),
    Mutant("kit-without-cryptography", "jetson/install.sh", '"rich>=13" "cryptography>=41" "rosbags>=0.10"',
           '"rich>=13" "rosbags>=0.10"', ("tests/test_jetson.py", "-k", "base_dependency")),
    Mutant("torchscript-jit-load", "models/checkpoint.py",
           "generator_from_state_dict(torchscript_state_dict(path)), ",
           "generator_from_state_dict(torch.jit.load(str(path)).state_dict()), ",
           ("tests/test_models.py", "-k", "never_run")),
    Mutant("torchscript-any-global", "models/torchscript_weights.py",
           '        raise pickle.UnpicklingError(f"refused global {module}.{name}")',
           "        return getattr(__import__(module, fromlist=[name]), name)", ("tests/test_models.py", "-k", "never_run")),
    Mutant("eval-few-normals-silent", "models/evaluate.py",
           "        warning = few_normals_warning(normal, calibrate_fpr, threshold)", "        warning = None",
           ("tests/test_evaluate.py", "-k", "too_few_normals")),
    Mutant("export-threshold-replaced-silently", "export/exporter.py",
           "    if given:                        # e.g. --threshold-file", "    if False:                        #",
           ("tests/test_export_threshold.py", "-k", "replaces_the_checkpoints_own")),
    Mutant("batch-empty-source-silent", "edge_ad/batch/driver.py",
           '    if entry["status"] == "done" and not entry["frames"] and not entry["frame_errors"]:',
           "    if False:", ("tests/test_batch.py", "-k", "no_frames")),
    Mutant("batch-empty-source-exit-0", "edge_ad/batch/driver.py",
           ' or t.get("stream_gap_frames") or t.get("no_frames"):', ' or t.get("stream_gap_frames"):',
           ("tests/test_batch.py", "-k", "no_frames")),
    Mutant("ros-launch-no-respawn", "jetson/edge_ad.launch.py",
           '        respawn=LaunchConfiguration("respawn"), respawn_delay=RESPAWN_DELAY_S)', "        )",
           ("tests/test_ros.py", "-k", "restarts_the_node")),
    Mutant("train-resume-path-counts", "models/train.py",
           '    return differ if [k for k in differ if k != "source"] or unknown else []', "    return differ",
           ("tests/test_train.py", "-k", "other_data")),
    Mutant("eval-scores-not-kept", "edge_ad/commands/evaluate.py",
           "            for start in range(len(log.scored(name)), len(X), chunk):",
           "            for start in range(0, len(X), chunk):", ("tests/test_evaluate.py", "-k", "stopped_eval")),
    Mutant("eval-chunk-seeds-restart", "edge_ad/commands/evaluate.py",
           "pixel_memory=pixels, first_index=start)", "pixel_memory=pixels, first_index=0)",
           ("tests/test_evaluate.py", "-k", "stopped_eval")),
    Mutant("eval-stop-aborted", "edge_ad/commands/evaluate.py",
           "        raise SystemExit(e.code if isinstance(e, SystemExit) else EXIT_SIGINT) from None",
           "        raise", ("tests/test_evaluate.py", "-k", "stopped_eval")),
    Mutant("scorer-nan-weights-loaded", "runtime/scorer.py",
           "        if broken:\n            raise ManifestError(f\"{model_dir}: {lay['weights']}",
           "        if False:\n            raise ManifestError(f\"{model_dir}: {lay['weights']}",
           ("tests/test_verify_loads.py", "-k", "weights-nan")),
    Mutant("checkpoint-not-torch-unnamed", "models/checkpoint.py", "    why = _not_a_torch_file(path)\n",
           "    why = None\n", ("tests/test_models.py", "-k", "not_a_torch_save_file")),
    Mutant("ros-ids-restart-after-outage", "jetson/ros2_node.py", "    return source\n\n\nclass ResultPublisher",
           "    return TopicSource(source.uri, source.stale_s)\n\n\nclass ResultPublisher",
           ("tests/test_ros.py", "-k", "go_on_across")),
    Mutant("docker-wheel-stage-without-benchmarks", "jetson/Dockerfile", "COPY benchmarks benchmarks",   # audit 33 #6
           "RUN true", ("tests/test_jetson.py", "-k", "wheel_stage_copies")),
    Mutant("batch-aside-is-a-rotated-name", "edge_ad/batch/driver.py",           # audit 33 #10
           '        target = path.with_name(f"{path.name}.aside.{n}")', '        target = path.with_name(f"{path.name}.{n}")',
           ("tests/test_batch.py", "-k", "rerun_after_a_kill")),
    Mutant("launch-python-default-system", "jetson/edge_ad.launch.py",                   # audit 33 #9
           '    return VENV_PYTHON if os.access(VENV_PYTHON, os.X_OK) else "python3"', '    return "python3"',
           ("tests/test_ros.py", "-k", "interpreter_install")),
    Mutant("ros-results-path-unchecked", "jetson/ros2_node.py",                           # audit 33 #14
           '    why = None if out["results_path"] is None else _unwritable(out["results_path"])', "    why = None",
           ("tests/test_ros.py", "-k", "cannot_write")),
    Mutant("ros-results-oserror-uncaught", "jetson/ros2_node.py",
           "    except OSError as e:   # the results file cannot be opened (the loop itself reports every other error)",
           "    except NotImplementedError as e:", ("tests/test_ros.py", "-k", "cannot_write")),
    Mutant("export-unsealed-checkpoint-silent", "export/exporter.py", "        if scoring.sealed is False:",
           "        if False:", ("tests/test_checkpoint_scoring.py", "-k", "integrity_record")),   # audit 33 #12
    Mutant("checkpoint-sealed-always", "models/checkpoint.py", "                   sealed=INTEGRITY in ck)",
           "                   sealed=True)", ("tests/test_checkpoint_scoring.py", "-k", "integrity_record")),
    Mutant("threshold-ignores-preprocess", "runtime/scorer.py",                          # audit 33 #8
           '    if isinstance(thr.get("preprocess"), dict):', "    if False:",
           ("tests/test_export_threshold.py", "-k", "bound_to_the_preprocessing")),
    Mutant("threshold-bound-to-sensor-limits", "runtime/scorer.py",
           "            own, now = (scored_preprocess(PreprocessSpec.from_dict(d)) for d in",
           "            own, now = (PreprocessSpec.from_dict(d).to_dict() for d in",
           ("tests/test_export_threshold.py", "-k", "bound_to_the_preprocessing")),
    Mutant("verify-threshold-drop-unsaid", "edge_ad/commands/verify.py",
           "            if scorer.threshold is None and dropped:", "            if False:",
           ("tests/test_export_threshold.py", "-k", "bound_to_the_preprocessing")),
    Mutant("ros-threshold-drop-unsaid", "jetson/ros2_node.py",
           "f\"(threshold {thr}{f': {dropped}' if thr is None and dropped else ''})\")",
           "f\"(threshold {thr})\")", ("tests/test_ros.py", "-k", "threshold_does_not_hold")),
    Mutant("export-threshold-without-preprocess", "export/exporter.py",
           '    return None if threshold is None else {**threshold, "preprocess": spec.to_dict()}',
           "    return threshold", ("tests/test_export_threshold.py", "-k", "bound_to_the_preprocessing")),
    Mutant("run-threshold-drop-unsaid", "edge_ad/commands/run.py", "    if thr is None and dropped:",
           "    if False:", ("tests/test_export_threshold.py", "-k", "bound_to_the_preprocessing")),
    Mutant("json-duplicate-keys-last-wins", "runtime/manifest.py",                       # audit 33 #16
           "        return json.loads(text, object_pairs_hook=unique)", "        return json.loads(text)",
           ("tests/test_model_integrity.py", "-k", "duplicate_key")),
    Mutant("manifest-read-last-wins", "runtime/manifest.py", "        man = loads_unique(raw)",
           "        man = json.loads(raw)", ("tests/test_model_integrity.py", "-k", "duplicate_key")),
    Mutant("batch-summary-last-wins", "edge_ad/batch/plan.py",
           '        old = loads_unique((Path(out_dir) / "summary.json").read_text())',
           '        old = json.loads((Path(out_dir) / "summary.json").read_text())',
           ("tests/test_batch.py", "-k", "keeps_its_name_in_out")),
    Mutant("threshold-file-last-wins", "edge_ad/commands/export.py",
           "            threshold = loads_unique(open(threshold_file).read())",
           "            threshold = __import__('json').loads(open(threshold_file).read())",
           ("tests/test_export_threshold.py", "-k", "naming_a_key_twice")),
    Mutant("eval-threshold-without-model", "models/evaluate.py",                          # audit 33 #17
           '        if (extra or {}).get("model_sha256") is not None:', "        if False:", THR_MODEL),
    Mutant("export-threshold-of-another-model", "export/exporter.py",
           "    if isinstance(own, str) and sha is not None and own != sha:", "    if False:", THR_MODEL),
    Mutant("export-threshold-of-another-class", "export/exporter.py",
           "    if own is None and normal in KINECT_CLASSES and trained in KINECT_CLASSES and normal != trained:",
           "    if False:", THR_MODEL),
    Mutant("bench-rate-of-uncounted-work", "benchmarks/search_bench.py",                 # audit 33 #5
           '                  "gflop_per_frame": flops / 1e9, "gflops": None if uncounted else flops / med / 1e9,',
           '                  "gflop_per_frame": flops / 1e9, "gflops": flops / med / 1e9,',
           ("tests/test_bench.py", "-k", "pytorch_variants_with")),
    Mutant("bench-z-only-at-k0", "benchmarks/search_bench.py", "    if cfg.k == 0:      # the z-only variants drop",
           "    if False:      # the z-only variants drop", ("tests/test_bench.py", "-k", "pytorch_variants_with")),
    Mutant("batch-legacy-partial-resumed", "edge_ad/batch/driver.py", "    for old in [stale, *rotated_files(stale)]:",
           "    for old in [stale]:", ("tests/test_batch.py", "-k", "rerun_after_a_kill")),     # audit 33 #10 residual
    Mutant("ros-pairs-lost-while-reopening", "jetson/ros2_node.py", "        source._closed = False",   # audit 33 #1
           "        source._pair, source._closed = None, False", ("tests/test_ros.py", "-k", "while_the_node_reopens")),
    Mutant("capture-no-threshold-silent", "runtime/capture.py",
           "    if threshold is None and scorer_threshold(scorer) is not None:", "    if False:",
           ("tests/test_capture.py", "-k", "without_a_threshold")),
    Mutant("trt-dtype-via-nptype", "runtime/backends/tensorrt.py",
           "_np_dtype(engine.get_tensor_dtype(name))", "np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name",
           ("tests/test_tensorrt_runner.py",)),
    Mutant("kit-numpy-2-on-jetpack-6", "jetson/install.sh", '  *) NUMPY="numpy>=1.23,<2" ;;',
           '  *) NUMPY="numpy>=1.23" ;;', ("tests/test_jetson.py", "-k", "jetpack6_plan or base_dependency")),
    Mutant("checkpoint-torch-save-to-file", "models/checkpoint.py",
           "    torch.save(with_integrity(ckpt), buf)", "    torch.save(with_integrity(ckpt), tmp)",
           ("tests/test_train.py", "-k", "full_disk")),
    Mutant("checkpoint-tmp-left", "models/checkpoint.py", "        tmp.unlink(missing_ok=True)\n        free =",
           "        pass\n        free =", ("tests/test_train.py", "-k", "full_disk")),
    Mutant("run-camera-never-waited-for", "edge_ad/commands/run.py",
           "        if wait_for_camera and (camera or uri.startswith(CAMERA_SCHEMES)):", "        if False:",
           ("tests/test_run.py", "-k", "wait_for_camera")),
    Mutant("export-full-disk-traceback", "export/install.py",
           "            if e.filename is not None:\n                raise\n            # a write that names no file",
           "            if True:\n                raise\n            # a write that names no file",
           ("tests/test_out_unwritable.py", "-k", "full_disk_during_an_export")),
    Mutant("eval-one-kind-scored", "edge_ad/commands/evaluate.py",
           "    if not empty and len(groups) > 1:\n        return\n", "    if True:\n        return\n",
           ("tests/test_evaluate.py", "-k", "without_anomalous")),
    Mutant("run-quiet-hides-no-threshold", "edge_ad/commands/run.py", "    elif thr is None:\n        click.echo(\"note: no threshold",
           "    elif thr is None and False:\n        click.echo(\"note: no threshold", ("tests/test_run.py", "-k", "quiet_still")),
    Mutant("ort-both-dists-unsaid", "runtime/backends/onnxruntime_backend.py",
           '    if {"onnxruntime", "onnxruntime-gpu"} <= names:', "    if False:",
           ("tests/test_tensorrt_ort_cuda.py", "-k", "both_onnxruntime")),
    Mutant("pyproject-base-onnxruntime", "pyproject.toml", '    "click>=8.1",',
           '    "click>=8.1", "onnxruntime>=1.17",', ("tests/test_packaging.py", "-k", "one_onnxruntime")),
    Mutant("demo-install-no-onnxruntime", "scripts/demo.sh", '-e ".[cpu]"', "-e .",
           ("tests/test_packaging.py", "-k", "one_onnxruntime")),
    Mutant("ort-missing-unsaid", "runtime/backends/onnxruntime_backend.py",
           '        if (e.name or "").split(".")[0] != "onnxruntime":', "        if True:",
           ("tests/test_cli_missing_package.py", "-k", "no_onnxruntime")),
    Mutant("rotate-under-a-byte-zero", "runtime/results.py", "    return max(1, int(megabytes * 1e6))",
           "    return int(megabytes * 1e6)", ("tests/test_finite_options.py", "-k", "under_one_byte")),
    Mutant("eval-nuisance-seed-unbounded", "edge_ad/commands/evaluate.py",
           '@click.option("--nuisance-seed", type=click.IntRange(min=0), default=0,',
           '@click.option("--nuisance-seed", type=int, default=0,', ("tests/test_finite_options.py", "-k", "lower_bound")),
    Mutant("docs-nuisance-row-place-unsaid", "docs/evaluate.md", "the frame's place in its group and the row's place in the list:",
           "the frame's place in its group:", ("tests/test_nuisance.py", "-k", "place_in_the_list")),
    Mutant("config-nan-accepted", "runtime/config.py",
           "               and f.name not in OWN_FLOAT_CHECKS and not _finite_number(getattr(self, f.name))]",
           "               and False]", ("tests/test_scorer_safety.py", "-k", "finite_number")),
    Mutant("eval-clean-row-scored-twice", "models/evaluate.py", "        if key in self._known:", "        if False:",
           ("tests/test_nuisance.py", "-k", "takes_the_reports")),
    Mutant("scorer-providers-str-letters", "runtime/scorer.py",
           "        if providers is not None and not isinstance(providers, (list, tuple)):   # a str would be read letter by letter",
           "        if False:", ("tests/test_scorer_safety.py", "-k", "other_methods")),
    Mutant("scorer-batch-iterator-len", "runtime/scorer.py", "        frames = list(frames)\n", "        frames = frames\n",
           ("tests/test_scorer_safety.py", "-k", "other_methods")),
    Mutant("eval-nuisance-rows-by-label", "edge_ad/commands/evaluate.py",
           '        rows[n.name if n.name not in rows else f"{n.name} (row {k}: {text})"] = n', "        rows[n.name] = n",
           ("tests/test_nuisance.py", "-k", "every_nuisance_set_text")),
    Mutant("eval-folder-groups-by-last-part", "models/evaluate.py",
           "        name = Path(d).name if Path(d).name not in names else str(Path(d))", "        name = Path(d).name",
           ("tests/test_evaluate.py", "-k", "two_anomalous")),
    Mutant("realsense-zero-depth-scale", "runtime/sources/realsense.py", "    if not np.isfinite(scale) or scale <= 0:",
           "    if False:", ("tests/test_sources.py", "-k", "depth_scale_that")),
    Mutant("eval-blur-wider-than-frame", "edge_ad/commands/evaluate.py", "        if why is not None:",
           "        if False:", ("tests/test_eval_partial_data.py", "-k", "blur_wider")),
    Mutant("msgconv-rvl-read-as-png", "runtime/msgconv.py", '        if codec != "png":', "        if False:",
           ("tests/test_sources.py", "-k", "rvl_compressed")),
    Mutant("msgconv-8uc3-read-as-rgb", "runtime/msgconv.py", '    if encoding == "rgb8":', '    if encoding in ("rgb8", "8UC3"):',
           ("tests/test_sources.py", "-k", "8uc3")),
    Mutant("docs-nuisance-rim-unsaid", "docs/evaluate.md",
           "  UNDER-state the false alarms (the copies carry the rim too). Measured (audit 30 #9, the shipped exports, val",
           "  state the false alarms (the copies carry the rim too). Measured (audit 30 #9, the shipped exports, val",
           ("tests/test_nuisance.py", "-k", "darken_the_edge")),
    # fg-blur / fg-rotate / fg-scale (audit 30 #9's follow-up): colours from pixels with a depth reading only
    Mutant("nuisance-fg-warp-numerator-unmasked", "runtime/nuisance/geometric.py",
           "    num, den = bilinear(rgb * m)[keep], bilinear(m)[keep]",
           "    num, den = bilinear(rgb.astype(np.float64))[keep], bilinear(m)[keep]",
           ("tests/test_nuisance_fg.py", "-k", "no_colour_from")),
    Mutant("nuisance-fg-warp-weights-unmasked", "runtime/nuisance/geometric.py",
           "    num, den = bilinear(rgb * m)[keep], bilinear(m)[keep]",
           "    num, den = bilinear(rgb * m)[keep], bilinear(np.ones_like(m))[keep]",
           ("tests/test_nuisance_fg.py", "-k", "uniform_object")),
    Mutant("nuisance-fg-warp-background-coloured", "runtime/nuisance/geometric.py",
           "    keep = inside & (depth_out > 0)", "    keep = inside",
           ("tests/test_nuisance_fg.py", "-k", "uniform_object or no_colour_from")),
    Mutant("nuisance-fg-blur-weights-unmasked", "runtime/nuisance/blur.py", "        den = _separable(m, k)",
           "        den = _separable(np.ones_like(m), k)", ("tests/test_nuisance_fg.py", "-k", "uniform_object")),
    Mutant("nuisance-fg-blur-background-blurred", "runtime/nuisance/blur.py",
           "        fg = m[..., 0] > 0", "        fg = m[..., 0] >= 0", ("tests/test_nuisance_fg.py", "-k", "no_colour_from")),
    Mutant("nuisance-fg-scale-parsed-as-scale", "runtime/nuisance/parse.py",
           'lambda v: Scale(v[0], foreground_only=True)),', "lambda v: Scale(v[0])),",
           ("tests/test_nuisance_fg.py", "-k", "uniform_object")),
    # depth-edge-spurs (audit 31 #1): readings just outside the silhouette
    Mutant("nuisance-spurs-overwrite-readings", "runtime/nuisance/depth.py",
           "        spur = (depth == 0) & (best > 0) & (rng.random(depth.shape) < self.fraction)",
           "        spur = (best > 0) & (rng.random(depth.shape) < self.fraction)",
           ("tests/test_nuisance_edge_spurs.py", "-k", "largest_neighbour")),
    Mutant("nuisance-spurs-ties-last", "runtime/nuisance/depth.py", "            take = nb > best",
           "            take = nb >= best", ("tests/test_nuisance_edge_spurs.py", "-k", "ties")),
    Mutant("nuisance-spurs-no-colour", "runtime/nuisance/depth.py", "        out_rgb[spur] = colour[spur]",
           "        out_rgb[spur] = 0", ("tests/test_nuisance_edge_spurs.py", "-k", "largest_neighbour")),
    # light-ramp / shadow / sharpen (audit 31 #2 #3 #4)
    Mutant("nuisance-ramp-span-swapped", "runtime/nuisance/photometric.py",
           "((W - 1) / 2 * abs(c) + (H - 1) / 2 * abs(s))", "((H - 1) / 2 * abs(c) + (W - 1) / 2 * abs(s))",
           ("tests/test_nuisance_light.py", "-k", "light_ramp")),
    Mutant("nuisance-shadow-other-side", "runtime/nuisance/photometric.py",
           "        w = np.clip(0.5 - ((x - mx) * c - (y - my) * s) / 4, 0, 1)",
           "        w = np.clip(0.5 + ((x - mx) * c - (y - my) * s) / 4, 0, 1)",
           ("tests/test_nuisance_light.py", "-k", "shadow")),
    Mutant("nuisance-sharpen-blurs", "runtime/nuisance/blur.py",
           "        return rgb_levels(rgb + self.amount * (rgb - blurred)), depth.copy()",
           "        return rgb_levels(rgb - self.amount * (rgb - blurred)), depth.copy()",
           ("tests/test_nuisance_light.py", "-k", "sharpen")),
    Mutant("nuisance-sharpen-radius-unsaid", "runtime/nuisance/blur.py", "    return kernel_radius(SHARPEN_SIGMA)",
           "    return 0", ("tests/test_nuisance_light.py", "-k", "sharpen")),
    Mutant("cli-ort-train-advice", "edge_ad/cli.py", '    if package == "onnxruntime":', "    if False:",
           ("tests/test_cli_missing_package.py", "-k", "no_onnxruntime")),
    Mutant("verify-no-parity-unsaid", "runtime/manifest.py",
           '    if not isinstance(parity, dict) or parity.get("passed") is True:',
           '    if True:', ("tests/test_verify_loads.py", "-k", "parity_and_threshold")),
    Mutant("scorer-seed-unchecked", "runtime/scorer.py",
           "            if seed is not None and (not _whole(seed) or seed < 0):", "            if False:",
           ("tests/test_scorer_safety.py", "-k", "bad_seed")),
    Mutant("scorer-threads-unchecked", "runtime/scorer.py",
           "    if threads is not None and (not _whole(threads) or threads < 1):", "    if False:",
           ("tests/test_scorer_safety.py", "-k", "bad_seed")),
    Mutant("kit-python-39-accepted", "jetson/install.sh",
           "python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || die",
           "python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' || die",
           ("tests/test_jetson.py", "-k", "python_39")),
    Mutant("stop-sighup-kills", "runtime/stop_signals.py",
           'STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))',
           'STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))',
           ("tests/test_capture.py", "-k", "leaves_complete_results")),
    Mutant("train-width-unranged", "edge_ad/commands/train.py",
           '@click.option("--width", "width", type=click.IntRange(min=1), default=64,',
           '@click.option("--width", "width", type=int, default=64,', ("tests/test_train.py", "-k", "out_of_range")),
    Mutant("eval-max-per-class-negative", "edge_ad/commands/evaluate.py",
           '@click.option("--max-per-class", type=click.IntRange(min=0), default=0,',
           '@click.option("--max-per-class", type=int, default=0,', ("tests/test_evaluate.py", "-k", "bad_number")),
    Mutant("ros-rotation-unchecked", "jetson/ros2_node.py", "    if why:                                       # as edge-ad run",
           "    if False:                                     # as edge-ad run", ("tests/test_ros.py", "-k", "rotation")),
    Mutant("rotation-keep-without-rotate", "runtime/results.py", "    if keep and not rotate:", "    if False:",
           ("tests/test_run.py", "-k", "rotation_options")),
    Mutant("scorer-providers-unchecked", "runtime/scorer.py",
           "            check_providers(providers)\n", "            pass\n",
           ("tests/test_tensorrt_ort_cuda.py", "-k", "k0_model")),
    Mutant("docker-cmd-without-rotation", "jetson/Dockerfile",
           '"--out", "/data/results.jsonl", "--rotate-mb", "100", "--rotate-keep", "20", "--frame-timeout", "20", \\',
           '"--out", "/data/results.jsonl", \\', ("tests/test_jetson.py", "-k", "all_day_options")),
    Mutant("kit-service-without-model", "jetson/install.sh",
           'if [ "$SERVICE" = 1 ] && [ -z "$MODEL" ] && [ ! -f "$PREFIX/model/manifest.json" ]; then',
           'if false; then', ("tests/test_jetson.py", "-k", "service_without_a_model")),
    Mutant("bench-any-export", "edge_ad/commands/bench.py", "    if got == want:\n        return None",
           "    if True:\n        return None", ("tests/test_bench.py", "-k", "another_checkpoint")),
    Mutant("state-dict-problems-unnamed", "models/checkpoint.py",
           "    problems = _state_dict_problems(sd, g.state_dict())", "    problems = ''",
           ("tests/test_models.py", "-k", "does_not_fit")),
    Mutant("export-replaced-silently", "export/install.py", "    if earlier is not None and log is not None:",
           "    if False:", ("tests/test_export_replace.py", "-k", "which_earlier")),
    Mutant("sheet-unjudged-as-normal", "runtime/sheet.py",
           "                self._keep(self._unjudged, s, rec, frame, res, self.max_flagged)",
           "                pass", ("tests/test_first_contact.py", "-k", "without_a_threshold")),
    Mutant("eval-out-unlocked", "edge_ad/commands/evaluate.py", "        if not try_lock(lock):", "        if False:",
           ("tests/test_evaluate.py", "-k", "second_eval")),
    Mutant("train-out-unlocked", "models/train.py",
           "        if not dist.broadcast(try_lock(lock) if dist.is_main else None):", "        if False:",
           ("tests/test_train.py", "-k", "second_training")),
    Mutant("display-headless-taken", "runtime/display.py", "        if _without_gui(cv2):", "        if False:",
           ("tests/test_picture_hooks.py", "-k", "headless")),
    Mutant("eval-nuisance-not-kept", "models/evaluate.py", "        if len(kept) == len(X):", "        if False:",
           ("tests/test_evaluate.py", "-k", "nuisance_suite_scorings")),
    Mutant("parity-theta-effect-unchecked", "export/parity.py",
           "            and (theta is None or theta <= THETA_EFFECT_TOLERANCE)", "            and True",
           ("tests/test_export_gate.py", "-k", "theta")),
    Mutant("pixel-search-radius-capped-3", "models/search.py",
           "pixel_memory.frame_distances(np.asarray(X), cfg.pixel_shift_radius, pixel_exclude,",
           "pixel_memory.frame_distances(np.asarray(X), min(cfg.pixel_shift_radius, 3), pixel_exclude,",
           ("tests/test_cylinder_mirror_geometry.py", "-k", "4_px")),
    Mutant("parity-theta-noise-unallowed", "export/parity.py",
           "THETA_EFFECT_NOISE_FACTOR = 2.0\n", "THETA_EFFECT_NOISE_FACTOR = 0.0\n",
           ("tests/test_export_gate.py", "-k", "float32_rounding")),
    Mutant("folder-root-no-class-hint", "runtime/sources/folder.py", "        if classes:", "        if False:",
           ("tests/test_sources.py", "-k", "name_the_problem")),
    Mutant("source-query-int-literal", "runtime/sources/__init__.py",
           '        raise ValueError(f"{scheme} {key} must be {what}, got {q[key]!r}") from None',
           "        raise", ("tests/test_sources.py", "-k", "name_the_problem")),
    Mutant("model-file-click-line", "edge_ad/commands/options.py",
           "    if value is not None and os.path.isfile(value):", "    if False:",
           ("tests/test_first_contact.py", "-k", "checkpoint_given")),
    Mutant("data-first-bad-frame-only", "models/data.py",
           '            bad.append(str(e) if str(e).startswith(f"frame {fid}") else f"frame {fid}: {e}")',
           "            raise DataError(str(e)) from None",
           ("tests/test_data.py", "-k", "every_bad_frame")),
    Mutant("sheet-mistakes-not-kept", "runtime/sheet.py",
           '        if truth and rec.get("anomalous") is not None and bool(truth.get("anomalous")) != flagged:',
           "        if False:", ("tests/test_first_contact.py", "-k", "sheet")),
    Mutant("batch-keys-unchecked", "edge_ad/commands/batch.py",
           "load_manifest(model_dir, verify=True, trusted_keys=keys)", "load_manifest(model_dir, verify=True)",
           ("tests/test_batch.py", "-k", "trusted_key")),
    Mutant("batch-worker-keys-dropped", "edge_ad/batch/worker.py",
           "    return Scorer.load(model_dir, threads=threads, trusted_keys=list(trusted_keys) if trusted_keys else None)",
           "    return Scorer.load(model_dir, threads=threads)", ("tests/test_batch.py", "-k", "trusted_key")),
    Mutant("batch-ships-no-signature", "edge_ad/batch/worker.py",
           "    signed = [SIGNATURE] if (model_dir / SIGNATURE).is_file() else []", "    signed = []",
           ("tests/test_batch.py", "-k", "trusted_key")),
    Mutant("export-sigterm-no-unwind", "edge_ad/commands/stop.py",
           "        signal.signal(sig, _stop)", "        pass",
           ("tests/test_export_replace.py", "-k", "sigterm")),
    Mutant("pairer-cadence-is-a-stall", "runtime/sources/pairing.py",
           "            if period and now[missing] - self._pair_t[missing] > STALL_PERIODS * period:",
           "            if period:", ("tests/test_stream_gaps.py",)),
    Mutant("export-no-threshold-silent", "edge_ad/commands/export.py",
           '    if not man.get("threshold"):       # edge-ad run would flag nothing: say how to get one',
           "    if False:", ("tests/test_export_threshold.py", "-k", "says_how")),
    Mutant("bag-no-depth-topic-unsaid", "runtime/sources/rosbag.py",
           "        if not cands:        # e.g. a colour-only recording", "        if False:",
           ("tests/test_sources.py", "-k", "bag_without_depth")),
    Mutant("cal-cut-recording-exit-0", "edge_ad/commands/calibrate.py",
           'if c.get("recording_truncated") or c.get("stream_gaps"):', 'if c.get("stream_gaps"):',
           ("tests/test_salvage.py", "-k", "calibrate_on_a_cut")),
    Mutant("bag-cut-known-only-at-its-end", "runtime/sources/rosbag.py",
           "if self._truncated is None:", "if self._truncated is None and record_events:",
           ("tests/test_salvage.py", "-k", "calibrate_on_a_cut")),
    Mutant("bag-cut-not-counted", "runtime/sources/rosbag.py",
           "self.frame_count()", "None",
           ("tests/test_salvage.py", "-k", "calibrate_on_a_cut")),
    Mutant("sheet-replaces", "runtime/pictures.py", "    while free.exists():", "    while False:",
           ("tests/test_first_contact.py", "-k", "sheet_written_at_run_end")),
    Mutant("res-last-line-unchecked", "runtime/results.py",
           "if problem is None and previous is not None and not previous.startswith(LINE_START):", "if False:",
           ("tests/test_reliability.py", "-k", "newline_whose_last_line")),
    Mutant("res-empty-line-refused", "runtime/results.py", "previous = last_text_line_start(self.path, size - n)",
           "previous = last_line_start(self.path, size - n)",
           ("tests/test_reliability.py", "-k", "newline_whose_last_line")),
    Mutant("graph-inputs-rank-only", "runtime/integrity.py",        # review 26 #1
           'if got == "missing" or len(got) != len(shape) or any(g != d for g, d in fixed):',
           'if got == "missing" or len(got) != len(shape):',
           ("tests/test_model_integrity.py", "-k", "another_export")),
    Mutant("truth-whole-percent", "runtime/truth.py", 'text = f"{100 * share:.1f}"', 'text = f"{100 * share:.0f}"',
           ("tests/test_first_contact.py", "-k", "truth_tally_memory")),
    Mutant("train-no-resume-replaces", "models/train.py",             # audit 26 #11
           "if not resume and dist.broadcast(ckpt_path.exists() if dist.is_main else None):", "if False:",
           ("tests/test_train.py", "-k", "resume_equals")),
    Mutant("bench-out-replaced-late", "edge_ad/commands/bench.py", "if out and Path(out).exists():", "if False:",
           ("tests/test_bench.py", "-k", "small_run")),
    Mutant("pictures-fill-the-disk", "runtime/anomaly_saver.py", "        if usage.free < need:",   # audit 26 #13
           "        if False:", ("tests/test_run.py", "-k", "free_space_reserve")),
    Mutant("rerun-viewer-path-only", "runtime/rerun_view.py",            # audit 26 #12
           "return str(beside) if beside.is_file() else None", "return None",
           ("tests/test_first_contact.py", "-k", "rerun_spawn")),
    Mutant("res-two-writers", "runtime/results.py", "            if not locked:",      # audit 26 #14
           "            if False:", ("tests/test_reliability.py", "-k", "being_written")),
    Mutant("batch-two-batches", "edge_ad/batch/driver.py", "        if not try_lock(lock):", "        if False:",
           ("tests/test_batch.py", "-k", "second_batch")),
    Mutant("res-refused-unlinks", "runtime/results.py",
           "if created and locked and os.fstat(self._f.fileno()).st_size == 0:",
           "if os.fstat(self._f.fileno()).st_size == 0:", ("tests/test_reliability.py", "-k", "being_written")),
    Mutant("cap-no-flush", "runtime/results.py", "            write_all(fd, data)",      # buffered, never flushed
           "            self._f.write(data.decode('utf-8'))", CAP),
    Mutant("cap-backoff-uncapped", "runtime/capture.py", "            delay = min(delay * 2, backoff[1])",
           "            delay = delay * 2", CAP),
    Mutant("cap-skipped-uncounted", "runtime/capture.py", "                self.skipped += 1", "                pass", CAP),
    Mutant("cap-same-seed", "runtime/capture.py", 'else {"seed": frame_seed(self.seed, i)}',
           'else {"seed": frame_seed(self.seed, 0)}', CAP),
    Mutant("cap-max-frames-off-by-one", "runtime/capture.py",
           "if self.max_frames is not None and self.stats.scored >= self.max_frames:",
           "if self.max_frames is not None and self.stats.scored > self.max_frames:", CAP),
    Mutant("cap-nan-score-written", "runtime/capture.py", "        if not math.isfinite(s):",
           "        if False:", CAP),
    Mutant("cap-exit-bad-frames-before-none", "runtime/capture.py", '    if not summary.get("frames_scored"):',
           '    if not summary.get("frames_scored") and not summary.get("frame_errors"):',
           ("tests/test_capture_policies.py",)),
    Mutant("cap-stop-overrides-failure", "runtime/capture.py",
           "    if not stop_requested or stopped in FAILED_STOPS + (STOP_INTERRUPTED,):",
           "    if not stop_requested:", ("tests/test_capture_policies.py", "tests/test_reliability.py")),
    Mutant("cap-seed-losses-renamed", "runtime/capture.py", '        rec["seed_losses"] = [float(v)',
           '        rec["losses"] = [float(v)', ("tests/test_capture_policies.py", "-k", "frame_record")),
    Mutant("cap-watch-on-for-labelled", "runtime/capture.py", "    if alarm_window is None and source.labelled:",
           "    if alarm_window is None and False:", ("tests/test_alarm_watch.py", "-k", "labelled")),
    Mutant("cap-always-check-faults-kw", "runtime/capture.py",
           'self.faults_kw = {"check_faults": False} if takes_check_faults(self.scorer.score) else {}',
           'self.faults_kw = {"check_faults": False}', ("tests/test_capture_old_contract.py",)),
    # -- the alarm-rate watch (runtime/alarm_watch.py, its binomial test, its place in the run loop) ---------
    Mutant("watch-lower-tail", "runtime/binomial.py", "for j in range(k, n + 1)]", "for j in range(0, k + 1)]",
           WATCH),
    Mutant("watch-alpha-x10", "runtime/alarm_watch.py",
           "limits = (accepted_count(n, rate, alpha) + 1, accepted_count(n, rate, NORMAL_P))",
           "limits = (accepted_count(n, rate, 10 * alpha) + 1, accepted_count(n, rate, NORMAL_P))", WATCH),
    Mutant("watch-calm-step", "runtime/alarm_watch.py",
           "limits = (accepted_count(n, rate, alpha) + 1, accepted_count(n, rate, NORMAL_P))",
           "limits = (accepted_count(n, rate, alpha) + 1, accepted_count(n, rate, NORMAL_P) + 1)", WATCH),
    Mutant("watch-grown-fire-tail-one-up", "runtime/alarm_watch.py",
           "fire = fire if binomial_tail(fire, n, rate) < alpha else fire + 1",
           "fire = fire if binomial_tail(fire + 1, n, rate) < alpha else fire + 1", WATCH),
    Mutant("watch-grown-calm-tail-one-down", "runtime/alarm_watch.py",
           "calm = calm + 1 if binomial_tail(calm + 1, n, rate) >= NORMAL_P else calm",
           "calm = calm + 1 if binomial_tail(calm, n, rate) >= NORMAL_P else calm", WATCH),
    Mutant("watch-limits-always-bisected", "runtime/alarm_watch.py", "    if before is None:", "    if True:",
           ("tests/test_alarm_watch.py", "-k", "two_tails")),
    Mutant("watch-limits-cache-unbounded", "runtime/alarm_watch.py", "        if len(_LIMITS) >= _MAX_LIMITS:",
           "        if False:", ("tests/test_alarm_watch.py", "-k", "grown_frame_by_frame")),
    Mutant("binomial-accepted-never-all", "runtime/binomial.py",     # k = n never returned (n x rate ~ n)
           "lo, hi = 0, n                           # the tail at lo is >= alpha; the answer is in [lo, hi]",
           "lo, hi = 0, n - 1                       # the tail at lo is >= alpha; the answer is in [lo, hi]",
           ("tests/test_calibrate_threshold.py", "-k", "frames_accepted")),
    Mutant("watch-bound-off-by-one", "runtime/binomial.py", "if binomial_tail(k + 1, n, mid) < confidence:",
           "if binomial_tail(k, n, mid) < confidence:", WATCH),
    Mutant("count-accepts-bool", "runtime/binomial.py",
           "return isinstance(x, int) and not isinstance(x, bool) and x >= least",
           "return isinstance(x, int) and x >= least", ("tests/test_alarm_watch.py", "-k", "one_count_check")),
    Mutant("scorer-n-normal-zero", "runtime/scorer.py", "return n if is_count(n, 1) else None",
           "return n if is_count(n) else None", ("tests/test_alarm_watch.py", "-k", "one_count_check")),
    Mutant("watch-n-normal-ignored", "runtime/alarm_watch.py", "expected, how = watched_rate(float(model_rate), model_n_normal, model_frames_above)",
           "expected, how = watched_rate(float(model_rate), None, model_frames_above)", WATCH),
    Mutant("watch-fire-off-by-one", "runtime/alarm_watch.py", "if not self._high and self._flagged >= fire:",
           "if not self._high and self._flagged > fire:", WATCH),
    Mutant("watch-no-hysteresis", "runtime/alarm_watch.py", "if self._high and self._flagged <= calm:",
           "if self._high and self._flagged < fire:", WATCH),
    Mutant("watch-no-min-frames", "runtime/alarm_watch.py", "self.min_frames = min(window, MIN_FRAMES)",
           "self.min_frames = 1", WATCH),
    Mutant("watch-window-never-slides", "runtime/alarm_watch.py", "if len(self._frames) > self.window:",
           "if len(self._frames) > 10 * self.window:", WATCH),
    Mutant("watch-first-index", "runtime/alarm_watch.py", '"first_index": self._frames[0][0]',
           '"first_index": self._frames[1][0]', WATCH),
    Mutant("watch-override-watched", "runtime/alarm_watch.py",
           "if model_threshold is None or float(threshold) != float(model_threshold):", "if model_threshold is None:",
           WATCH),
    Mutant("watch-error-frames-count", "runtime/capture.py",
           "        return _skip(run, report, base, fr, fr.error)",
           "        return _skip(run, report, base, fr, fr.error) or (watch is not None and watch.add(True, i) and None)",
           WATCH),
    Mutant("watch-changes-the-flag", "runtime/capture.py", "    run.stats.add_scored(total_ms, tm.get(\"search_ms\"), rec[\"anomalous\"])",
           "    rec[\"anomalous\"] = rec[\"anomalous\"] or (watch is not None and watch._high); "
           "run.stats.add_scored(total_ms, tm.get(\"search_ms\"), rec[\"anomalous\"])",
           WATCH),
    Mutant("watch-ros-no-hook", "jetson/ros2_node.py", "on_outage=hook.outage, on_alarm_rate=hook.alarm_rate,",
           "on_outage=hook.outage,", WATCH),
    # -- the graph builder (export/onnx_graphs.py) ----------------------------------------------------------
    Mutant("graph-bn-gamma-sign", "export/onnx_graphs.py",
           'grads[f"bn{l}.gamma"] = b.op("ReduceSum", [b.op("Mul", [d, xhat]), b.i64([2, 3])], keepdims=0)',
           'grads[f"bn{l}.gamma"] = b.op("Neg", [b.op("ReduceSum", [b.op("Mul", [d, xhat]), b.i64([2, 3])], '
           'keepdims=0)])', GRAD),
    Mutant("graph-relu-ge", "export/onnx_graphs.py", 'd = b.op("Where", [b.op("Greater", [a, zero]), d, zero])',
           'd = b.op("Where", [b.op("GreaterOrEqual", [a, zero]), d, zero])', GRAD),
    Mutant("graph-bias4-sign", "export/onnx_graphs.py",
           'grads["bias4"] = b.op("ReduceSum", [d, b.i64([2, 3])], keepdims=0)',
           'grads["bias4"] = b.op("Neg", [b.op("ReduceSum", [d, b.i64([2, 3])], keepdims=0)])', GRAD),
    Mutant("graph-bn-backward-no-inv-std", "export/onnx_graphs.py",
           'd = b.op("Mul", [d, b.op("Mul", [g4, bn_consts[l][1]])])', 'd = b.op("Mul", [d, g4])', GRAD),
    Mutant("graph-tanh-derivative", "export/onnx_graphs.py",
           'b.op("Sub", [b.const(1.0, f"one_{b._n}"), b.op("Mul", [recon, recon])])',
           'b.op("Add", [b.const(1.0, f"one_{b._n}"), b.op("Mul", [recon, recon])])', GRAD),
    Mutant("graph-mse-scale", "export/onnx_graphs.py", 'two_over_n = b.const(2.0 / numel, "two_over_numel")',
           'two_over_n = b.const(1.0 / numel, "two_over_numel")', GRAD),
    Mutant("graph-adam-no-eps", "export/onnx_graphs.py",
           'den = b.op("Add", [b.op("Mul", [b.op("Sqrt", [v1]), alpha]), eps_k])',
           'den = b.op("Mul", [b.op("Sqrt", [v1]), alpha])', GRAD),
    Mutant("graph-adam-v-beta1", "export/onnx_graphs.py", 'v1 = b.op("Add", [b.op("Mul", [v, s["beta2"]]),',
           'v1 = b.op("Add", [b.op("Mul", [v, s["beta1"]]),', GRAD),
    Mutant("graph-adam-alpha-no-sqrt", "export/onnx_graphs.py",
           'alpha = b.op("Div", [b.op("Mul", [b.op("Sqrt", [s["one_minus_beta2"]]), s["inv_sqrt_bc2"]]), k])',
           'alpha = b.op("Div", [b.op("Mul", [s["one_minus_beta2"], s["inv_sqrt_bc2"]]), k])', GRAD),
    Mutant("graph-bn-forward", "export/onnx_graphs.py", 'xhat = b.op("Mul", [b.op("Sub", [h, mean]), inv_std])',
           'xhat = b.op("Mul", [b.op("Add", [h, mean]), inv_std])', GRAD),
    Mutant("graph-bn-eps", "export/onnx_graphs.py", "BN_EPS = 1e-5", "BN_EPS = 1e-3", GRAD),
    Mutant("graph-seed-loss-sum", "export/onnx_graphs.py",
           'b.output(b.op("ReduceMean", [sq, b.i64([1, 2, 3])], keepdims=0), "seed_losses", [S])',
           'b.output(b.op("ReduceSum", [sq, b.i64([1, 2, 3])], keepdims=0), "seed_losses", [S])', RUNNER),
    Mutant("graph-error-map-max", "export/onnx_graphs.py",
           'b.output(b.op("ReduceMean", [sq, b.i64([0, 1])], keepdims=0), "error_map", [R, R])',
           'b.output(b.op("ReduceMax", [sq, b.i64([0, 1])], keepdims=0), "error_map", [R, R])', RUNNER),
    Mutant("graph-panel-limit", "export/onnx_graphs.py", "PANEL_MAX_P = 64", "PANEL_MAX_P = 16", GRAD,
           equivalent="which layers are stored as column panels is a layout (speed) choice: the same maths for "
                      "every panel/non-panel split, and the manifest carries the layout the runtime regroups to"),
    # -- the host kernels' Python side (runtime/backends/host_adam.py, host_head.py, onnxruntime_host_adam.py)
    Mutant("adam-coef-eps", "runtime/backends/host_adam.py", 'return s["beta1"], s["beta2"], alpha, f(s["eps"] / k)',
           'return s["beta1"], s["beta2"], alpha, f(s["eps"])', FUSED),
    Mutant("adam-numpy-m-sign", "runtime/backends/host_adam.py", "            mc += gc ", "            mc -= gc ", FUSED),
    Mutant("adam-numpy-first-m", "runtime/backends/host_adam.py", "            mc[...] = gc ", "            mc[...] = 0 ", FUSED),
    Mutant("adam-overlap-unchecked", "runtime/backends/host_adam.py", "            if np.may_share_memory(a, b):",
           "            if False:", FUSED),
    Mutant("adam-numpy-chunk", "runtime/backends/host_adam.py", "_CHUNK = 1 << 15", "_CHUNK = 1 << 10", FUSED,
           equivalent="the NumPy Adam's chunk size only sets how much of each pass stays in cache: elementwise, "
                      "the same result for any chunking (bit for bit)"),
    Mutant("head-betas-swapped", "runtime/backends/host_head.py",
           "b1, b2, alpha, eps_k = (float(c) for c in coefs) if update",
           "b2, b1, alpha, eps_k = (float(c) for c in coefs) if update", HEAD),
    Mutant("head-first-forward-stale", "runtime/backends/onnxruntime_host_adam.py",
           "head.forward(zf, (p0 if first or self.z_only else p)[:nh], b[\"a1\"])",
           "head.forward(zf, (p0 if self.z_only else p)[:nh], b[\"a1\"])", HOST_PARITY),
    Mutant("head-first-backward-stale", "runtime/backends/onnxruntime_host_adam.py",
           "p[:nh], m[:nh], v[:nh], p0[:nh] if first else None, cp)", "p[:nh], m[:nh], v[:nh], None, cp)",
           HOST_PARITY),
    Mutant("head-dims-c0-multiple", "runtime/backends/host_head.py",
           "if self.z_dim < 1 or self.c0 < 4 or self.c0 % 4 or self.n1 < PANEL or self.n1 % PANEL:",
           "if self.z_dim < 1 or self.c0 < 4 or self.n1 < PANEL or self.n1 % PANEL:", HEAD,
           equivalent="the compiled kernel refuses the same dims itself (work_size: 'unsupported head dims ... "
                      "c0 % 4 == 0'), so Head and Scorer.load still refuse them; the Python check names them earlier"),
    Mutant("head-overlap-unchecked", "runtime/backends/host_head.py",
           "if name != w and a is not None and np.may_share_memory(bufs[w], a):", "if False:", HEAD),
    Mutant("search-last-weight-step-dropped", "runtime/backends/onnxruntime_host_adam.py",
           "        if pending is not None:            # the last step's, before the final pass\n"
           "            host_adam.adam_update(p[nh:], m[nh:], v[nh:], b[\"g\"], pending[0], pending[1], self.adam_impl)",
           "        if pending is not None:            # the last step's, before the final pass\n            pass",
           HOST_PARITY),
    Mutant("search-z-moments-not-reset", "runtime/backends/onnxruntime_host_adam.py",
           'cz, self.z0[s] if first else None, self.adam_impl)', "cz, None, self.adam_impl)", HOST_PARITY),
    Mutant("search-first-weight-step-stale", "runtime/backends/onnxruntime_host_adam.py",
           "pending = (cp, p0[nh:] if first else None)", "pending = (cp, None)", HOST_PARITY),
    Mutant("search-error-map-mean", "runtime/backends/onnxruntime_host_adam.py",
           "np.sum(r[\"error_map\"], axis=0, dtype=np.float32) / np.float32(self.S)",
           "np.sum(r[\"error_map\"], axis=0, dtype=np.float32) / np.float32(self.S + 1)", HOST_PARITY),
    Mutant("search-weights-at-lr-z", "runtime/backends/onnxruntime_host_adam.py",
           "host_adam.coefficients(cfg, t, cfg.lr_theta))", "host_adam.coefficients(cfg, t, cfg.lr_z))", HOST_PARITY),
    # -- sensor faults, stale cameras, the CLI's missing-package line (audit 17 #3, #4, #5) --------------------
    Mutant("fault-flat-unchecked", "runtime/sensor_faults.py",
           "if spread is not None and spread < lim.min_colour_spread:",
           "if spread is not None and spread < 0:", FLAT),
    Mutant("fault-flat-smallest-channel", "runtime/sensor_faults.py",
           "return float(colours.astype(np.float64).std(axis=0).max())",
           "return float(colours.astype(np.float64).std(axis=0).min())", FLAT),
    # audit 32 #1: one colour plus sensor noise (a covered / fogged lens) is flat_rgb; real shading, gradients not
    Mutant("fault-noisy-flat-unchecked", "runtime/sensor_faults.py", "            if noisy:",
           "            if False:", ("tests/test_sensor_faults_flat.py", "-k", "covered_or_fogged")),
    Mutant("fault-featureless-unchecked", "runtime/sensor_faults.py",
           "if spread is not None and spread < lim.featureless_spread:", "if spread is not None and spread < 0:",
           ("tests/test_sensor_faults_flat.py", "-k", "luminance")),
    Mutant("fault-noisy-flat-correlation-ignored", "runtime/sensor_faults.py",
           "corr is not None and corr < NOISY_FLAT_CORRELATION ", "corr is not None and corr < 2 ",
           ("tests/test_sensor_faults_flat.py", "-k", "dark_or_low_contrast")),
    Mutant("fault-noisy-flat-gradient", "runtime/sensor_faults.py",
           "share is not None and share > NOISY_FLAT_PIXEL_SHARE)", "share is not None and share > -1)",
           ("tests/test_sensor_faults_versions.py", "-k", "models_foreground")),
    # audit 33 #18: a table or background within far_mm in view is background_in_view; calibrate says so
    Mutant("fault-background-unchecked", "runtime/sensor_faults.py", "        if edge > lim.max_edge_foreground:",
           "        if edge > 1.0:", ("tests/test_background_in_view.py", "-k", "table_or_wall")),
    Mutant("fault-background-outermost-line", "runtime/sensor_faults.py",
           "k = max(1, int(round(side / EDGE_BAND)))", "k = 1",
           ("tests/test_background_in_view.py", "-k", "table_or_wall")),
    Mutant("fault-background-limit-tight", "runtime/preprocess.py", "max_edge_foreground: float = 0.7 ",
           "max_edge_foreground: float = 0.45 ", ("tests/test_background_in_view.py", "-k", "never")),
    # audit 33 #19: the silhouette lever's versions are one MODEL pixel at a camera's resolution
    Mutant("silhouette-versions-one-camera-pixel", "runtime/silhouette.py",
           '    k = model_pixel(depth, resolution)\n    r, d = _readings(', '    k = 1\n    r, d = _readings(', ("tests/test_silhouette_lever.py", "-k", "cameras")),
    Mutant("train-background-limit-kept", "edge_ad/commands/train.py",
           "spec, note = limits_for_training_frames(arr, spec)", "note = None",
           ("tests/test_background_in_view.py", "-k", "edge_ad_train")),
    Mutant("calibrate-background-cause-unsaid", "runtime/calibrate/scene_frames.py", "    if not n:\n        return \"\"",
           "    if True:\n        return \"\"", ("tests/test_background_in_view.py", "-k", "calibrate")),
    # audit 32 #2: a fault streak is said once when it starts and once, with its count, when it ends
    Mutant("capture-fault-streak-every-frame", "runtime/capture.py",
           'if fault is not None and streak is not None and streak["fault"] == fault:', "if False:",
           ("tests/test_sensor_faults_stuck_streams.py", "-k", "streak")),
    Mutant("capture-fault-streak-end-unsaid", "runtime/capture.py",
           "        report.end_fault_streak()    # a fault lasting until the end is counted too", "        pass",
           ("tests/test_sensor_faults_stuck_streams.py", "-k", "streak")),
    Mutant("pre-nan-depth-fix-unsaid", "runtime/preprocess.py", '"to 0 (no reading) first; ROS 32FC1 / cv_bridge mark them NaN")',
           '"")', ("tests/test_preprocess.py", "-k", "nan_holes")),
    Mutant("fault-stuck-one-sensor-ignored", "runtime/sensor_faults.py",
           "elif stuck_rgb or stuck_depth:", "elif False:", STUCK),
    Mutant("rs-stale-never", "runtime/sources/realsense.py",
           "if time.monotonic() - fresh_t > stale_s:", "if False:", RS_STALE),
    # a file given for the model directory (the manifest, a checkpoint) is named as a file, not "not found"
    Mutant("manifest-file-read-as-missing", "runtime/manifest.py", "    if not path.exists():\n", "    if True:\n",
           ("tests/test_model_integrity.py", "-k", "named_as_a_file")),
    # what is not an image array (a path, a dict) or not a pair (one array) is named as such
    Mutant("pre-image-array-any-object", "runtime/preprocess.py",
           "if arr is not None and arr.ndim > 0 and arr.dtype != object:", "if arr is not None:",
           ("tests/test_preprocess.py", "-k", "not_an_image_array")),
    Mutant("batch-pair-array-rows-as-items", "runtime/batch_scoring.py", "if isinstance(entry, np.ndarray):",
           "if False:", ("tests/test_batch_scoring.py", "-k", "not_a_pair")),
    Mutant("source-empty-is-cwd", "runtime/sources/__init__.py", "    if not uri.strip():", "    if False:",
           ("tests/test_sources.py", "-k", "dispatch_errors")),
    Mutant("capture-second-signal-unnamed", "runtime/capture.py",
           '            st.fatal_error = f"frame {st.abandoned_frame} abandoned: interrupted (second signal)"',
           "            pass", ("tests/test_capture.py", "-k", "second_signal")),
    Mutant("run-empty-source-is-default", "edge_ad/commands/run.py",
           "    if source_uri is not None and not source_uri.strip():", "    if False:",
           ("tests/test_run.py", "-k", "empty_source")),
    # audit 31 #7: an empty graph file (valid protobuf, no graph) is named, not "a graph of another export?"
    Mutant("integrity-no-graph-inputs-empty", "runtime/integrity.py", "        if not graphs:", "        if False:",
           ("tests/test_model_integrity.py", "-k", "empty_graph")),
    # audit 31 #6: calibrate's record names its model and source resolved, and keeps an earlier calibration
    Mutant("cal-previous-record-dropped", "runtime/calibrate/new_model.py",
           '        out["previous"] = manifest["calibration"]', "        pass",
           ("tests/test_calibrate.py", "-k", "came_from")),
    Mutant("cal-model-recorded-as-typed", "runtime/calibrate/new_model.py",
           '"from_model_resolved": str(Path(model_dir).resolve())', '"from_model_resolved": str(model_dir)',
           ("tests/test_calibrate.py", "-k", "came_from")),
    # audit 31 #9: depth-edge-erode:N, the frame's outside is no background
    Mutant("nuis-erode-outside-is-background", "runtime/nuisance/depth.py",
           "bg = np.pad(out_depth == 0, 1, constant_values=False)", "bg = np.pad(out_depth == 0, 1, constant_values=True)",
           ("tests/test_nuisance.py", "-k", "edge_erode")),
    # shift:PX via the Python API: refused by the nuisance itself, its move computed, not listed
    Mutant("nuis-random-shift-unchecked", "runtime/nuisance/geometric.py",
           "refuse_too_large(self, depth.shape)\n        dy, dx = ring_move", "pass\n        dy, dx = ring_move",
           ("tests/test_nuisance.py", "-k", "refused_by_the_nuisance")),
    Mutant("nuis-blur-unchecked", "runtime/nuisance/blur.py",
           "        refuse_too_large(self, depth.shape)\n        k = gaussian_kernel(self.sigma)",
           "        pass\n        k = gaussian_kernel(self.sigma)", ("tests/test_nuisance.py", "-k", "blur_as_wide")),
    Mutant("nuis-blur-radius-equal-accepted", "runtime/nuisance/limits.py", "    if r >= min(height, width):",
           "    if r > min(height, width):", ("tests/test_nuisance.py", "-k", "blur_as_wide")),
    Mutant("nuis-ring-move-sides-swapped", "runtime/nuisance/geometric.py",
           "return -px + 1 + j // 2, (px if j % 2 else -px)", "return -px + 1 + j // 2, (-px if j % 2 else px)",
           ("tests/test_nuisance.py", "-k", "drew_when")),
    # a live RealSense's colour frame counter going back is a restart (camera_restart), not "nothing new"
    Mutant("rs-restart-read-as-stale", "runtime/sources/realsense.py",
           "if n is None or n == last:", "if n is None or (last is not None and n <= last):",
           ("tests/test_realsense_restart.py",)),
    Mutant("rs-restart-unreported", "runtime/sources/realsense.py",
           "self.events.append(restart_event(self.uri, last, n))", "pass", ("tests/test_realsense_restart.py",)),
    Mutant("cli-train-guard-off", "edge_ad/cli.py", "if package not in TRAIN_PACKAGES + (\"onnxruntime\",):", "if True:",
           ("tests/test_cli_missing_package.py",)),
    # -- the pixel memory (runtime/pixel_memory.py, SearchConfig.score_pixel_power) ----------------------------
    Mutant("pixel-block-short", "runtime/pixel_memory.py",
           "return (idx[:, None] * A + np.arange(A)[None]).reshape(-1)",
           "return (idx[:, None] * A + np.arange(A - 1)[None]).reshape(-1)", PIXEL),
    Mutant("pixel-margin-zero", "runtime/pixel_memory.py", "margin = (4.0 * self._gamma * xc_norm",
           "margin = 0.0 * (4.0 * self._gamma * xc_norm", PIXEL_UNIT),
    Mutant("pixel-bound-not-lower", "runtime/pixel_memory.py", "return np.concatenate([B * mean, np.sqrt(",
           "return np.concatenate([2 * B * mean, np.sqrt(", PIXEL_BOUND),
    Mutant("pixel-bound-sum-of-norms", "runtime/pixel_memory.py", "    blocks -= mean[:, :, None]\n",
           "    blocks += mean[:, :, None]\n", PIXEL_BOUND),
    Mutant("pixel-decode-no-clip", "runtime/pixel_memory.py",
           "np.clip(t, 0.0, 1.0, out=t)", "pass",
           ("tests/test_pixel_memory.py", "-k", "rebuilds")),
    Mutant("pixel-decode-gains-misindexed", "runtime/pixel_memory.py",
           "None if self._g is None else self._g[idx])", "None if self._g is None else self._g[:len(idx)])",
           ("tests/test_pixel_memory.py", "-k", "rebuilds")),
    Mutant("pixel-bound-cut-below-seed", "runtime/pixel_memory.py",
           "alive = lb <= best * D * (1.0 + 1e-9)", "alive = lb <= 0.9 * best * D", PIXEL_BOUND),
    Mutant("pixel-loo-check-frame-0", "models/search.py", "bad = np.flatnonzero(gaps > 1e-6)",
           "bad = np.flatnonzero(gaps[:1] > 1e-6)", ("tests/test_pixel_memory.py", "-k", "every_frame")),
    Mutant("pixel-factor-multiplies", "runtime/score_scale.py",
           "return fg / (latent_factor(latent_distance, cfg) * pixel_factor(pixel_distance, cfg))",
           "return fg / latent_factor(latent_distance, cfg) * pixel_factor(pixel_distance, cfg)", PIXEL),
    Mutant("pixel-batch-first-distance", "runtime/batch_scoring.py",
           "pixel_dist=None if pixel_distances is None else float(pixel_distances[i]))",
           "pixel_dist=None if pixel_distances is None else float(pixel_distances[0]))", PIXEL),
    Mutant("pixel-calibrate-own-block-kept", "runtime/calibrate/scene_scores.py",
           "out[i] = memory.frame_distance(inputs(i), radius, exclude=range(n_original + a, n_original + b), gain=gain)",
           "out[i] = memory.frame_distance(inputs(i), radius, exclude=[n_original + i], gain=gain)", PIXEL),
    Mutant("pixel-calibrate-raw-light", "runtime/calibrate/memories.py",
           'new_pixels = np.concatenate([original_frames, in_model_light(np.stack(scene["u8"]), spec)])',
           'new_pixels = np.concatenate([original_frames, np.stack(scene["u8"])])', ("tests/test_pixel_memory.py", "-k", "darker")),
    Mutant("pixel-shift-table-sign", "runtime/calibrate/camera_shift.py",
           "return None if tables is None else tables[i][(dy, dx)]",
           "return None if tables is None else tables[i][(-dy, -dx)]",
           ("tests/test_pixel_memory.py", "-k", "camera_shift_search_takes")),
    Mutant("shift-search-with-the-shift-min", "runtime/calibrate/camera_shift.py",
           "np.log(max(scorer.score_as_is(x, seed=0, pixel_distance=pixel_at(i, dy, dx),",
           "np.log(max(scorer.score_input(x, seed=0, pixel_distance=pixel_at(i, dy, dx),",
           ("tests/test_pixel_memory.py", "-k", "camera_shift_search_takes")),
    Mutant("shift-search-with-both-tolerances", "runtime/calibrate/camera_shift.py",     # the search until session 26
           "np.log(max(scorer.score_as_is(x, seed=0, pixel_distance=pixel_at(i, dy, dx),",
           "np.log(max(scorer.score_input(x, seed=0,",
           ("tests/test_pixel_memory.py", "tests/test_calibrate.py", "-k",
            "camera_shift_search_takes or shipped_cylinder_finds")),
    Mutant("score-as-is-searched-pixel-distance", "runtime/scorer.py",
           "pixel_distance = self.shifted_pixel_distances(x, [(0, 0)])[0]           # x as it is: no search",
           "pixel_distance = self.pixel_distance(x)",
           ("tests/test_pixel_memory.py", "-k", "camera_shift_search_takes")),
    Mutant("pixel-shift-table-chunk-start", "runtime/scorer.py",
           "out[a:a + len(copies)] = self._pixels.distances(copies, gain=self.config.pixel_gain_limits)",
           "out[:len(copies)] = self._pixels.distances(copies, gain=self.config.pixel_gain_limits)",
           ("tests/test_pixel_memory.py", "-k", "chunks")),
    # the camera-shift search measures the scene against the bank without its shifted copies (session 26)
    Mutant("shift-search-whole-bank", "runtime/calibrate/camera_shift.py", "memory=memory).score, 1e-30))",
           "memory=None).score, 1e-30))", ("tests/test_calibrate.py", "-k", "shifted_copies")),
    Mutant("shift-search-rows-keep-shifted-copies", "runtime/latent_memory.py",
           "kept = np.array([True] + [largest_shift(parse_nuisance(text)) == (0, 0) for text in augment])",
           "kept = np.array([True] + [True for text in augment])",
           ("tests/test_calibrate.py", "-k", "shifted_copies or subset_keep")),
    Mutant("shift-search-rows-originals-only", "runtime/latent_memory.py",
           "kept = np.array([True] + [largest_shift(parse_nuisance(text)) == (0, 0) for text in augment])",
           "kept = np.array([True] + [False for text in augment])",
           ("tests/test_calibrate.py", "-k", "subset_keep")),
    Mutant("shift-search-subset-unweighted", "runtime/latent_memory.py",
           "out._weights = None if self._weights is None else self._weights[keep]", "out._weights = None",
           ("tests/test_calibrate.py", "-k", "subset_keep")),
    Mutant("shift-search-memory-not-recorded", "runtime/calibrate/camera_shift.py",
           'return best, {"radius": radius, **record, "latent_memory": memory_record}',
           'return best, {"radius": radius, **record}', ("tests/test_calibrate.py", "-k", "shifted_copies")),
    Mutant("shift-taken-when-unmoved-fits-as-well", "runtime/calibrate/camera_shift.py", "elif p >= SHIFT_TIE_ALPHA:", "elif False:",
           ("tests/test_calibrate.py", "-k", "frames_can_tell")),
    Mutant("shift-tie-test-reversed", "runtime/calibrate/camera_shift.py",
           "return better, worse, binomial_tail(worse, better + worse, 0.5) if better + worse else 1.0",
           "return better, worse, binomial_tail(better, better + worse, 0.5) if better + worse else 1.0",
           ("tests/test_calibrate.py", "-k", "frames_can_tell")),
    Mutant("shift-as-good-without-sign-test", "runtime/calibrate/camera_shift.py",
           "and versus_best(i)[2] >= SHIFT_TIE_ALPHA]", "]", ("tests/test_calibrate.py", "-k", "frames_can_tell")),
    Mutant("shift-gain-in-raw-log-score", "runtime/calibrate/camera_shift.py",
           "unit = mean / power ", "unit = mean ", ("tests/test_calibrate.py", "-k", "frames_can_tell")),
    Mutant("threshold-raised-to-the-quantile", "runtime/calibrate/threshold.py",   # the rule before session 22
           "raised, allowed = lowest_accepted_threshold(scores, fpr)", "raised, allowed = quantile, frames_accepted(n, fpr)",
           ("tests/test_calibrate_threshold.py", "-k", "raised_only or one_frame_more")),
    Mutant("threshold-accepted-frames-one-fewer", "runtime/calibrate/threshold.py",
           "return accepted_count(n, fpr, SCENE_TEST_ALPHA)",
           "return accepted_count(n, fpr, SCENE_TEST_ALPHA) - 1",
           ("tests/test_calibrate_threshold.py", "-k", "frames_accepted or raised_only")),
    Mutant("threshold-raise-count-not-recorded", "runtime/calibrate/manifest_threshold.py",      # review 22 #2
           'read_from = {"n_normal": n, "frames_above": above, "normal": f"scene frames of {source}"}',
           'read_from = {"n_normal": n, "normal": f"scene frames of {source}"}',
           ("tests/test_calibrate_threshold.py", "-k", "consistent_scene")),
    Mutant("threshold-floored-count-of-the-quantile", "runtime/calibrate/threshold.py",     # the manifest's frames_above
           'test = {"frames": int(n), "frames_above_threshold": frames_above(scores, threshold)}',
           'test = {"frames": int(n), "frames_above_threshold": frames_above(scores, quantile)}',
           ("tests/test_calibrate_threshold.py", "-k", "quantile_rules or every_branch")),
    Mutant("threshold-kept-count-not-the-models", "runtime/calibrate/threshold.py",
           'test["frames_above_threshold"] = k                    # the threshold kept is the model\'s',
           'test["frames_above_threshold"] = 0                    # the threshold kept is the model\'s',
           ("tests/test_calibrate_threshold.py", "-k", "every_branch")),
    Mutant("calibrate-first-n-not-spread", "runtime/calibrate/selection.py",      # review 23 #10: one stretch of a recording
           "positions = spread_positions(length, max_frames) if every is None else None",
           "positions = None",
           ("tests/test_calibrate.py", "-k", "spreads_its_frames")),
    Mutant("calibrate-spread-by-ceil-stride", "runtime/calibrate/selection.py",   # 10 of 31 frames: 8 used, not 10
           "return tuple(i * int(length) // int(max_frames) for i in range(int(max_frames)))",
           "return tuple(range(0, int(length), -(-int(length) // int(max_frames))))",
           ("tests/test_calibrate.py", "-k", "spreads_its_frames")),
    Mutant("calibrate-unselected-frames-counted", "runtime/calibrate/scene_frames.py",
           "if not selects(read - 1):           # between two selected frames: only the detector sees it",
           "if False:           # between two selected frames: only the detector sees it",
           ("tests/test_calibrate.py", "-k", "neither_used_nor_counted")),
    Mutant("count-bag-pairs-beyond-slop", "runtime/sources/rosbag.py",     # session 25: a bag's frame count
           "self._count = sum(1 for _ in self._items(TimePairer(self.slop), keep=False))",
           'self._count = sum(1 for _ in self._items(TimePairer(float("inf")), keep=False))',
           ("tests/test_source_count.py", "-k", "unpaired")),
    Mutant("count-bag-without-error-frames", "runtime/sources/rosbag.py",
           "self._count = sum(1 for _ in self._items(TimePairer(self.slop), keep=False))",
           'self._count = sum(i[0] == "pair" for i in self._items(TimePairer(self.slop), keep=False))',
           ("tests/test_source_count.py", "-k", "unpaired")),
    Mutant("count-recording-pairs-beyond-slop", "runtime/sources/realsense.py",
           "pairer, n = TimePairer(self.slop_ms), 0", 'pairer, n = TimePairer(float("inf")), 0',
           ("tests/test_source_count.py", "-k", "realsense")),
    Mutant("rs-recording-resume-blocks", "runtime/sources/realsense.py",    # review 25 #1: the 10-s stall
           "self._resumer.start()", "self._resumer.run()",
           ("tests/test_realsense_resume.py", "-k", "queue_smaller")),
    Mutant("rs-recording-stopped-before-resume", "runtime/sources/realsense.py",
           "if not self._resumer.is_alive() and self.playback.current_status() == rs.playback_status.stopped:",
           "if self.playback.current_status() == rs.playback_status.stopped:",
           ("tests/test_realsense_resume.py", "-k", "stopped_before")),
    Mutant("count-bag-not-remembered", "runtime/sources/rosbag.py",       # review 25 #3
           "if self._count is None and self.count_error is None:", "if True:",
           ("tests/test_source_count.py", "-k", "remembered")),
    Mutant("count-recording-not-remembered", "runtime/sources/realsense.py",
           "if self._count is None and self.count_error is None:", "if True:",
           ("tests/test_source_count.py", "-k", "remembered")),
    Mutant("count-bag-failure-not-remembered", "runtime/sources/rosbag.py",  # review 25 #2
           "if self._count is None and self.count_error is None:", "if self._count is None:",
           ("tests/test_source_count.py", "-k", "cannot_be_counted")),
    Mutant("calibrate-labelled-spread-over-all", "runtime/calibrate/pipeline.py",        # audit 26 #9
           "normals = labelled_normals(frames) if every is None else None", "normals = None",
           ("tests/test_calibrate_labelled.py",)),
    Mutant("calibrate-uncounted-silent", "runtime/calibrate/pipeline.py",
           "for said in (uncounted_text(frames, plan, max_frames), selection_text(plan, length, max_frames, normals)):",
           "for said in (selection_text(plan, length, max_frames, normals),):",
           ("tests/test_source_count.py", "-k", "cannot_be_counted")),
    Mutant("calibrate-every-counts-anyway", "runtime/calibrate/pipeline.py",         # review 25 #4
           "length = source_length(frames, count=every is None)", "length = source_length(frames, count=True)",
           ("tests/test_source_count.py", "-k", "does_not_count")),
    Mutant("calibrate-count-silent", "edge_ad/commands/calibrate.py",
           "    if counts:\n", "    if False:\n",
           ("tests/test_source_count.py", "-k", "spreads_its_frames_over_a_bag")),
    Mutant("count-recording-no-deadline", "runtime/sources/realsense.py",
           "elif not stopped and time.monotonic() - fresh_t > PLAYER_STALL_S:", "elif False:",
           ("tests/test_realsense_resume.py", "-k", "hangs")),
    Mutant("rs-recording-read-no-deadline", "runtime/sources/realsense.py",     # review 25 #7
           "elif time.monotonic() - wait_t > PLAYER_STALL_S:    # librealsense #10312: a hung player",
           "elif False:    # librealsense #10312: a hung player",
           ("tests/test_realsense_resume.py", "-k", "reading_a_recording_whose_player_hangs")),
    Mutant("rs-recording-read-deadline-counts-the-consumer", "runtime/sources/realsense.py",
           "wait_t = time.monotonic()       # the time the consumer spent on the frames does not count",
           "pass       # the time the consumer spent on the frames does not count",
           ("tests/test_realsense_resume.py", "-k", "reading_a_recording_whose_player_hangs")),
    Mutant("calibrate-bag-length-unknown", "runtime/calibrate/selection.py",
           "n = counter() if callable(counter) else None", "n = None",
           ("tests/test_source_count.py", "-k", "calibrate")),
    Mutant("watch-ignores-recorded-count", "runtime/alarm_watch.py",
           "k = frames_above if recorded else frames_above_quantile(n_normal, rate)",
           "k = frames_above_quantile(n_normal, rate)",
           ("tests/test_alarm_watch.py", "-k", "recorded_count")),
    Mutant("pixel-calibrate-cap-after-scoring", "runtime/calibrate/pipeline.py",
           "if cfg.uses_pixel_memory:     # the grown pixel memory must fit before the scene is scored",
           "if False:     # the grown pixel memory must fit before the scene is scored",
           ("tests/test_pixel_memory.py", "-k", "byte_cap")),
    Mutant("pixel-shift-search-ignored", "runtime/pixel_memory.py",
           "offsets = shift_offsets(radius)", "offsets = shift_offsets(0)", PIXEL),
    Mutant("pixel-shift-search-max", "runtime/pixel_memory.py",
           "out[a:a + len(part)] = d.reshape(len(part), S).min(1)",
           "out[a:a + len(part)] = d.reshape(len(part), S).max(1)", PIXEL),
    Mutant("pixel-per-copy-batch", "runtime/scorer.py",
           "pixel_distances=None if pixel_dist is None else [pixel_dist] * len(copies))",
           "pixel_distances=None if pixel_dist is None else [self.pixel_distance(c) for c in copies])", PIXEL),
    Mutant("pixel-per-copy-one-by-one", "runtime/scorer.py",
           "rs = [self._score_copy(c, z0, seed, keep_reconstructions, time.perf_counter(), pixel_dist, memory)",
           "rs = [self._score_copy(c, z0, seed, keep_reconstructions, time.perf_counter(), self.pixel_distance(c), memory)",
           PIXEL),
    Mutant("pixel-batch-per-copy", "runtime/batch_scoring.py",
           "pixel_distances=None if pd is None else np.repeat(pd, S))",
           "pixel_distances=None if pd is None else pixels.frame_distances(X, scorer.config.pixel_shift_radius))",
           PIXEL),
    Mutant("pixel-batch-no-search", "runtime/batch_scoring.py",
           "pd = (pixels.frame_distances(np.stack(xs), scorer.config.pixel_shift_radius, gain=scorer.config.pixel_gain_limits)",
           "pd = (pixels.frame_distances(np.stack(xs), 0, gain=scorer.config.pixel_gain_limits)", PIXEL),
    Mutant("pixel-reference-per-copy", "models/search.py",
           "pixel_distance=pdist)", "pixel_distance=pixel_memory.distance(xs) if pdist is not None else None)", PIXEL),
    Mutant("pixel-reference-batch-per-copy", "models/search.py",
           "bank_rows_per_frame, pixel_memory, pixel_exclude,\n                                   pixel_distances, first_index)",
           "bank_rows_per_frame, pixel_memory, pixel_exclude,\n                                   None, first_index)",
           PIXEL),
    Mutant("pixel-calibrate-no-search", "runtime/calibrate/memories.py",
           "blocks, cfg.pixel_shift_radius, cfg.pixel_gain_limits)",
           "blocks, 0, cfg.pixel_gain_limits)", PIXEL),
    Mutant("pixel-gain-unclipped", "runtime/pixel_memory.py",
           "    g = np.clip(vr @ vx / xx, lo, hi) if xx > 0 else np.ones(len(rows))",
           "    g = vr @ vx / xx if xx > 0 else np.ones(len(rows))",
           ("tests/test_pixel_memory.py", "-k", "gain_fitted_distance_undoes")),
    Mutant("pixel-gain-margin-zero", "runtime/pixel_memory.py", "margin = ((4.0 * max(hi, 1.0) + 4.0) * self._gamma",
           "margin = 0.0 * ((4.0 * max(hi, 1.0) + 4.0) * self._gamma", PIXEL_UNIT),
    Mutant("pixel-gain-tables-eager", "runtime/pixel_memory.py",          # session 25: built only when asked for
           'self._gain: Optional[tuple] = None                             # (tables, max of tables["vv"])',
           "self._gain = self._build_gain_tables()", ("tests/test_pixel_memory.py", "-k", "built_by_the_first")),
    Mutant("pixel-gain-tables-unlocked", "runtime/pixel_memory.py", "            with self._gain_lock:",
           "            if True:", ("tests/test_pixel_memory.py", "-k", "built_by_the_first")),
    Mutant("pixel-release-loo-kept", "models/search.py", "pixel_exclude=[i])[0]", "pixel_exclude=None)[0]", PIXEL),
    # -- the silhouette lever (runtime/silhouette.py, session 33) ---------------------------------------------
    Mutant("silh-ero-unweighted", "runtime/silhouette.py", 'scores[v] * (weight if v == "ero" else 1.0)',
           "scores[v] * 1.0", SILH_UNIT),
    Mutant("silh-recorded-at-off", "runtime/config.py",
           'OFF_DEFAULTS = {**PIXEL_DEFAULTS, "silhouette_versions_weight": 0.0}', "OFF_DEFAULTS = {**PIXEL_DEFAULTS}",
           SILH_UNIT),
    Mutant("silh-paired-rows-for-id", "runtime/scorer.py", '            if v == "dil":\n                memory = self._dil_memory',
           '            if v != "ero":\n                memory = self._dil_memory', SILH),
    Mutant("silh-batch-dil-plain-memory", "runtime/batch_scoring.py", "graphs=graphs, memory=memories[dil], lock=lock",
           "graphs=graphs, memory=memories[0], lock=lock", SILH),
    Mutant("silh-run-uint8", "runtime/capture.py",
           '        if getattr(self.scorer, "needs_raw_frames", False):', "        if False:", SILH),
    Mutant("silh-loo-keeps-paired", "models/kinect-rgbd/make_release.py",
           "keep[A * N + 2 * i:A * N + 2 * i + 2] = False", "keep[A * N + 2 * i:A * N + 2 * i + 2] = True", SILH),
    # edge-ad calibrate of a lever model (session 34): held-out scores without the block's paired rows, the paired
    # rows grown, the dil version against them, the versions moved with an undone camera shift
    Mutant("silh-cal-own-paired-rows", "runtime/calibrate/scene_scores.py",
           "other_mem.with_rows(np.concatenate([paired[1][:a], paired[1][b:]]).reshape(-1, z_dim))",
           "other_mem.with_rows(paired[1].reshape(-1, z_dim))", SILH_CAL_HELD),
    Mutant("silh-cal-dil-unpaired", "runtime/calibrate/scene_scores.py",
           'paired=(original_paired, scene["opened_latents"]) if v == "dil" else None)', "paired=None)", SILH_CAL_HELD),
    Mutant("silh-cal-paired-not-grown", "runtime/calibrate/memories.py",
           'grown = np.concatenate([rows, scene["opened_latents"].reshape(-1, rows.shape[1])]).astype(np.float32)',
           "grown = rows", ("tests/test_calibrate_lever.py", "-k", "grows_its_paired_rows")),
    Mutant("silh-cal-versions-unmoved", "runtime/calibrate/camera_shift.py",
           '    if "versions" in scene:         # the silhouette lever', "    if False:         # the silhouette lever",
           ("tests/test_calibrate_lever.py", "-k", "moves_the_lever_versions")),
    Mutant("silh-opened-one-camera-pixel", "runtime/silhouette.py",
           "    k = model_pixel(depth, resolution)\n    return _grown(", "    k = 1\n    return _grown(",
           ("tests/test_calibrate_lever.py", "-k", "opened_frame_at_one_model_pixel")),
    Mutant("silh-cal-dil-pixels-unpaired", "runtime/calibrate/memories.py",
           "held_out(opened, len(out.paired_pixels) - n, dil)", "held_out(memory, len(original_frames), dil)",
           ("tests/test_calibrate_lever.py", "-k", "opened_frames_but_not")),
    Mutant("silh-cal-opened-unchecked", "runtime/calibrate/memories.py",
           '    if silhouette is not None and silhouette.get("pixels") is not None:', "    if False:",
           ("tests/test_calibrate_lever.py", "-k", "size_check")),
    Mutant("silh-dil-plain-pixels", "runtime/scorer.py", "                if self._dil_pixels is not None:\n                    pd =",
           "                if False:\n                    pd =", ("tests/test_silhouette_lever.py", "-k", "pixel_memory_pairs")),
    Mutant("silh-line-no-version", "runtime/capture.py", "    if won is not None:  # the silhouette lever",
           "    if False:  # the silhouette lever", ("tests/test_silhouette_lever.py", "-k", "result_lines")),
    # edge-ad eval of a lever model (audit 33 #15 a): the reference scores the raw frames' versions as the runtime
    Mutant("silh-eval-dil-plain-memory", "models/silhouette_reference.py", "        latent, pixels = memories[v]\n",
           '        latent, pixels = memories["id"]\n', SILH_EVAL),
    Mutant("silh-eval-unweighted", "models/silhouette_reference.py",
           "scores, won = combine(per, cfg.silhouette_versions_weight)", "scores, won = combine(per, 1.0)", SILH_EVAL),
    Mutant("silh-eval-suite-clean-frames", "models/evaluate.py", "got = {name: score_fn(x, perturbed[name]) for",
           "got = {name: score_fn(x, raw_groups[name]) for", SILH_EVAL),
    # export parity with the lever on (audit 33 #15 b): the combined score's own row, gating the export
    Mutant("silh-parity-dil-plain-memory", "export/parity.py", "latent_bank=memories[v][0],",
           'latent_bank=memories["id"][0],', SILH_PARITY),
    Mutant("silh-parity-row-not-gating", "export/parity.py", '              and (lever is None or lever["passed"]))',
           "              and True)", SILH_PARITY),
    Mutant("silh-verify-no-lever-off-note", "runtime/manifest.py",
           '            and (man.get("search") or {}).get("silhouette_versions_weight", 0) > 0:',
           "            and False:", SILH_PARITY),
    Mutant("silh-export-weight-ignored", "edge_ad/commands/export.py",
           "                     silhouette_versions_weight=silhouette_weight, bank_augment_weight=bank_augment_weight,",
           "                     bank_augment_weight=bank_augment_weight,",
           ("tests/test_silhouette_lever.py", "-k", "weight_option")),
    Mutant("silh-eval-weight-ignored", "edge_ad/commands/evaluate.py",
           "                     silhouette_versions_weight=silhouette_weight,\n", "\n", SILH_EVAL),
    Mutant("silh-eval-dil-plain-pixels", "models/silhouette_reference.py",
           '    return {"id": pixels, "ero": pixels, "dil": PairedPixelMemory(pixels, opened)}',
           '    return {"id": pixels, "ero": pixels, "dil": pixels}', ("tests/test_silhouette_lever.py", "-k", "pixel_memory_pairs")),
    Mutant("silh-eval-log-drops-winners", "models/evaluate.py",
           '                            self.winners.setdefault(rec["group"], []).extend(won)',
           "                            pass", SILH_EVAL),
    # -- the TensorRT engine build (runtime/backends/tensorrt.py) ----------------------------------------------
    Mutant("trt-fp32-keeps-tf32", "runtime/backends/tensorrt.py",
           'if precision == "fp32":\n        config.clear_flag(trt.BuilderFlag.TF32)',
           'if precision == "fp32":\n        config.set_flag(trt.BuilderFlag.TF32)', TRT),
    # -- a backend that cannot run here: one line, no traceback (audit 33 #2) --------------------------------
    Mutant("trt-engine-error-not-unavailable", "runtime/backends/engine_cache.py",
           "class EngineCacheError(BackendUnavailable):", "class EngineCacheError(RuntimeError):", TRT_RUN),
    Mutant("trt-cuda-error-not-unavailable", "runtime/backends/cuda_buffers.py",
           "class CudaError(BackendUnavailable):", "class CudaError(RuntimeError):", TRT_RUN),
    Mutant("run-backend-unavailable-uncaught", "edge_ad/commands/run.py",
           "    except BackendUnavailable as e:", "    except NotImplementedError as e:", TRT_RUN),
    Mutant("ros-backend-unavailable-uncaught", "jetson/ros2_node.py",
           "    except (ValueError, ImportError, BackendUnavailable) as e:",
           "    except (ValueError, ImportError) as e:", ("tests/test_ros.py", "-k", "backend_that_cannot")),
    # -- a checkpoint whose fields contradict its generator, a threshold rate outside (0, 1) (audit 33 #3) ----
    Mutant("ckpt-preprocess-resolution-unchecked", "models/checkpoint.py", "    if spec.resolution != cfg.resolution:",
           "    if False:", CKPT_FIELDS),
    Mutant("ckpt-config-resolution-unnamed", "models/checkpoint.py", '        raise CheckpointError(f"{path}: {e}") from None',
           "        raise", CKPT_FIELDS),
    Mutant("ckpt-threshold-rate-unchecked", "models/checkpoint.py", "        if threshold_rate_problem(thr):",
           "        if False:", CKPT_FIELDS),
    Mutant("rate-problem-no-upper-bound", "runtime/manifest.py",
           "isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1):",
           "isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate):", CKPT_FIELDS),
    Mutant("manifest-threshold-rate-unchecked", "runtime/manifest.py", "        if threshold_rate_problem(thr):",
           "        if False:", ("tests/test_model_integrity.py", "-k", "threshold-rate")),
    Mutant("export-threshold-rate-unchecked", "export/exporter.py", "    if threshold_rate_problem(threshold):",
           "    if False:", ("tests/test_export_threshold.py", "-k", "stored_and_checked")),
    # -- the manifest's descriptive entries (the model card) against its arrays (audit 33 #4) -----------------
    Mutant("manifest-model-card-unchecked", "runtime/manifest.py", '        if key in model and model[key] != lay[key]:',
           "        if False:", MODEL_CARD),
    Mutant("manifest-bank-dtype-unchecked", "runtime/manifest.py",
           '    if isinstance(bank, dict) and bank.get("dtype", "float32") != "float32":',
           '    if isinstance(bank, dict) and bank.get("dtype", "float32") not in ("float32", "float16"):', MODEL_CARD),
    Mutant("manifest-variant-names-unchecked", "runtime/manifest.py",
           "        if name not in VARIANTS and name not in REMOVED:", "        if False:", MODEL_CARD),
    Mutant("manifest-targets-unchecked", "runtime/manifest.py",
           "    if not isinstance(targets, list) or not set(targets) <= set(TARGETS):",
           "    if not isinstance(targets, list):", MODEL_CARD),
    Mutant("manifest-n-normal-unchecked", "runtime/manifest.py",
           "not isinstance(n_normal, int) or n_normal < 1):", "not isinstance(n_normal, int)):", MODEL_CARD),
]


def check_applies(m: Mutant, root: Path = REPO) -> str:
    """'' when the mutant applies to ``root`` (its text occurs exactly once and changes one line), else why not."""
    path = root / m.path
    if not path.is_file():
        return f"{m.path} does not exist"
    n = path.read_text(encoding="utf-8").count(m.old)
    if n != 1:
        return f"its text occurs {n} times in {m.path} (must be exactly once): {m.old!r}"
    changed = [(a, b) for a, b in zip(m.old.split("\n"), m.new.split("\n")) if a != b]
    if m.old.count("\n") != m.new.count("\n") or len(changed) != 1:
        return "it must change exactly one line"
    return ""


def _copy_checkout(dst: Path) -> None:
    """Tracked + untracked-but-not-ignored files, and the compiled kernels, into dst (no bytecode caches)."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                           capture_output=True).stdout.decode().split("\0")
    files += [str(p.relative_to(REPO)) for p in (REPO / "runtime").glob("**/*.so")]
    for f in filter(None, files):
        src = REPO / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def _link_packages(checkout: Path) -> None:
    """checkout/edge_ad/<pkg> -> checkout/<folder>: ``import edge_ad.runtime`` etc. then load the copy's
    files, whether the copy comes first on sys.path as PYTHONPATH or as a subprocess's working directory."""
    for name, folder in package_links(checkout).items():
        link = checkout / "edge_ad" / name
        if not link.exists():
            link.symlink_to(checkout / folder, target_is_directory=True)


def _run_tests(checkout: Path, env: dict, args: tuple, timeout: float) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'timeout', seconds, last lines of the output)."""
    t0 = time.perf_counter()
    cmd = [sys.executable, "-P", "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "--no-header", *args]
    try:
        p = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - t0, ""
    tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-3:])
    return ("pass" if p.returncode == 0 else "fail"), time.perf_counter() - t0, tail


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help="mutant names or name prefixes (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per test run (a timeout counts as killed)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary copy (its path is printed)")
    a = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not a.names or any(m.name.startswith(n) for n in a.names)]
    if not chosen:
        ap.error(f"no mutant matches {a.names}")
    if a.list:
        for m in chosen:
            print(f"{m.name:36s} {m.path:44s} {' '.join(m.tests)}" + ("  [equivalent]" if m.equivalent else ""))
        return 0
    bad = [(m.name, why) for m in chosen if (why := check_applies(m))]
    if bad:
        for name, why in bad:
            print(f"mutant {name} does not apply: {why}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="edge-ad-mutants-"))
    try:
        checkout = root / "checkout"
        _copy_checkout(checkout)
        shared = REPO.parent / "shared"
        if shared.exists():
            (root / "shared").symlink_to(shared)
        _link_packages(checkout)
        env = dict(os.environ, PYTHONPATH=str(checkout), PYTHONDONTWRITEBYTECODE="1")
        probe = subprocess.run([sys.executable, "-c", "import edge_ad.runtime as r; print(r.__file__)"], cwd=root,
                               env=env, capture_output=True, text=True)
        if not probe.stdout.startswith(str(checkout)):      # the tests would run the original code
            print(f"edge_ad does not import from the copy: {probe.stdout or probe.stderr}", file=sys.stderr)
            return 2
        subsets = list(dict.fromkeys(m.tests for m in chosen))
        print(f"{len(chosen)} mutants, {len(subsets)} test subsets; copy in {root}", flush=True)
        for s in subsets:                      # the tests must pass on the unmutated copy
            res, dt, tail = _run_tests(checkout, env, s, a.timeout)
            print(f"  baseline {' '.join(s)}: {res} ({dt:.0f} s)", flush=True)
            if res != "pass":
                print(tail, file=sys.stderr)
                print("the tests fail without any mutant: fix that first", file=sys.stderr)
                return 2
        rows = []
        for i, m in enumerate(chosen, 1):
            path = checkout / m.path
            text = path.read_text(encoding="utf-8")
            path.write_text(text.replace(m.old, m.new, 1), encoding="utf-8")
            try:
                res, dt, tail = _run_tests(checkout, env, m.tests, a.timeout)
            finally:
                path.write_text(text, encoding="utf-8")
            verdict = "survived" if res == "pass" else "killed" + (" (timeout)" if res == "timeout" else "")
            rows.append((m, verdict))
            first = next((ln for ln in tail.splitlines() if ln.startswith("FAILED")), "")
            print(f"[{i}/{len(chosen)}] {m.name}: {verdict} ({dt:.0f} s) {first[:150]}", flush=True)
        survived = [m for m, v in rows if v == "survived"]
        print(f"\n{len(rows)} mutants: {len(rows) - len(survived)} killed, {len(survived)} survived")
        for m in survived:
            print(f"  survived: {m.name} ({m.path})" + (f": equivalent: {m.equivalent}" if m.equivalent else
                                                         ": NOT marked equivalent: a missing test?"))
        return 1 if any(not m.equivalent for m in survived) else 0
    finally:
        if a.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
