"""``edge-ad export``: generator checkpoint -> ONNX search graphs + weights + manifest, with parity.

Output directory:
  step.onnx      one Adam step on z and on every per-seed weight copy (all seeds in one graph)
  step_z.onnx    the z-only step (named fast option lr_theta = 0)
  final.onnx     the final forward pass: per-seed loss, per-pixel error map, reconstructions
  unrolled.onnx  optional: the whole k-step search and the final pass in one graph
  weights.npz    the pristine weights, one copy, in the graphs' state layout (float32)
  manifest.json  format version, model config, search hyper-parameters, preprocessing, tensor
                 names/shapes/dtypes, opset, exporter versions, sha256 of every file, parity report

Parity is part of export: the float32 graphs run in onnxruntime against the PyTorch reference
search in float64 on real frames with fixed z0 (relative score difference <= tolerance, default
1e-4), and the same graphs built in float64 are checked against it to ~1e-9 (the maths itself).
A failed check writes the report into the manifest (which the runtime then refuses) and raises.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from edge_ad.runtime.config import SearchConfig, frame_seed, make_z0
from edge_ad.runtime.manifest import FORMAT, MANIFEST, VERSION, load_manifest, sha256_file
from edge_ad.runtime.preprocess import PreprocessSpec, preprocess

from .onnx_graphs import OPSET, SCALARS, Arch, build_graph, stack_state, verify_graph

REPO_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "kinect-rgbd"


class ExportError(RuntimeError):
    """The export could not be produced or failed its parity check."""


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


def default_parity_frames(root: Path = REPO_DATA, train_class: Optional[str] = None) -> list:
    """Two real kinect-rgbd val frames: one of the model's class (normal), one of another class
    (anomalous). Returns [] when the data is not beside the checkout."""
    from edge_ad.runtime.sources.folder import read_pair
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


def _checkpoint_scoring(path) -> tuple[Optional[dict], Optional[str]]:
    """(scoring dict stored in an edge-ad checkpoint, its train class) if any."""
    try:
        from edge_ad.models.checkpoint import read_checkpoint
        ck = read_checkpoint(path)
    except Exception:
        return None, None
    train = ck.get("train") or {}
    cls = None
    if isinstance(train, dict):
        data = train.get("data") if isinstance(train.get("data"), dict) else {}
        cls = train.get("class") or train.get("normal_class") or data.get("cls") or data.get("class")
    return ck.get("scoring"), cls if isinstance(cls, str) else None


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
                 spec: Optional[PreprocessSpec] = None) -> dict:
    """Score ``frames`` with the exported graphs (onnxruntime, float32) and the PyTorch reference
    (float64, same z0); also the float64 build of the same graphs. Returns the parity report."""
    import torch

    from edge_ad.models.search import search_eager
    from edge_ad.runtime.scorer import Scorer
    rows, worst = [], 0.0
    S = cfg.n_seed
    scorer = Scorer.load(out_dir, config=cfg, variant="step", threads=threads)
    zscorer = Scorer.load(out_dir, config=cfg.replace(lr_theta=0.0), threads=threads) if check_z_only else None
    man = load_manifest(out_dir, verify=False)
    uscorer = (Scorer.load(out_dir, config=cfg, variant="unrolled", threads=threads)
               if "unrolled" in man["graphs"] and cfg.updates_weights else None)
    if check_fp64:
        params, bn = generator_arrays(G)
        arch64 = arch_of(G, S, 0, np.float64)
        m64 = {"step": build_graph(arch64, "step", bn), "final": build_graph(arch64, "final", bn)}
        verify_graph(m64["step"], np.float64, n_adam=len(arch64.state()) + 1)
        st64 = {k: v[0] for k, v in stack_state(arch64, params).items()}
        shapes64 = {s.name: s.shape for s in arch64.state()}
    for i, fr in enumerate(frames):
        x = preprocess(fr["rgb"], fr["depth"], spec or getattr(G, "preprocess", None) or PreprocessSpec())
        z0 = make_z0(S, G.cfg.z_dim, frame_seed(seed, i))
        ref = search_eager(G, x, cfg, z0=z0, dtype=torch.float64)
        got = scorer.score(fr["rgb"], fr["depth"], z0=z0)
        rel = abs(got.score - ref.score) / max(abs(ref.score), 1e-12)
        seed_rel = float(np.max(np.abs(got.seed_losses - ref.seed_losses) / np.maximum(np.abs(ref.seed_losses), 1e-12)))
        row = {"frame": fr["id"], "label": fr.get("label"), "z0_seed": frame_seed(seed, i),
               "reference_score": ref.score, "onnx_score": got.score, "rel_diff": rel,
               "max_seed_rel_diff": seed_rel,
               "error_map_max_abs_diff": float(np.max(np.abs(got.error_map - ref.error_map)))}
        worst = max(worst, rel)
        if uscorer is not None:
            u = uscorer.score(fr["rgb"], fr["depth"], z0=z0)
            row["unrolled"] = {"onnx_score": u.score, "rel_diff": abs(u.score - ref.score) / max(abs(ref.score), 1e-12)}
            worst = max(worst, row["unrolled"]["rel_diff"])
        if zscorer is not None:
            zref = search_eager(G, x, cfg.replace(lr_theta=0.0), z0=z0, dtype=torch.float64)
            zgot = zscorer.score(fr["rgb"], fr["depth"], z0=z0)
            zrel = abs(zgot.score - zref.score) / max(abs(zref.score), 1e-12)
            row["z_only"] = {"reference_score": zref.score, "onnx_score": zgot.score, "rel_diff": zrel}
            worst = max(worst, zrel)
        if check_fp64:
            r64 = _run_graphs(m64, st64, shapes64, cfg, arch64, "step", x, z0, threads)
            row["fp64_graph_rel_diff"] = abs(float(r64["seed_losses"].mean()) - ref.score) / max(abs(ref.score), 1e-12)
        rows.append(row)
        log(f"  parity {fr['id']} ({fr.get('label')}): reference {ref.score:.8f} onnx {got.score:.8f} "
            f"rel {rel:.2e}" + (f", z-only rel {row['z_only']['rel_diff']:.2e}" if "z_only" in row else "")
            + (f", fp64 graph rel {row['fp64_graph_rel_diff']:.1e}" if check_fp64 else ""))
    fp64_worst = max((r.get("fp64_graph_rel_diff", 0.0) for r in rows), default=0.0)
    passed = bool(rows) and worst <= tolerance and fp64_worst <= 1e-8
    summary = (f"{len(rows)} frames, max relative score difference {worst:.2e} (tolerance {tolerance:g})"
               + (f", float64 graphs {fp64_worst:.1e} (tolerance 1e-8)" if check_fp64 else ""))
    if not rows:
        summary = "no parity frames"
    return {"reference": "edge_ad.models.search.search_eager, torch float64, same z0",
            "runtime": "onnxruntime float32 graphs (step loop; unrolled graph and z-only graph too)", "tolerance": tolerance,
            "fp64_graph_tolerance": 1e-8 if check_fp64 else None, "search": cfg.to_dict(),
            "frames": rows, "max_rel_diff": worst, "fp64_graph_max_rel_diff": fp64_worst if check_fp64 else None,
            "passed": passed, "summary": summary}


def export_model(source, out_dir: os.PathLike, *, search: Optional[SearchConfig] = None,
                 chunk_bytes: int = 1 << 20, unrolled: bool = True, parity_frames: Optional[list] = None,
                 parity: bool = True, tolerance: float = 1e-4, check_fp64: bool = True,
                 parity_seed: int = 0, threads: Optional[int] = None, threshold: Optional[dict] = None,
                 log: Callable = print) -> dict:
    """Export a generator (a path ``load_generator`` accepts, or a loaded Generator) to ``out_dir``.

    threshold: {"value": float, ...} (e.g. ``edge-ad eval``'s threshold.json) stored as the model's
    calibrated anomaly threshold; refused if it was calibrated under another search configuration.
    Returns the manifest. Raises ExportError on a failed parity check (the manifest then records
    the failure and ``Scorer.load`` refuses the directory) and CheckpointError for bad inputs.
    """
    from edge_ad.models.checkpoint import load_generator
    if isinstance(source, (str, os.PathLike)):
        G = load_generator(source)
        scoring, train_class = _checkpoint_scoring(source)
        src = {"file": Path(source).name, "sha256": sha256_file(source), "format": G.source_format}
    else:
        G, scoring, train_class = source.eval(), None, None
        src = {"file": None, "sha256": None, "format": getattr(source, "source_format", "module")}
    fields = set(SearchConfig.__dataclass_fields__)
    if search is None:
        base = {k: v for k, v in (scoring or {}).items() if k in fields} if isinstance(scoring, dict) else {}
        search = SearchConfig.from_dict(base) if base else SearchConfig()
    cfg = search
    if threshold is not None:
        threshold = check_threshold(threshold, cfg)
    spec = getattr(G, "preprocess", None) or PreprocessSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    old = out_dir / MANIFEST
    if old.exists():
        old.unlink()   # never leave a manifest that describes other files
    params, bn = generator_arrays(G)
    arch = arch_of(G, cfg.n_seed, chunk_bytes, np.float32)
    n_state = len(arch.state())
    kinds = ["step", "step_z", "final"] + (["unrolled"] if unrolled and cfg.k > 0 else [])
    graphs, checks = {}, {}
    for kind in kinds:
        model = build_graph(arch, kind, bn, k=cfg.k)
        n_adam = {"step": n_state + 1, "step_z": 1, "final": 0, "unrolled": cfg.k * (n_state + 1)}[kind]
        checks[kind] = verify_graph(model, np.float32, n_adam=n_adam or None)
        fname = f"{kind}.onnx"
        onnx.save(model, str(out_dir / fname))
        graphs[kind] = {"file": fname, **_io_spec(model), "nodes": len(model.graph.node),
                        "check": checks[kind]}
        if kind == "unrolled":
            graphs[kind]["k"] = cfg.k
    single = {k: v[0] for k, v in stack_state(arch, params).items()}
    np.savez(out_dir / "weights.npz", **single)
    files = {f: sha256_file(out_dir / f) for f in [g["file"] for g in graphs.values()] + ["weights.npz"]}
    manifest = {
        "format": FORMAT, "version": VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": src, "train_class": train_class,
        "model": G.cfg.to_dict(),
        "search": cfg.to_dict(),
        "scoring_in_checkpoint": scoring if isinstance(scoring, (dict, type(None))) else str(scoring),
        "preprocess": spec.to_dict(),
        "layout": {
            "n_seed": cfg.n_seed, "z_dim": G.cfg.z_dim, "channels": G.cfg.channels,
            "resolution": G.cfg.resolution, "dtype": "float32", "weights": "weights.npz",
            "chunk_bytes": chunk_bytes,
            "state": [{"name": s.name, "param": s.param, "shape": list(s.shape),
                       "cols": list(s.cols) if s.cols else None} for s in arch.state()],
            "weights_layout": "weights.npz holds one copy (shape[1:]) per state tensor; tile to n_seed. "
                              "ConvT weights (C_in, C_out, 4, 4) are stored as (C_in, 16*C_out) GEMM "
                              "columns: layer 0 (c, kh, kw); stride-2 layers (a, c', b, d, c) with "
                              "kh = 2a + b, kw = 2c' + d; split into column chunks 'W{l}.c{i}'.",
            "z": "(n_seed, 1, z_dim)", "x": "(channels, resolution, resolution) in [-1, 1]",
            "moments": "Adam moments '<name>.m', '<name>.v' have the state tensor's shape and start at zero; "
                       "they are kept scaled (m / (1 - beta1), v / (1 - beta2)); outputs end in '.out'",
        },
        "adam_scalars": {"inputs": list(SCALARS),
                         "computed_by": "host, float64 (edge_ad.runtime.backends.onnxruntime_backend.adam_scalars)",
                         "note": "eps and the bias corrections are graph inputs, never constants"},
        "graphs": graphs, "opset": OPSET, "exporter": _versions(), "files": files,
        "parity": None,
    }
    if threshold is not None:
        manifest["threshold"] = threshold
    _write_manifest(out_dir, manifest)
    if not parity:
        manifest["parity"] = {"passed": None, "summary": "parity check skipped (--no-parity)"}
        _write_manifest(out_dir, manifest)
        return manifest
    frames = parity_frames if parity_frames is not None else default_parity_frames(train_class=train_class)
    if not frames:
        raise ExportError("no parity frames: the kinect-rgbd data is not beside the checkout; "
                          "pass --parity-frames DIR (a frame folder) or --no-parity")
    log(f"parity check on {len(frames)} frames (float64 PyTorch reference vs onnxruntime) ...")
    report = check_parity(G, out_dir, cfg, frames, tolerance=tolerance, seed=parity_seed,
                          check_fp64=check_fp64, threads=threads, log=log, spec=spec)
    manifest["parity"] = report
    _write_manifest(out_dir, manifest)
    if not report["passed"]:
        raise ExportError(f"export parity check FAILED: {report['summary']}; report in {out_dir / MANIFEST}")
    load_manifest(out_dir, verify=True)
    return manifest


def check_threshold(threshold: dict, cfg: SearchConfig) -> dict:
    """Validate a calibrated threshold for the exported search configuration."""
    if not isinstance(threshold, dict) or not isinstance(threshold.get("value"), (int, float)) \
            or not np.isfinite(threshold["value"]):
        raise ExportError(f"threshold must be a dict with a finite 'value', got {threshold!r}")
    calibrated = threshold.get("search")
    if calibrated is not None:
        mine = cfg.to_dict()
        diff = sorted(k for k in set(calibrated) | set(mine) if calibrated.get(k) != mine.get(k) and k != "name")
        if diff:
            raise ExportError(f"the threshold was calibrated with another search configuration "
                              f"(differs in {diff}); re-run edge-ad eval with the export's settings")
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
