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

Writing (``install_export``): the export is built in a hidden sibling of ``out_dir``
(``.<name>.export-<hex>``) and moved into place only when it is complete and its parity check passed;
an earlier export in ``out_dir`` is swapped out in one step (Linux renameat2 RENAME_EXCHANGE; elsewhere
two renames) and deleted, so a model directory is always either the old working export or the new one.
A failed parity check leaves ``out_dir`` unchanged and keeps the failed export, with its report, in
``<out_dir>.failed`` (an earlier failed export there is replaced; anything else there is the user's and
stays: ``<out_dir>.failed-2``, ``-3``, ... then). A non-empty ``out_dir`` that holds anything but an earlier export's files (a
manifest, the files it lists, graphs, arrays, ``engines/``) is refused: nothing of the user's is deleted.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import json
import os
import platform
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from edge_ad.runtime import variants
from edge_ad.runtime.backends.host_head import PANEL
from edge_ad.runtime.config import (BankLayout, SearchConfig, check_augment_weight, frame_seed, latent_memory,
                                    make_z0, rows_per_frame_of, search_differences, trusted_original_rows)
from edge_ad.runtime.data_root import DATA_ENV, default_kinect_root
from edge_ad.runtime.integrity import onnx_external_data
from edge_ad.runtime.manifest import FORMAT, MANIFEST, VERSION, load_manifest, sha256_file
from edge_ad.runtime.signing import SIGNATURE, load_private_key, sign_model
from edge_ad.runtime.preprocess import PreprocessSpec, check_shift_fill, preprocess

from .batch_graphs import batch_parity, export_batch_graphs
from .onnx_graphs import (BN_EPS, ENCODER_INPUT, ENCODER_OUTPUT, HEAD_LAYERS, OPSET, SCALARS, Arch,
                          build_encoder_graph, build_graph, head_state_names, stack_state, verify_graph)

# The float64 graphs against the float64 reference: the same arithmetic, only the order of sums differs
# (measured <= 1.4e-14 relative, rectangle.pt and the tests' tiny generator, k = 19 and 3). A weight-gradient
# bug barely moves the score at lr_theta = 6e-9: the BN-gamma gradient with its sign flipped moved it
# 6e-10 to 4e-9 on the tiny generator (tests/test_export_gate.py), which the former 1e-8 let through.
FP64_GRAPH_TOLERANCE = 1e-11


class ExportError(RuntimeError):
    """The export could not be produced or failed its parity check."""


class ParityFailed(ExportError):
    """The export was written but failed its parity check (raised inside the staging directory)."""


# what an earlier export may hold: replacing the directory deletes these and nothing else
EXPORT_SUFFIXES = (".onnx", ".onnx.data", ".npy", ".npz")
EXPORT_NAMES = {MANIFEST, MANIFEST + ".tmp", "engines"}


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` the export must not replace: a file, or a non-empty directory holding
    anything but an earlier export's files (ExportError naming them)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a directory")
    if not out_dir.is_dir():
        return
    names = {p.name for p in out_dir.iterdir()}
    if not names:
        return
    if MANIFEST not in names:
        raise ExportError(f"--out {out_dir} is not empty and holds no export ({MANIFEST}); choose a new or "
                          f"empty directory (it holds e.g. {', '.join(sorted(names)[:5])})")
    listed = set()
    try:
        listed = set(json.loads((out_dir / MANIFEST).read_text(encoding="utf-8")).get("files", {}))
    except (OSError, ValueError, AttributeError):
        pass   # a broken earlier export: its files are still recognised by their kind
    other = sorted(n for n in names - listed - EXPORT_NAMES - {SIGNATURE}
                   if not n.endswith(EXPORT_SUFFIXES))
    if other:
        raise ExportError(f"--out {out_dir} holds files that are not part of its export: {', '.join(other[:5])}"
                          f"{' ...' if len(other) > 5 else ''}; replacing the export would delete them. Move "
                          "them away or choose another --out")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):   # this kernel or filesystem cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def _is_working_dir(d: Path) -> bool:
    try:
        return os.path.samefile(d, os.getcwd())
    except OSError:
        return False


def install_in_place(stage: Path, out_dir: Path) -> None:
    """install_export for the working directory itself (``--out .``): renaming a directory onto it would
    leave the shell that ran the export in a deleted directory, so its entries are replaced one by one.
    The earlier manifest goes first and the new one comes last: in between the directory holds no export
    (the runtime refuses it), never a mix of the two."""
    for name in (MANIFEST, SIGNATURE):
        if (out_dir / name).exists():
            os.unlink(out_dir / name)
    new = {p.name for p in stage.iterdir()}
    for p in out_dir.iterdir():         # the earlier export's other files (check_out_dir: nothing else)
        if p.name not in new:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else os.unlink(p)
    for p in sorted(stage.iterdir(), key=lambda p: (p.name == MANIFEST, p.name == SIGNATURE, p.name)):  # manifest last
        target = out_dir / p.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(p, target)
    stage.rmdir()


def install_export(stage: Path, out_dir: Path) -> None:
    """Move the finished export ``stage`` to ``out_dir``: a new or empty ``out_dir`` is renamed onto,
    an earlier export is swapped out in one step and then deleted (the working directory: install_in_place)."""
    if _is_working_dir(out_dir):
        install_in_place(stage, out_dir)
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if _exchange(stage, out_dir):
            shutil.rmtree(stage)                      # now the earlier export
            return
        old = out_dir.with_name(f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
        os.rename(stage, out_dir)
        shutil.rmtree(old)
        return
    if out_dir.is_dir():
        out_dir.rmdir()
    os.rename(stage, out_dir)


def generator_arrays(G) -> tuple[dict, dict]:
    """(float64 parameters by torch name, {layer: (running_mean, running_var)}) of a Generator."""
    sd = {k: v.detach().double().cpu().numpy() for k, v in G.state_dict().items()}
    bn = {l: (sd[f"gen.{l}.1.running_mean"], sd[f"gen.{l}.1.running_var"]) for l in range(4)}
    return sd, bn


def arch_of(G, n_seed: int, chunk_bytes: int = 1 << 20, dtype=np.float32) -> Arch:
    fg, c = G.cfg.features_g, G.cfg.channels
    return Arch(z_dim=G.cfg.z_dim, widths=(fg * 16, fg * 8, fg * 4, fg * 2, c), n_seed=n_seed,
                resolution=G.cfg.resolution, chunk_bytes=chunk_bytes, dtype=np.dtype(dtype))


def _io_spec(model: onnx.ModelProto) -> dict:
    def one(vi):
        t = vi.type.tensor_type
        return {"name": vi.name, "shape": [d.dim_value for d in t.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}
    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}


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


def _reader(scoring):
    """models.checkpoint.CheckpointScoring of ``scoring`` (a reader, or a bare scoring dict / None)."""
    from edge_ad.models.checkpoint import CheckpointScoring
    return CheckpointScoring.of(scoring)


def scoring_search_config(scoring) -> Optional[SearchConfig]:
    """The named scoring configuration of a checkpoint's "scoring" section (a dict, or a CheckpointScoring):
    ``CheckpointScoring.search_config`` (``scoring["search"]``, else top-level SearchConfig fields, else None).
    CheckpointError for an invalid one."""
    return _reader(scoring).search_config()


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
    name texts of that list. Raises ExportError."""
    if not cfg.uses_latent_bank:
        return None
    bank = _given_or_stored(bank, scoring, "latent_bank")
    if bank is None:
        raise ExportError(f"the scoring configuration {cfg.name!r} multiplies the score by the latent-memory "
                          "distance (score_latent_power > 0), but the checkpoint has no latent bank "
                          "(scoring['latent_bank']) and none was given; build one with "
                          "models/kinect-rgbd/make_release.py --data")
    bank = np.asarray(bank.numpy() if hasattr(bank, "numpy") else bank, dtype=np.float32)
    if bank.ndim != 2 or len(bank) == 0 or (z_dim is not None and bank.shape[1] != z_dim) \
            or not np.isfinite(bank).all():
        raise ExportError(f"the latent bank must be a finite (N, z_dim={z_dim}) array, got shape {bank.shape}")
    try:
        trusted_original_rows(len(bank), bank_augment(scoring), cfg.bank_trusted_augment)
    except ValueError as e:
        raise ExportError(f"the latent bank does not match the checkpoint's latent_bank_info: {e}") from None
    try:
        check_augment_weight(cfg, rows_per_frame_of(bank_augment(scoring)))
    except ValueError as e:
        raise ExportError(str(e)) from None
    return bank


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


def _jsonable(o, depth: int = 0):
    """A checkpoint's scoring section for the manifest: tensors/arrays summarised by shape."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in o]
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    shape = getattr(o, "shape", None)
    if shape is not None:
        return f"<{type(o).__name__} {list(shape)}>"
    return str(o)


def _versions() -> dict:
    import onnxruntime
    import torch

    from edge_ad import __version__
    return {"edge_ad": __version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "graph_builder": "edge_ad.export.onnx_graphs (hand-written backward, opset %d)" % OPSET}


def _run_graphs(models: dict, pristine: dict, shapes: dict, cfg: SearchConfig, arch: Arch, mode: str,
                x: np.ndarray, z0: np.ndarray, threads: Optional[int]) -> dict:
    from edge_ad.runtime.backends.onnxruntime_backend import OrtSearch
    graphs = {k: m.SerializeToString() for k, m in models.items()}
    s = OrtSearch(graphs, pristine, shapes, cfg, arch.z_dim, (arch.channels, arch.resolution, arch.resolution),
                  dtype=arch.dtype, mode=mode, threads=threads)
    return s.run(x, z0)


def check_parity(G, out_dir: Path, cfg: SearchConfig, frames: Sequence[dict], *, tolerance: float = 1e-4,
                 seed: int = 0, check_fp64: bool = True, check_z_only: bool = True,
                 threads: Optional[int] = None, log: Callable = print,
                 spec: Optional[PreprocessSpec] = None, encoder=None, latent_bank=None,
                 bank_rows_per_frame: Optional[BankLayout] = None) -> dict:
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
    copies weighed by bank_augment_weight, except those of cfg.bank_trusted_augment's texts)."""
    import copy

    import torch

    from edge_ad.models.search import search_eager
    from edge_ad.runtime.config import score_scale
    from edge_ad.runtime.scorer import Scorer
    # the graphs score a frame as given: they are checked with the shift-min off; the shift-min
    # (score_shift_radius > 0, host code around them) gets its own rows below ("shift_min")
    full_cfg, cfg = cfg, cfg.replace(score_shift_radius=0)
    S = cfg.n_seed
    use_encoder = cfg.z_init == "encoder"
    if use_encoder and encoder is None:
        raise ExportError("parity check: the scoring configuration needs an encoder (z_init='encoder')")
    E64 = copy.deepcopy(encoder).double().eval() if use_encoder else None   # the float64 reference encoder
    man = load_manifest(out_dir, verify=False)
    zcfg = cfg.replace(lr_theta=0.0) if check_z_only and cfg.updates_weights and cfg.k > 0 else None
    # every exported variant (runtime/variants.py), faithful and z-only, CPU provider: {name: (scorer, zscorer)}
    names = list(man.get("variants") or [v.name for v in variants.VARIANTS.values()
                                         if variants.exported(v, cfg, man["graphs"])])
    scorers = {n: (Scorer.load(out_dir, config=cfg, variant=n, threads=threads, providers=["CPUExecutionProvider"]),
                   Scorer.load(out_dir, config=zcfg, variant=n, threads=threads, providers=["CPUExecutionProvider"])
                   if zcfg is not None else None) for n in names}
    if check_fp64:
        params, bn = generator_arrays(G)
        arch64 = arch_of(G, S, 0, np.float64)
        v64 = variants.for_export(cfg, ("gpu",))[0]        # the all-seeds graphs: forward (k = 0) or step
        kind64 = v64.mode(cfg)                              # OrtSearch's mode: forward, step or step_z
        m64 = {name: GRAPH_BUILDERS[name].model(name, arch64, bn, cfg, np.float64)[0] for name in v64.needs(cfg)}
        st64 = {k: v[0] for k, v in stack_state(arch64, params).items()}
        shapes64 = {s.name: s.shape for s in arch64.state()}

    def rel_of(a, b):
        return abs(a - b) / max(abs(b), 1e-12)

    def compare(got, ref) -> dict:
        return {"onnx_score": got.score, "rel_diff": rel_of(got.score, ref.score),
                "max_seed_rel_diff": float(np.max(np.abs(got.seed_losses - ref.seed_losses)
                                                  / np.maximum(np.abs(ref.seed_losses), 1e-12))),
                "error_map_max_abs_diff": float(np.max(np.abs(got.error_map - ref.error_map)))}

    rows, starts = [], []
    for i, fr in enumerate(frames):
        x = preprocess(fr["rgb"], fr["depth"], spec or getattr(G, "preprocess", None) or PreprocessSpec())
        zseed = frame_seed(seed, i)
        e64 = reference_latent(E64, x) if use_encoder else None      # (z_dim,) float64
        dist = reference_latent_distance(e64, latent_bank, cfg, bank_rows_per_frame)
        scale = score_scale(x, cfg, dist)
        if use_encoder:
            z0 = reference_z0(e64, cfg, zseed)                      # (S, z_dim) float64 encoder, cast
            start = {"seed": zseed}                                 # runtime: encoder.onnx + same noise
        else:
            z0 = make_z0(S, G.cfg.z_dim, zseed)
            start = {"z0": z0}
        starts.append(start)
        ref = search_eager(G, x, cfg, z0=z0, dtype=torch.float64, latent_distance=dist)
        zref = (search_eager(G, x, zcfg, z0=z0, dtype=torch.float64, latent_distance=dist)
                if zcfg is not None else None)
        row = {"frame": fr["id"], "label": fr.get("label"), "z0_seed": zseed,
               "z_init": cfg.z_init, "score_scale": scale, "reference_score": ref.score, "variants": {}}
        if zref is not None:
            row["z_only"] = {"reference_score": zref.score, "variants": {}}
        for n, (sc, zsc) in scorers.items():
            got = sc.score(fr["rgb"], fr["depth"], check_faults=False, **start)   # numerics, as the reference
            row["variants"][n] = compare(got, ref)
            if use_encoder and "encoder_z0_max_abs_diff" not in row:
                # the runtime's z0 (encoder.onnx, float32) against the float64 reference z0
                row["encoder_z0_max_abs_diff"] = float(np.max(np.abs(got.z0 - z0)))
                row["encoder_z0_max_abs"] = float(np.max(np.abs(z0)))
            if dist is not None and "latent_distance" not in row:
                row["latent_distance"] = {"reference": dist, "onnx": got.latent_distance,
                                          "rel_diff": rel_of(got.latent_distance, dist)}
            if zsc is not None:
                row["z_only"]["variants"][n] = compare(zsc.score(fr["rgb"], fr["depth"], check_faults=False, **start), zref)
        # the frame's worst variant (faithful and z-only): the gate's value for this frame
        row["rel_diff"] = max([r["rel_diff"] for r in row["variants"].values()]
                              + [r["rel_diff"] for r in row.get("z_only", {}).get("variants", {}).values()])
        if check_fp64:
            r64 = _run_graphs(m64, st64, shapes64, cfg, arch64, kind64, x, z0, threads)
            row["fp64_graph_rel_diff"] = rel_of(float(r64["seed_losses"].mean()) / scale, ref.score)
        rows.append(row)
        log(f"  parity {fr['id']} ({fr.get('label')}): reference {ref.score:.8f}; "
            + ", ".join(f"{n} rel {r['rel_diff']:.2e}" for n, r in row["variants"].items())
            + (", z-only " + ", ".join(f"{n} {r['rel_diff']:.2e}" for n, r in row["z_only"]["variants"].items())
               if "z_only" in row else "")
            + (f", encoder z0 max abs diff {row['encoder_z0_max_abs_diff']:.1e}" if use_encoder else "")
            + (f", fp64 graph rel {row['fp64_graph_rel_diff']:.1e}" if check_fp64 else ""))
    per_variant = {}
    for n in scorers:
        worst = max((r["variants"][n]["rel_diff"] for r in rows), default=float("inf"))
        zworst = max((r["z_only"]["variants"][n]["rel_diff"] for r in rows if "z_only" in r), default=None)
        ok = bool(rows) and worst <= tolerance and (zworst is None or zworst <= tolerance)
        per_variant[n] = {"passed": ok, "max_rel_diff": worst, "z_only_max_rel_diff": zworst,
                          "summary": f"{len(rows)} frames, max relative score difference {worst:.2e}"
                                     + (f" (z-only {zworst:.2e})" if zworst is not None else "")
                                     + f", tolerance {tolerance:g}"}
    failed = [n for n, r in per_variant.items() if not r["passed"]]
    kept = [n for n in per_variant if n not in failed]
    worst = max((per_variant[n]["max_rel_diff"] for n in kept), default=float("inf"))
    zworst = max((per_variant[n]["z_only_max_rel_diff"] or 0.0 for n in kept), default=0.0)
    fp64_worst = max((r.get("fp64_graph_rel_diff", 0.0) for r in rows), default=0.0)
    batch = None
    if "final_batch" in man["graphs"] and rows and scorers:   # k = 0: Scorer.score_batch's graphs too
        batch = batch_parity(next(iter(scorers.values()))[0], frames, starts,
                             [r["reference_score"] for r in rows], tolerance)
        log(f"  parity batch graphs: {batch['summary']}")
    shift = None
    if full_cfg.score_shift_radius and rows and kept:
        shift = shift_min_parity(G, out_dir, full_cfg, frames, starts, spec, E64, latent_bank, tolerance, threads,
                                 bank_rows_per_frame)
        log(f"  parity shift-min: {shift['summary']}")
    passed = (bool(rows) and bool(kept) and fp64_worst <= FP64_GRAPH_TOLERANCE
              and (batch is None or batch["passed"]) and (shift is None or shift["passed"]))
    summary = (f"{len(rows)} frames, variants {', '.join(kept) or 'none'} passed: max relative score difference "
               f"{max(worst, zworst):.2e} (tolerance {tolerance:g})"
               + (f"; FAILED and not exported: {', '.join(failed)}" if failed else "")
               + (f", float64 graphs {fp64_worst:.1e} (tolerance {FP64_GRAPH_TOLERANCE:g})" if check_fp64 else "")
               + (f"; {batch['summary']}" + ("" if batch["passed"] else " FAILED") if batch else "")
               + (f"; {shift['summary']}" + ("" if shift["passed"] else " FAILED") if shift else ""))
    if not rows:
        summary = "no parity frames"
    reference = "edge_ad.models.search.search_eager, torch float64, same z0"
    if use_encoder:
        reference += (", z0 = E(x) (the checkpoint's izi encoder in torch float64) + z_init_sigma * "
                      "make_z0(n_seed, z_dim, z0_seed); the runtime computes its z0 with encoder.onnx")
    if cfg.score_fg_power:
        reference += ", score = mean seed loss / max(fg(x), fg_floor) ** score_fg_power on both sides"
    if cfg.uses_latent_bank:
        reference += (", score *= max(d(E(x), latent bank), latent_floor) ** score_latent_power on both sides "
                      "(reference: encoder in float64; runtime: encoder.onnx float32)")
    return {"reference": reference,
            "runtime": "onnxruntime float32 graphs on the CPU provider, every exported variant (runtime/variants.py), "
                       "faithful and z-only",
            "tolerance": tolerance,
            "fp64_graph_tolerance": FP64_GRAPH_TOLERANCE if check_fp64 else None, "search": full_cfg.to_dict(),
            "frames": rows, "variants": per_variant, "failed_variants": failed,
            "max_rel_diff": worst if kept else None, "fp64_graph_max_rel_diff": fp64_worst if check_fp64 else None,
            "batch": batch, "shift_min": shift, "passed": passed, "summary": summary}


def shift_min_parity(G, out_dir: Path, cfg: SearchConfig, frames: Sequence[dict], starts: list, spec, E64,
                     latent_bank, tolerance: float, threads: Optional[int],
                     bank_rows_per_frame: Optional[BankLayout] = None) -> dict:
    """The test-time shift-min (cfg.score_shift_radius > 0) against the float64 PyTorch reference
    (models.search.search_min_shift, search_eager per shifted copy, encoder in float64): ``Scorer.score``
    with the full configuration (variant "auto", CPU provider) on every parity frame, started as the
    per-frame parity run was (``starts[i]``). The parity report's "shift_min": relative score
    differences, the winning shifts on both sides, "passed" (scores within ``tolerance``)."""
    import torch

    from edge_ad.models.search import search_min_shift
    from edge_ad.runtime.scorer import Scorer
    scorer = Scorer.load(out_dir, config=cfg, threads=threads, providers=["CPUExecutionProvider"])
    rows = []
    for fr, start in zip(frames, starts):
        x = preprocess(fr["rgb"], fr["depth"], spec or getattr(G, "preprocess", None) or PreprocessSpec())
        ref = search_min_shift(G, x, cfg, z0=start.get("z0"), seed=start.get("seed"), dtype=torch.float64,
                               encoder=E64, latent_bank=latent_bank, eager=True,
                               bank_rows_per_frame=bank_rows_per_frame)
        got = scorer.score(fr["rgb"], fr["depth"], check_faults=False, **start)   # numerics, as the reference
        rows.append({"frame": fr["id"], "reference_score": ref.score, "onnx_score": got.score,
                     "rel_diff": abs(got.score - ref.score) / max(abs(ref.score), 1e-12),
                     "reference_shift": list(ref.shift), "onnx_shift": list(got.shift)})
    worst = max((r["rel_diff"] for r in rows), default=float("inf"))
    return {"radius": cfg.score_shift_radius, "frames": rows, "max_rel_diff": worst,
            "passed": bool(rows) and worst <= tolerance,
            "summary": (f"shift-min (radius {cfg.score_shift_radius}) over {len(rows)} frames: max relative score "
                        f"difference {worst:.2e}, tolerance {tolerance:g}")}


def export_model(source, out_dir: os.PathLike, *, search: Optional[SearchConfig] = None,
                 chunk_bytes: int = 1 << 20, unrolled: bool = False, parity_frames: Optional[list] = None,
                 parity: bool = True, tolerance: float = 1e-4, check_fp64: bool = True,
                 parity_seed: int = 0, threads: Optional[int] = None, threshold: Optional[dict] = None,
                 encoder=None, latent_bank=None, targets: Sequence[str] = variants.TARGETS, sign_key=None,
                 preprocess: Optional[PreprocessSpec] = None, log: Callable = print) -> dict:
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
    out_dir = Path(os.path.abspath(out_dir))   # "." and ".." have no name to put the staging dir beside
    if out_dir.is_symlink():
        out_dir = out_dir.resolve()    # replace the directory the link points to, keep the link
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = out_dir.with_name(f".{out_dir.name}.export-{uuid.uuid4().hex[:8]}")
    stage.mkdir()                      # (the umask's permissions, as out_dir.mkdir gave them)
    try:
        try:
            manifest = _export_into(source, stage, search=search, chunk_bytes=chunk_bytes, unrolled=unrolled,
                                    parity_frames=parity_frames, parity=parity, tolerance=tolerance,
                                    check_fp64=check_fp64, parity_seed=parity_seed, threads=threads,
                                    threshold=threshold, encoder=encoder, latent_bank=latent_bank,
                                    targets=targets, sign_key=sign_key, preprocess=preprocess, log=log)
        except ParityFailed as e:
            failed = keep_failed_export(stage, out_dir)
            raise ExportError(f"export parity check FAILED: {e}; {out_dir} was not changed; the failed export "
                              f"and its report: {failed / MANIFEST}") from None
        install_export(stage, out_dir)
    finally:
        shutil.rmtree(stage, ignore_errors=True)   # gone already unless something failed on the way
    return manifest


def keep_failed_export(stage: Path, out_dir: Path) -> Path:
    """Move a failed export ``stage`` to ``<out_dir>.failed`` and return where it went. An earlier failed
    export there is replaced; anything else there (a file, a directory holding other files: the user's)
    is kept, and the failure goes to ``<out_dir>.failed-2``, ``-3``, ... instead."""
    failed = out_dir.with_name(out_dir.name + ".failed")
    n = 1
    while True:
        if failed.is_dir() and not failed.is_symlink():
            try:
                check_out_dir(failed)   # only an earlier export's files (or nothing) in it
            except ExportError:
                pass
            else:
                shutil.rmtree(failed)
        if not os.path.lexists(failed):
            try:
                os.rename(stage, failed)
                return failed
            except FileExistsError:   # made meanwhile: try the next name
                pass
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise ExportError(f"could not keep the failed export in {failed}: {e}") from None
        n += 1
        failed = out_dir.with_name(f"{out_dir.name}.failed-{n}")


def _export_into(source, out_dir: Path, *, search, chunk_bytes, unrolled, parity_frames, parity, tolerance,
                 check_fp64, parity_seed, threads, threshold, encoder, latent_bank, targets, sign_key,
                 preprocess, log) -> dict:
    """export_model's work, in the (new, empty) staging directory ``out_dir``."""
    from edge_ad.models.checkpoint import CheckpointScoring, load_generator
    if sign_key is not None:
        sign_key = load_private_key(sign_key)   # a bad key or passphrase fails now, not after the export
    if isinstance(source, (str, os.PathLike)):
        G = load_generator(source)
        scoring = CheckpointScoring.read(source)
        src = {"file": Path(source).name, "sha256": sha256_file(source), "format": G.source_format}
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
    if threshold is None:
        threshold = stored_threshold(scoring, cfg, spec, log)
    elif threshold is False:
        threshold = None
    if threshold is not None:
        threshold = check_threshold(threshold, cfg, spec)
    try:
        check_shift_fill(spec, cfg.score_shift_radius)
    except ValueError as e:
        raise ExportError(str(e)) from None
    out_dir = Path(out_dir)
    params, bn = generator_arrays(G)
    arch = arch_of(G, cfg.n_seed, chunk_bytes, np.float32)
    chosen = variants.for_export(cfg, targets, unrolled)
    graphs = _write_graphs(G, bn, cfg, arch, out_dir, variants.graphs_for_export(cfg, chosen))
    chosen = [v for v in chosen if set(variants.graphs_for_export(cfg, [v])) <= set(graphs)]
    checks = {name: g["check"] for name, g in graphs.items()}
    enc_layers = encoder_layers(E) if E is not None else None    # float64 copies, used by both encoder graphs
    if E is not None:
        x_shape = (G.cfg.channels, G.cfg.resolution, G.cfg.resolution)
        model = build_encoder_graph(enc_layers, x_shape, G.cfg.z_dim, np.float32)
        checks["encoder"] = verify_graph(model, np.float32)
        onnx.save(model, str(out_dir / "encoder.onnx"))
        enc_cfg = E.cfg.to_dict() if hasattr(E.cfg, "to_dict") else None
        graphs["encoder"] = {"file": "encoder.onnx", **_io_spec(model), "nodes": len(model.graph.node),
                             "check": checks["encoder"], "role": "z_init", "config": enc_cfg,
                             "input": ENCODER_INPUT, "output": ENCODER_OUTPUT,
                             "z0": "z0_j = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed)_j"}
    if cfg.k == 0:   # frame batches (Scorer.score_batch): the generator pass, and the encoder's, over B frames
        graphs.update(export_batch_graphs(params, bn, arch, out_dir, enc_layers))
    single = {k: v[0] for k, v in stack_state(arch, params).items()}
    np.savez(out_dir / "weights.npz", **single)
    extra_files = ["weights.npz"] + ([HEAD_CONSTS] if (out_dir / HEAD_CONSTS).exists() else [])
    if bank is not None:
        np.save(out_dir / "latent_bank.npy", bank)
        extra_files.append("latent_bank.npy")
    # every file the runtime reads has a sha256, including the external data an ONNX graph points to
    external = [loc for g in graphs.values() for loc in onnx_external_data((out_dir / g["file"]).read_bytes(), g["file"])]
    files = {f: sha256_file(out_dir / f) for f in [g["file"] for g in graphs.values()] + extra_files + external}
    manifest = {
        "format": FORMAT, "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": src, "train_class": train_class,
        "model": G.cfg.to_dict(),
        "search": cfg.to_dict(),
        "scoring_in_checkpoint": _jsonable(scoring.section),
        "preprocess": spec.to_dict(),
        "layout": {
            "n_seed": cfg.n_seed, "z_dim": G.cfg.z_dim, "channels": G.cfg.channels,
            "resolution": G.cfg.resolution, "dtype": "float32", "weights": "weights.npz",
            "chunk_bytes": chunk_bytes, "col_order": arch.col_order,
            "state": _state_entries(arch),
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
    if threshold is not None:
        manifest["threshold"] = threshold
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
    report = check_parity(G, out_dir, cfg, frames, tolerance=tolerance, seed=parity_seed,
                          check_fp64=check_fp64, threads=threads, log=log, spec=spec, encoder=E,
                          latent_bank=bank, bank_rows_per_frame=scoring.bank_augment())
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


def _sign(out_dir: Path, sign_key, log: Callable) -> None:
    """Sign the finished export (manifest.sig) when a key is given."""
    if sign_key is not None:
        rec = sign_model(out_dir, sign_key)
        log(f"signed {out_dir / MANIFEST} with key {rec['key_id'][:16]}... ({SIGNATURE})")


def _state_entries(arch: Arch) -> list:
    """The manifest's description of a graph's state tensors (name, torch param, stacked shape, GEMM
    columns, and the panel width of a weight stored in column panels)."""
    return [{"name": s.name, "param": s.param, "shape": list(s.shape), "cols": list(s.cols) if s.cols else None,
             **({"panel": s.panel} if s.panel else {})} for s in arch.state()]


HOST_ADAM_PANEL = 32   # column-panel width of the layer 1-2 weights in the fused-adam graphs
HOST_HEAD_PANEL = PANEL   # the panel width runtime/backends/_head_kernel.c is written for (host_head.PANEL)


@dataclasses.dataclass(frozen=True)
class GraphJob:
    """What a graph builder reads: the generator's BN running statistics ``bn``, the configuration, the
    all-seeds layout ``arch`` (weights.npz's chunked columns), the one-seed layout ``one`` of the CPU
    searches (torch's col2im column order, layers 1-2 in HOST_ADAM_PANEL-column panels) with its manifest
    ``state`` entries, and the directory the graphs go to."""

    bn: dict
    cfg: SearchConfig
    arch: Arch
    one: Arch
    state: list
    out_dir: Path


@dataclasses.dataclass(frozen=True)
class AllSeedsGraph:
    """step, step_z, final, unrolled: all seeds in one graph, weights in the chunked layout of weights.npz."""

    n_adam: Callable[[int, int], int]   # (state tensors, k) -> the Adam updates the graph holds (0: none)
    records_k: bool = False             # the manifest entry says k (the unrolled graph is built for one k)

    def model(self, name: str, arch: Arch, bn: dict, cfg: SearchConfig, dtype) -> tuple:
        """(the graph ``name`` built in ``dtype``, verify_graph's report: eps kept, one float precision)."""
        model = build_graph(arch, name, bn, k=cfg.k)
        return model, verify_graph(model, dtype, n_adam=self.n_adam(len(arch.state()), cfg.k) or None)

    def __call__(self, name: str, job: GraphJob) -> dict:
        model, check = self.model(name, job.arch, job.bn, job.cfg, np.float32)
        onnx.save(model, str(job.out_dir / f"{name}.onnx"))
        return {"file": f"{name}.onnx", **_io_spec(model), "nodes": len(model.graph.node), "check": check,
                **({"k": job.cfg.k} if self.records_k else {})}


def _seed_graph(kind: str, note: Optional[str] = None) -> Callable[[str, GraphJob], dict]:
    """grad_seed, grad_z_seed, final_seed (the CPU searches): ``<kind>_seed.onnx``, one seed, unchunked."""
    def build(name: str, job: GraphJob) -> dict:
        entry = _save_seed_graph(job.one, kind, job.bn, job.out_dir, job.state, role="cpu")
        return {**entry, "note": note} if note else entry
    return build


def _host_head_graph(kind: str) -> Callable[[str, GraphJob], Optional[dict]]:
    """grad_tail_seed, grad_z_tail_seed: the host-head search's tail (layers 2-4), with head_consts.npy;
    None for a layout the host kernel does not handle (fused-adam runs instead)."""
    return lambda name, job: _export_host_head_graph(job.one, kind, job.bn, job.out_dir, job.state)


# graph name (runtime/variants.py's Variant.graphs / z_graphs) -> builder(name, job) -> manifest entry (None: not
# for this layout). One row per graph: a new variant's graph is one new row here.
GRAPH_BUILDERS: dict = {
    "step": AllSeedsGraph(n_adam=lambda n_state, k: n_state + 1),          # z and every weight copy
    "step_z": AllSeedsGraph(n_adam=lambda n_state, k: 1),                  # z only
    "final": AllSeedsGraph(n_adam=lambda n_state, k: 0),
    "unrolled": AllSeedsGraph(n_adam=lambda n_state, k: k * (n_state + 1), records_k=True),
    "grad_seed": _seed_graph("grad", "gradients of one seed's loss w.r.t. z and every weight; the runtime applies "
                                     "Adam on the host (runtime/backends/host_adam.py), k runs per seed, then "
                                     "final_seed"),
    "grad_z_seed": _seed_graph("grad_z", "grad_seed without the weight gradients: the z-only search (lr_theta = 0)"),
    "final_seed": _seed_graph("final"),
    "grad_tail_seed": _host_head_graph("grad_tail"),
    "grad_z_tail_seed": _host_head_graph("grad_z_tail"),
}


def unbuilt_graphs(table: dict = variants.VARIANTS) -> list:
    """The graph names variants of ``table`` run (faithful or z-only) that GRAPH_BUILDERS cannot build."""
    return sorted({g for v in table.values() for g in v.graphs + v.z_graphs} - set(GRAPH_BUILDERS))


if unbuilt_graphs():     # a variant row whose graphs nobody builds: fail at import, not in the middle of an export
    raise ImportError(f"export/exporter.py has no graph builder for {unbuilt_graphs()} (runtime/variants.py's table)")


def _write_graphs(G, bn: dict, cfg: SearchConfig, arch: Arch, out_dir: Path, names: Sequence[str]) -> dict:
    """Build, check and write the graphs ``names`` (runtime/variants.py names) with GRAPH_BUILDERS; returns
    their manifest entries (a host-head graph the layout cannot have is left out).

    The per-seed graphs keep weights unchunked: the host's fused Adam makes weight chunks pointless and
    whole GEMMs are faster (measured 26-29 -> 22-26 ms per step at width 32); torch's (c, kh, kw) column
    order so that the forward col2im is one Col2Im op (measured per step 26.4 -> 23.9 ms, final pass
    16.6 -> 9.4 ms); layers 1-2 (P <= 64) in 32-column panels."""
    one = dataclasses.replace(arch_of(G, 1, 0, np.float32), col_order="col2im", panel=HOST_ADAM_PANEL)
    job = GraphJob(bn=bn, cfg=cfg, arch=arch, one=one, state=_state_entries(one), out_dir=out_dir)
    out = {}
    for name in names:
        if name not in GRAPH_BUILDERS:
            raise ExportError(f"no builder for the graph {name!r}")
        entry = GRAPH_BUILDERS[name](name, job)
        if entry is not None:
            out[name] = entry
    return out


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


def _save_seed_graph(one: Arch, kind: str, bn: dict, out_dir: Path, state: list, **extra) -> dict:
    """Build, check and write ``<kind>_seed.onnx`` (one seed, the CPU searches' weight layout ``state``);
    returns its manifest entry (``extra``: role, head, ...)."""
    model = build_graph(one, kind, bn)
    check = verify_graph(model, np.float32)
    fname = f"{kind}_seed.onnx"
    onnx.save(model, str(out_dir / fname))
    return {"file": fname, **_io_spec(model), "nodes": len(model.graph.node), "check": check, "n_seed": 1,
            **extra, "state": state, "col_order": one.col_order}


HEAD_CONSTS = "head_consts.npy"


def _export_host_head_graph(one: Arch, kind: str, bn: dict, out_dir: Path, state: list) -> Optional[dict]:
    """grad_tail_seed.onnx / grad_z_tail_seed.onnx (``kind`` grad_tail / grad_z_tail: layers 2-4 of one seed:
    x, a1, tail weights -> a1.grad and the tail's weight gradients) and head_consts.npy (bn0's running mean
    and 1 / sqrt(var + eps), float32 as the graphs store them): the host-head search runs layers 0-1 and
    their Adam on the host (runtime/backends/host_head.py). None for layouts the host kernel does not handle (it
    needs W0 and W1 whole, W1 in 32-column panels: the weights layout of grad_seed, ``state``)."""
    by_name = {st["name"]: st for st in state}
    head = head_state_names(one)
    w1 = by_name.get("W1.c0")
    if (head != ["W0.c0", "bn0.gamma", "bn0.beta", "W1.c0"] or not w1 or w1.get("panel") != HOST_HEAD_PANEL
            or one.col_order != "col2im"):
        return None
    mean, var = (np.asarray(t, dtype=np.float64) for t in bn[0])
    consts = np.concatenate([mean, 1.0 / np.sqrt(var + BN_EPS)]).astype(np.float32)   # as build_graph stores them
    np.save(out_dir / HEAD_CONSTS, consts)
    c0, n1 = one.widths[0], one.widths[1] * 16
    head_info = {"layers": list(range(HEAD_LAYERS)), "state": head, "consts": HEAD_CONSTS,
                 "consts_layout": "bn0 running mean (C0) then 1 / sqrt(running var + eps) (C0), float32",
                 "dims": {"z_dim": one.z_dim, "c0": c0, "n1": n1},
                 "input": "a1: layer 1's transposed-convolution output (1, C1, 8, 8), before BN1"}
    entry = _save_seed_graph(one, kind, bn, out_dir, state, role="host-head", head=head_info)
    entry["note"] = ("layers 2-4 of one seed's step: a1.grad and the tail's weight gradients; the host runs layers "
                     "0-1 with Adam fused into their backward pass (runtime/backends/host_head.py), then Adam on the tail "
                     "(runtime/backends/host_adam.py)" if kind == "grad_tail" else
                     "grad_tail_seed without the weight gradients (lr_theta = 0)")
    return entry


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


def check_threshold(threshold: dict, cfg: SearchConfig, spec: Optional[PreprocessSpec] = None) -> dict:
    """Validate a calibrated threshold for the exported search configuration (and preprocessing
    ``spec``, when the threshold records the one it was calibrated with: edge-ad eval's threshold.json)."""
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), (int, float)) \
            or not np.isfinite(threshold["value"]) or threshold["value"] <= 0:
        raise ExportError(f"threshold must be a dict with a finite 'value' > 0 (scores are >= 0), got {threshold!r}")
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


if __name__ == "__main__":  # pragma: no cover
    export_model(sys.argv[1], sys.argv[2])
