"""``Scorer``: score raw RGB-D frames with an exported model directory, without PyTorch.

    scorer = Scorer.load("model_dir")                # checks manifest version and every sha256
    r = scorer.score(rgb, depth, seed=0)             # raw H x W x 3 uint8 + H x W depth
    r.score, r.seed_losses, r.error_map, r.timings

The search configuration comes from the manifest; ``config=`` overrides it (e.g. the named fast
option ``lr_theta=0``, which switches to the z-only graph). Weights restart from the pristine copy
for every frame; all large buffers are allocated once in ``load``.

Named scoring configurations (issue 4) are applied here, the same for every backend:
  z_init == "encoder"   z0_j = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed)_j, E = encoder.onnx
                        (an explicit ``z0`` argument still overrides)
  score_fg_power > 0    score = mean_j loss_j / max(fg(x), fg_floor) ** score_fg_power
                        (runtime.config.score_scale; 1.0 for the reference configuration)
  score_latent_power > 0  score *= max(d(E(x), bank), latent_floor) ** score_latent_power, bank =
                        latent_bank.npy (E of the normal training frames), d = config.latent_distance
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import host_adam, host_head
from .config import LatentMemory, SearchConfig, make_z0, score_scale
from .manifest import ManifestError, gradient_graph, load_manifest
from .preprocess import PreprocessSpec, preprocess

BACKENDS = ("onnxruntime", "tensorrt")


def _grad_graph(cfg: SearchConfig, head: bool = False) -> str:
    """The fused-adam (head=False) or host-head search's gradient graph for this configuration."""
    return gradient_graph(cfg.updates_weights, head)


def _load_head(model_dir: Path, man: dict, graph: dict) -> dict:
    """The host head of a tail graph's manifest entry: dims, bn0 constants and the head's state names,
    checked against what runtime/_head_kernel.c computes (its layout: W0 (Z, 16 C0), gamma0, beta0,
    W1 as 32-column panels, torch's (c, kh, kw) column order) and the manifest's sha256 list."""
    info = graph.get("head") or {}
    try:
        dims = host_head.HeadDims(int(info["dims"]["z_dim"]), int(info["dims"]["c0"]), int(info["dims"]["n1"]))
        dims.check()
        state = [str(n) for n in info["state"]]
        if info["consts"] not in man.get("files", {}):        # only files whose sha256 was verified
            raise ValueError(f"{info['consts']} is not among the manifest's checksummed files")
        consts = np.load(model_dir / info["consts"], allow_pickle=False)
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ManifestError(f"{model_dir}: the tail graph's 'head' entry is incomplete or unusable ({e})") from None
    if consts.dtype != np.float32 or consts.shape != (2 * dims.c0,):
        raise ManifestError(f"{model_dir}: {info['consts']} holds {consts.dtype} {consts.shape}, expected "
                            f"float32 ({2 * dims.c0},)")
    by_name = {st["name"]: st for st in graph.get("state") or []}
    want = {"W0.c0": ([1, dims.z_dim, dims.n0], None), "bn0.gamma": ([1, dims.c0], None),
            "bn0.beta": ([1, dims.c0], None),
            "W1.c0": ([1, dims.n1 // host_head.PANEL, dims.c0, host_head.PANEL], host_head.PANEL)}
    layout_ok = (graph.get("col_order") == "col2im" and state == list(want)
                 and all(n in by_name and list(by_name[n]["shape"]) == shape and by_name[n].get("panel") == panel
                         for n, (shape, panel) in want.items()))
    if not layout_ok:
        raise ManifestError(f"{model_dir}: the host head's weights in this export are not in the layout the head "
                            f"kernel computes (W0 (Z, 16 C0), bn0 gamma/beta, W1 in {host_head.PANEL}-column panels, "
                            f"col2im column order) for dims {dims}")
    return {"dims": dims, "consts": consts, "state": state}


def _cpu_only(providers) -> bool:
    """True if onnxruntime will run on the CPU (given providers, else: no CUDA provider here)."""
    if providers is None:
        import onnxruntime as ort
        return "CUDAExecutionProvider" not in ort.get_available_providers()
    return all((p if isinstance(p, str) else p[0]) == "CPUExecutionProvider" for p in providers)


@dataclass
class ScoreResult:
    score: float                 # mean over seeds of the final reconstruction loss / score_scale
    seed_losses: np.ndarray      # (n_seed,) float64
    error_map: np.ndarray        # (H, W) squared error, mean over seeds and channels
    z: np.ndarray                # (n_seed, z_dim) final latents
    reconstructions: Optional[np.ndarray] = None  # (n_seed, C, H, W)
    timings: dict = field(default_factory=dict)   # preprocess_s, search_s, total_s, ...
    score_scale: float = 1.0     # divisor of the mean seed loss (SearchConfig.score_fg_power; 1 = reference)
    z0: Optional[np.ndarray] = None               # (n_seed, z_dim) the initial latents used
    latent_distance: Optional[float] = None       # d(E(x), latent bank) when the configuration uses it

    @property
    def reconstruction(self) -> Optional[np.ndarray]:
        """(C, H, W) reconstruction of the best (lowest-loss) seed, when reconstructions were kept."""
        if self.reconstructions is None:
            return None
        return self.reconstructions[int(np.argmin(self.seed_losses))]


class Scorer:
    """An exported model ready to score frames; build it with ``Scorer.load``.

    Thread-safe: one Scorer may be shared by several threads (e.g. one per camera). The search runs
    on buffers allocated once at load, so concurrent calls are serialised by a per-scorer lock around
    the encoder and the search (preprocessing and input checks run concurrently). One search already
    uses every core it was given; for frames scored truly in parallel, load one Scorer per thread.
    Every array of a returned ScoreResult is a copy that belongs to the caller: later calls never
    change it.
    """

    def __init__(self, model_dir: Path, manifest: dict, search, cfg: SearchConfig,
                 spec: PreprocessSpec, mode: str, encoder=None, latent_bank: Optional[np.ndarray] = None):
        self.model_dir, self.manifest, self._search = model_dir, manifest, search
        self.config, self.preprocess_spec, self.mode = cfg, spec, mode
        self.z_dim = int(manifest["layout"]["z_dim"])
        self.n_seed = cfg.n_seed
        self._encoder = encoder      # OrtEncoder when cfg.z_init == "encoder", else None
        # the latent bank (N, z_dim), prepared once, when cfg.score_latent_power > 0, else None
        self._memory = None if latent_bank is None else LatentMemory(latent_bank, cfg.latent_metric)
        # held while the encoder or the search runs: both use buffers allocated once at load
        self._lock = threading.RLock()

    @classmethod
    def load(cls, model_dir: os.PathLike, backend: str = "onnxruntime", providers: Optional[list] = None,
             config: Optional[SearchConfig] = None, lr_theta: Optional[float] = None,
             variant: str = "auto", threads: Optional[int] = None, profile: Optional[str] = None,
             spin: bool = False, workers: Optional[int] = None, adam: Optional[str] = None) -> "Scorer":
        """Load and verify ``model_dir`` (manifest version, sha256 of every file).

        config / lr_theta: override the manifest's search settings (n_seed must match the export).
        variant:
          "auto"          on the CPU (onnxruntime, no CUDA provider) with k >= 1: "host-head" when its
                          graphs were exported, both compiled kernels are installed and the head kernel
                          runs its AVX2 loops (host_head.vectorized(); not with adam="numpy"); else
                          "fused-adam" when its graphs were exported and its compiled kernel is installed
                          (or adam="numpy"); else "seed-parallel" with threads >= 2 (when exported), else
                          "unrolled" (when exported for this k), else "step"; lr_theta == 0 without them:
                          the z-only step graph. On a GPU: "unrolled" / "step".
          "step"          k step-graph runs on preallocated buffers (z-only graph when lr_theta == 0)
          "unrolled"      one graph run per frame
          "seed-parallel" the single-seed unrolled graph, one run per seed, concurrently from ``workers``
                          threads of one intra-op thread each (default n_seed workers, 1 when threads == 1)
          "fused-adam"    the same seed split, each step a gradient graph and Adam on the host in one
                          pass (runtime/host_adam.py; CPU only; lr_theta == 0 uses the z-only gradient
                          graph); ``adam`` = "c" (compiled kernel, default when installed) or "numpy";
                          threads beyond one per worker go to the workers' intra-op pools.
          "host-head"     fused-adam with layers 0-1 (the thin ones, 82 % of the weights) on the host and
                          Adam fused into their backward pass (runtime/host_head.py), layers 2-4 in the
                          tail graph; "auto" picks it over fused-adam on the CPU when exported, both
                          compiled kernels are installed and the head kernel has its AVX2 loops (x86-64;
                          host_head.vectorized). ``adam`` = "c" or "numpy" (NumPy head too).
        providers: onnxruntime execution providers (default: CUDA when available, else CPU).
        Raises ManifestError for a tampered, incomplete or mismatched directory.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        model_dir = Path(model_dir)
        man = load_manifest(model_dir, verify=True)
        lay = man["layout"]
        cfg = config or SearchConfig.from_dict(man["search"])
        if lr_theta is not None:
            cfg = cfg.replace(lr_theta=float(lr_theta))
        if cfg.n_seed != int(lay["n_seed"]):
            raise ManifestError(f"{model_dir}: exported for n_seed={lay['n_seed']}, asked for "
                                f"n_seed={cfg.n_seed}; re-export with --n-seed {cfg.n_seed}")
        graphs = {name: str(model_dir / g["file"]) for name, g in man["graphs"].items()}
        n_threads = int(threads) if threads else (os.cpu_count() or 1)
        if variant == "auto":
            unrolled_ok = "unrolled" in graphs and int(man["graphs"]["unrolled"].get("k", -1)) == cfg.k
            mode = ("unrolled" if unrolled_ok else "step") if cfg.updates_weights else "step_z"
            if mode == "unrolled" and n_threads >= 2 and backend == "onnxruntime" and cfg.n_seed > 1 \
                    and "unrolled_seed" in graphs and int(man["graphs"]["unrolled_seed"].get("k", -1)) == cfg.k \
                    and _cpu_only(providers):
                mode = "seed-parallel"   # whole seeds on separate cores (benchmarks/README.md)
            if cfg.k >= 1 and backend == "onnxruntime" and _cpu_only(providers) \
                    and {_grad_graph(cfg), "final_seed"} <= set(graphs) \
                    and (host_adam.kernel_available() or adam == "numpy"):
                mode = "fused-adam"      # Adam on the host in one pass: fastest at 1 and 2 threads (benchmarks/)
                if _grad_graph(cfg, True) in graphs and host_head.vectorized() and adam != "numpy":
                    mode = "host-head"   # and layers 0-1 on the host with Adam fused in (benchmarks/README.md)
        elif variant in ("fused-adam", "host-head"):
            head = variant == "host-head"
            if not {_grad_graph(cfg, head), "final_seed"} <= set(graphs):
                raise ManifestError(f"{model_dir}: no gradient graphs ({_grad_graph(cfg, head)}.onnx, final_seed.onnx) "
                                    "in this export; re-export with this edge-ad version")
            if backend != "onnxruntime":
                raise ValueError(f"variant {variant!r} is an onnxruntime (CPU) variant")
            mode = variant
        elif variant == "seed-parallel":
            g = man["graphs"].get("unrolled_seed")
            if g is None:
                raise ManifestError(f"{model_dir}: no single-seed graph (unrolled_seed.onnx) in this export; "
                                    "re-export with this edge-ad version")
            if int(g.get("k", -1)) != cfg.k or not cfg.updates_weights:
                raise ManifestError(f"{model_dir}: the single-seed graph has k={g.get('k')} and updates the "
                                    f"weights; asked for k={cfg.k}, lr_theta={cfg.lr_theta}")
            if backend != "onnxruntime":
                raise ValueError("variant 'seed-parallel' is an onnxruntime (CPU) variant")
            mode = "seed-parallel"
        elif variant in ("step", "unrolled"):
            mode = variant if (variant == "unrolled" or cfg.updates_weights) else "step_z"
            if variant == "unrolled" and "unrolled" not in graphs:
                raise ManifestError(f"{model_dir}: no unrolled graph in this export (export with --unrolled)")
            if variant == "unrolled" and int(man["graphs"]["unrolled"].get("k", -1)) != cfg.k:
                raise ManifestError(f"{model_dir}: the unrolled graph has k={man['graphs']['unrolled'].get('k')}, "
                                    f"asked for k={cfg.k}")
        else:
            raise ValueError(f"unknown variant {variant!r} (auto, step, unrolled, seed-parallel, fused-adam, host-head)")
        if adam is not None and mode not in ("fused-adam", "host-head"):
            raise ValueError(f"adam={adam!r} applies to the fused-adam and host-head searches only; this load runs {mode!r}")
        if mode == "step_z" and "step_z" not in graphs:
            mode = "step"   # the full graph with a zero theta step size is the same computation
        x_shape = (int(lay["channels"]), int(lay["resolution"]), int(lay["resolution"]))
        encoder = None
        if cfg.z_init == "encoder":
            if "encoder" not in man["graphs"]:
                raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} starts from an "
                                    "encoder (z_init='encoder'), but this export has no encoder graph; "
                                    "re-export from a checkpoint that stores its izi encoder")
            from .backends.onnxruntime_backend import OrtEncoder
            g = man["graphs"]["encoder"]
            # TensorRT runs the search; the small forward-only encoder runs in onnxruntime (CPU there)
            enc_providers = providers if backend == "onnxruntime" else ["CPUExecutionProvider"]
            encoder = OrtEncoder(graphs["encoder"], x_shape, int(lay["z_dim"]), providers=enc_providers,
                                 threads=threads, input_name=g.get("input", "x"), output_name=g.get("output", "z"))
        bank = _load_latent_bank(model_dir, man, cfg) if cfg.uses_latent_bank else None
        dtype = np.dtype(lay.get("dtype", "float32"))
        with np.load(model_dir / lay["weights"]) as npz:
            pristine = {k: npz[k] for k in npz.files}
        shapes = {st["name"]: tuple(st["shape"]) for st in lay["state"]}
        missing = set(shapes) - set(pristine)
        if missing:
            raise ManifestError(f"{model_dir}: weights file lacks state tensors {sorted(missing)[:5]}")
        if backend == "tensorrt":
            # issue 6 (runtime/backends/tensorrt.py): engines built/cached per GPU + TensorRT version,
            # device-resident k-step search in one CUDA graph; raises TensorRTUnavailable (an
            # ImportError) with one message when TensorRT, cuda-python, the driver or a GPU is missing
            from .backends.tensorrt import load_search
            search = load_search(model_dir, man, pristine, cfg, mode)
            return cls(model_dir, man, search, cfg, PreprocessSpec.from_dict(man["preprocess"]), mode, encoder, bank)
        if providers is None:
            import onnxruntime as ort
            providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                         if "CUDAExecutionProvider" in ort.get_available_providers() else ["CPUExecutionProvider"])
        if mode in ("fused-adam", "host-head"):
            from .backends.onnxruntime_host_adam import OrtHostAdamSearch, regroup_state
            gname = _grad_graph(cfg, mode == "host-head")
            gs, fs = man["graphs"][gname], man["graphs"]["final_seed"]
            state, order = gs.get("state"), gs.get("col_order", "d2s")
            if not state or fs.get("state") != state or fs.get("col_order", "d2s") != order:
                raise ManifestError(f"{model_dir}: {gname}/final_seed graphs lack a common weight layout "
                                    "('state', 'col_order')")
            try:
                weights = regroup_state(pristine, lay["state"], state, lay.get("col_order", "d2s"), order)
            except ValueError as e:
                raise ManifestError(f"{model_dir}: {e}") from None
            head = _load_head(model_dir, man, gs) if mode == "host-head" else None
            search = OrtHostAdamSearch({gname: graphs[gname], "final_seed": graphs["final_seed"]}, weights, state, cfg,
                                       int(lay["z_dim"]), x_shape, dtype=dtype, providers=providers, profile=profile,
                                       workers=workers or (cfg.n_seed if n_threads >= 2 else 1), adam=adam,
                                       threads=n_threads, head=head)
            return cls(model_dir, man, search, cfg, PreprocessSpec.from_dict(man["preprocess"]), mode, encoder, bank)
        if mode == "seed-parallel":
            from .backends.onnxruntime_backend import OrtSeedParallelSearch
            search = OrtSeedParallelSearch(graphs["unrolled_seed"], pristine, shapes, cfg, int(lay["z_dim"]), x_shape,
                                           dtype=dtype, providers=providers, profile=profile,
                                           workers=workers or (cfg.n_seed if n_threads >= 2 else 1))
            return cls(model_dir, man, search, cfg, PreprocessSpec.from_dict(man["preprocess"]), mode, encoder, bank)
        from .backends.onnxruntime_backend import OrtSearch
        search = OrtSearch(graphs, pristine, shapes, cfg, int(lay["z_dim"]), x_shape, dtype=dtype,
                           mode=mode, providers=providers, threads=threads, profile=profile, spin=spin)
        return cls(model_dir, man, search, cfg, PreprocessSpec.from_dict(man["preprocess"]), mode, encoder, bank)

    # the documented contract (README, run, ROS node): names independent of the backend internals
    @property
    def preprocess(self) -> PreprocessSpec:
        """The model's input contract (from the manifest)."""
        return self.preprocess_spec

    @property
    def search(self) -> SearchConfig:
        """The scoring configuration in use (the manifest's, with any overrides)."""
        return self.config

    @property
    def resolution(self) -> int:
        return int(self.manifest["layout"]["resolution"])

    @property
    def threshold(self) -> Optional[float]:
        """The calibrated anomaly threshold stored at export (manifest "threshold"), or None."""
        thr = self.manifest.get("threshold")
        return float(thr["value"]) if isinstance(thr, dict) else None

    def encode(self, x: np.ndarray) -> np.ndarray:
        """E(x) (z_dim,) float32 of a preprocessed frame, with the exported izi encoder."""
        if self._encoder is None:
            raise ValueError("this model's scoring configuration has no encoder (z_init != 'encoder')")
        with self._lock:
            return np.array(self._encoder.run(x))     # a copy: the encoder's output buffer is reused

    def initial_latents(self, z0=None, seed: Optional[int] = None, x: Optional[np.ndarray] = None,
                        e: Optional[np.ndarray] = None) -> np.ndarray:
        """z0 as given (checked); else, for z_init == "encoder", E(x) + z_init_sigma * make_z0(n_seed,
        z_dim, seed) (needs the preprocessed x, or its E(x) as ``e``); else make_z0(n_seed, z_dim, seed).
        float32 (n_seed, z_dim)."""
        if z0 is None:
            if self.config.z_init != "encoder":
                return make_z0(self.n_seed, self.z_dim, seed)
            if e is None and x is None:
                raise ValueError("this scoring configuration starts from the encoder (z_init='encoder'): "
                                 "initial_latents needs the preprocessed frame x")
            if e is None:
                e = self.encode(x)                                              # (z_dim,) float32
            z0 = np.repeat(e[None], self.n_seed, 0)                             # (n_seed, z_dim)
            if self.config.z_init_sigma:
                z0 = z0 + np.float32(self.config.z_init_sigma) * make_z0(self.n_seed, self.z_dim, seed)
            return z0.astype(np.float32, copy=False)
        z0 = np.asarray(z0, dtype=np.float32)
        if z0.shape != (self.n_seed, self.z_dim):
            raise ValueError(f"z0 must have shape (n_seed, z_dim) = {(self.n_seed, self.z_dim)}, got {z0.shape}")
        if not np.isfinite(z0).all():
            raise ValueError("z0 contains NaN or inf")
        return z0

    def score_input(self, x: np.ndarray, z0=None, seed: Optional[int] = None,
                    keep_reconstructions: bool = False) -> ScoreResult:
        """Score an already preprocessed input x (C, H, W) in [-1, 1]."""
        t0 = time.perf_counter()
        x = np.asarray(x)
        want = (int(self.manifest["layout"]["channels"]),) + (int(self.manifest["layout"]["resolution"]),) * 2
        if x.shape != want:
            raise ValueError(f"x must have shape {want}, got {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("x contains NaN or inf")
        with self._lock:   # the encoder and the search run on the scorer's preallocated buffers
            # E(x) once: it gives z0 (z_init == "encoder") and the latent-memory distance
            e = self.encode(x) if self._encoder is not None and (z0 is None or self._memory is not None) else None
            z0 = np.array(self.initial_latents(z0, seed, x=x, e=e))    # a copy: never the caller's array
            dist = self._memory.distance(e) if self._memory is not None else None
            te = time.perf_counter()
            out = self._search.run(x, z0)
            # copies: the backends may return views of their output buffers, which the next call overwrites
            sl, error_map, z = (np.array(out[n]) for n in ("seed_losses", "error_map", "z"))
            recon = np.array(out["recon"]) if keep_reconstructions else None
        scale = score_scale(x, self.config, dist)
        t1 = time.perf_counter()
        timings = {"search_s": t1 - t0, "steps_s": out["steps_s"], "final_s": out["final_s"]}
        if self._encoder is not None:
            timings["encoder_s"] = te - t0
        return ScoreResult(score=float(sl.mean()) / scale, seed_losses=sl, error_map=error_map, z=z,
                           reconstructions=recon, timings=timings, score_scale=scale, z0=z0, latent_distance=dist)

    def score(self, rgb, depth, z0=None, seed: Optional[int] = None,
              keep_reconstructions: bool = False) -> ScoreResult:
        """Score a raw frame: rgb H x W x 3 uint8, depth H x W uint8 (8-bit) or uint16 (mm).
        Raises preprocess.FrameError for a frame that cannot be scored."""
        t0 = time.perf_counter()
        x = preprocess(rgb, depth, self.preprocess_spec)
        t1 = time.perf_counter()
        r = self.score_input(x, z0, seed, keep_reconstructions)
        r.timings["preprocess_s"] = t1 - t0
        r.timings["total_s"] = time.perf_counter() - t0
        return r


    def score_batch(self, frames, seeds=None, z0s=None, keep_reconstructions: bool = False,
                    threads: Optional[int] = None) -> list:
        """Score raw frames [(rgb, depth), ...] together: per frame a ScoreResult (equal to
        ``score(rgb, depth, z0, seed)``'s to float32 rounding) or the FrameError / ValueError of a
        frame that cannot be scored. k = 0 exports (final_batch.onnx) run one encoder and one
        generator pass over the batch, on ``threads`` intra-op threads; other models score frame
        by frame (runtime/batch_scoring.py)."""
        from .batch_scoring import score_batch
        return score_batch(self, frames, seeds, z0s, keep_reconstructions, threads)


def _load_latent_bank(model_dir: Path, man: dict, cfg: SearchConfig) -> np.ndarray:
    """latent_bank.npy (N, z_dim) float32, checked against the manifest (its sha256 was verified by
    load_manifest). Raises ManifestError when missing or mismatched."""
    entry = man.get("latent_bank")
    if not isinstance(entry, dict) or entry.get("file") not in man["files"]:
        raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} multiplies the score by the "
                            "latent-memory distance (score_latent_power > 0), but this export has no latent "
                            "bank; re-export from a checkpoint that stores one")
    try:
        bank = np.load(model_dir / entry["file"], allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ManifestError(f"{model_dir}: cannot read {entry['file']}: {e}") from None
    z_dim = int(man["layout"]["z_dim"])
    if bank.dtype != np.float32 or bank.ndim != 2 or bank.shape[1] != z_dim or len(bank) == 0 \
            or list(bank.shape) != list(entry.get("shape", bank.shape)) or not np.isfinite(bank).all():
        raise ManifestError(f"{model_dir}: {entry['file']} must be a finite float32 (N, z_dim={z_dim}) array "
                            f"matching the manifest's shape {entry.get('shape')}, got {bank.dtype} {bank.shape}")
    return bank
