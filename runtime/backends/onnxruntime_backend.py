"""The seeded k-step search on onnxruntime, with every buffer allocated once (no torch).

Buffers (OrtValues, on the device of the first provider):
  pristine weights (stacked per seed)   read-only, bound as step 1's input (no per-frame copy)
  zero moments                          read-only, bound as step 1's moments
  two ping-pong sets of weights/moments step t reads set (t % 2) and writes the other
  z0, x, per-step Adam scalars          updated in place (``OrtValue.update_inplace``)
  final outputs                         seed_losses, error_map, recon
One IOBinding per step is prepared at load, so steady-state scoring only updates x and z0 and
runs k + 1 graphs. With lr_theta = 0 the z-only step graph reads the pristine weights directly.
"""
from __future__ import annotations

import os
import time
from typing import Optional, Sequence

import numpy as np

from edge_ad.runtime.config import SearchConfig, adam_scalars


# How to install the one onnxruntime (pyproject: not a base dependency, the extras `cpu` / `gpu`, never both)
INSTALL_ONNXRUNTIME = ("pip install 'edge-ad[cpu]' (onnxruntime, CPU) or 'edge-ad[gpu]' (onnxruntime-gpu, an NVIDIA "
                       "GPU on a PC; a Jetson: jetson/install.sh), one of the two, never both")


def onnxruntime_module():
    """The onnxruntime module, imported on first use. Not installed (edge-ad's base install carries neither
    onnxruntime distribution): ModuleNotFoundError (name 'onnxruntime') saying how to install one."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] != "onnxruntime":
            raise                                       # onnxruntime is there, one of its own imports is not
        raise ModuleNotFoundError(f"edge-ad scores with onnxruntime, which is not installed: {INSTALL_ONNXRUNTIME}",
                                  name="onnxruntime") from None
    return ort


def check_providers(providers: Sequence) -> None:
    """RuntimeError naming the onnxruntime execution providers of ``providers`` (names, or (name, options)) this
    onnxruntime does not have (and, when both onnxruntime distributions are installed, how to keep one), before
    any session or device buffer is made: onnxruntime itself falls back to the CPU with a warning and fails
    later ("Can't allocate memory on the CUDA device using this package of OnnxRuntime")."""
    avail = onnxruntime_module().get_available_providers()
    missing = [p for p in (p if isinstance(p, str) else p[0] for p in providers) if p not in avail]
    if missing:
        raise RuntimeError(f"onnxruntime providers {missing} are not available here (available: {avail})"
                           f"{both_onnxruntimes_hint()}")


def both_onnxruntimes_hint() -> str:
    """'; ...' when both PyPI's onnxruntime and onnxruntime-gpu are installed (one module, whichever installed
    last owns its files: the CUDA provider is then missing, onnxruntime#26996), saying how to keep one; else ''."""
    from importlib import metadata
    names = {(d.metadata["Name"] or "").lower().replace("_", "-") for d in metadata.distributions()}
    if {"onnxruntime", "onnxruntime-gpu"} <= names:
        return ("; both onnxruntime and onnxruntime-gpu are installed and share one module (only one of them works): "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu")
    return ""


def session_options(threads: Optional[int] = None, profile: Optional[str] = None, spin: bool = False):
    """CPU-friendly options: all graph optimisations, sequential execution, ``threads`` intra-op.

    ``spin=False`` stops idle pool threads from busy-waiting: on a shared CPU (robot software, other
    processes) spinning threads steal the cores the other thread needs; measured 1.5-2.5x slower
    steps with spinning on a loaded 2-core machine."""
    ort = onnxruntime_module()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = int(threads) if threads else (os.cpu_count() or 1)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        so.enable_profiling = True
        so.profile_file_prefix = profile
    return so


def ortvalue_makers(ort, dtype, device: str, keep: list):
    """(ov, empty) for buffers allocated once at load: ``ov(arr)`` wraps a host array as an OrtValue
    (kept alive in ``keep``: on the CPU the OrtValue shares its memory), ``empty(shape)`` allocates one."""
    def ov(arr):
        a = np.ascontiguousarray(arr, dtype=dtype)
        keep.append(a)
        return ort.OrtValue.ortvalue_from_numpy(a, device, 0)

    def empty(shape):
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), dtype, device, 0)
    return ov, empty


class OrtSearch:
    """Runs one search per call on preallocated device buffers.

    graphs: {"step" | "step_z" | "final" | "unrolled": path or serialized bytes}
    pristine: {state name: array of the single-copy shape} (tiled to n_seed here, once)
    mode: "step" (faithful), "step_z" (lr_theta = 0), "forward" (k = 0: the final graph alone, from z0
    and the pristine weights), "unrolled" (one graph for the whole search)
    """

    def __init__(self, graphs: dict, pristine: dict, state_shapes: dict, cfg: SearchConfig,
                 z_dim: int, x_shape: Sequence[int], dtype=np.float32, mode: str = "step",
                 providers: Optional[list] = None, threads: Optional[int] = None,
                 profile: Optional[str] = None, spin: bool = False):
        ort = onnxruntime_module()
        self.cfg, self.mode, self.dtype = cfg, mode, np.dtype(dtype)
        if mode not in ("step", "step_z", "forward", "unrolled"):
            raise ValueError(f"unknown search mode {mode!r}")
        if mode == "step_z" and cfg.updates_weights:
            raise ValueError("the z-only graph needs lr_theta = 0")
        if mode == "forward" and cfg.k != 0:
            raise ValueError(f"mode 'forward' runs no search step: it needs k = 0, got k = {cfg.k}")
        needed = {"step": ("step", "final"), "step_z": ("step_z", "final"), "forward": ("final",),
                  "unrolled": ("unrolled",)}[mode]
        for g in needed:
            if g not in graphs:
                raise ValueError(f"mode {mode!r} needs the {g!r} graph, which this model does not have")
        providers = list(providers or ["CPUExecutionProvider"])
        check_providers(providers)
        so = session_options(threads, profile, spin)
        self.sessions = {g: ort.InferenceSession(graphs[g], so, providers=providers) for g in needed}
        first = providers[0] if isinstance(providers[0], str) else providers[0][0]
        self.device = "cuda" if first == "CUDAExecutionProvider" else "cpu"
        self._run_opts = cuda_graph_run_options(providers, cfg.k)   # issue 6: None unless CUDA graphs
        S = cfg.n_seed
        self.S, self.z_dim = S, z_dim
        self.names = list(state_shapes)

        self._keep = []   # host arrays backing CPU OrtValues (wrapped, not copied) must outlive them
        ov, empty = ortvalue_makers(ort, self.dtype, self.device, self._keep)

        self.pristine = {n: ov(np.broadcast_to(np.asarray(pristine[n], dtype=self.dtype), state_shapes[n]))
                         for n in self.names}
        zshape = (S, 1, z_dim)
        self.x = empty(x_shape)
        self.z0 = empty(zshape)
        self.zero_z = ov(np.zeros(zshape))
        self.z_buf = [(empty(zshape), empty(zshape), empty(zshape)) for _ in range(2)]   # z, m, v
        self.final_out = {"seed_losses": empty((S,)), "error_map": empty(x_shape[1:]),
                          "recon": empty((S,) + tuple(x_shape))}
        self.bindings = []
        if mode == "step":
            self.zeros = {n: ov(np.zeros(state_shapes[n])) for n in self.names}
            self.p_buf = [{n: (empty(state_shapes[n]), empty(state_shapes[n]), empty(state_shapes[n]))
                           for n in self.names} for _ in range(2)]
        if mode in ("step", "step_z", "forward"):
            self._scalar_ovs = [{k: ov(np.array(v)) for k, v in adam_scalars(cfg, t).items()}
                                for t in range(1, cfg.k + 1)]
            self._prepare_steps()
        else:
            self._prepare_unrolled(ov)

    # -- binding plans -------------------------------------------------------------------------
    def _prepare_steps(self):
        learn = self.mode == "step"
        sess = self.sessions.get(self.mode)                # None for "forward" (k = 0: no step)
        in_names = {i.name for i in sess.get_inputs()} if sess is not None else set()
        for t in range(1, self.cfg.k + 1):
            io = sess.io_binding()
            src, dst = (t - 1) % 2, t % 2      # step 1 reads z0/pristine/zeros, writes set 1
            io.bind_ortvalue_input("x", self.x)
            if t == 1:
                z, m, v = self.z0, self.zero_z, self.zero_z
            else:
                z, m, v = self.z_buf[src]
            io.bind_ortvalue_input("z", z)
            io.bind_ortvalue_input("z.m", m)
            io.bind_ortvalue_input("z.v", v)
            for k, val in self._scalar_ovs[t - 1].items():
                if k in in_names:
                    io.bind_ortvalue_input(k, val)
            for suffix, buf in zip(("z.out", "z.m.out", "z.v.out"), self.z_buf[dst]):
                io.bind_ortvalue_output(suffix, buf)
            for n in self.names:
                if not learn:
                    io.bind_ortvalue_input(n, self.pristine[n])
                    continue
                if t == 1:
                    p, m, v = self.pristine[n], self.zeros[n], self.zeros[n]
                else:
                    p, m, v = self.p_buf[src][n]
                io.bind_ortvalue_input(n, p)
                io.bind_ortvalue_input(n + ".m", m)
                io.bind_ortvalue_input(n + ".v", v)
                for suffix, buf in zip((".out", ".m.out", ".v.out"), self.p_buf[dst][n]):
                    io.bind_ortvalue_output(n + suffix, buf)
            self.bindings.append(io)
        fin = self.sessions["final"]
        io = fin.io_binding()
        k, last = self.cfg.k, self.cfg.k % 2
        io.bind_ortvalue_input("x", self.x)
        io.bind_ortvalue_input("z", self.z0 if k == 0 else self.z_buf[last][0])
        for n in self.names:
            io.bind_ortvalue_input(n, self.pristine[n] if (k == 0 or not learn) else self.p_buf[last][n][0])
        for name, buf in self.final_out.items():
            io.bind_ortvalue_output(name, buf)
        self.final_binding = io

    def _prepare_unrolled(self, ov):
        sess = self.sessions["unrolled"]
        cfg = self.cfg
        sc = [adam_scalars(cfg, t) for t in range(1, cfg.k + 1)]
        io = sess.io_binding()
        io.bind_ortvalue_input("x", self.x)
        io.bind_ortvalue_input("z", self.z0)
        io.bind_ortvalue_input("z.m", self.zero_z)
        io.bind_ortvalue_input("z.v", self.zero_z)
        self._unrolled_scalars = {}
        for i in sess.get_inputs():
            if i.name in ("step_size_z", "step_size_theta", "inv_sqrt_bc2"):
                self._unrolled_scalars[i.name] = ov(np.array([s[i.name] for s in sc]))
            elif i.name in sc[0]:
                self._unrolled_scalars[i.name] = ov(np.array(sc[0][i.name]))
        for k, v in self._unrolled_scalars.items():
            io.bind_ortvalue_input(k, v)
        zeros = {}
        for n in self.names:
            io.bind_ortvalue_input(n, self.pristine[n])
            shape = tuple(self.pristine[n].shape())
            zeros[n] = ov(np.zeros(shape))
            io.bind_ortvalue_input(n + ".m", zeros[n])
            io.bind_ortvalue_input(n + ".v", zeros[n])
        self._unrolled_zeros = zeros
        for name, buf in self.final_out.items():
            io.bind_ortvalue_output(name, buf)
        io.bind_ortvalue_output("z.out", self.z_buf[0][0])
        self.final_binding = io

    # -- running -------------------------------------------------------------------------------
    def run(self, x: np.ndarray, z0: np.ndarray) -> dict:
        """x (C, H, W), z0 (n_seed, z_dim) -> {seed_losses, error_map, recon, z, steps_s, final_s}."""
        self.x.update_inplace(np.ascontiguousarray(x, dtype=self.dtype))
        self.z0.update_inplace(np.ascontiguousarray(z0, dtype=self.dtype).reshape(self.S, 1, self.z_dim))
        t0 = time.perf_counter()
        for i, io in enumerate(self.bindings):            # k step runs (none for "forward" and "unrolled")
            self.sessions[self.mode].run_with_iobinding(io, self._run_opts["steps"][i] if self._run_opts else None)
        t1 = time.perf_counter()
        fin = self.sessions["unrolled" if self.mode == "unrolled" else "final"]
        fin.run_with_iobinding(self.final_binding, self._run_opts["final"] if self._run_opts else None)
        t2 = time.perf_counter()
        k = self.cfg.k
        if self.mode == "unrolled":
            z = self.z_buf[0][0]
        else:
            z = self.z0 if k == 0 else self.z_buf[k % 2][0]
        return {"seed_losses": self.final_out["seed_losses"].numpy().astype(np.float64),
                "error_map": self.final_out["error_map"].numpy(),
                "recon": self.final_out["recon"].numpy(),
                "z": z.numpy().reshape(self.S, self.z_dim),
                "steps_s": t1 - t0, "final_s": t2 - t1}

    def close(self) -> None:
        """Release the sessions, their IO bindings and every device buffer (``Scorer.close``), now rather
        than at garbage collection; idempotent; ``run`` no longer works."""
        self.sessions, self.bindings, self.final_binding = {}, [], None
        for name in ("x", "z0", "zero_z", "z_buf", "final_out", "pristine", "zeros", "p_buf", "_scalar_ovs",
                     "_unrolled_scalars", "_unrolled_zeros"):
            if hasattr(self, name):
                setattr(self, name, None)
        self._keep = []


class OrtEncoder:
    """The izi encoder graph (encoder.onnx: x (C, R, R) -> z (z_dim,)) on preallocated buffers.

    Used by the Scorer for SearchConfig.z_init == "encoder" (whatever backend runs the search: it is
    a small forward-only conv net). ``run(x)`` returns E(x) as float32 (z_dim,)."""

    def __init__(self, graph, x_shape: Sequence[int], z_dim: int, providers: Optional[list] = None,
                 threads: Optional[int] = None, input_name: str = "x", output_name: str = "z"):
        ort = onnxruntime_module()
        providers = list(providers or ["CPUExecutionProvider"])
        if any(isinstance(p, (tuple, list)) for p in providers):   # e.g. CUDA graph options: search only
            providers = [p[0] if isinstance(p, (tuple, list)) else p for p in providers]
        self.session = ort.InferenceSession(graph, session_options(threads), providers=providers)
        ins = {i.name: i.shape for i in self.session.get_inputs()}
        outs = {o.name: o.shape for o in self.session.get_outputs()}
        if list(ins.get(input_name, [])) != list(x_shape) or list(outs.get(output_name, [])) != [z_dim]:
            raise ValueError(f"encoder graph maps {ins} -> {outs}; expected {input_name} {list(x_shape)} -> "
                             f"{output_name} [{z_dim}]")
        first = providers[0]
        device = "cuda" if first == "CUDAExecutionProvider" else "cpu"
        self.x = ort.OrtValue.ortvalue_from_shape_and_type(list(x_shape), np.float32, device, 0)
        self.z = ort.OrtValue.ortvalue_from_shape_and_type([z_dim], np.float32, device, 0)
        self.binding = self.session.io_binding()
        self.binding.bind_ortvalue_input(input_name, self.x)
        self.binding.bind_ortvalue_output(output_name, self.z)

    def run(self, x: np.ndarray) -> np.ndarray:
        """E(x): x (C, R, R) in [-1, 1] -> float32 (z_dim,)."""
        self.x.update_inplace(np.ascontiguousarray(x, dtype=np.float32))
        self.session.run_with_iobinding(self.binding)
        return self.z.numpy()

    def close(self) -> None:
        """Release the session and its buffers (``Scorer.close``); ``run`` no longer works."""
        self.session = self.binding = self.x = self.z = None


# ------------------------------------------------------------------------------------------------
# Issue 6 addition: the CUDA execution provider with CUDA graphs. Every buffer above is already
# device-resident when CUDA is the first provider (OrtValues on "cuda", IOBinding, update_inplace
# keeps x/z0 at fixed addresses). With enable_cuda_graph, onnxruntime captures each bound run once
# and replays it; the step session is run k times with different bindings, so each step gets its
# own graph id (run config "gpu_graph_id"; 0 is reserved, -1 disables). NOT YET RUN ON A GPU.
# ------------------------------------------------------------------------------------------------
def cuda_providers(cuda_graph: bool = True, device_id: int = 0) -> list:
    """Providers for the device-resident GPU path (pass to ``Scorer.load(providers=...)``).

    No CPU fallback provider: CUDA graphs need every node on the CUDA EP, and a silent fallback
    would hide host round trips.
    """
    return [("CUDAExecutionProvider", {"device_id": str(int(device_id)),
                                       "enable_cuda_graph": "1" if cuda_graph else "0"})]


def cuda_graph_requested(providers) -> bool:
    """True if the CUDA EP is configured with enable_cuda_graph."""
    for p in providers or []:
        if isinstance(p, (tuple, list)) and p[0] == "CUDAExecutionProvider":
            return str(dict(p[1]).get("enable_cuda_graph", "0")).lower() in ("1", "true")
    return False


def cuda_graph_run_options(providers, k: int) -> Optional[dict]:
    """{"steps": k RunOptions with gpu_graph_id 1..k, "final": gpu_graph_id 1}, or None."""
    if not cuda_graph_requested(providers):
        return None
    ort = onnxruntime_module()

    def ro(i):
        r = ort.RunOptions()
        r.add_run_config_entry("gpu_graph_id", str(i))
        return r
    return {"steps": [ro(t) for t in range(1, k + 1)], "final": ro(1)}
