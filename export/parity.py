"""Parity, part of every export: each exported variant's float32 graphs run in onnxruntime (the runtime's
``Scorer``) against the PyTorch reference search in float64 on real frames with fixed z0 (relative score
difference <= tolerance, faithful and z-only), and the step graphs built in float64 are checked against it to
FP64_GRAPH_TOLERANCE (the maths itself); the frame batches' graphs, the test-time shift-min and the silhouette
lever's combined score get their own rows. ``check_parity`` returns the report the manifest keeps.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from edge_ad.runtime import variants
from edge_ad.runtime.config import SearchConfig, frame_seed, make_z0
from edge_ad.runtime.data_root import default_kinect_root
from edge_ad.runtime.latent_memory import BankLayout, latent_memory
from edge_ad.runtime.manifest import load_manifest
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess

from .batch_graphs import batch_parity
from .errors import ExportError
from .onnx_graphs import Arch, stack_state
from .search_graphs import GRAPH_BUILDERS, arch_of, generator_arrays

# The float64 graphs against the float64 reference: the same arithmetic, only the order of sums differs
# (measured <= 1.4e-14 relative, rectangle.pt and the tests' tiny generator, k = 19 and 3). A weight-gradient
# bug barely moves the score at lr_theta = 6e-9: the BN-gamma gradient with its sign flipped moved it
# 6e-10 to 4e-9 on the tiny generator (tests/test_export_gate.py), which the former 1e-8 let through.
FP64_GRAPH_TOLERANCE = 1e-11
# the theta step's effect on the score (faithful minus z-only) is ~2.4e-4 of the score on kinect-rgbd, only 2.4x the
# score tolerance: a theta update off by 40 % passed. It is compared on its own, within 5 % of the reference's
# (measured: <= 0.21 %), where it is large enough to tell from float32 noise (> 1e-5 of the score)
THETA_EFFECT_TOLERANCE = 0.05
THETA_EFFECT_MIN = 1e-5
# where the effect is barely above that, float32 rounding alone would exceed 5 % of it: the runtime's rounding,
# measured as its z-only score's difference to the reference's, is allowed this many times before comparing
THETA_EFFECT_NOISE_FACTOR = 2.0


def default_parity_frames(root: Optional[Path] = None, train_class: Optional[str] = None) -> list:
    """Two real kinect-rgbd val frames of ``root`` (default ``default_kinect_root()``: $EDGE_AD_DATA, else
    ../shared/data/kinect-rgbd beside the checkout): one of the model's class (normal), one of another
    class (anomalous). Returns [] when there is no kinect-rgbd data there."""
    from edge_ad.runtime.sources.folder import read_pair
    root = Path(root) if root is not None else default_kinect_root()
    if not (root / "splits.json").is_file():
        return []
    splits = json.loads((root / "splits.json").read_text())
    classes = sorted(splits)
    normal = train_class if train_class in classes else classes[0]
    other = next(c for c in classes if c != normal)
    out = []
    for cls, label in ((normal, "normal"), (other, "anomalous")):
        fid = str(splits[cls]["val"][0])
        rgb, depth = read_pair(root / cls, fid)
        out.append({"id": f"{cls}/{fid}", "label": label, "rgb": rgb, "depth": depth})
    return out


def reference_latent(E64, x: np.ndarray) -> np.ndarray:
    """E(x) (z_dim,) float64, with ``E64`` the encoder converted to float64 once by the caller."""
    import torch
    with torch.no_grad():
        return E64(torch.as_tensor(np.asarray(x), dtype=torch.float64)[None]).reshape(-1).numpy()


def reference_latent_distance(e: np.ndarray, bank, cfg: SearchConfig,
                              bank_rows_per_frame: Optional[BankLayout] = None) -> Optional[float]:
    """d(E(x), bank) from the float64 reference latent e (None when the configuration has no latent
    factor); the bank's augmented rows (layout ``bank_rows_per_frame``: the augment list, or rows per
    frame) weighed by cfg.bank_augment_weight, except cfg.bank_trusted_augment's copies."""
    if not cfg.uses_latent_bank:
        return None
    return latent_memory(bank, cfg, bank_rows_per_frame).distance(e)


def reference_z0(e: np.ndarray, cfg: SearchConfig, seed: Optional[int]) -> np.ndarray:
    """The reference initial latents (n_seed, z_dim), float32, for z_init == "encoder": the float64
    reference latent e = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed) (models.encoder.encoder_z0's
    construction, with the encoder run in float64)."""
    z0 = np.repeat(e[None], cfg.n_seed, 0)                                   # (n_seed, z_dim) float64
    if cfg.z_init_sigma:
        z0 = z0 + cfg.z_init_sigma * make_z0(cfg.n_seed, e.shape[0], seed).astype(np.float64)
    return z0.astype(np.float32)


def run_graphs(models: dict, pristine: dict, shapes: dict, cfg: SearchConfig, arch: Arch, mode: str,
               x: np.ndarray, z0: np.ndarray, threads: Optional[int]) -> dict:
    """Run the search on the in-memory graphs ``models`` ({graph name: ModelProto}) with onnxruntime's CPU
    provider, as the runtime does (OrtSearch, ``mode`` a variant's mode): x (C, R, R) one preprocessed
    frame, z0 (n_seed, z_dim); pristine: the state tensors {name: array of shapes[name]}. Returns
    OrtSearch.run's {seed_losses (n_seed,), error_map (R, R), recon, z, steps_s, final_s}."""
    from edge_ad.runtime.backends.onnxruntime_backend import OrtSearch
    graphs = {k: m.SerializeToString() for k, m in models.items()}
    s = OrtSearch(graphs, pristine, shapes, cfg, arch.z_dim, (arch.channels, arch.resolution, arch.resolution),
                  dtype=arch.dtype, mode=mode, threads=threads)
    return s.run(x, z0)


def check_parity(G, out_dir: Path, cfg: SearchConfig, frames: Sequence[dict], *, tolerance: float = 1e-4,
                 seed: int = 0, check_fp64: bool = True, check_z_only: bool = True,
                 threads: Optional[int] = None, log: Callable = print,
                 spec: Optional[PreprocessSpec] = None, encoder=None, latent_bank=None,
                 bank_rows_per_frame: Optional[BankLayout] = None, pixel_memory=None,
                 silhouette: Optional[tuple] = None) -> dict:
    """Score ``frames`` with every exported variant (runtime/variants.py; onnxruntime float32, CPU provider),
    faithful and z-only (lr_theta = 0), and the PyTorch reference (float64, same z0, same score scaling);
    also the float64 build of the step graphs. Returns the parity report: per frame and per variant the
    relative score differences, per variant "passed" (<= tolerance), "failed_variants", and "passed"
    overall (some variant passed and the float64 graphs agree to FP64_GRAPH_TOLERANCE).

    z_init == "random": both sides get make_z0(n_seed, z_dim, frame_seed(seed, i)) explicitly.
    z_init == "encoder": the runtime builds z0 itself (``Scorer.score(..., seed=...)``: encoder.onnx
    in float32 + z_init_sigma * make_z0); the reference runs ``encoder`` in float64 torch with the
    same noise. The score is mean(seed losses) / score_scale(x, cfg, d) on both sides, d = the latent
    distance of E(x) to ``latent_bank`` (the runtime: encoder.onnx float32; the reference: float64),
    laid out as ``bank_rows_per_frame`` (the bank's augment list, or its rows per normal frame; its augmented
    copies weighed by bank_augment_weight, except those of cfg.bank_trusted_augment's texts). With
    score_pixel_power > 0 both sides multiply by the pixel factor of the frame's distance to ``pixel_memory``
    (runtime.pixel_memory.PixelMemory of the exported pixel_memory.npy): the reference's of its own x. The
    graphs are checked with the shift-min and the silhouette lever off (host code around them); each has its own
    rows after, on the full configuration: "shift_min" (``shift_min_parity``) and, with the lever on
    (silhouette_versions_weight > 0; ``silhouette`` = (paired rows (2 M, z_dim) float32, opened frames (M, R, R, 4)
    uint8 or None), the export's), "silhouette" (``silhouette_parity``)."""
    import copy

    spec = spec or getattr(G, "preprocess", None) or PreprocessSpec()      # resolved once, for every row below
    # the graphs score a frame as given: they are checked with the shift-min off; the shift-min
    # (score_shift_radius > 0, host code around them) gets its own rows below ("shift_min")
    full_cfg, cfg = cfg, cfg.replace(score_shift_radius=0, silhouette_versions_weight=0.0)
    if full_cfg.uses_silhouette_versions and silhouette is None:
        raise ExportError("parity check: the scoring configuration uses the silhouette lever "
                          "(silhouette_versions_weight > 0): the paired rows of the opened training frames are needed")
    use_encoder = cfg.z_init == "encoder"
    if cfg.uses_pixel_memory and pixel_memory is None:
        raise ExportError("parity check: the scoring configuration needs the pixel memory (score_pixel_power > 0)")
    if use_encoder and encoder is None:
        raise ExportError("parity check: the scoring configuration needs an encoder (z_init='encoder')")
    E64 = copy.deepcopy(encoder).double().eval() if use_encoder else None   # the float64 reference encoder
    man = load_manifest(out_dir, verify=False)
    zcfg = cfg.replace(lr_theta=0.0) if check_z_only and cfg.updates_weights and cfg.k > 0 else None
    # loaders, not scorers: each variant's scorer is loaded for its frame and closed before the next one opens
    # (audit 29 #9: the six scorers alive together held ~0.8 GB at width 32, ~3x that at the study's width 64)
    scorers = _variant_scorers(out_dir, man, cfg, zcfg, threads)
    fp64 = _Float64Graphs(G, cfg) if check_fp64 else None
    rows, starts = [], []
    for i, fr in enumerate(frames):
        # said before the work: a study-sized generator (width 64) takes minutes per frame on a CPU (audit 29 #9)
        log(f"  parity frame {i + 1}/{len(frames)} ({fr['id']}): the float64 reference search and "
            f"{len(scorers)} variant(s) ...")
        x = preprocess(fr["rgb"], fr["depth"], spec)
        ref = _reference_on_frame(G, x, cfg, zcfg, frame_seed(seed, i), E64, latent_bank, bank_rows_per_frame,
                                  pixel_memory)
        starts.append(ref.start)
        row = _frame_row(fr, ref, scorers, cfg)
        if fp64 is not None:
            r64 = fp64.run(cfg, x, ref.z0, threads)
            row["fp64_graph_rel_diff"] = _rel_diff(float(r64["seed_losses"].mean()) / ref.scale, ref.score)
        rows.append(row)
        log(_frame_line(fr, row, ref.score, use_encoder, check_fp64))
    per_variant = _variant_verdicts(rows, scorers, tolerance)
    failed = [n for n, r in per_variant.items() if not r["passed"]]
    kept = [n for n in per_variant if n not in failed]
    worst = max((per_variant[n]["max_rel_diff"] for n in kept), default=float("inf"))
    zworst = max((per_variant[n]["z_only_max_rel_diff"] or 0.0 for n in kept), default=0.0)
    fp64_worst = max((r.get("fp64_graph_rel_diff", 0.0) for r in rows), default=0.0)
    batch = None
    if "final_batch" in man["graphs"] and rows and scorers:   # k = 0: Scorer.score_batch's graphs too
        scorer = next(iter(scorers.values()))[0]()
        try:
            batch = batch_parity(scorer, frames, starts, [r["reference_score"] for r in rows], tolerance)
        finally:
            _close(scorer)
        log(f"  parity batch graphs: {batch['summary']}")
    shift = None
    if full_cfg.score_shift_radius and rows and kept:
        shift = shift_min_parity(G, out_dir, full_cfg.replace(silhouette_versions_weight=0.0), frames, starts, spec,
                                 E64, latent_bank, tolerance, threads, bank_rows_per_frame, pixel_memory)
        log(f"  parity shift-min: {shift['summary']}")
    lever = None
    if full_cfg.uses_silhouette_versions and rows and kept:
        from edge_ad.models.silhouette_reference import lever_memories
        memories = lever_memories(full_cfg, spec, latent_bank, bank_rows_per_frame, pixel_memory, *silhouette)
        lever = silhouette_parity(G, out_dir, full_cfg, frames, starts, spec, E64, memories, tolerance, threads)
        log(f"  parity silhouette lever: {lever['summary']}")
    passed = (bool(rows) and bool(kept) and fp64_worst <= FP64_GRAPH_TOLERANCE
              and (batch is None or batch["passed"]) and (shift is None or shift["passed"])
              and (lever is None or lever["passed"]))
    summary = (f"{len(rows)} frames, variants {', '.join(kept) or 'none'} passed: max relative score difference "
               f"{max(worst, zworst):.2e} (tolerance {tolerance:g})"
               + (f"; FAILED and not exported: {', '.join(failed)}" if failed else "")
               + (f", float64 graphs {fp64_worst:.1e} (tolerance {FP64_GRAPH_TOLERANCE:g})" if check_fp64 else "")
               + (f"; {batch['summary']}" + ("" if batch["passed"] else " FAILED") if batch else "")
               + (f"; {shift['summary']}" + ("" if shift["passed"] else " FAILED") if shift else "")
               + (f"; {lever['summary']}" + ("" if lever["passed"] else " FAILED") if lever else ""))
    if not rows:
        summary = "no parity frames"
    return {"reference": _reference_text(cfg),
            "runtime": "onnxruntime float32 graphs on the CPU provider, every exported variant (runtime/variants.py), "
                       "faithful and z-only",
            "tolerance": tolerance,
            "fp64_graph_tolerance": FP64_GRAPH_TOLERANCE if check_fp64 else None, "search": full_cfg.to_dict(),
            "frames": rows, "variants": per_variant, "failed_variants": failed,
            "max_rel_diff": worst if kept else None, "fp64_graph_max_rel_diff": fp64_worst if check_fp64 else None,
            "batch": batch, "shift_min": shift, **({} if lever is None else {"silhouette": lever}),
            "passed": passed, "summary": summary}


def _variant_scorers(out_dir: Path, man: dict, cfg: SearchConfig, zcfg: Optional[SearchConfig],
                     threads: Optional[int]) -> dict:
    """Every exported variant (runtime/variants.py), faithful and z-only (``zcfg``; None: no z-only check),
    on the CPU provider: {name: (load, z-only load or None)}, each ``load()`` a new Scorer that the caller
    closes (``_score_once``), so that one scorer's sessions are alive at a time."""
    names = list(man.get("variants") or [v.name for v in variants.VARIANTS.values()
                                         if variants.exported(v, cfg, man["graphs"])])
    return {n: (_scorer_loader(out_dir, cfg, n, threads),
                _scorer_loader(out_dir, zcfg, n, threads) if zcfg is not None else None) for n in names}


def _scorer_loader(out_dir: Path, cfg: SearchConfig, variant: str, threads: Optional[int]) -> Callable:
    """A zero-argument function that loads ``out_dir`` as a Scorer of ``variant`` with ``cfg`` on the CPU provider."""
    def load():
        from edge_ad.runtime.scorer import Scorer
        return Scorer.load(out_dir, config=cfg, variant=variant, threads=threads, providers=["CPUExecutionProvider"])
    return load


def _close(scorer) -> None:
    """scorer.close() when it has one (the runtime's Scorer: its sessions and buffers released now)."""
    close = getattr(scorer, "close", None)
    if close is not None:
        close()


def _score_once(load: Callable, fr: dict, start: dict):
    """The ScoreResult of frame ``fr`` (its own arrays) by a scorer ``load()`` opens, closed before returning;
    ``start``: {"z0": ...} or {"seed": ...}, as the reference was started. Numerics only: no fault checks."""
    scorer = load()
    try:
        return scorer.score(fr["rgb"], fr["depth"], check_faults=False, **start)
    finally:
        _close(scorer)


class _Float64Graphs:
    """The all-seeds graphs of the search (forward for k = 0, else step or step_z) built in float64 for n_seed = 1,
    with the generator's state: run on a frame, they must equal the float64 reference to FP64_GRAPH_TOLERANCE.
    Run seed by seed (the seeds' searches are independent; their losses are bit for bit
    those of the n_seed graph, measured on rectangle.pt and the study's width 64): the float64 state, Adam
    moments and their double buffers of all seeds at once were the export's largest allocation (audit 29 #9:
    ~3.5 GB of the 4.8 GB peak at width 64)."""

    def __init__(self, G, cfg: SearchConfig):
        params, bn = generator_arrays(G)
        self.arch = arch_of(G, 1, 0, np.float64)            # one seed
        v64 = variants.for_export(cfg, ("gpu",))[0]        # the all-seeds graphs: forward (k = 0) or step
        self.kind = v64.mode(cfg)                           # OrtSearch's mode: forward, step or step_z
        self.models = {name: GRAPH_BUILDERS[name].model(name, self.arch, bn, cfg, np.float64)[0]
                       for name in v64.needs(cfg)}
        self.state = {k: v[0] for k, v in stack_state(self.arch, params).items()}   # (1, ...) -> one copy
        self.shapes = {s.name: s.shape for s in self.arch.state()}

    def run(self, cfg: SearchConfig, x: np.ndarray, z0: np.ndarray, threads: Optional[int]) -> dict:
        """x (C, R, R), z0 (n_seed, z_dim) -> {"seed_losses": (n_seed,)}, each seed's search run on its own
        (one seed's sessions and buffers alive at a time)."""
        one = cfg.replace(n_seed=1)
        losses = [run_graphs(self.models, self.state, self.shapes, one, self.arch, self.kind, x, z0[j:j + 1],
                             threads)["seed_losses"] for j in range(len(z0))]
        return {"seed_losses": np.concatenate(losses)}


@dataclass
class _FrameReference:
    """The float64 PyTorch reference on one frame: its start (z0 (n_seed, z_dim); ``start``, what the runtime
    is given: {"z0": z0}, or {"seed": zseed} for an encoder's z0), latent / pixel distances, score scale,
    and the faithful (``ref``) and z-only (``zref``, None without) searches' results."""

    zseed: int
    start: dict
    z0: np.ndarray
    dist: Optional[float]
    pdist: Optional[float]
    scale: float
    ref: object
    zref: object

    @property
    def score(self) -> float:
        return self.ref.score


def _reference_on_frame(G, x: np.ndarray, cfg: SearchConfig, zcfg: Optional[SearchConfig], zseed: int, E64,
                        latent_bank, bank_rows_per_frame, pixel_memory) -> _FrameReference:
    """Run the float64 reference search (models.search.search_eager) on x (C, R, R), a preprocessed frame,
    from the z0 of ``zseed`` (with an encoder ``E64``: E(x) in float64 + z_init_sigma * make_z0)."""
    import torch

    from edge_ad.models.search import search_eager
    from edge_ad.runtime.score_scale import score_scale
    e64 = reference_latent(E64, x) if E64 is not None else None      # (z_dim,) float64
    dist = reference_latent_distance(e64, latent_bank, cfg, bank_rows_per_frame)
    pdist = (pixel_memory.frame_distance(x, cfg.pixel_shift_radius, gain=cfg.pixel_gain_limits) if cfg.uses_pixel_memory
             else None)                                          # d_pix of the reference's x (its own shifts)
    scale = score_scale(x, cfg, dist, pdist)
    if E64 is not None:
        z0 = reference_z0(e64, cfg, zseed)                      # (S, z_dim) float64 encoder, cast
        start = {"seed": zseed}                                 # runtime: encoder.onnx + same noise
    else:
        z0 = make_z0(cfg.n_seed, G.cfg.z_dim, zseed)
        start = {"z0": z0}
    ref = search_eager(G, x, cfg, z0=z0, dtype=torch.float64, latent_distance=dist, pixel_distance=pdist)
    zref = (search_eager(G, x, zcfg, z0=z0, dtype=torch.float64, latent_distance=dist, pixel_distance=pdist)
            if zcfg is not None else None)
    return _FrameReference(zseed, start, z0, dist, pdist, scale, ref, zref)


def _rel_diff(a, b) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def _score_diffs(got, ref) -> dict:
    """A runtime result against the reference's: score, worst per-seed loss and error-map (R, R) differences."""
    return {"onnx_score": got.score, "rel_diff": _rel_diff(got.score, ref.score),
            "max_seed_rel_diff": float(np.max(np.abs(got.seed_losses - ref.seed_losses)
                                              / np.maximum(np.abs(ref.seed_losses), 1e-12))),
            "error_map_max_abs_diff": float(np.max(np.abs(got.error_map - ref.error_map)))}


def _frame_row(fr: dict, ref: _FrameReference, scorers: dict, cfg: SearchConfig) -> dict:
    """The parity report's row of one frame: every variant's scores against the reference (faithful and
    z-only), the runtime's z0 / latent / pixel distance against the reference's (from the first variant),
    and "rel_diff", the frame's worst variant: the gate's value for this frame. ``scorers``: _variant_scorers'
    loaders; one scorer at a time is open (``_score_once``)."""
    row = {"frame": fr["id"], "label": fr.get("label"), "z0_seed": ref.zseed,
           "z_init": cfg.z_init, "score_scale": ref.scale, "reference_score": ref.score, "variants": {}}
    if ref.zref is not None:
        row["z_only"] = {"reference_score": ref.zref.score, "variants": {}}
    for n, (load, zload) in scorers.items():
        got = _score_once(load, fr, ref.start)                       # numerics, as the reference
        row["variants"][n] = _score_diffs(got, ref.ref)
        if cfg.z_init == "encoder" and "encoder_z0_max_abs_diff" not in row:
            # the runtime's z0 (encoder.onnx, float32) against the float64 reference z0
            row["encoder_z0_max_abs_diff"] = float(np.max(np.abs(got.z0 - ref.z0)))
            row["encoder_z0_max_abs"] = float(np.max(np.abs(ref.z0)))
        if ref.dist is not None and "latent_distance" not in row:
            row["latent_distance"] = {"reference": ref.dist, "onnx": got.latent_distance,
                                      "rel_diff": _rel_diff(got.latent_distance, ref.dist)}
        if ref.pdist is not None and "pixel_distance" not in row:
            row["pixel_distance"] = {"reference": ref.pdist, "onnx": got.pixel_distance,
                                     "rel_diff": _rel_diff(got.pixel_distance, ref.pdist)}
        if zload is not None:
            zgot = _score_once(zload, fr, ref.start)
            row["z_only"]["variants"][n] = _score_diffs(zgot, ref.zref)
            effect = ref.ref.score - ref.zref.score                  # the theta step's effect on the score
            if abs(effect) > THETA_EFFECT_MIN * abs(ref.ref.score):
                # the runtime's float32 rounding, read from its z-only score (no theta step in it), is allowed
                # twice (faithful and z-only): what is left is the theta step's own error
                noise = THETA_EFFECT_NOISE_FACTOR * abs(zgot.score - ref.zref.score)
                row["z_only"]["variants"][n]["theta_effect_rel_diff"] = \
                    max(0.0, abs((got.score - zgot.score) - effect) - noise) / abs(effect)
    # the frame's worst variant (faithful and z-only): the gate's value for this frame
    row["rel_diff"] = max([r["rel_diff"] for r in row["variants"].values()]
                          + [r["rel_diff"] for r in row.get("z_only", {}).get("variants", {}).values()])
    return row


def _frame_line(fr: dict, row: dict, reference_score: float, use_encoder: bool, check_fp64: bool) -> str:
    """The log line of one frame's parity."""
    return (f"  parity {fr['id']} ({fr.get('label')}): reference {reference_score:.8f}; "
            + ", ".join(f"{n} rel {r['rel_diff']:.2e}" for n, r in row["variants"].items())
            + (", z-only " + ", ".join(f"{n} {r['rel_diff']:.2e}" for n, r in row["z_only"]["variants"].items())
               if "z_only" in row else "")
            + (f", encoder z0 max abs diff {row['encoder_z0_max_abs_diff']:.1e}" if use_encoder else "")
            + (f", fp64 graph rel {row['fp64_graph_rel_diff']:.1e}" if check_fp64 else ""))


def _variant_verdicts(rows: list, scorers: dict, tolerance: float) -> dict:
    """Per variant over all frames: passed (its worst faithful and z-only differences <= tolerance, and
    some frame), max_rel_diff, z_only_max_rel_diff (None without z-only) and a one-line summary."""
    per_variant = {}
    for n in scorers:
        worst = max((r["variants"][n]["rel_diff"] for r in rows), default=float("inf"))
        zworst = max((r["z_only"]["variants"][n]["rel_diff"] for r in rows if "z_only" in r), default=None)
        theta = max((r["z_only"]["variants"][n]["theta_effect_rel_diff"] for r in rows if "z_only" in r
                     and "theta_effect_rel_diff" in r["z_only"]["variants"][n]), default=None)
        ok = bool(rows) and worst <= tolerance and (zworst is None or zworst <= tolerance) \
            and (theta is None or theta <= THETA_EFFECT_TOLERANCE)
        per_variant[n] = {"passed": ok, "max_rel_diff": worst, "z_only_max_rel_diff": zworst,
                          "theta_effect_max_rel_diff": theta,
                          "summary": f"{len(rows)} frames, max relative score difference {worst:.2e}"
                                     + (f" (z-only {zworst:.2e})" if zworst is not None else "")
                                     + f", tolerance {tolerance:g}"
                                     + (f"; theta step's effect within {theta:.1%} of the reference's (tolerance "
                                        f"{THETA_EFFECT_TOLERANCE:.0%})" if theta is not None else "")}
    return per_variant


def _reference_text(cfg: SearchConfig) -> str:
    """The report's "reference": what the float64 reference ran, and the score terms on both sides."""
    reference = "edge_ad.models.search.search_eager, torch float64, same z0"
    if cfg.z_init == "encoder":
        reference += (", z0 = E(x) (the checkpoint's izi encoder in torch float64) + z_init_sigma * "
                      "make_z0(n_seed, z_dim, z0_seed); the runtime computes its z0 with encoder.onnx")
    if cfg.score_fg_power:
        reference += ", score = mean seed loss / max(fg(x), fg_floor) ** score_fg_power on both sides"
    if cfg.uses_latent_bank:
        reference += (", score *= max(d(E(x), latent bank), latent_floor) ** score_latent_power on both sides "
                      "(reference: encoder in float64; runtime: encoder.onnx float32)")
    if cfg.uses_pixel_memory:
        reference += (", score *= max(d_pix(x), pixel_floor) ** score_pixel_power on both sides (each side's own x, "
                      f"min over its shifts up to pixel_shift_radius {cfg.pixel_shift_radius} px)")
    return reference


def shift_min_parity(G, out_dir: Path, cfg: SearchConfig, frames: Sequence[dict], starts: list,
                     spec: PreprocessSpec, E64,
                     latent_bank, tolerance: float, threads: Optional[int],
                     bank_rows_per_frame: Optional[BankLayout] = None, pixel_memory=None) -> dict:
    """The test-time shift-min (cfg.score_shift_radius > 0) against the float64 PyTorch reference
    (models.search.search_min_shift, search_eager per shifted copy, encoder in float64): ``Scorer.score``
    with the full configuration (variant "auto", CPU provider) on every parity frame, started as the
    per-frame parity run was (``starts[i]``); ``spec``: the preprocessing check_parity resolved (once, for every
    row). The parity report's "shift_min": relative score
    differences, the winning shifts on both sides, "passed" (scores within ``tolerance``)."""
    import torch

    from edge_ad.models.search import search_min_shift
    scorer = _scorer_loader(out_dir, cfg, "auto", threads)()
    rows = []
    try:
        for fr, start in zip(frames, starts):
            x = preprocess(fr["rgb"], fr["depth"], spec)
            ref = search_min_shift(G, x, cfg, z0=start.get("z0"), seed=start.get("seed"), dtype=torch.float64,
                                   encoder=E64, latent_bank=latent_bank, eager=True,
                                   bank_rows_per_frame=bank_rows_per_frame, pixel_memory=pixel_memory)
            got = scorer.score(fr["rgb"], fr["depth"], check_faults=False, **start)   # numerics, as the reference
            rows.append({"frame": fr["id"], "reference_score": ref.score, "onnx_score": got.score,
                         "rel_diff": abs(got.score - ref.score) / max(abs(ref.score), 1e-12),
                         "reference_shift": list(ref.shift), "onnx_shift": list(got.shift)})
    finally:
        _close(scorer)                       # its sessions released now (audit 29 #9)
    worst = max((r["rel_diff"] for r in rows), default=float("inf"))
    return {"radius": cfg.score_shift_radius, "frames": rows, "max_rel_diff": worst,
            "passed": bool(rows) and worst <= tolerance,
            "summary": (f"shift-min (radius {cfg.score_shift_radius}) over {len(rows)} frames: max relative score "
                        f"difference {worst:.2e}, tolerance {tolerance:g}")}


def silhouette_parity(G, out_dir: Path, cfg: SearchConfig, frames: Sequence[dict], starts: list,
                      spec: PreprocessSpec, E64,
                      memories: dict, tolerance: float, threads: Optional[int]) -> dict:
    """The silhouette lever's combined score (cfg.silhouette_versions_weight > 0) against the float64 PyTorch
    reference: every parity frame's versions as the runtime makes them (models.silhouette_reference.version_inputs,
    runtime.silhouette.silhouette_versions), each scored by models.search.search_min_shift (float64, search_eager per
    shifted copy, the encoder in float64) against its memories (``memories``: models.silhouette_reference.
    lever_memories, the dil version with the paired rows), the least weighted score taken (``combine``:
    runtime.silhouette.silhouette_min), vs ``Scorer.score`` of the full configuration (variant "auto", CPU
    provider) on the raw frame, both started as the per-frame parity run was (``starts[i]``); ``spec``: the
    preprocessing check_parity resolved. The parity report's
    "silhouette": per frame both combined scores, both winners and each version's scores; "passed" (the combined
    scores within ``tolerance``, relative, the graphs' own tolerance: the min of scores that each agree)."""
    import torch

    from edge_ad.models.search import search_min_shift
    from edge_ad.models.silhouette_reference import combine, version_inputs
    from edge_ad.runtime.silhouette import VERSIONS
    plain = cfg.replace(silhouette_versions_weight=0.0)
    scorer = _scorer_loader(out_dir, cfg, "auto", threads)()
    rows = []
    try:
        for fr, start in zip(frames, starts):
            X, made = version_inputs([(fr["rgb"], fr["depth"])], spec)          # {version: (1, C, R, R)}
            per = {v: np.array([search_min_shift(G, X[v][0], plain, z0=start.get("z0"), seed=start.get("seed"),
                                                 dtype=torch.float64, encoder=E64, latent_bank=memories[v][0],
                                                 eager=True, pixel_memory=memories[v][1]).score
                                if made[v][0] else np.nan]) for v in VERSIONS}
            ref, won = combine(per, cfg.silhouette_versions_weight)
            got = scorer.score(fr["rgb"], fr["depth"], check_faults=False, **start)   # numerics, as the reference
            rows.append({"frame": fr["id"], "reference_score": float(ref[0]), "onnx_score": got.score,
                         "rel_diff": _rel_diff(got.score, float(ref[0])),
                         "reference_version": won[0], "onnx_version": got.silhouette_version,
                         "reference_scores": {v: float(p[0]) for v, p in per.items() if made[v][0]},
                         "onnx_scores": dict(got.silhouette_scores)})
    finally:
        _close(scorer)                       # its sessions released now (audit 29 #9)
    worst = max((r["rel_diff"] for r in rows), default=float("inf"))
    won = ", ".join(f"{r['frame']}: {r['onnx_version']}" for r in rows)
    return {"weight": cfg.silhouette_versions_weight, "frames": rows, "max_rel_diff": worst,
            "tolerance": tolerance, "passed": bool(rows) and worst <= tolerance,
            "summary": (f"silhouette lever (min(S_id, {cfg.silhouette_versions_weight:g} S_ero, S_dil) over each raw "
                        f"frame's versions) over {len(rows)} frames: max relative score difference {worst:.2e}, "
                        f"tolerance {tolerance:g} (won: {won})")}
