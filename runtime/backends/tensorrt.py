"""TensorRT backend: the seeded k-step search on TensorRT engines, device-resident, one CUDA graph
per frame.

NOT YET RUN ON HARDWARE. TensorRT cannot be installed in the workplace this was written in (its
PyPI packages fetch the libraries from NVIDIA's own index at install time). The code follows the
TensorRT 10 Python API documentation (name-based I/O: ``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``get_tensor_shape``, ``set_tensor_address``, ``execute_async_v3``; builder:
``OnnxParser``, ``create_builder_config``, ``set_memory_pool_limit``, ``build_serialized_network``),
which TensorRT 8.5/8.6 (JetPack 5.1/6.0) already provide, and cuda-python's ``cuda.bindings.runtime``
as TensorRT's own samples/python/common_runtime.py does. On CPU the whole frame logic (buffer
binding, ping-pong, weight restore, CUDA-graph capture and replay, the final pass) is tested with a
fake ``tensorrt`` whose engines run the same ONNX graphs in onnxruntime, and a fake CUDA runtime.

Design (see runtime/backends/cuda_buffers.py for the buffer plan):
* two engines from the model's ONNX graphs: ``step`` (one Adam step on z and all weights; or
  ``step_z`` for the z-only search) and ``final`` (per-seed loss, error map, reconstructions);
* one execution context per engine; before each of the k ``execute_async_v3`` calls the step
  context's tensor addresses are pointed at that step's ping-pong slots;
* per frame: upload x and z0 from pinned host memory, restore the weights device-to-device from the
  pristine copies, zero the Adam moments, k steps, the final pass, download the outputs into pinned
  host memory; all on one stream, captured once into a CUDA graph and replayed for every frame
  (the first frame runs eagerly first, so TensorRT's lazy initialisation is not captured);
* fp32 by default, with TF32 explicitly disabled in the builder (TensorRT enables it by default on
  Ampere and newer, Orin included); runtime/backends/precision.py refuses precisions that would swallow the
  lr_theta weight update.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .cuda_buffers import (CudaBuffers, CudaError, GpuUnavailable, TensorSpec, gpu_identity, load_cudart,
                            per_step_values, plan_search)
from .engine_cache import EngineCache, EngineCacheError, EngineKey, check_trt_version
from .precision import check_precision

log = logging.getLogger(__name__)

NAME = "tensorrt"
DEFAULT_WORKSPACE = 1 << 30   # 1 GiB builder workspace (Orin Nano 8GB shares it with the CPU)


class TensorRTUnavailable(GpuUnavailable, ImportError):
    """TensorRT (or the GPU/CUDA stack under it) is missing: the message says what and how to fix.

    Also an ImportError, so callers that report missing optional backends (``edge-ad run``) print
    this one message instead of a traceback."""


def import_tensorrt(trt=None):
    """The ``tensorrt`` module (or the one given), version-checked; TensorRTUnavailable with one
    clear message if it is missing or older than 8.5."""
    try:
        if trt is None:
            import tensorrt as trt
    except ImportError as e:
        raise TensorRTUnavailable(
            "the TensorRT backend needs NVIDIA TensorRT >= 8.5, and its Python package 'tensorrt' is not "
            f"installed ({e.msg if hasattr(e, 'msg') else e}). On a Jetson it comes with JetPack >= 5.1 "
            "(apt install python3-libnvinfer; see jetson/README.md); on a PC with an NVIDIA GPU: "
            "pip install tensorrt. Or use --backend onnxruntime.") from None
    except OSError as e:   # the module is there but libnvinfer is not loadable
        raise TensorRTUnavailable(f"TensorRT is installed but its libraries cannot be loaded: {e}") from None
    try:
        check_trt_version(getattr(trt, "__version__", "0"))
    except EngineCacheError as e:
        raise TensorRTUnavailable(str(e)) from None
    return trt


def require_tensorrt_and_gpu(device: int = 0, trt=None, cudart=None):
    """(trt module, cudart module, (gpu name, compute capability)), or TensorRTUnavailable naming
    the first missing piece: TensorRT, cuda-python, the NVIDIA driver, or a GPU."""
    trt = import_tensorrt(trt)
    try:
        cudart = cudart or load_cudart()
        gpu = gpu_identity(device, cudart)
    except GpuUnavailable as e:
        raise TensorRTUnavailable(f"the TensorRT backend cannot run here: {e}") from None
    return trt, cudart, gpu


# TensorRT's DataType names -> numpy dtypes, read here rather than from trt.nptype, which TensorRT 8.5 (JetPack 5)
# builds with np.bool: an AttributeError under numpy >= 1.24
_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32", "INT64": "int64",
               "BOOL": "bool", "UINT8": "uint8"}


def _np_dtype(dt) -> str:
    """The numpy dtype name of TensorRT DataType ``dt`` (ValueError for one numpy has no dtype for: BF16, FP8...)."""
    name = getattr(dt, "name", None) or str(dt).rsplit(".", 1)[-1]
    if name not in _TRT_DTYPES:
        raise ValueError(f"unsupported TensorRT tensor type {name or dt}: numpy has no dtype for it")
    return _TRT_DTYPES[name]


def engine_io(engine, trt) -> tuple:
    """(inputs, outputs) as TensorSpec lists, from the engine's name-based I/O API."""
    ins, outs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        spec = TensorSpec(name, tuple(engine.get_tensor_shape(name)), _np_dtype(engine.get_tensor_dtype(name)))
        (ins if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(spec)
    return ins, outs


def build_engine_bytes(onnx_path: os.PathLike, precision: str = "fp32", trt=None,
                       workspace_bytes: int = DEFAULT_WORKSPACE) -> bytes:
    """Parse an ONNX graph and build a serialized engine for the GPU of this machine.

    fp32: TF32 cleared (bitwise closer to the fp32 reference); tf32: TF32 allowed; fp16: FP16
    kernels allowed (only for the z-only search: the precision guard refuses it otherwise).
    """
    trt = trt or import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    # TensorRT 10 networks are always explicit-batch; 8.x needs the flag for ONNX
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineCacheError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    elif precision == "tf32":
        config.set_flag(trt.BuilderFlag.TF32)
    elif precision == "fp16":
        config.clear_flag(trt.BuilderFlag.TF32)
        config.set_flag(trt.BuilderFlag.FP16)
    else:
        raise ValueError(f"unknown precision {precision!r}")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineCacheError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path} "
                               f"({precision}); run with EDGE_AD_TRT_VERBOSE=1 for the builder log")
    return bytes(serialized)


def deserialize(path: os.PathLike, trt, logger=None):
    """(runtime, logger), ICudaEngine from a serialized engine file (error names the file).
    The runtime and its logger must outlive the engine: callers keep the first element."""
    logger = logger or trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise EngineCacheError(f"TensorRT could not deserialize {path} (built by another TensorRT version "
                               f"or for another GPU?); rebuild with `edge-ad build-engine --force`")
    return (runtime, logger), engine


class TensorRTSearch:
    """k steps of the step engine + the final engine, device-resident, one CUDA graph per frame.

    ``pristine``: the stacked initial state by tensor name (weights, and for the z-only search the
    read-only weights), uploaded once. ``scalars(t)``: {name: value} of the step graph's scalar
    inputs at step t (Adam step sizes and bias corrections computed in float64 on the host).
    Nothing is allocated after construction; ``run`` returns copies of the final outputs.
    """

    def __init__(self, step_engine_path, final_engine_path, pristine: dict, scalars: Callable[[int], dict],
                 k: int, cuda_graph: bool = True, device: int = 0, restore: str = "bind", trt=None, cudart=None):
        self.trt, self.cudart, self.gpu = require_tensorrt_and_gpu(device, trt, cudart)
        self.k = int(k)
        self.cuda_graph = bool(cuda_graph)
        self._graph = None
        self.bufs = None
        self._runtimes = []
        if step_engine_path is None and self.k != 0:
            raise ValueError(f"k = {self.k} search steps need the step engine")
        # k = 0 (the "forward" variant): the final engine alone, no step engine
        step_rt, self.step_engine = (deserialize(step_engine_path, self.trt) if step_engine_path is not None
                                     else (None, None))
        final_rt, self.final_engine = deserialize(final_engine_path, self.trt)
        self._runtimes = [step_rt, final_rt]       # keep runtimes alive as long as their engines
        sin, sout = engine_io(self.step_engine, self.trt) if self.step_engine is not None else (None, None)
        fin, fout = engine_io(self.final_engine, self.trt)
        self.plan = plan_search(sin, sout, fin, fout, self.k, restore=restore)
        self.bufs = CudaBuffers(self.plan, device, self.cudart)
        try:
            for name, buf in self.plan.buffers.items():
                if name.startswith("pristine:"):
                    n = name.split(":", 1)[1]
                    if n not in pristine:
                        raise ValueError(f"no pristine value for the engine input {n!r}")
                    # single-copy arrays are tiled to the engine's (n_seed, ...) shape here, once
                    self.bufs.upload(name, np.broadcast_to(np.asarray(pristine[n], dtype=buf.dtype), buf.shape))
            for name, arr in per_step_values(self.plan, scalars).items():
                self.bufs.upload(name, arr)
            self._stream_handle = int(self.bufs.stream)     # TensorRT takes the raw cudaStream_t handle
            self.step_ctx = self.step_engine.create_execution_context() if self.step_engine is not None else None
            self.final_ctx = self.final_engine.create_execution_context()
            if (self.step_engine is not None and self.step_ctx is None) or self.final_ctx is None:
                raise CudaError("TensorRT could not create an execution context (out of GPU memory?)")
        except Exception:
            self.close()
            raise

    # -- one frame ----------------------------------------------------------------------------------
    def _bind_and_enqueue(self, ctx, bindings: dict, what: str) -> None:
        for name, slot in bindings.items():
            if not ctx.set_tensor_address(name, self.bufs.address(slot)):
                raise CudaError(f"TensorRT refused the address of {name!r} ({what})")
        if not ctx.execute_async_v3(self._stream_handle):
            raise CudaError(f"TensorRT execute_async_v3 failed ({what})")

    def _enqueue_frame(self) -> None:
        """Everything one frame does, in stream order (captured once into the CUDA graph)."""
        self.bufs.frame_prologue()
        for t, bindings in enumerate(self.plan.steps):
            self._bind_and_enqueue(self.step_ctx, bindings, f"step {t + 1}/{self.k}")
        self._bind_and_enqueue(self.final_ctx, self.plan.final, "final pass")
        self.bufs.frame_epilogue()

    def run(self, x: np.ndarray, z0: np.ndarray) -> dict:
        """Score one preprocessed frame x (C, R, R) from latents z0 (n_seed, z_dim).

        Returns the OrtSearch.run dict: seed_losses (float64), error_map, recon, z (n_seed, z_dim),
        steps_s (the whole device search, k steps + final pass: one graph, not split), final_s (0.0).
        """
        t0 = time.perf_counter()
        np.copyto(self.bufs.host("x"), np.asarray(x, dtype=np.float32).reshape(self.bufs.host("x").shape))
        np.copyto(self.bufs.host("z0"), np.asarray(z0, dtype=np.float32).reshape(self.bufs.host("z0").shape))
        if self.cuda_graph and self._graph is None:
            self._enqueue_frame()           # warm-up outside capture (TensorRT lazy init)
            self.bufs.synchronize()
            try:
                self._graph = self.bufs.capture(self._enqueue_frame)
            except CudaError as e:
                log.warning("CUDA graph capture failed (%s); running the %d steps eagerly", e, self.k)
                self.cuda_graph = False
        if self._graph is not None:
            self._graph.launch(self.bufs.stream)
        else:
            self._enqueue_frame()
        self.bufs.synchronize()
        out = self.bufs.results()
        out["seed_losses"] = out["seed_losses"].astype(np.float64)
        out["z"] = out["z"].reshape(len(out["seed_losses"]), -1)
        out["steps_s"], out["final_s"] = time.perf_counter() - t0, 0.0
        return out

    def close(self) -> None:
        if self._graph is not None:
            self._graph.destroy()
            self._graph = None
        if self.bufs is not None:
            self.bufs.close()
            self.bufs = None

    def __del__(self):  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------------
# model directory level: engines for the manifest's graphs, and the Scorer hook
# ------------------------------------------------------------------------------------------------
def graphs_for(manifest: dict, lr_theta: Optional[float] = None) -> list:
    """The graphs the TensorRT search runs for the manifest's configuration (lr_theta overridden):
    the variant table's (runtime/variants.py) forward graph for k = 0, else the step variant's."""
    from ..config import SearchConfig
    from ..variants import VARIANTS
    cfg = SearchConfig.from_dict(manifest["search"])
    if lr_theta is not None:
        cfg = cfg.replace(lr_theta=float(lr_theta))
    return list(VARIANTS["forward" if cfg.k == 0 else "step"].needs(cfg))


def ensure_engines(model_dir: os.PathLike, manifest: dict, graphs: list, precision: str = "fp32",
                   on_mismatch: str = "rebuild", force: bool = False, cache_dir: Optional[os.PathLike] = None,
                   workspace_bytes: int = DEFAULT_WORKSPACE, trt=None, gpu: Optional[tuple] = None,
                   log_fn=None) -> dict:
    """{graph name: engine path} for this GPU + TensorRT, built (or rebuilt on a mismatch) as needed.

    Each engine is keyed by its ONNX file's sha256 from the (already verified) manifest, the GPU
    name and compute capability, the exact TensorRT version and the precision.
    """
    trt = import_tensorrt(trt)
    if gpu is None:
        _, _, gpu = require_tensorrt_and_gpu(trt=trt)
    if manifest.get("layout", {}).get("dtype", "float32") != "float32":
        raise ValueError(f"{model_dir}: TensorRT needs a float32 export, this one is "
                         f"{manifest['layout']['dtype']}")
    model_dir = Path(model_dir)
    cache = EngineCache.for_model(model_dir, cache_dir)
    say = log_fn or log.warning     # an engine build takes minutes: say so even without logging set up
    out = {}
    for g in graphs:
        if g not in manifest["graphs"]:
            raise ValueError(f"{model_dir}: the export has no {g!r} graph (graphs: {sorted(manifest['graphs'])})")
        fname = manifest["graphs"][g]["file"]
        key = EngineKey(onnx_sha256=manifest["files"][fname], gpu_name=gpu[0], compute_capability=gpu[1],
                        trt_version=str(trt.__version__), precision=precision, graph=g)

        def build(fname=fname, key=key):
            say(f"building the TensorRT engine for {key.describe()} (minutes on a Jetson) ...")
            t0 = time.perf_counter()
            data = build_engine_bytes(model_dir / fname, precision, trt, workspace_bytes)
            say(f"  built in {time.perf_counter() - t0:.0f} s, {len(data) / 1e6:.1f} MB")
            return data

        r = cache.resolve(key, build, on_mismatch=on_mismatch, force=force,
                          extra={"onnx_file": fname, "workspace_bytes": int(workspace_bytes)})
        for line in r.replaced:
            say(f"  (an engine built for another GPU/TensorRT was kept: {line})")
        out[g] = r.path
    return out


def load_search(model_dir: os.PathLike, manifest: dict, pristine: dict, cfg, mode: str,
                precision: Optional[str] = None, on_mismatch: Optional[str] = None, cuda_graph: bool = True,
                device: int = 0, allow_lossy: bool = False, trt=None, cudart=None) -> TensorRTSearch:
    """What ``Scorer.load(..., backend="tensorrt")`` calls: checks TensorRT, the GPU and the
    precision, finds or builds the engines, and returns a search object with OrtSearch's ``run``.

    precision: fp32 (default) | tf32 | fp16, default from $EDGE_AD_TRT_PRECISION;
    on_mismatch: "rebuild" (default) or "fail" (deployments that must only use engines built by
    ``edge-ad build-engine``), default from $EDGE_AD_TRT_ON_MISMATCH.
    Raises TensorRTUnavailable (one message: what is missing) before touching anything else.
    """
    precision = precision or os.environ.get("EDGE_AD_TRT_PRECISION") or "fp32"
    on_mismatch = on_mismatch or os.environ.get("EDGE_AD_TRT_ON_MISMATCH") or "rebuild"
    from ..config import adam_scalars   # host-side float64 Adam constants
    trt, cudart, gpu = require_tensorrt_and_gpu(device, trt, cudart)
    check_precision(pristine, cfg.lr_theta, precision, lr_z=cfg.lr_z, allow_lossy=allow_lossy)
    if mode not in ("forward", "step", "step_z"):
        raise ValueError(f"the TensorRT search runs the forward (k = 0) or step graphs, not {mode!r}")
    engines = ensure_engines(model_dir, manifest, ["final"] if mode == "forward" else [mode, "final"], precision,
                             on_mismatch, trt=trt, gpu=gpu)
    search = TensorRTSearch(engines.get(mode), engines["final"], pristine, lambda t: adam_scalars(cfg, t + 1),
                            cfg.k, cuda_graph=cuda_graph, device=device, trt=trt, cudart=cudart)
    search.mode, search.precision = mode, precision
    return search
