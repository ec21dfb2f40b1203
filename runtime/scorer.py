"""``Scorer``: score raw RGB-D frames with an exported model directory, without PyTorch.

    scorer = Scorer.load("model_dir")                # checks manifest version and every sha256
    r = scorer.score(rgb, depth, seed=0)             # raw H x W x 3 uint8 + H x W depth
    r.score, r.seed_losses, r.error_map, r.timings
    # FrameError for a frame that cannot be scored; its subclass SensorFaultError for a sensor fault

The search configuration comes from the manifest; ``config=`` overrides it (e.g. the named fast
option ``lr_theta=0``, which switches to the variant's z-only graph). Which search runs (the variant:
host-head, fused-adam, step, forward, unrolled) and how it is built is runtime/variants.py's table.
Weights restart from the pristine copy for every frame; all large buffers are allocated once in ``load``
(also the batch graphs' sessions; ``score_batch(threads=N)`` builds another thread count's on its first
call); ``close`` releases them.

Named scoring configurations (issue 4) are applied here, the same for every backend:
  z_init == "encoder"   z0_j = E(x) + z_init_sigma * make_z0(n_seed, z_dim, seed)_j, E = encoder.onnx
                        (an explicit ``z0`` argument still overrides)
  score_fg_power > 0    score = mean_j loss_j / max(fg(x), fg_floor) ** score_fg_power
                        (runtime.score_scale.score_scale; 1.0 for the reference configuration)
  score_latent_power > 0  score *= max(d(E(x), bank), latent_floor) ** score_latent_power, bank =
                        latent_bank.npy (E of the normal training frames and of their augmented copies,
                        frame-major: 1 + len(latent_bank["augment"]) rows per frame), d = latent_memory.LatentMemory
  bank_augment_weight w   d(e) = min(min over the bank's original rows, w * min over its augmented
                        rows) (latent_memory.original_rows marks them); w = 1.0: the plain nearest row;
                        the copies of the augmentations in bank_trusted_augment count as original
                        (latent_memory.trusted_original_rows, from latent_bank["augment"])
  score_pixel_power q > 0  score *= max(d_pix(x), pixel_floor) ** q, d_pix = the mean squared difference of
                        the input x to the nearest row of the pixel memory (pixel_memory.npy: normal frames
                        (N, R, R, 4) uint8 and their copies under pixel_memory["augment"],
                        runtime/pixel_memory.PixelMemory); pixel_shift_radius R_p: d_pix of the frame is the
                        minimum over the frame moved by every shift up to R_p (PixelMemory.frame_distance)
  score_shift_radius R > 0  test-time shift-min: the score is the minimum over the (2R + 1)^2 shifts
                        (dy, dx), |dy|, |dx| <= R (preprocess.shift_offsets), of the score of x moved by
                        (dy, dx), vacated pixels background -1 (preprocess.shift_frame); each copy is
                        scored as above (its own E(x'), fg(x'), the same seed / z0, the FRAME's d_pix:
                        one factor for every copy, SearchConfig.pixel_shift_radius; without
                        either, one random seed drawn for the frame: config.draw_seed). The result is the
                        winning copy's, its error_map and reconstructions shifted back by (-dy, -dx) so
                        they overlay the caller's frame, ``shift`` = (dy, dx). k = 0 models with batch
                        graphs score the copies as one batch (runtime/batch_scoring.py) on backend
                        "onnxruntime"; on TensorRT the loaded engine scores each copy.
  silhouette_versions_weight w_e > 0  the silhouette lever (runtime/silhouette.py): a RAW frame (``score``,
                        ``score_batch``) is scored as three versions made on it, the frame, its silhouette 1 px
                        narrower (ero) and 1 px wider (dil), each as above (its own shift-min and pixel distance),
                        the dil version's latent memory the bank plus the paired rows of opened training frames
                        (silhouette_bank.npy; the pixel memory plus silhouette_pixels.npy where the model has
                        one); score = min(S_id, w_e * S_ero, S_dil), the winner's result (``silhouette_version``,
                        ``silhouette_scores``). Three scorings a frame (``score_batch``: each version's frames
                        batched, batch_scoring.score_batch_versions).
                        ``score_uint8`` refuses (the versions need the raw frame); ``score_input`` and the other
                        methods on a preprocessed input score it as it is (one version).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from . import pixel_memory as _pixel_memory
from . import variants
from .batch_scoring import BatchGraphs, batch_applies
from .binomial import is_count
from .config import SearchConfig, draw_seed, make_z0, search_differences
from .latent_memory import LatentMemory, latent_memory
from .manifest import MANIFEST, ManifestError, load_manifest, sha256_file
from .model_arrays import load_npy, load_npz
from .pixel_memory import MAX_PIXEL_FRAMES, PixelMemory, default_row_store
from .preprocess import (FrameError, PreprocessSpec, check_shift_fill, frame_to_uint8, frame_to_uint8_pair,
                         normalize_uint8, shift_frame, shift_offsets)
from .score_scale import score_scale
from .sensor_faults import raise_frame_faults
from .silhouette import PairedPixelMemory, check_silhouette_bank, silhouette_versions, spec_range, winning_result

BACKENDS = variants.BACKENDS


def _cpu_only(providers) -> bool:
    """True if onnxruntime will run on the CPU (given providers, else: no CUDA provider here)."""
    if providers is None:
        from .backends.onnxruntime_backend import onnxruntime_module
        return "CUDAExecutionProvider" not in onnxruntime_module().get_available_providers()
    return all((p if isinstance(p, str) else p[0]) == "CPUExecutionProvider" for p in providers)


def _onnxruntime_errors_named(load):
    """Scorer.load's onnxruntime errors (a graph it cannot parse or build a session for, e.g. a garbage
    .onnx whose sha256 was recomputed) as one ManifestError line naming the model directory; onnxruntime's
    message names the graph file."""
    @functools.wraps(load)
    def wrapper(cls, model_dir, *args, **kwargs):
        try:
            return load(cls, model_dir, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - onnxruntime's pybind exceptions derive from Exception only
            if not type(e).__module__.startswith("onnxruntime"):
                raise
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:400]
            raise ManifestError(f"{model_dir}: onnxruntime cannot load this model's graphs: {first}") from None
    return wrapper


@dataclass
class ScoreResult:
    score: float                 # mean over seeds of the final reconstruction loss / score_scale
    seed_losses: np.ndarray      # (n_seed,) float64
    error_map: np.ndarray        # (H, W) squared error, mean over seeds and channels
    z: np.ndarray                # (n_seed, z_dim) final latents
    reconstructions: Optional[np.ndarray] = None  # (n_seed, C, H, W)
    # seconds: preprocess_s, search_s (everything after preprocessing, including encoder_s, pixel_s: the
    # pixel memory's distance, present only with one), total_s, steps_s, final_s, ...
    timings: dict = field(default_factory=dict)
    score_scale: float = 1.0     # divisor of the mean seed loss (SearchConfig.score_fg_power; 1 = reference)
    z0: Optional[np.ndarray] = None               # (n_seed, z_dim) the initial latents used
    latent_distance: Optional[float] = None       # d(E(x), latent bank) when the configuration uses it
    shift: Optional[tuple] = None                 # (dy, dx) of the shift-min's winning copy; None when R = 0
    pixel_distance: Optional[float] = None        # d_pix(x, pixel memory) when the configuration uses it
    # the silhouette lever (runtime/silhouette.py), None when off: the version whose score won ("id", "ero",
    # "dil"; the result's other fields are that version's, ``score`` its weighted score) and every version's
    # own score {version: score} (a version that could not be made, e.g. an erosion leaving no reading, absent)
    silhouette_version: Optional[str] = None
    silhouette_scores: Optional[dict] = None

    @classmethod
    def of_search(cls, x: np.ndarray, cfg: SearchConfig, seed_losses, error_map, z, z0, recon, dist: Optional[float],
                  timings: dict, pixel_dist: Optional[float] = None) -> "ScoreResult":
        """The result of one frame's search, the one place both scoring paths (``Scorer._score_copy``,
        batch_scoring.score_inputs) build it: x (C, R, R) the input scored, seed_losses (n_seed,),
        error_map (R, R), z / z0 (n_seed, z_dim), recon (n_seed, C, R, R) or None, dist the
        latent-memory distance or None, pixel_dist the pixel-memory distance of x or None.
        score = mean seed loss / ``score_scale(x, cfg, dist, pixel_dist)``. Every
        array is copied: the result belongs to the caller, never to a backend's reused buffer."""
        sl = np.array(seed_losses, dtype=np.float64)
        scale = score_scale(x, cfg, dist, pixel_dist)
        return cls(score=float(sl.mean()) / scale, seed_losses=sl, error_map=np.array(error_map), z=np.array(z),
                   reconstructions=None if recon is None else np.array(recon), timings=timings,
                   score_scale=scale, z0=np.array(z0), latent_distance=dist, pixel_distance=pixel_dist)

    @property
    def reconstruction(self) -> Optional[np.ndarray]:
        """(C, H, W) reconstruction of the best (lowest-loss) seed, when reconstructions were kept."""
        if self.reconstructions is None:
            return None
        return self.reconstructions[int(np.argmin(self.seed_losses))]


def scoring_settings_sha256(cfg: SearchConfig, spec: PreprocessSpec) -> str:
    """sha256 of what makes a model's scores what they are besides its files: the search settings
    (``cfg.to_dict()`` without its name, which ``identity`` names apart) and the preprocessing
    (``spec.to_dict()`` without ``sensor_faults``: the limits decide which frames are scored, not their
    scores, and a manifest without them gets the running edge-ad's defaults), as canonical JSON
    (sorted keys, no spaces). A field added to either later must
    stay out of ``to_dict`` at its default (as ``bank_trusted_augment``), so that this hash, and with it
    the resume of a results file, does not change for the models that do not use it."""
    return _settings_sha256(cfg, scored_preprocess(spec))


def scored_preprocess(spec: PreprocessSpec) -> dict:
    """``spec.to_dict()`` without ``sensor_faults``: the preprocessing that makes the scores (the limits decide which
    frames are scored, not their scores); config_sha256 and the threshold's binding (threshold_mismatch) read it."""
    return {k: v for k, v in spec.to_dict().items() if k != "sensor_faults"}


def _settings_sha256(cfg: SearchConfig, preprocess: dict) -> str:
    """sha256 of {"search": cfg's settings without its name, "preprocess": preprocess} as canonical JSON
    (sorted keys, no spaces): the one encoding of config_sha256, now and as earlier edge-ads wrote it."""
    settings = {"search": {k: v for k, v in cfg.to_dict().items() if k != "name"}, "preprocess": preprocess}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


# sensor_faults filled in for a manifest without them by the edge-ad that wrote a results file between
# 0ec1a51 (config_sha256) and 21a4c5d (config_sha256 without the limits): the defaults before and after 2d2c8e1
_EARLIER_DEFAULT_LIMITS = (
    {"enabled": True, "min_valid_depth": 0.005, "min_foreground": 0.005, "black_level": 16, "max_black": 0.5,
     "saturated_level": 250, "max_saturated": 0.5, "min_channel_correlation": 0.5, "noise_level": 16.0,
     "max_identical_frames": 1},
    {"enabled": True, "min_valid_depth": 0.0025, "min_foreground": 0.0025, "black_level": 16, "max_black": 0.95,
     "saturated_level": 250, "max_saturated": 0.99, "min_channel_correlation": 0.5, "noise_level": 60.0,
     "max_identical_frames": 1})


def earlier_scoring_settings_sha256s(cfg: SearchConfig, spec: PreprocessSpec) -> tuple:
    """The config_sha256 values an edge-ad that still hashed ``sensor_faults`` (0ec1a51..21a4c5d)
    wrote for these settings: with the spec's own limits as then stored (no ``noise_measured_on``) or
    with either set of defaults it filled in. A results file naming one of them holds this
    configuration's scores (``model_differences``), so it resumes rather than being another model."""
    preprocess = spec.to_dict()
    own = {k: v for k, v in preprocess["sensor_faults"].items()
           if k not in ("noise_measured_on", "min_colour_spread", "noisy_flat_spread",
                         "featureless_spread", "max_edge_foreground")}   # fields added after 21a4c5d
    return tuple(dict.fromkeys(_settings_sha256(cfg, {**preprocess, "sensor_faults": limits})
                               for limits in (own,) + _EARLIER_DEFAULT_LIMITS))


def check_input(x, shape: tuple) -> np.ndarray:
    """x as an array, checked: the model's input ``shape`` (C, R, R) and finite; else ValueError."""
    x = np.asarray(x)
    if x.shape != tuple(shape):
        raise ValueError(f"x must have shape {tuple(shape)}, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x contains NaN or inf")
    return x


def frame_input(rgb, depth, spec: PreprocessSpec, check_faults: bool = True) -> np.ndarray:
    """The model input of a raw frame, as ``Scorer.score`` and ``score_batch`` make it: resized to
    (R, R, 4) uint8 (preprocess.frame_to_uint8), checked for sensor faults unless ``check_faults`` is
    False (sensor_faults.raise_frame_faults), normalised to (4, R, R) float32 in [-1, 1] and checked
    finite. Raises FrameError (SensorFaultError for a fault) or ValueError. One depth conversion per frame: the
    checks' frame as captured comes from the same one (preprocess.frame_to_uint8_pair)."""
    if check_faults:
        u8, captured = frame_to_uint8_pair(rgb, depth, spec)            # (R, R, 4) uint8 each
        raise_frame_faults(rgb, depth, spec, captured=captured)
    else:
        u8 = frame_to_uint8(rgb, depth, spec)                           # (R, R, 4) uint8
    x = normalize_uint8(u8, spec)                                       # (4, R, R) float32 in [-1, 1]
    return check_input(x, x.shape)


class Scorer:
    """An exported model ready to score frames; build it with ``Scorer.load``.

    Thread-safe: one Scorer may be shared by several threads (e.g. one per camera). The search runs
    on buffers allocated once at load, so concurrent calls are serialised by a per-scorer lock around
    the encoder and the search (preprocessing and input checks run concurrently). One search already
    uses every core it was given; for frames scored truly in parallel, load one Scorer per thread.
    Every array of a returned ScoreResult is a copy that belongs to the caller: later calls never
    change it; so is ``manifest`` (the manifest validated at load stays the scorer's own). ``close()`` (or ``with Scorer.load(d) as scorer:``) releases its buffers and threads.
    """

    def __init__(self, model_dir: Path, manifest: dict, search, cfg: SearchConfig,
                 spec: PreprocessSpec, mode: str, encoder=None, memory: Optional[LatentMemory] = None,
                 batch_graphs: Optional[BatchGraphs] = None, manifest_sha256: Optional[str] = None,
                 pixels: Optional[PixelMemory] = None, silhouette: Optional[tuple] = None):
        # the validated manifest, private: what scoring reads (threshold, layout) stays what load checked;
        # ``manifest`` hands out copies
        self.model_dir, self._manifest, self._search = model_dir, manifest, search
        self.manifest_sha256 = manifest_sha256    # sha256 of model_dir/manifest.json as loaded
        # the batch graphs' sessions (runtime/batch_scoring.py), built at load when they apply
        # (batch_applies: k = 0 with final_batch.onnx, backend "onnxruntime"), else None
        self._batch = batch_graphs
        self.config, self.preprocess_spec, self.mode = cfg, spec, mode
        self.z_dim = int(manifest["layout"]["z_dim"])
        self.n_seed = cfg.n_seed
        self._encoder = encoder      # OrtEncoder when cfg.z_init == "encoder", else None
        # the latent memory (latent_bank.npy (N, z_dim), cfg's bank_augment_weight), prepared once, when
        # cfg.score_latent_power > 0, else None
        self._memory = memory
        # the pixel memory (pixel_memory.npy expanded once) when cfg.score_pixel_power > 0, else None
        self._pixels = pixels
        # the silhouette lever's dil-version memories (cfg.silhouette_versions_weight > 0, ``load_silhouette_rows``):
        # (LatentMemory: the bank + the paired rows, PairedPixelMemory or None); else (None, None)
        self._dil_memory, self._dil_pixels = silhouette if silhouette is not None else (None, None)
        # held while the encoder or the search runs: both use buffers allocated once at load
        self._lock = threading.RLock()
        self._closed = False         # close() called: new calls refused
        self._released = False       # close() released the buffers above

    @classmethod
    @_onnxruntime_errors_named
    def load(cls, model_dir: os.PathLike, backend: str = "onnxruntime", providers: Optional[list] = None,
             config: Optional[SearchConfig] = None, lr_theta: Optional[float] = None,
             variant: str = "auto", threads: Optional[int] = None,
             trusted_keys: Optional[list] = None, backend_options: Optional[dict] = None) -> "Scorer":
        """Load and verify ``model_dir`` (manifest version and entries, sha256 of every file, no
        symlinks: runtime/manifest.py, runtime/integrity.py).

        config / lr_theta: override the manifest's search settings (n_seed must match the export);
            ``lr_theta=0.0`` is the named fast option (the z-only search).
        variant: "auto" or a row of the variant table (runtime/variants.py: forward, host-head,
            fused-adam, step, unrolled). "auto" runs forward for k = 0; on the CPU host-head where its
            compiled kernels run their AVX2 loops, else fused-adam; on TensorRT or the CUDA provider step.
        backend: "onnxruntime" or "tensorrt". providers: onnxruntime execution providers (default: CUDA
            when available, else CPU). threads: CPU threads (default: all cores).
        backend_options: backend "tensorrt": {"precision": "fp32" | "tf32" | "fp16", "on_mismatch":
            "rebuild" | "fail"} (runtime/backends/tensorrt.load_search; each one not given: from
            $EDGE_AD_TRT_PRECISION / $EDGE_AD_TRT_ON_MISMATCH, else fp32 / rebuild); onnxruntime takes none.
        Raises ManifestError for a tampered, incomplete or mismatched directory (or one exported
        without a search that runs here), ValueError for a variant that does not fit.
        """
        model_dir = Path(model_dir)
        _check_threads(threads, "all cores")
        default_row_store()                      # a bad $EDGE_AD_PIXEL_ROWS is named before anything loads
        if providers is not None and not isinstance(providers, (list, tuple)):   # a str would be read letter by letter
            raise ValueError(f"providers must be a list of onnxruntime execution providers (names, or (name, options) "
                             f"pairs), e.g. ['CPUExecutionProvider'], got {providers!r}")
        if backend not in variants.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(variants.BACKENDS)}")
        backend_options = variants.check_backend_options(backend, backend_options)
        man = load_manifest(model_dir, verify=True, trusted_keys=trusted_keys)
        man_sha256 = sha256_file(model_dir / MANIFEST)    # the model's identity (it lists every file's sha256)
        lay = man["layout"]
        cfg = config or SearchConfig.from_dict(man["search"])
        if lr_theta is not None:
            cfg = cfg.replace(lr_theta=float(lr_theta))
        if cfg.n_seed != int(lay["n_seed"]):
            raise ManifestError(f"{model_dir}: exported for n_seed={lay['n_seed']}, asked for "
                                f"n_seed={cfg.n_seed}; re-export with --n-seed {cfg.n_seed}")
        if backend == "onnxruntime" and providers is None:
            from .backends.onnxruntime_backend import onnxruntime_module
            providers = (["CUDAExecutionProvider", "CPUExecutionProvider"]
                         if "CUDAExecutionProvider" in onnxruntime_module().get_available_providers()
                         else ["CPUExecutionProvider"])
        spec = PreprocessSpec.from_dict(man["preprocess"])
        try:
            check_shift_fill(spec, cfg.score_shift_radius)
            if cfg.uses_pixel_memory:                   # the pixel distance's own shift search fills the same way
                check_shift_fill(spec, cfg.pixel_shift_radius, "pixel_shift_radius")
        except ValueError as e:
            raise ManifestError(f"{model_dir}: {e}") from None
        on_cpu = backend == "onnxruntime" and _cpu_only(providers)
        chosen = variants.resolve(variant, cfg, backend, on_cpu, man["graphs"], model_dir)
        if backend == "onnxruntime":      # before the encoder's and batch graphs' sessions too (k = 0 models)
            from .backends.onnxruntime_backend import check_providers
            check_providers(providers)
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
            try:
                encoder = OrtEncoder(str(model_dir / g["file"]), x_shape, int(lay["z_dim"]), providers=enc_providers,
                                     threads=threads, input_name=g.get("input", "x"), output_name=g.get("output", "z"))
            except ValueError as e:                       # its inputs or outputs are not the manifest's
                raise ManifestError(f"{model_dir}: {g['file']} does not fit {MANIFEST}'s layout (channels, "
                                    f"resolution, z_dim): {e}") from None
        memory = _load_latent_memory(model_dir, man, cfg) if cfg.uses_latent_bank else None
        pixels = load_pixel_memory(model_dir, man, cfg, spec) if cfg.uses_pixel_memory else None
        silhouette = (load_silhouette_rows(model_dir, man, cfg, spec, memory, pixels)
                      if cfg.uses_silhouette_versions else None)
        # one copy (shape[1:]) per state tensor; each .npy header checked before it is read
        pristine = load_npz(model_dir, lay["weights"], {st["name"]: st["shape"][1:] for st in lay["state"]},
                            np.dtype(lay.get("dtype", "float32")),
                            said_by=f"{MANIFEST}: layout.state")
        broken = [n for n, a in pristine.items() if not np.isfinite(a).all()]   # every frame would score NaN
        if broken:
            raise ManifestError(f"{model_dir}: {lay['weights']}[{broken[0]}] holds NaN or inf"
                                f"{f' (and {len(broken) - 1} more arrays)' if len(broken) > 1 else ''}: a broken "
                                "export; re-export the model")
        # TensorRT (runtime/backends/tensorrt.py) raises TensorRTUnavailable (an ImportError) with one
        # message when TensorRT, cuda-python, the driver or a GPU is missing
        search = chosen.build(variants.BuildContext(model_dir, man, pristine, cfg, backend,
                                                    providers if backend == "onnxruntime" else None, threads,
                                                    backend_options))
        # k = 0: the shift-min's copies and score_batch's frames go through the batch graphs, whose
        # sessions are built here, once (other score_batch thread counts: on first use, runtime/batch_scoring.py)
        batch = BatchGraphs(model_dir, man, threads, providers) if batch_applies(man, cfg, backend) else None
        return cls(model_dir, man, search, cfg, spec, chosen.mode(cfg), encoder, memory, batch,
                   manifest_sha256=man_sha256, pixels=pixels, silhouette=silhouette)

    def close(self, timeout: Optional[float] = None) -> bool:
        """Release what ``load`` allocated, now rather than when garbage collection reaches it: the
        search's sessions, buffers and threads (an onnxruntime search's sessions and IO bindings, a
        TensorRT search's CUDA memory and graph, the CPU variants' seed threads), the encoder's and the
        batch graphs' sessions. Idempotent; scoring with a closed Scorer raises RuntimeError.
        ``with Scorer.load(d) as scorer:`` closes it on leaving the block (waiting as long as it takes).

        timeout: seconds to wait for a score in progress (None: as long as it takes). A frame that
        ``run_capture``'s frame_timeout abandoned may still be running and holding the scorer: when
        the wait runs out the Scorer is closed to new calls but its buffers are left to that frame (a
        later ``close()`` releases them); returns False then, True when released."""
        got = self._lock.acquire(timeout=-1 if timeout is None else max(0.0, float(timeout)))
        if not got:                     # a score still running: refuse new calls, release later
            self._closed = True
            return False
        try:
            self._closed = True
            if self._released:
                return True
            self._released = True
            for part in (self._search, self._encoder, self._batch):
                close = getattr(part, "close", None)
                if close is not None:
                    close()
            return True
        finally:
            self._lock.release()

    def __enter__(self) -> "Scorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"this Scorer of {self.model_dir} is closed")

    # the documented contract (docs/python-api.md, run, ROS node): names independent of the backend internals
    @property
    def preprocess(self) -> PreprocessSpec:
        """The model's input contract (from the manifest)."""
        return self.preprocess_spec

    @property
    def search(self) -> SearchConfig:
        """The scoring configuration in use (the manifest's, with any overrides)."""
        return self.config

    @property
    def identity(self) -> dict:
        """Which model scores: {"path": the model directory (absolute), "manifest_sha256": sha256 of its
        manifest.json (which holds every file's sha256), "configuration": the scoring configuration's
        name, "config_sha256": ``scoring_settings_sha256`` of the search settings and preprocessing in
        use (a ``config=`` override keeps the name but changes this)}. ``run_capture`` writes it into the
        results and refuses to mix two models in one file."""
        return {"path": str(Path(self.model_dir).resolve()), "manifest_sha256": self.manifest_sha256,
                "configuration": self.config.name,
                "config_sha256": scoring_settings_sha256(self.config, self.preprocess_spec)}

    @property
    def earlier_config_sha256s(self) -> tuple:
        """``earlier_scoring_settings_sha256s`` of the settings in use: what an earlier edge-ad wrote as
        this configuration's config_sha256 (``run_capture`` resumes files that name one)."""
        return earlier_scoring_settings_sha256s(self.config, self.preprocess_spec)

    @property
    def manifest(self) -> dict:
        """A copy of the model's manifest (as validated at load) that belongs to the caller: editing it changes
        nothing this scorer does (its threshold, input size, ...)."""
        return json.loads(json.dumps(self._manifest))

    @property
    def needs_raw_frames(self) -> bool:
        """True when a frame must reach ``score`` raw (the silhouette lever: its versions are made on the raw
        frame); ``score_uint8`` then refuses, and ``run_capture`` scores with ``score``."""
        return self.config.uses_silhouette_versions

    @property
    def silhouette_memories(self) -> tuple:
        """The silhouette lever's dil-version memories (LatentMemory: the bank + the paired rows of the opened
        training frames; runtime.silhouette.PairedPixelMemory: the pixel memory + the opened frames, or None),
        (None, None) when the lever is off."""
        return self._dil_memory, self._dil_pixels

    @property
    def resolution(self) -> int:
        return int(self._manifest["layout"]["resolution"])

    @property
    def threshold(self) -> Optional[float]:
        """The calibrated anomaly threshold stored at export (manifest "threshold"), or None; also None
        when ``config=`` overrides made this scorer's configuration differ from the one the threshold
        was calibrated with (its "search"; e.g. another score_shift_radius, or lr_theta=0.0 on a k > 0
        model): a threshold only means something for its own score. With k = 0 in both the optimiser's
        settings (lr_z, lr_theta, beta1, beta2, eps) change no score and are not compared
        (config.search_differences)."""
        return calibrated_threshold(self._manifest, self.config)

    @property
    def threshold_rate(self) -> Optional[float]:
        """The false-alarm rate ``threshold`` was calibrated at (manifest "threshold" target_fpr, in (0, 1)),
        or None: no threshold, or no valid rate recorded. The run loop's alarm-rate watch compares the
        share of flagged frames with it."""
        return calibrated_rate(self._manifest, self.config)

    @property
    def threshold_n_normal(self) -> Optional[int]:
        """How many normal frames ``threshold`` was read from (manifest "threshold" n_normal, an integer
        >= 1), or None: no threshold or not recorded. The alarm-rate watch bounds the rate's error with it."""
        if self.threshold is None:
            return None
        n = self._manifest["threshold"].get("n_normal")
        return n if is_count(n, 1) else None

    @property
    def threshold_frames_above(self) -> Optional[int]:
        """How many of the ``threshold_n_normal`` frames score above ``threshold`` (manifest "threshold"
        frames_above, written by edge-ad calibrate when it reads the threshold from scene frames), or None:
        not recorded (a (1 - rate) quantile's count is then assumed). The alarm-rate watch bounds with it."""
        if self.threshold is None:
            return None
        k = self._manifest["threshold"].get("frames_above")
        return k if is_count(k) else None

    @property
    def latent_memory(self) -> Optional[LatentMemory]:
        """The latent memory d_lat is measured against (latent_bank.npy, prepared at load); None when the
        configuration has no latent factor."""
        return self._memory

    @property
    def pixel_memory(self) -> Optional[PixelMemory]:
        """The pixel memory d_pix is measured against (pixel_memory.npy expanded at load); None when the
        configuration has no pixel factor."""
        return self._pixels

    def encode(self, x: np.ndarray) -> np.ndarray:
        """E(x) (z_dim,) float32 of a preprocessed frame, with the exported izi encoder."""
        if self._encoder is None:
            raise ValueError("this model's scoring configuration has no encoder (z_init != 'encoder')")
        x = check_input(x, (int(self._manifest["layout"]["channels"]),) + (self.resolution,) * 2)
        with self._lock:
            self._check_open()
            return np.array(self._encoder.run(x))     # a copy: the encoder's output buffer is reused

    def initial_latents(self, z0=None, seed: Optional[int] = None, x: Optional[np.ndarray] = None,
                        e: Optional[np.ndarray] = None) -> np.ndarray:
        """z0 as given (checked); else, for z_init == "encoder", E(x) + z_init_sigma * make_z0(n_seed,
        z_dim, seed) (needs the preprocessed x, or its E(x) as ``e``); else make_z0(n_seed, z_dim, seed).
        float32 (n_seed, z_dim)."""
        if z0 is None:
            if seed is not None and (not _whole(seed) or seed < 0):     # numpy's own words named no seed
                raise ValueError(f"seed must be a whole number >= 0 (or None: a random one), got {seed!r}")
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
                    keep_reconstructions: bool = False, pixel_distance: Optional[float] = None) -> ScoreResult:
        """Score an already preprocessed input x (C, H, W) in [-1, 1] (with score_shift_radius > 0: the
        minimum over its shifted copies, module docstring). ``pixel_distance``: the frame's pixel distance
        when the caller already has it (e.g. a row of ``shifted_pixel_distances``); None: measured here
        (``pixel_distance``). ValueError when given to a model without the pixel factor."""
        return self._score_input(x, z0, seed, keep_reconstructions, pixel_distance)

    def _score_input(self, x: np.ndarray, z0, seed: Optional[int], keep_reconstructions: bool,
                     pixel_distance: Optional[float], memory: Optional[LatentMemory] = None) -> ScoreResult:
        """``score_input`` with the latent memory d_lat is measured against (None: the model's; the silhouette
        lever's dil version: the bank + its paired rows)."""
        t0 = time.perf_counter()
        x = check_input(x, (int(self._manifest["layout"]["channels"]),) + (self.resolution,) * 2)
        pixel_distance = self._given_pixel_distance(pixel_distance)
        if self.config.score_shift_radius == 0:
            return self._score_copy(x, z0, seed, keep_reconstructions, t0, pixel_distance, memory)
        pixel_dist, pixel_s = ((pixel_distance, None) if pixel_distance is not None
                               else self._timed_pixel_distance(x))
        offsets, rs = self._score_shifted(x, z0, seed, keep_reconstructions, pixel_dist, memory)
        r = shift_min(rs, offsets)
        r.timings = {**{k: sum(q.timings.get(k, 0.0) for q in rs) for k in ("steps_s", "final_s", "encoder_s")
                        if k in r.timings}, "search_s": time.perf_counter() - t0, "shifts": len(offsets),
                     **({} if pixel_s is None else {"pixel_s": pixel_s})}
        return r

    def score_as_is(self, x: np.ndarray, z0=None, seed: Optional[int] = None,
                    pixel_distance: Optional[float] = None, memory: Optional[LatentMemory] = None) -> ScoreResult:
        """Score a preprocessed input x (C, H, W) where it is: one copy, the shift-min's copies left out
        (score_shift_radius not applied), and with the pixel factor x's pixel distance as it is, without the
        pixel distance's own shift search (``pixel_distance`` when given: e.g. a row of
        ``shifted_pixel_distances``; None: measured here, ``shifted_pixel_distances(x, [(0, 0)])``). What
        ``edge-ad calibrate``'s camera-shift search measures (runtime/calibrate/camera_shift.py ``camera_shift_fits``): both
        tolerances let a frame moved by a pixel or two fit as well as the frame where it belongs, which is
        what the search must tell apart. ``memory``: the latent memory d_lat is measured against instead of
        the model's (the search's: the bank without its shifted copies, ``LatentMemory.subset``); None: the
        model's. ValueError for a pixel distance given to a model without the pixel factor, or a memory to one
        without the latent factor."""
        t0 = time.perf_counter()
        x = check_input(x, (int(self._manifest["layout"]["channels"]),) + (self.resolution,) * 2)
        if memory is not None and self._memory is None:
            raise ValueError(f"a latent memory was given, but the scoring configuration {self.config.name!r} "
                             "has no latent factor (score_latent_power 0)")
        pixel_distance = self._given_pixel_distance(pixel_distance)
        if pixel_distance is None and self._pixels is not None:
            pixel_distance = self.shifted_pixel_distances(x, [(0, 0)])[0]           # x as it is: no search
        return self._score_copy(x, z0, seed, False, t0, pixel_distance, memory)

    def _given_pixel_distance(self, pixel_distance) -> Optional[float]:
        """A caller's pixel distance checked: None stays None; else a finite float >= 0, for a model with the
        pixel factor (ValueError naming what is wrong otherwise)."""
        if pixel_distance is None:
            return None
        if self._pixels is None:
            raise ValueError(f"a pixel distance was given, but the scoring configuration {self.config.name!r} "
                             "has no pixel factor (score_pixel_power 0)")
        pixel_distance = float(pixel_distance)
        if not np.isfinite(pixel_distance) or pixel_distance < 0:
            raise ValueError(f"pixel_distance must be a finite distance >= 0, got {pixel_distance!r}")
        return pixel_distance

    def score_shifted(self, x: np.ndarray, z0=None, seed: Optional[int] = None,
                      keep_reconstructions: bool = False) -> tuple:
        """The inputs of the shift-min: (offsets, results), results[i] the ScoreResult of x (C, H, W),
        already checked, moved by offsets[i] = (dy, dx) (preprocess.shift_offsets(score_shift_radius),
        (0, 0) first), scored as it is, not shifted back. k = 0 models with batch graphs loaded with
        backend "onnxruntime" score the copies as one batch; otherwise the loaded search (e.g. the
        TensorRT engine) scores them one by one. ``edge-ad calibrate`` needs every copy; ``score_input`` keeps the minimum."""
        return self._score_shifted(x, z0, seed, keep_reconstructions, self.pixel_distance(x))

    def _score_shifted(self, x: np.ndarray, z0, seed: Optional[int], keep_reconstructions: bool,
                       pixel_dist: Optional[float], memory: Optional[LatentMemory] = None) -> tuple:
        """``score_shifted`` with the frame's pixel distance ``pixel_dist`` (``pixel_distance(x)``, None
        without the pixel factor) given: the same factor for every copy; ``memory``: the latent memory (None:
        the model's)."""
        if seed is None and z0 is None:   # one random seed for the frame: its copies share their z0 noise
            seed = draw_seed()
        offsets = shift_offsets(self.config.score_shift_radius)
        copies = np.stack([shift_frame(x, dy, dx) for dy, dx in offsets])      # (S, C, R, R)
        from .batch_scoring import score_inputs
        with self._lock:
            self._check_open()
            if self._batch is not None:        # k = 0: every copy through the batch graphs at once
                rs = score_inputs(self, copies, [seed] * len(copies), [z0] * len(copies), keep_reconstructions,
                                  graphs=self._batch.get(), memory=self._memory if memory is None else memory,
                                  pixel_distances=None if pixel_dist is None else [pixel_dist] * len(copies))
                bad = next((r for r in rs if isinstance(r, Exception)), None)
                if bad is not None:
                    raise bad
            else:
                rs = [self._score_copy(c, z0, seed, keep_reconstructions, time.perf_counter(), pixel_dist, memory)
                      for c in copies]
        return offsets, rs

    def pixel_distance(self, x: np.ndarray) -> Optional[float]:
        """The pixel distance of the frame x (C, H, W) as given (before the shift-min's copies):
        ``PixelMemory.frame_distance`` with the configuration's pixel_shift_radius; None when the
        configuration has no pixel factor."""
        if self._pixels is None:
            return None
        return self._pixels.frame_distance(x, self.config.pixel_shift_radius, gain=self.config.pixel_gain_limits)

    def shifted_pixel_distances(self, x: np.ndarray, offsets) -> np.ndarray:
        """(len(offsets),) float64: d_pix of x (C, H, W) moved by each (dy, dx) of ``offsets``
        (preprocess.shift_frame, vacated pixels background), each copy as it is (no search of its own).
        ``edge-ad calibrate``'s camera-shift search takes the pixel distance of a frame moved by s as the
        minimum of this table over s + shift_offsets(pixel_shift_radius), once per frame instead of one
        shift search per candidate s. The copies are measured in ``PixelMemory.distances`` calls of at most
        pixel_memory._COPIES copies (memory bound: --max-shift 8 with R_p 4 asks for (2 x 12 + 1)^2 = 625 copies,
        41 MB of float32 at R = 64 at once; each distance is exact, so the chunks change nothing). ValueError for a model
        without the pixel factor."""
        if self._pixels is None:
            raise ValueError(f"the scoring configuration {self.config.name!r} has no pixel factor: no pixel distances")
        x = check_input(x, (int(self._manifest["layout"]["channels"]),) + (self.resolution,) * 2)
        offsets = [(int(dy), int(dx)) for dy, dx in offsets]
        step = max(1, int(_pixel_memory._COPIES))                              # copies per distances call
        out = np.empty(len(offsets))
        for a in range(0, len(offsets), step):
            copies = np.stack([shift_frame(x, dy, dx) for dy, dx in offsets[a:a + step]])   # (<= step, C, R, R)
            out[a:a + len(copies)] = self._pixels.distances(copies, gain=self.config.pixel_gain_limits)
        return out

    def _timed_pixel_distance(self, x: np.ndarray) -> tuple:
        """(``pixel_distance(x)``, the seconds it took: ``timings["pixel_s"]``), (None, None) without the
        pixel factor."""
        if self._pixels is None:
            return None, None
        t = time.perf_counter()
        d = self.pixel_distance(x)
        return d, time.perf_counter() - t

    def _score_copy(self, x: np.ndarray, z0, seed: Optional[int], keep_reconstructions: bool,
                    t0: float, pixel_dist: Optional[float] = None,
                    memory: Optional[LatentMemory] = None) -> ScoreResult:
        """Score x (C, H, W), already checked, as it is (no shift-min); timings from t0; ``pixel_dist``:
        the pixel distance of the frame x is a copy of (``pixel_distance``; None: x is the frame itself,
        measured here and timed as ``pixel_s``, which ``encoder_s`` does not include; both are part of search_s);
        ``memory``: the latent memory d_lat is measured against (None: the model's)."""
        memory = self._memory if memory is None else memory
        pixel_s = None
        if pixel_dist is None:
            pixel_dist, pixel_s = self._timed_pixel_distance(x)
        with self._lock:   # the encoder and the search run on the scorer's preallocated buffers
            self._check_open()
            # E(x) once: it gives z0 (z_init == "encoder") and the latent-memory distance
            e = self.encode(x) if self._encoder is not None and (z0 is None or memory is not None) else None
            z0 = np.array(self.initial_latents(z0, seed, x=x, e=e))    # a copy: never the caller's array
            dist = memory.distance(e) if memory is not None else None
            te = time.perf_counter()
            out = self._search.run(x, z0)
            timings = {"steps_s": out["steps_s"], "final_s": out["final_s"]}
            if self._encoder is not None:
                timings["encoder_s"] = te - t0 - (pixel_s or 0.0)      # E(x), z0, the latent distance
            if pixel_s is not None:
                timings["pixel_s"] = pixel_s
            # of_search copies: the backends may return views of their output buffers, which the next call overwrites
            r = ScoreResult.of_search(x, self.config, out["seed_losses"], out["error_map"], out["z"], z0,
                                      out["recon"] if keep_reconstructions else None, dist, timings, pixel_dist)
        r.timings["search_s"] = time.perf_counter() - t0
        return r

    def score(self, rgb, depth, z0=None, seed: Optional[int] = None,
              keep_reconstructions: bool = False, check_faults: bool = True) -> ScoreResult:
        """Score a raw frame: rgb H x W x 3 uint8, depth H x W uint8 (8-bit) or uint16 (mm).
        Raises preprocess.FrameError for a frame that cannot be scored, and its subclass
        sensor_faults.SensorFaultError (``.fault``: e.g. "black_rgb") for a frame that shows a sensor
        fault (no depth, no foreground, black / saturated colour, colour noise: the model's
        ``preprocess.sensor_faults`` limits, the checks ``edge-ad run`` makes), which is never scored.
        ``check_faults=False``: skip those checks (a caller that has made them already). A stuck
        camera re-sending one frame needs a stream to notice: ``run_capture`` (SensorFaultDetector)
        checks that, not this call. With the silhouette lever (silhouette_versions_weight > 0): the minimum over
        the frame's silhouette versions (module docstring, ``_score_versions``); the faults are checked on the frame."""
        t0 = time.perf_counter()
        x = frame_input(rgb, depth, self.preprocess_spec, check_faults)   # (4, R, R) float32 in [-1, 1]
        if self.config.uses_silhouette_versions:
            return self._score_versions(rgb, depth, x, z0, seed, keep_reconstructions, t0)
        return self._score_prepared(x, z0, seed, keep_reconstructions, t0)

    def _score_versions(self, rgb, depth, x: np.ndarray, z0, seed: Optional[int], keep_reconstructions: bool,
                        t0: float) -> ScoreResult:
        """``score`` with the silhouette lever (runtime/silhouette.py): x (4, R, R) is the frame's input (checked,
        sensor faults included); the ero and dil versions are made on the raw (rgb, depth) and scored in full (a
        version whose input cannot be made, e.g. an erosion that leaves no reading, is left out; the frame itself
        never is), the dil version against the bank + the paired rows (and the pixel memory + the opened frames);
        one seed for the three (drawn when neither seed nor z0 is given). Returns the winning version's result,
        ``score`` = min(S_id, w_e * S_ero, S_dil); timings: the versions' preprocessing and search summed."""
        cfg = self.config
        if seed is None and z0 is None:
            seed = draw_seed()
        try:
            raw = silhouette_versions(rgb, depth, self.preprocess_spec.resolution,     # {version: (rgb, depth)}
                                      spec_range(self.preprocess_spec))
        except ValueError as e:   # a frame the versions cannot be made of (e.g. depth H x W x 2)
            raise FrameError(f"the silhouette lever (silhouette_versions_weight > 0) makes its versions on the raw "
                             f"frame: {e}") from None
        tp = time.perf_counter() - t0
        results = {}
        for v, (r, d) in raw.items():
            if v != "id":
                t1 = time.perf_counter()
                try:
                    x = frame_input(r, d, self.preprocess_spec, check_faults=False)     # (4, R, R)
                except FrameError:
                    continue
                tp += time.perf_counter() - t1
            pd, memory = None, None
            if v == "dil":
                memory = self._dil_memory
                if self._dil_pixels is not None:
                    pd = self._dil_pixels.frame_distance(x, cfg.pixel_shift_radius, gain=cfg.pixel_gain_limits)
            results[v] = self._score_input(x, z0, seed, keep_reconstructions, pd, memory)
        r = winning_result(results, cfg.silhouette_versions_weight,
                           ("steps_s", "final_s", "encoder_s", "pixel_s", "search_s"))
        r.timings.update(preprocess_s=tp, total_s=time.perf_counter() - t0)
        return r

    def score_uint8(self, u8: np.ndarray, z0=None, seed: Optional[int] = None,
                    keep_reconstructions: bool = False) -> ScoreResult:
        """Score a frame already brought to the model's resolution by ``preprocess.frame_to_uint8``
        (R, R, 4) uint8 (what ``score`` does first): the run loop makes it once for the sensor-fault
        checks and the scorer. No sensor-fault check here (they need the raw frame): the caller has
        made them (``sensor_faults.frame_faults``). ``timings["preprocess_s"]`` covers the
        normalisation (and, from ``score``, the resize)."""
        if self.config.uses_silhouette_versions:
            raise ValueError(f"the scoring configuration {self.config.name!r} uses the silhouette lever "
                             "(silhouette_versions_weight > 0), whose versions are made on the raw frame: score it "
                             "with score(rgb, depth), not score_uint8")
        t0 = time.perf_counter()
        u8 = np.asarray(u8)
        R = self.resolution
        if u8.shape != (R, R, 4) or u8.dtype != np.uint8:
            raise ValueError(f"u8 must be a ({R}, {R}, 4) uint8 frame from frame_to_uint8, got "
                             f"{u8.dtype} {u8.shape}")
        x = normalize_uint8(u8, self.preprocess_spec)                 # (4, R, R) float32 in [-1, 1]
        return self._score_prepared(x, z0, seed, keep_reconstructions, t0)

    def _score_prepared(self, x: np.ndarray, z0, seed: Optional[int], keep_reconstructions: bool,
                        t0: float) -> ScoreResult:
        """score_input(x) with the preprocessing's time (since t0) in ``timings``."""
        t1 = time.perf_counter()
        r = self.score_input(x, z0, seed, keep_reconstructions)
        r.timings["preprocess_s"] = t1 - t0
        r.timings["total_s"] = time.perf_counter() - t0
        return r

    def score_batch(self, frames, seeds=None, z0s=None, keep_reconstructions: bool = False,
                    threads: Optional[int] = None, check_faults: bool = True) -> list:
        """Score raw frames [(rgb, depth), ...] together: per frame a ScoreResult (equal to
        ``score(rgb, depth, z0, seed)``'s to float32 rounding) or the FrameError / ValueError of a
        frame that cannot be scored (also an entry that is None or has no depth; a sensor fault: its
        SensorFaultError, as ``score``; ``check_faults=False`` skips that check). k = 0 exports
        (final_batch.onnx) loaded with backend "onnxruntime" run one encoder and one generator pass
        over the batch, on ``threads`` intra-op threads (None: load's ``threads``; the sessions for
        load's count are built by ``load``, those for another count on its first call, kept while it
        is the most recent other count: BatchGraphs);
        other models and TensorRT score frame by frame (runtime/batch_scoring.py), ``threads`` unused (still
        checked). ``frames``, ``seeds``, ``z0s``: any iterables (read once)."""
        from .batch_scoring import score_batch
        _check_threads(threads, "load's")
        frames = list(frames)
        with self._lock:
            self._check_open()
            graphs = self._batch.get(threads) if self._batch is not None else None
        # the silhouette lever: its versions are made on the raw frames, each version's batch scored together
        # (without batch graphs: frame by frame through ``score``, which makes them)
        if self.config.uses_silhouette_versions and graphs is not None:
            from .batch_scoring import score_batch_versions
            return score_batch_versions(self, frames, seeds, z0s, keep_reconstructions, check_faults, graphs=graphs,
                                        memories=(self._memory, self._dil_memory),
                                        pixels=(self._pixels, self._dil_pixels), lock=self._lock)
        return score_batch(self, frames, seeds, z0s, keep_reconstructions, check_faults,
                           graphs=graphs, memory=self._memory, lock=self._lock, pixels=self._pixels)


def calibrated_threshold(manifest: dict, config: SearchConfig) -> Optional[float]:
    """The manifest's calibrated threshold ("threshold" value) for a scorer searching with ``config``;
    None when the manifest has none or it was calibrated with another search or preprocessing
    (``threshold_mismatch``, ``Scorer.threshold``)."""
    thr = manifest.get("threshold")
    if not isinstance(thr, dict) or threshold_mismatch(manifest, config):
        return None
    return float(thr["value"])


def threshold_dropped(manifest, config) -> Optional[str]:
    """What edge-ad run, edge-ad verify and the ROS node say when ``manifest`` has a threshold that does not hold
    for ``config`` on its preprocessing (``threshold_mismatch``); None when it holds or there is none."""
    why = threshold_mismatch(manifest, config) if isinstance(manifest, dict) and config is not None else None
    return None if why is None else (f"the model's threshold was calibrated with another {why} than this model's "
                                     "manifest says (an edited manifest?): calibrate it again (edge-ad calibrate) "
                                     "or give --threshold")


def threshold_mismatch(manifest: dict, config: SearchConfig) -> Optional[str]:
    """Why the manifest's threshold does not hold for a scorer searching with ``config`` on the manifest's
    preprocessing: "search (k, lr_z)" when the search it records differs, "preprocess (far_mm)" when the
    preprocessing it records (exports and calibrations since audit 33 #8) differs from the manifest's; None
    when it holds, or there is none."""
    thr = manifest.get("threshold")
    if not isinstance(thr, dict):
        return None
    if isinstance(thr.get("search"), dict) and search_differences(thr["search"], config):
        return f"search ({', '.join(search_differences(thr['search'], config))})"
    if isinstance(thr.get("preprocess"), dict):
        try:            # the sensor limits gate frames, they change no score: editing them keeps the threshold
            own, now = (scored_preprocess(PreprocessSpec.from_dict(d)) for d in (thr["preprocess"], manifest["preprocess"]))
        except (TypeError, ValueError):
            return "preprocess (unreadable record)"
        diff = sorted(k for k in set(own) | set(now) if own.get(k) != now.get(k))
        if diff:
            return f"preprocess ({', '.join(diff)})"
    return None


def calibrated_rate(manifest: dict, config: SearchConfig) -> Optional[float]:
    """The false-alarm rate (manifest "threshold" target_fpr) at which ``calibrated_threshold(manifest,
    config)`` was set; None when that is None or the rate is not a number in (0, 1)."""
    if calibrated_threshold(manifest, config) is None:
        return None
    rate = manifest["threshold"].get("target_fpr")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate < 1:
        return None
    return float(rate)


def manifest_threshold(model_dir: os.PathLike) -> Optional[float]:
    """The threshold ``Scorer.load(model_dir)`` (the manifest's own search) flags at, read from the
    manifest alone (no file checked, no model loaded); None when it carries none.
    Raises ManifestError / ValueError for a missing or malformed manifest."""
    man = load_manifest(model_dir, verify=False)
    return calibrated_threshold(man, SearchConfig.from_dict(man["search"]))


def _check_threads(threads, none_means: str) -> None:
    """ValueError naming ``threads`` unless it is None or a whole number >= 1 (load's and score_batch's rule)."""
    if threads is not None and (not _whole(threads) or threads < 1):
        raise ValueError(f"threads must be a whole number >= 1 (or None: {none_means}), got {threads!r}")


def _whole(v) -> bool:
    """An int or numpy integer, not a bool (True would be 1)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def shift_min(results: list, offsets: list) -> ScoreResult:
    """The shift-min score from the results of a frame's shifted copies (results[i] scored the frame
    moved by offsets[i] = (dy, dx)): the copy with the lowest score (the first one on a tie), its
    error_map (fill 0) and reconstructions (fill background) moved back by (-dy, -dx) so they overlay
    the unshifted frame, ``shift`` = (dy, dx). Modifies and returns that result."""
    i = int(np.argmin([r.score for r in results]))
    r, (dy, dx) = results[i], offsets[i]
    r.error_map = shift_frame(r.error_map, -dy, -dx, fill=0.0)                 # (R, R)
    if r.reconstructions is not None:
        r.reconstructions = shift_frame(r.reconstructions, -dy, -dx)          # (n_seed, C, R, R)
    r.shift = (int(dy), int(dx))
    return r


def _load_latent_memory(model_dir: Path, man: dict, cfg: SearchConfig) -> LatentMemory:
    """The LatentMemory of latent_bank.npy (N, z_dim) float32, checked against the manifest (its sha256
    was verified by load_manifest), its augmented rows from the manifest's latent_bank["augment"]
    (absent in older exports: none) weighed by cfg.bank_augment_weight, except the copies of
    cfg.bank_trusted_augment's texts. Raises ManifestError when missing or mismatched (a trusted text
    the bank was not built with included)."""
    entry = man.get("latent_bank")
    if not isinstance(entry, dict) or entry.get("file") not in man["files"]:
        raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} multiplies the score by the "
                            "latent-memory distance (score_latent_power > 0), but this export has no latent "
                            "bank; re-export from a checkpoint that stores one")
    bank = load_npy(model_dir, entry["file"], entry["shape"], np.float32,   # header checked before reading,
                    sha256=man["files"][entry["file"]],                    # the bytes verified, not a later swap
                    said_by=f"{MANIFEST}: latent_bank.shape")
    z_dim = int(man["layout"]["z_dim"])
    if bank.dtype != np.float32 or bank.ndim != 2 or bank.shape[1] != z_dim or len(bank) == 0 \
            or list(bank.shape) != list(entry.get("shape", bank.shape)) or not np.isfinite(bank).all():
        raise ManifestError(f"{model_dir}: {entry['file']} must be a finite float32 (N, z_dim={z_dim}) array "
                            f"matching the manifest's shape {entry.get('shape')}, got {bank.dtype} {bank.shape}")
    try:
        augment = entry.get("augment")                        # absent in older exports: none
        return latent_memory(bank, cfg, [] if augment is None else augment)   # the texts: checked there
    except ValueError as e:
        raise ManifestError(f"{model_dir}: {entry['file']}: {e}") from None


def load_silhouette_rows(model_dir: Path, man: dict, cfg: SearchConfig, spec: PreprocessSpec, memory: LatentMemory,
                         pixels: Optional[PixelMemory]) -> tuple:
    """The silhouette lever's dil-version memories (runtime/silhouette.py) from the manifest's "silhouette" entry:
    (``memory.with_rows`` of silhouette_bank.npy (2 N, z_dim) float32, E of the opened training frames and their
    mirrors; a PairedPixelMemory of ``pixels`` and silhouette_pixels.npy (N, R, R, 4) uint8, the opened frames
    expanded with its augment, when the configuration has the pixel factor, else None). Raises ManifestError when the export has
    no entry, a file is missing, or an array does not match (shape, dtype, sha256, non-finite rows)."""
    entry = man.get("silhouette")
    if not isinstance(entry, dict) or entry.get("bank") not in man["files"]:
        raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} uses the silhouette lever "
                            "(silhouette_versions_weight > 0), but this export has no paired rows of opened "
                            "training frames (manifest 'silhouette'); re-export from a checkpoint built with them "
                            "(make_release.py --silhouette-weight)")
    z_dim = int(man["layout"]["z_dim"])
    rows = load_npy(model_dir, entry["bank"], entry["bank_shape"], np.float32, sha256=man["files"][entry["bank"]],
                    said_by=f"{MANIFEST}: silhouette.bank_shape")
    try:
        rows = check_silhouette_bank(rows, z_dim, entry.get("n_frames"))
    except ValueError as e:
        raise ManifestError(f"{model_dir}: {entry['bank']}: {e}") from None
    opened = None
    if cfg.uses_pixel_memory:
        if entry.get("pixels") not in man["files"]:
            raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} has the pixel factor and the "
                                "silhouette lever, but the export's 'silhouette' entry has no opened frames for the "
                                "pixel memory ('pixels'); re-export from a checkpoint built with them")
        frames = load_npy(model_dir, entry["pixels"], entry["pixels_shape"], np.uint8,
                          sha256=man["files"][entry["pixels"]], said_by=f"{MANIFEST}: silhouette.pixels_shape")
        try:
            opened = PixelMemory(frames, spec, entry.get("pixels_augment") or [])
        except ValueError as e:
            raise ManifestError(f"{model_dir}: {entry['pixels']}: {e}") from None
    return memory.with_rows(rows), None if opened is None else PairedPixelMemory(pixels, opened)


def load_pixel_memory(model_dir: Path, man: dict, cfg: SearchConfig, spec: PreprocessSpec) -> PixelMemory:
    """The PixelMemory of pixel_memory.npy (N, R, R, 4) uint8 (its sha256 verified by load_manifest, its
    entry by validate_manifest), expanded with the manifest's pixel_memory["augment"] under the model's
    preprocessing ``spec``. Raises ManifestError when the export has none or the file does not match."""
    entry = man.get("pixel_memory")
    if not isinstance(entry, dict) or entry.get("file") not in man["files"]:
        raise ManifestError(f"{model_dir}: the scoring configuration {cfg.name!r} multiplies the score by the "
                            "pixel-memory distance (score_pixel_power > 0), but this export has no pixel "
                            "memory; re-export from a checkpoint that stores one (scoring['pixel_memory'])")
    frames = load_npy(model_dir, entry["file"], entry["shape"], np.uint8,   # header checked before reading,
                      sha256=man["files"][entry["file"]],                  # the bytes verified, not a later swap
                      said_by=f"{MANIFEST}: pixel_memory.shape")
    if len(frames) > MAX_PIXEL_FRAMES:
        raise ManifestError(f"{model_dir}: {entry['file']} holds {len(frames)} frames, more than {MAX_PIXEL_FRAMES}")
    try:
        return PixelMemory(frames, spec, entry.get("augment") or [])
    except ValueError as e:
        raise ManifestError(f"{model_dir}: {entry['file']}: {e}") from None
