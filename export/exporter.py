"""``edge-ad export``: generator checkpoint -> ONNX search graphs + weights + manifest, with parity.

Output directory: the graphs of the search variants the export's targets run (runtime/variants.py, the one
table of variants; ``--target cpu`` / ``--target gpu``, default both), for the model's configuration:
  final.onnx     the final forward pass: per-seed loss, per-pixel error map, reconstructions; alone for
                 k = 0 (variant "forward": no search step)
  grad_tail_seed.onnx, grad_z_tail_seed.onnx, head_consts.npy, final_seed.onnx  (cpu: host-head, the
                 CPU default) layers 2-4 of one seed's step from layer 1's output a1 (-> a1.grad and the
                 tail's weight gradients), bn0's constants for the host's layers 0-1 (runtime/backends/host_head.py),
                 one seed's final pass
  grad_seed.onnx, grad_z_seed.onnx  (cpu: fused-adam, the CPU fallback without AVX2, e.g. ARM) one seed's
                 gradients w.r.t. z and every weight (no Adam: the host applies it in one fused pass,
                 runtime/backends/host_adam.py), the same for z only. The per-seed graphs keep unchunked weights in
                 torch's column order (their manifest entries have "state" and "col_order"; the runtime
                 regroups weights.npz)
  step.onnx, step_z.onnx  (gpu: TensorRT and the CUDA provider) one Adam step on z and on every per-seed
                 weight copy (all seeds in one graph), and the z-only step
  unrolled.onnx  only with ``unrolled=True`` (--unrolled): the whole k-step search and the final pass in
                 one graph
  final_batch.onnx, encoder_batch.onnx  only for k = 0: the final pass (and the encoder) over a
                 batch of frames, for Scorer.score_batch (export/batch_graphs.py)
The z-only graphs (lr_theta = 0, the named fast option) come with every configuration that updates the
weights; a configuration with lr_theta = 0 gets only them.
  encoder.onnx   only for a scoring configuration with z_init == "encoder": the izi encoder's
                 forward pass x (C, R, R) -> E(x) (z_dim,); the runtime starts the search from
                 z0_j = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed)_j
  latent_bank.npy  only for a configuration with score_latent_power > 0: E(x) of the normal
                 training frames (N, z_dim) float32; score *= d(E(x), bank) ** score_latent_power
  pixel_memory.npy  only for a configuration with score_pixel_power > 0: the normal training frames at the
                 model's resolution (N, R, R, 4) uint8 (the checkpoint's scoring["pixel_memory"]), expanded at
                 load with the manifest's pixel_memory["augment"] (runtime/pixel_memory.py);
                 score *= d_pix(x) ** score_pixel_power
  weights.npz    the pristine weights, one copy, in the graphs' state layout (float32)
  manifest.json  format version, model config, search hyper-parameters, preprocessing, tensor
                 names/shapes/dtypes, opset, exporter versions, sha256 of every file, parity report

Parity is part of export, per exported variant: each variant's float32 graphs run in onnxruntime against
the PyTorch reference search in float64 on real frames with fixed z0 (relative score difference <=
tolerance, default 1e-4, for its faithful and its z-only search), and the step graphs built in float64
are checked against it to FP64_GRAPH_TOLERANCE (the maths itself). A variant that fails is removed from the export (its
graphs deleted, the report kept in the manifest), so one graph family cannot block the others; when no
variant passes (or the float64 check fails) the manifest records the failure (the runtime then refuses
the directory) and the export raises.

Where the work is (this module composes them):
  export/search_graphs.py  the graphs of each variant: one builder per graph name (GRAPH_BUILDERS)
  export/parity.py         the parity check against the float64 PyTorch reference (check_parity)
  export/install.py        the output directory's safety and the atomic install: the export is built in a hidden
                           sibling of ``out_dir`` and moved into place only when complete and its parity check
                           passed; a failed one is kept in ``<out_dir>.failed`` and ``out_dir`` stays unchanged
This module: the checkpoint's inputs (configuration, encoder, latent bank, pixel memory, threshold) and the manifest.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from edge_ad.runtime import variants
from edge_ad.runtime.config import SearchConfig, search_differences
from edge_ad.runtime.data_root import DATA_ENV, default_kinect_root
from edge_ad.runtime.integrity import onnx_external_data
from edge_ad.runtime.latent_memory import check_augment_weight, rows_per_frame_of, trusted_original_rows
from edge_ad.runtime.manifest import FORMAT, MANIFEST, VERSION, load_manifest, sha256_file, threshold_rate_problem
from edge_ad.runtime.pixel_memory import PixelMemory
from edge_ad.runtime.signing import SIGNATURE, load_private_key, sign_model
from edge_ad.runtime.preprocess import PreprocessSpec, check_shift_fill

from .batch_graphs import export_batch_graphs
from .errors import ExportError, ParityFailed
from .install import build_and_install
from .onnx_graphs import ENCODER_INPUT, ENCODER_OUTPUT, OPSET, SCALARS, build_encoder_graph, stack_state, verify_graph
from .parity import check_parity, default_parity_frames
from .search_graphs import HEAD_CONSTS, arch_of, generator_arrays, io_spec, state_entries, write_graphs


def export_model(source, out_dir: os.PathLike, *, search: Optional[SearchConfig] = None,
                 chunk_bytes: int = 1 << 20, unrolled: bool = False, parity_frames: Optional[list] = None,
                 parity: bool = True, tolerance: float = 1e-4, check_fp64: bool = True,
                 parity_seed: int = 0, threads: Optional[int] = None, threshold: Optional[dict] = None,
                 encoder=None, latent_bank=None, targets: Sequence[str] = variants.TARGETS, sign_key=None,
                 preprocess: Optional[PreprocessSpec] = None, log: Callable = print, pixel_memory=None) -> dict:
    """Export a generator (a path ``load_generator`` accepts, or a loaded Generator) to ``out_dir``.

    threshold: {"value": float, ...} (e.g. ``edge-ad eval``'s threshold.json) stored as the model's
    calibrated anomaly threshold; refused if it was calibrated under another search configuration.
    Default: the checkpoint's own (``scoring["threshold"]``) when it was calibrated for the exported
    configuration and preprocessing (``stored_threshold``); ``threshold=False``: none.
    search: default the checkpoint's named scoring configuration (``scoring["search"]``), else the
    reference configuration. preprocess: the exported model's preprocessing, default the checkpoint's
    (``plain_spec`` of it for the reference configuration: ``edge-ad export --scoring reference``); a
    checkpoint threshold is kept only with the checkpoint's own. encoder: the izi encoder (models.encoder.Encoder or its dict) for a
    configuration with z_init == "encoder"; default the checkpoint's ``scoring["encoder"]``.
    latent_bank: (N, z_dim) encoder latents of the normal training frames for a configuration with
    score_latent_power > 0; default the checkpoint's ``scoring["latent_bank"]``.
    pixel_memory: (N, R, R, 4) uint8 normal frames for a configuration with score_pixel_power > 0, expanded
    with the checkpoint's scoring["pixel_memory_info"]["augment"]; default the checkpoint's ``scoring["pixel_memory"]``.
    targets: where the model will run (runtime/variants.TARGETS): "cpu" writes the host-head and fused-adam
    graphs, "gpu" the step graphs (TensorRT, CUDA provider); k = 0 writes the final graph only (and the
    encoder). unrolled: also the unrolled graph (gpu target; no runtime path picks it on its own).
    sign_key: an Ed25519 private key (PEM path or key object, runtime/signing.py): the finished export
    is signed (manifest.sig), so that ``Scorer.load(..., trusted_keys=...)`` accepts it.
    Returns the manifest. Raises ExportError on a failed parity check (``out_dir`` is then unchanged;
    the failed export, whose manifest records the failure, is kept in ``<out_dir>.failed``), for an
    ``out_dir`` holding other files than an earlier export (check_out_dir), and CheckpointError for
    bad inputs. The export is built beside ``out_dir`` and moved into place only when complete
    (``install_export``): an earlier export there stays usable until it is replaced in one step.
    """
    return build_and_install(out_dir, lambda stage: _export_into(
        source, stage, search=search, chunk_bytes=chunk_bytes, unrolled=unrolled, parity_frames=parity_frames,
        parity=parity, tolerance=tolerance, check_fp64=check_fp64, parity_seed=parity_seed, threads=threads,
        threshold=threshold, encoder=encoder, latent_bank=latent_bank, targets=targets, sign_key=sign_key,
        preprocess=preprocess, log=log, pixel_memory=pixel_memory), log=log)


def _export_into(source, out_dir: Path, *, search, chunk_bytes, unrolled, parity_frames, parity, tolerance,
                 check_fp64, parity_seed, threads, threshold, encoder, latent_bank, targets, sign_key,
                 preprocess, log, pixel_memory=None) -> dict:
    """export_model's work, in the (new, empty) staging directory ``out_dir``: read the checkpoint, resolve
    what the configuration scores with and the threshold, write the graphs and arrays, the manifest, then
    check parity (dropping failed variants) and sign."""
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator
    if sign_key is not None:
        sign_key = load_private_key(sign_key)   # a bad key or passphrase fails now, not after the export
    if isinstance(source, (str, os.PathLike)):
        G = load_generator(source)
        scoring = CheckpointScoring.read(source)
        src = {"file": Path(source).name, "sha256": sha256_file(source), "format": G.source_format}
        if scoring.sealed is False:     # read as an older release: nothing vouches for its fields
            log(f"warning: {source} has no integrity record (written before checkpoints carried a content digest, "
                "or the record was removed): its content cannot be checked")
    else:
        G, scoring = source.eval(), CheckpointScoring()
        src = {"file": None, "sha256": None, "format": getattr(source, "source_format", "module")}
    own_spec = getattr(G, "preprocess", None) or PreprocessSpec()
    scoring = dataclasses.replace(scoring, preprocess=own_spec)
    train_class = scoring.train_class
    cfg = search if search is not None else scoring.search_config() or SearchConfig()
    E = resolve_encoder(cfg, encoder, scoring, G)      # None unless z_init == "encoder"
    bank = resolve_latent_bank(cfg, latent_bank, scoring, G.cfg.z_dim)   # None unless score_latent_power > 0
    spec = own_spec if preprocess is None else preprocess
    pixel_frames = resolve_pixel_memory(cfg, pixel_memory, scoring, G.cfg.resolution)   # None unless score_pixel_power > 0
    pixel_augment = scoring.pixel_augment() if pixel_frames is not None else []
    silhouette = resolve_silhouette_rows(cfg, scoring, G.cfg.z_dim, G.cfg.resolution)   # None unless the lever is on
    threshold = _export_threshold(threshold, scoring, cfg, spec, log, src)
    try:
        check_shift_fill(spec, cfg.score_shift_radius)
        if cfg.uses_pixel_memory:
            check_shift_fill(spec, cfg.pixel_shift_radius, "pixel_shift_radius")
    except ValueError as e:
        raise ExportError(str(e)) from None
    out_dir = Path(out_dir)
    arch, chosen, graphs, extra_files = _write_model_files(G, cfg, chunk_bytes, targets, unrolled, E, bank,
                                                           pixel_frames, out_dir, silhouette)
    manifest = _new_manifest(out_dir, G, cfg, spec, scoring, src, arch, chunk_bytes, targets, chosen, graphs,
                             extra_files, bank, pixel_frames, pixel_augment, threshold, silhouette)
    _write_manifest(out_dir, manifest)
    if not parity:
        manifest["parity"] = {"passed": None, "summary": "parity check skipped (--no-parity)"}
        _write_manifest(out_dir, manifest)
        _sign(out_dir, sign_key, log)
        return manifest
    frames = parity_frames if parity_frames is not None else default_parity_frames(train_class=train_class)
    if not frames:
        raise ExportError(f"no parity frames: no kinect-rgbd data in {default_kinect_root()} (set {DATA_ENV} to "
                          "the kinect-rgbd root, or pass --parity-frames DIR (a frame folder) or --no-parity)")
    log(f"parity check on {len(frames)} frames (float64 PyTorch reference vs onnxruntime) ...")
    # the graphs' parity, then the shift-min's and the silhouette lever's own rows (their host code around the graphs)
    report = check_parity(G, out_dir, cfg, frames, tolerance=tolerance, seed=parity_seed,
                          check_fp64=check_fp64, threads=threads, log=log, spec=spec, encoder=E,
                          latent_bank=bank, bank_rows_per_frame=scoring.bank_augment(),
                          pixel_memory=None if pixel_frames is None else PixelMemory(pixel_frames, spec, pixel_augment),
                          silhouette=silhouette)
    manifest["parity"] = report
    for name in report["failed_variants"]:         # one failing graph family does not block the others
        _drop_variant(out_dir, manifest, name)
        log(f"WARNING: variant {name} failed its parity check and is not exported: "
            f"{report['variants'][name]['summary']}")
    _write_manifest(out_dir, manifest)
    if not report["passed"]:
        raise ParityFailed(report["summary"])
    load_manifest(out_dir, verify=True)
    _sign(out_dir, sign_key, log)
    return manifest


def _export_threshold(threshold, scoring, cfg: SearchConfig, spec: PreprocessSpec, log: Callable,
                      src: Optional[dict] = None) -> Optional[dict]:
    """The threshold the export stores: the given one (checked against the configuration and the checkpoint
    ``src`` it is exported from; said when it replaces the checkpoint's own), the checkpoint's (``threshold``
    None: stored_threshold) or none (False)."""
    given = threshold is not None and threshold is not False
    if threshold is None:
        threshold = stored_threshold(scoring, cfg, spec, log)
    elif threshold is False:
        threshold = None
    if threshold is not None:
        threshold = check_threshold(threshold, cfg, spec)
    if given:
        check_threshold_model(threshold, scoring, src or {})
    if given:                        # e.g. --threshold-file: said when it replaces the checkpoint's own
        replaced_threshold_note(threshold, stored_threshold(scoring, cfg, spec, lambda *a: None), log)
    # the preprocessing it holds for (checked above): a manifest whose preprocess section is edited has no threshold
    return None if threshold is None else {**threshold, "preprocess": spec.to_dict()}


def _write_model_files(G, cfg: SearchConfig, chunk_bytes: int, targets, unrolled: bool, E, bank, pixel_frames,
                       out_dir: Path, silhouette: Optional[tuple] = None):
    """Write the model's files into ``out_dir``: the search graphs of the chosen variants, the encoder's
    (z_init "encoder"), the frame-batch graphs (k = 0), weights.npz (one copy per state tensor), the latent
    bank (N, z_dim) and the pixel memory (N, R, R, 4). Returns (the float32 Arch, the variants whose graphs were
    all written, {graph name: manifest entry}, the other files written)."""
    params, bn = generator_arrays(G)
    arch = arch_of(G, cfg.n_seed, chunk_bytes, np.float32)
    chosen = variants.for_export(cfg, targets, unrolled)
    graphs = write_graphs(G, bn, cfg, arch, out_dir, variants.graphs_for_export(cfg, chosen))
    chosen = [v for v in chosen if set(variants.graphs_for_export(cfg, [v])) <= set(graphs)]
    enc_layers = encoder_layers(E) if E is not None else None    # float64 copies, used by both encoder graphs
    if E is not None:
        graphs["encoder"] = _write_encoder_graph(E, enc_layers, G, out_dir)
    if cfg.k == 0:   # frame batches (Scorer.score_batch): the generator pass, and the encoder's, over B frames
        graphs.update(export_batch_graphs(params, bn, arch, out_dir, enc_layers))
    single = {k: v[0] for k, v in stack_state(arch, params).items()}
    np.savez(out_dir / "weights.npz", **single)
    extra_files = ["weights.npz"] + ([HEAD_CONSTS] if (out_dir / HEAD_CONSTS).exists() else [])
    if bank is not None:
        np.save(out_dir / "latent_bank.npy", bank)
        extra_files.append("latent_bank.npy")
    if pixel_frames is not None:
        np.save(out_dir / "pixel_memory.npy", pixel_frames)
        extra_files.append("pixel_memory.npy")
    if silhouette is not None:       # the silhouette lever's paired rows (runtime/silhouette.py)
        np.save(out_dir / "silhouette_bank.npy", silhouette[0])
        extra_files.append("silhouette_bank.npy")
        if silhouette[1] is not None:
            np.save(out_dir / "silhouette_pixels.npy", silhouette[1])
            extra_files.append("silhouette_pixels.npy")
    return arch, chosen, graphs, extra_files


def _write_encoder_graph(E, enc_layers: list, G, out_dir: Path) -> dict:
    """encoder.onnx (x (C, R, R) -> E(x) (z_dim,), float32), checked by verify_graph; returns its manifest entry."""
    x_shape = (G.cfg.channels, G.cfg.resolution, G.cfg.resolution)
    model = build_encoder_graph(enc_layers, x_shape, G.cfg.z_dim, np.float32)
    check = verify_graph(model, np.float32)
    onnx.save(model, str(out_dir / "encoder.onnx"))
    enc_cfg = E.cfg.to_dict() if hasattr(E.cfg, "to_dict") else None
    return {"file": "encoder.onnx", **io_spec(model), "nodes": len(model.graph.node),
            "check": check, "role": "z_init", "config": enc_cfg,
            "input": ENCODER_INPUT, "output": ENCODER_OUTPUT,
            "z0": "z0_j = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed)_j"}


def _new_manifest(out_dir: Path, G, cfg: SearchConfig, spec: PreprocessSpec, scoring, src: dict, arch,
                  chunk_bytes: int, targets, chosen: list, graphs: dict, extra_files: list, bank, pixel_frames,
                  pixel_augment: list, threshold: Optional[dict], silhouette: Optional[tuple] = None) -> dict:
    """The export's manifest before its parity check ("parity": None): what was exported from what, the
    search configuration, preprocessing, state layout, variants, graphs and the sha256 of every file the
    runtime reads (the external data an ONNX graph points to included)."""
    external = [loc for g in graphs.values() for loc in onnx_external_data((out_dir / g["file"]).read_bytes(), g["file"])]
    files = {f: sha256_file(out_dir / f) for f in [g["file"] for g in graphs.values()] + extra_files + external}
    manifest = {
        "format": FORMAT, "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": src, "train_class": scoring.train_class,
        "model": G.cfg.to_dict(),
        "search": cfg.to_dict(),
        "scoring_in_checkpoint": _jsonable(scoring.section),
        "preprocess": spec.to_dict(),
        "layout": {
            "n_seed": cfg.n_seed, "z_dim": G.cfg.z_dim, "channels": G.cfg.channels,
            "resolution": G.cfg.resolution, "dtype": "float32", "weights": "weights.npz",
            "chunk_bytes": chunk_bytes, "col_order": arch.col_order,
            "state": state_entries(arch),
            "weights_layout": "weights.npz holds one copy (shape[1:]) per state tensor; tile to n_seed. "
                              "ConvT weights (C_in, C_out, 4, 4) are stored as (C_in, 16*C_out) GEMM "
                              "columns: layer 0 (c, kh, kw); stride-2 layers (a, c', b, d, c) with "
                              "kh = 2a + b, kw = 2c' + d; split into column chunks 'W{l}.c{i}'.",
            "z": "(n_seed, 1, z_dim)", "x": "(channels, resolution, resolution) in [-1, 1]",
            "moments": "Adam moments '<name>.m', '<name>.v' have the state tensor's shape and start at zero; "
                       "they are kept scaled (m / (1 - beta1), v / (1 - beta2)); outputs end in '.out'",
        },
        "adam_scalars": {"inputs": list(SCALARS),
                         "computed_by": "host, float64 (edge_ad.runtime.config.adam_scalars)",
                         "note": "eps and the bias corrections are graph inputs, never constants"},
        "targets": list(targets),
        "variants": {v.name: {"graphs": list(dict.fromkeys(v.needs(cfg) + (v.needs(cfg.replace(lr_theta=0.0))
                                                                             if cfg.updates_weights else ()))),
                              "when": v.when} for v in chosen},
        "graphs": graphs, "opset": OPSET, "exporter": _versions(), "files": files,
        "parity": None,
    }
    if bank is not None:
        manifest["latent_bank"] = {
            "file": "latent_bank.npy", "shape": list(bank.shape), "dtype": "float32",
            "metric": cfg.latent_metric, "info": _jsonable(scoring.get("latent_bank_info")),
            # the augmentations the bank was built with (runtime/latent_bank.py; edge-ad calibrate reuses them)
            "augment": scoring.bank_augment(),
            "score": "score *= max(d(E(x), bank), latent_floor) ** score_latent_power, E = encoder.onnx"}
    if pixel_frames is not None:
        manifest["pixel_memory"] = {
            "file": "pixel_memory.npy", "shape": list(pixel_frames.shape), "dtype": "uint8",
            "info": _jsonable(scoring.get("pixel_memory_info")),
            # the rows per frame: the frame, then one copy per text (runtime/pixel_memory.py)
            "augment": pixel_augment,
            "score": "score *= max(d_pix(x), pixel_floor) ** score_pixel_power, d_pix(x) = min over the rows "
                     "(the frames and their augmented copies, preprocessed) of mean((x - row)^2)"}
    if silhouette is not None:
        from edge_ad.runtime.silhouette import OPENED_AUGMENT
        rows, opened = silhouette
        manifest["silhouette"] = {
            "bank": "silhouette_bank.npy", "bank_shape": list(rows.shape), "n_frames": len(rows) // 2,
            "info": _jsonable(scoring.get("silhouette_info")),
            **({} if opened is None else {"pixels": "silhouette_pixels.npy", "pixels_shape": list(opened.shape),
                                          "pixels_augment": list(OPENED_AUGMENT)}),
            "score": "min(S_id, w_e * S_ero, S_dil) over the raw frame's silhouette versions (runtime/silhouette.py); "
                     "these rows are seen by the dil version only"}
    if threshold is not None:
        manifest["threshold"] = threshold
    return manifest


def _sign(out_dir: Path, sign_key, log: Callable) -> None:
    """Sign the finished export (manifest.sig) when a key is given."""
    if sign_key is not None:
        rec = sign_model(out_dir, sign_key)
        log(f"signed {out_dir / MANIFEST} with key {rec['key_id'][:16]}... ({SIGNATURE})")


def _drop_variant(out_dir: Path, manifest: dict, name: str) -> None:
    """Remove a variant that failed parity: its graphs no other exported variant runs, their files and sha256
    entries (the parity report keeps why)."""
    keep = {g for v, e in manifest["variants"].items() if v != name for g in e["graphs"]}
    for g in manifest["variants"].pop(name)["graphs"]:
        if g in keep or g not in manifest["graphs"]:
            continue
        f = manifest["graphs"].pop(g)["file"]
        manifest["files"].pop(f, None)
        (out_dir / f).unlink(missing_ok=True)
    if not any(g in manifest["graphs"] for g in ("grad_tail_seed", "grad_z_tail_seed")) \
            and HEAD_CONSTS in manifest["files"]:
        manifest["files"].pop(HEAD_CONSTS)
        (out_dir / HEAD_CONSTS).unlink(missing_ok=True)


def _reader(scoring):
    """models.checkpoint.CheckpointScoring of ``scoring`` (a reader, or a bare scoring dict / None)."""
    from edge_ad.models.checkpoint import CheckpointScoring
    return CheckpointScoring.of(scoring)


def scoring_search_config(scoring) -> Optional[SearchConfig]:
    """The named scoring configuration of a checkpoint's "scoring" section (a dict, or a CheckpointScoring):
    ``CheckpointScoring.search_config`` (``scoring["search"]``, else top-level SearchConfig fields, else None).
    CheckpointError for an invalid one."""
    return _reader(scoring).search_config()


def _given_or_stored(given, scoring, key: str):
    """``given`` if not None, else the checkpoint's ``scoring[key]`` (None when absent)."""
    return _reader(scoring).get(key) if given is None else given


def resolve_encoder(cfg: SearchConfig, encoder=None, scoring=None, G=None):
    """The torch encoder a configuration needs (None for z_init == "random"): ``encoder`` (an
    Encoder module or an ``encoder_to_dict`` dict), else the checkpoint's ``scoring["encoder"]`` (``scoring``:
    a CheckpointScoring or the bare section).
    Checks that it maps (C, R, R) frames to (z_dim,) latents. Raises ExportError."""
    if cfg.z_init != "encoder":
        return None
    encoder = _given_or_stored(encoder, scoring, "encoder")
    if encoder is None:
        raise ExportError(f"the scoring configuration {cfg.name!r} starts the search from an izi encoder "
                          "(z_init='encoder'), but the checkpoint has no encoder (scoring['encoder'] is "
                          "empty) and none was given; store one with models/kinect-rgbd/make_release.py "
                          "--encoder/--train-encoder, or export with z_init='random'")
    if isinstance(encoder, dict):
        from edge_ad.models.encoder import encoder_from_dict
        try:
            encoder = encoder_from_dict(encoder)
        except ValueError as e:
            raise ExportError(str(e)) from None
    import torch
    E = encoder.eval()
    if G is not None:
        shape = (1, G.cfg.channels, G.cfg.resolution, G.cfg.resolution)
        with torch.no_grad():
            out = E(torch.zeros(shape, dtype=next(E.parameters()).dtype))
        if out.numel() != G.cfg.z_dim:
            raise ExportError(f"the encoder maps {shape[1:]} frames to {tuple(out.shape[1:])}, but the "
                              f"generator's latent has z_dim={G.cfg.z_dim}")
    return E


def bank_augment(scoring) -> list:
    """The augmentation texts the checkpoint's latent bank was built with (``CheckpointScoring.bank_augment``:
    ``scoring["latent_bank_info"]["augment"]``, [] when it records none): the manifest's latent_bank["augment"]."""
    return _reader(scoring).bank_augment()


def resolve_latent_bank(cfg: SearchConfig, bank=None, scoring=None, z_dim: Optional[int] = None):
    """The latent bank (N, z_dim) float32 a configuration needs (None unless score_latent_power > 0):
    ``bank`` if given, else the checkpoint's ``scoring["latent_bank"]`` (``scoring``: a CheckpointScoring or
    the bare section); N must hold whole frames of
    the checkpoint's layout (1 + len(``bank_augment(scoring)``) rows each), and cfg.bank_trusted_augment
    name texts of that list. Raises ExportError (CheckpointError for a malformed stored bank, which
    CheckpointScoring.latent_bank checks)."""
    if not cfg.uses_latent_bank:
        return None
    from edge_ad.models.checkpoint import latent_bank_array
    reader = _reader(scoring)
    if bank is not None:
        try:
            bank = latent_bank_array(bank)
        except ValueError as e:
            raise ExportError(f"the given latent bank {e}") from None
    else:
        bank = reader.latent_bank()     # the stored bank, checked there (CheckpointError naming the file)
    if bank is None:
        raise ExportError(f"the scoring configuration {cfg.name!r} multiplies the score by the latent-memory "
                          "distance (score_latent_power > 0), but the checkpoint has no latent bank "
                          "(scoring['latent_bank']) and none was given; build one with "
                          "models/kinect-rgbd/make_release.py --data")
    if z_dim is not None and bank.shape[1] != z_dim:
        raise ExportError(f"the latent bank must be a finite (N, z_dim={z_dim}) array, got shape {bank.shape}")
    augment = reader.bank_augment()
    try:
        trusted_original_rows(len(bank), augment, cfg.bank_trusted_augment)
    except ValueError as e:
        raise ExportError(f"the latent bank does not match the checkpoint's latent_bank_info: {e}") from None
    try:
        check_augment_weight(cfg, rows_per_frame_of(augment))
    except ValueError as e:
        raise ExportError(str(e)) from None
    return bank


def resolve_silhouette_rows(cfg: SearchConfig, scoring, z_dim: int, resolution: int) -> Optional[tuple]:
    """The silhouette lever's paired rows a configuration needs (None unless silhouette_versions_weight > 0): the
    checkpoint's (``CheckpointScoring.silhouette_rows``: (2 N, z_dim) float32 rows, (N, R, R, 4) uint8 opened
    frames or None), the frames required when the configuration has the pixel factor. Raises ExportError."""
    if not cfg.uses_silhouette_versions:
        return None
    from edge_ad.models.checkpoint_errors import CheckpointError
    try:
        got = _reader(scoring).silhouette_rows(z_dim)
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    if got is None:
        raise ExportError(f"the scoring configuration {cfg.name!r} uses the silhouette lever (silhouette_versions_weight "
                          "> 0), but the checkpoint has no paired rows of opened training frames "
                          "(scoring['silhouette_bank']); build them with models/kinect-rgbd/make_release.py "
                          "--silhouette-weight")
    rows, opened = got
    if cfg.uses_pixel_memory and (opened is None or opened.shape[1:] != (resolution, resolution, 4)):
        raise ExportError(f"the scoring configuration {cfg.name!r} has the pixel factor and the silhouette lever: the "
                          f"checkpoint's scoring['silhouette_pixels'] must hold the opened frames (N, {resolution}, "
                          f"{resolution}, 4), got {None if opened is None else opened.shape}")
    return np.ascontiguousarray(rows), (np.ascontiguousarray(opened) if cfg.uses_pixel_memory else None)


def resolve_pixel_memory(cfg: SearchConfig, frames=None, scoring=None, resolution: Optional[int] = None):
    """The pixel memory's frames (N, R, R, 4) uint8 a configuration needs (None unless score_pixel_power > 0):
    ``frames`` if given, else the checkpoint's ``scoring["pixel_memory"]`` (``CheckpointScoring.pixel_frames``),
    at the generator's ``resolution``. Raises ExportError."""
    if not cfg.uses_pixel_memory:
        return None
    from edge_ad.models.checkpoint_errors import CheckpointError
    try:
        frames = _reader(scoring).pixel_frames() if frames is None else frames
    except CheckpointError as e:
        raise ExportError(str(e)) from None
    if frames is None:
        raise ExportError(f"the scoring configuration {cfg.name!r} multiplies the score by the pixel-memory distance "
                          "(score_pixel_power > 0), but the checkpoint has no pixel memory (scoring['pixel_memory']) "
                          "and none was given; build one with models/kinect-rgbd/make_release.py --pixel-memory-augment")
    frames = np.asarray(frames.numpy() if hasattr(frames, "numpy") else frames)
    R = resolution
    if frames.dtype != np.uint8 or frames.ndim != 4 or len(frames) == 0 \
            or (R is not None and frames.shape[1:] != (R, R, 4)):
        raise ExportError(f"the pixel memory must be uint8 frames (N, {R}, {R}, 4) at the model's resolution, got "
                          f"{frames.dtype} {frames.shape}")
    return np.ascontiguousarray(frames)


def encoder_layers(E) -> list:
    """The izi encoder (models.encoder.Encoder, any plain Conv2d/LeakyReLU stack) as layer dicts
    for ``build_encoder_graph``, weights in float64. Raises ExportError for anything else."""
    import torch
    layers = []
    for name, m in E.named_modules():
        if m is E or isinstance(m, torch.nn.Sequential):
            continue
        if isinstance(m, torch.nn.Conv2d):
            if m.groups != 1 or tuple(m.dilation) != (1, 1) or m.padding_mode != "zeros" \
                    or len(set(m.stride)) != 1 or not isinstance(m.padding, tuple) or len(set(m.padding)) != 1:
                raise ExportError(f"encoder layer {name}: only square, ungrouped, undilated, zero-padded "
                                  f"convolutions are exported ({m})")
            layers.append({"weight": m.weight.detach().double().cpu().numpy(),
                           "bias": None if m.bias is None else m.bias.detach().double().cpu().numpy(),
                           "stride": int(m.stride[0]), "pad": int(m.padding[0]), "slope": None})
        elif isinstance(m, (torch.nn.LeakyReLU, torch.nn.ReLU)):
            if not layers or layers[-1]["slope"] is not None:
                raise ExportError(f"encoder layer {name}: an activation must follow a convolution")
            layers[-1]["slope"] = float(getattr(m, "negative_slope", 0.0))
        else:
            raise ExportError(f"encoder layer {name} ({type(m).__name__}) cannot be exported "
                              "(the encoder graph supports Conv2d and LeakyReLU/ReLU)")
    if not layers:
        raise ExportError("the encoder has no convolution layers")
    return layers


def checkpoint_threshold(scoring, cfg: SearchConfig, log: Callable = print) -> Optional[dict]:
    """The earlier name and signature of ``stored_threshold`` (without ``spec``), kept for callers of it."""
    return stored_threshold(scoring, cfg, log=log)


def stored_threshold(scoring, cfg: SearchConfig, spec: Optional[PreprocessSpec] = None,
                     log: Callable = print) -> Optional[dict]:
    """The calibrated threshold a checkpoint carries (``CheckpointScoring.threshold``) if it was calibrated
    for ``cfg`` and ``spec`` (the checkpoint's own preprocessing), marked ``"source": "checkpoint"``;
    else None, saying why when the checkpoint has one that does not apply."""
    thr = _reader(scoring).threshold(cfg, spec, log)
    if thr is None:
        return None
    log(f"threshold {thr.get('value')} from the checkpoint (calibrated at {thr.get('target_fpr')} false alarms "
        f"on {thr.get('normal', 'normal frames')})")
    return {**thr, "source": "checkpoint"}


def replaced_threshold_note(given: dict, own: Optional[dict], log: Callable = print) -> None:
    """Say (``log``) that the threshold ``given`` (edge-ad eval's threshold.json, --threshold) replaces the
    checkpoint's own ``own`` (None: nothing said), with the normal frames and rate each was read from, and warn
    when ``given`` rests on fewer normal frames than ``own`` or on its top few scores (few_expected_above)."""
    from edge_ad.runtime.calibrate import few_expected_above
    if own is None or own.get("value") == given.get("value"):
        return

    def read(t: dict) -> str:
        n, rate = t.get("n_normal"), t.get("target_fpr")
        return f"{n} normal frames at {rate:g}" if isinstance(n, int) and isinstance(rate, (int, float)) \
            else "normal frames not recorded"
    log(f"threshold {given.get('value')} ({read(given)}) replaces the checkpoint's own {own.get('value')} "
        f"({read(own)})")
    n, rate, n_own = given.get("n_normal"), given.get("target_fpr"), own.get("n_normal")
    if isinstance(n, int) and isinstance(rate, (int, float)) and few_expected_above(n, rate):
        log(f"warning: the threshold given rests on the top few of {n} normal scores ({n} x {rate:g} = "
            f"{n * rate:.2g} expected above it): its false-alarm rate is a guess")
    elif isinstance(n, int) and isinstance(n_own, int) and n < n_own:
        log(f"warning: the threshold given was read from {n} normal frames, the checkpoint's from {n_own}")


def check_threshold(threshold: dict, cfg: SearchConfig, spec: Optional[PreprocessSpec] = None) -> dict:
    """Validate a calibrated threshold for the exported search configuration (and preprocessing
    ``spec``, when the threshold records the one it was calibrated with: edge-ad eval's threshold.json)."""
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), (int, float)) \
            or not np.isfinite(threshold["value"]) or threshold["value"] <= 0:
        raise ExportError(f"threshold must be a dict with a finite 'value' > 0 (scores are >= 0), got {threshold!r}")
    if threshold_rate_problem(threshold):
        raise ExportError(f"threshold target_fpr {threshold_rate_problem(threshold)}")
    calibrated = threshold.get("search")
    if calibrated is not None:
        # a setting absent from an older threshold file did not exist then: it ran with its default
        diff = search_differences(calibrated, cfg)
        if diff:
            raise ExportError(f"the threshold was calibrated with another search configuration "
                              f"(differs in {diff}); re-run edge-ad eval with the export's settings")
    if spec is not None and isinstance(threshold.get("preprocess"), dict):
        try:
            same = PreprocessSpec.from_dict(threshold["preprocess"]) == spec
        except (TypeError, ValueError):
            same = False
        if not same:
            raise ExportError("the threshold was calibrated with another preprocessing (e.g. edge-ad eval "
                              "--scoring reference scores on plain preprocessing); re-run edge-ad eval with the "
                              "export's --scoring")
    return {**threshold, "value": float(threshold["value"])}


def check_threshold_model(threshold: dict, scoring, src: dict) -> None:
    """ExportError unless a given threshold was read on the scores of the checkpoint ``src`` ({"file", "sha256"})
    is exported from: edge-ad eval records the checkpoint (model, model_sha256); a threshold file written before it
    did is refused when its normal class is another kinect-rgbd class than the one the checkpoint was trained on."""
    from edge_ad.models.data import KINECT_CLASSES
    redo = "a threshold only means something for its own model's scores; run edge-ad eval on this checkpoint"
    own, sha = threshold.get("model_sha256"), src.get("sha256")
    if isinstance(own, str) and sha is not None and own != sha:
        raise ExportError(f"the threshold was read on the scores of {threshold.get('model') or 'another model'} "
                          f"(sha256 {own[:12]}...), not of this checkpoint {getattr(scoring, 'path', None) or src.get('file')} "
                          f"(sha256 {sha[:12]}...): {redo}")
    normal, trained = threshold.get("normal"), getattr(scoring, "train_class", None)
    if own is None and normal in KINECT_CLASSES and trained in KINECT_CLASSES and normal != trained:
        raise ExportError(f"the threshold was read on {normal} frames, but this checkpoint was trained on {trained}: "
                          f"{redo}")


def _jsonable(o):
    """A checkpoint's scoring section for the manifest: tensors/arrays summarised by shape."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    shape = getattr(o, "shape", None)
    if shape is not None:
        return f"<{type(o).__name__} {list(shape)}>"
    return str(o)


def _versions() -> dict:
    import torch

    from edge_ad.runtime.backends.onnxruntime_backend import onnxruntime_module
    onnxruntime = onnxruntime_module()

    from edge_ad import __version__
    return {"edge_ad": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "graph_builder": "edge_ad.export.onnx_graphs (hand-written backward, opset %d)" % OPSET}


def _write_manifest(out_dir: Path, manifest: dict) -> None:
    tmp = out_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, default=_json_default) + "\n")
    os.replace(tmp, out_dir / MANIFEST)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o)}")
