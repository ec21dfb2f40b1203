"""Device-resident search state: buffer planning (pure NumPy) and CUDA buffers (cuda-python).

Planning (``plan_search``, CPU-testable) turns the step and final graphs' tensor names, shapes and
dtypes into a fixed set of device buffers and, for every one of the k steps, the address (buffer +
byte offset) each tensor is bound to:

* state tensors (a step input ``n`` whose next value is the output ``n.out``: z, the per-seed
  generator weights, the Adam moments) get two buffers, ``n@0`` and ``n@1``; step t reads slot
  t % 2 and writes slot (t + 1) % 2 (ping-pong, TensorRT does not support in-place I/O);
* weights also get ``pristine:n``, uploaded once at load and never written. The per-frame reset
  has two equivalent forms (``restore``): "copy" starts every frame with a device-to-device copy
  pristine -> ``n@0``, a memset of the moments and an upload of z0 into ``z@0``; "bind" (default)
  binds step 1's inputs to the pristine weights, a shared read-only zero buffer and the uploaded z0
  directly, so the reset costs nothing (step 1 writes slot 1; the pristine copy is never a target);
* per-step scalars (Adam step sizes and bias corrections, computed on the host in float64) live in
  one buffer of k values each, uploaded at load; step t binds element t, so no per-frame upload;
* ``x`` (the frame) is uploaded from pinned host memory; final outputs come back into pinned host.

With fixed addresses for every step, the whole frame (uploads, weight reset, k ``execute_async_v3``
calls, the final pass, downloads) is one CUDA graph captured once and replayed per frame.

``CudaBuffers`` allocates the plan with ``cuda.bindings.runtime`` (cudaMalloc, cudaMallocHost,
cudaMemcpyAsync, cudaMemsetAsync, one non-blocking stream, cudaStreamBeginCapture/EndCapture,
cudaGraphInstantiateWithFlags/Launch), in the style of TensorRT's samples/python/common_runtime.py: every
CUDA call's error code is turned into a ``CudaError``. NOT YET RUN ON A GPU: the CUDA calls follow
the cuda-python 12.x documentation; on CPU they are exercised against a fake runtime in the tests.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

import numpy as np

from .errors import BackendUnavailable

# Naming convention of the exported graphs (export/onnx_graphs.py): state input n -> output n.out.
# Scalar inputs (Adam step sizes, bias corrections, betas, eps) are all stored with one slot per
# step, also those that do not change with t: it keeps the binding logic uniform.
SUFFIX_OUT = ".out"
# TensorRT requires I/O tensor addresses aligned to 256 bytes (cudaMalloc's guarantee); slots at an
# offset inside a buffer (the per-step scalars) are therefore 256 bytes apart.
ALIGN = 256
FRAME_INPUT = "x"
Z_INPUT = "z"


class GpuUnavailable(BackendUnavailable):
    """No usable GPU stack: one message naming what is missing (never a traceback for users)."""


class CudaError(BackendUnavailable):
    """A CUDA runtime call failed; the message names the call and the CUDA error."""


class PlanError(ValueError):
    """The graphs' tensors do not fit the device-resident search layout."""


# ----------------------------------------------------------------------------------------------
# planning (no CUDA)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorSpec:
    """One graph input/output: name, shape (ints, no dynamic dims), NumPy dtype name."""

    name: str
    shape: tuple
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise PlanError(f"tensor {self.name!r} has a dynamic shape {self.shape}; the search needs fixed shapes")
        np.dtype(self.dtype)  # raises TypeError for nonsense

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class Slot:
    """Where a tensor is bound: a planned buffer and a byte offset into it."""

    buffer: str
    offset: int = 0


@dataclass
class Buffer:
    name: str
    shape: tuple         # shape of the whole buffer (per-step buffers: (k, *tensor shape))
    dtype: str
    host: bool = False   # has a pinned host mirror (uploads and downloads)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass
class BufferPlan:
    """Buffers, per-step and final bindings, and the per-frame copy program."""

    k: int
    buffers: dict = field(default_factory=dict)        # name -> Buffer
    steps: list = field(default_factory=list)          # per step t: {tensor name: Slot}
    final: dict = field(default_factory=dict)          # {tensor name: Slot}
    frame_ops: list = field(default_factory=list)      # ("h2d", buf) ("h2d_to", host, dev) ("d2d", src, dst) ("zero", buf)
    download: list = field(default_factory=list)       # buffers copied back to pinned host per frame
    results: dict = field(default_factory=dict)        # result name (final outputs, "z") -> buffer
    restore: str = "bind"
    weights: list = field(default_factory=list)        # state tensors reset from pristine copies
    moments: list = field(default_factory=list)        # state tensors reset to zero
    per_step: list = field(default_factory=list)       # scalar inputs stored as k-slot buffers
    state: list = field(default_factory=list)          # all ping-pong state tensor names

    @property
    def device_bytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def add_buffer(self, name: str, shape, dtype: str, host: bool = False) -> None:
        """Plan buffer ``name``; planned again, it must agree in shape and dtype (``host`` may add a mirror)."""
        if name in self.buffers:
            if self.buffers[name].shape != tuple(shape) or self.buffers[name].dtype != dtype:
                raise PlanError(f"buffer {name!r} planned twice with different shapes")
            self.buffers[name].host |= host
            return
        self.buffers[name] = Buffer(name, tuple(shape), dtype, host)

    def initial_slot(self, n: str) -> Slot:
        """Where state n is read by step 1 (and by the final graph when k == 0)."""
        if self.restore == "copy":
            return Slot(f"{n}@0")
        if n == Z_INPUT:
            return Slot("z0")
        return Slot("zeros") if n in self.moments else Slot(f"pristine:{n}")

    def slot_after(self, n: str, steps: int) -> Slot:
        """Where state n is after ``steps`` steps: its initial slot, then the ping-pong slot steps % 2."""
        return self.initial_slot(n) if steps == 0 else Slot(f"{n}@{steps % 2}")


def _specs(items: Iterable) -> dict:
    out = {}
    for s in items:
        s = s if isinstance(s, TensorSpec) else TensorSpec(*s) if isinstance(s, (tuple, list)) else TensorSpec(**s)
        if s.name in out:
            raise PlanError(f"tensor name {s.name!r} appears twice")
        out[s.name] = s
    return out


def plan_search(step_inputs, step_outputs, final_inputs, final_outputs, k: int,
                scalars: Optional[Iterable[str]] = None, restore: str = "bind") -> BufferPlan:
    """Plan device buffers for k steps of the step graph followed by the final graph.

    Roles are read from the names (runtime/export convention): ``x`` is the frame, ``z`` the
    latents, an input ``n`` with an output ``n.out`` is state; ``*.m`` / ``*.v`` state are Adam
    moments (reset to 0), other state except z are weights (reset from pristine copies); 0-d
    inputs (or those named in ``scalars``) are per-step scalars. Weight inputs of a step graph
    without ``.out`` outputs (the z-only search) are bound to the pristine copies directly.
    ``restore``: "bind" (step 1 reads pristine weights, zeros and z0 in place) or "copy" (copy them
    into slot 0 at the start of every frame), see the module docstring.
    Raises PlanError naming any tensor that has no role or a mismatching shape/dtype.
    """
    if restore not in ("bind", "copy"):
        raise PlanError(f"restore must be 'bind' or 'copy', got {restore!r}")
    if k < 0:
        raise PlanError(f"k must be >= 0, got {k}")
    if step_inputs is None:
        if k != 0:
            raise PlanError(f"k = {k} search steps need a step graph")
        return _plan_forward(_specs(final_inputs), _specs(final_outputs), restore)
    sin, sout, fin, fout = (_specs(x) for x in (step_inputs, step_outputs, final_inputs, final_outputs))
    scalars = set(scalars) if scalars is not None else {n for n, s in sin.items() if s.shape == ()}
    plan = BufferPlan(k=k, restore=restore)
    _check_frame_and_latents(sin, fin)
    plan.add_buffer(FRAME_INPUT, sin[FRAME_INPUT].shape, sin[FRAME_INPUT].dtype, host=True)
    _plan_state(plan, sin, sout)
    _plan_per_step_scalars(plan, sin, scalars)
    readonly = _plan_readonly_weights(plan, sin)
    if restore == "bind" and plan.moments:
        plan.add_buffer("zeros", (max(sin[n].nbytes for n in plan.moments),), "uint8")   # read-only, zeroed at load
    plan.steps = [_step_bindings(plan, t, readonly) for t in range(k)]
    _plan_final(plan, sin, fin, fout, readonly)
    plan.frame_ops = _frame_ops(plan)
    return plan


def _check_frame_and_latents(sin: dict, fin: dict) -> None:
    """PlanError unless both graphs (their inputs ``sin``, ``fin``: {name: TensorSpec}) take the frame and the
    latents, the frame alike in both."""
    if FRAME_INPUT not in sin or FRAME_INPUT not in fin:
        raise PlanError(f"both graphs need the frame input {FRAME_INPUT!r}")
    if Z_INPUT not in sin or Z_INPUT not in fin:
        raise PlanError(f"both graphs need the latent input {Z_INPUT!r}")
    if fin[FRAME_INPUT] != sin[FRAME_INPUT]:
        raise PlanError(f"{FRAME_INPUT!r} differs between the step graph {sin['x']} and the final graph {fin['x']}")


def _plan_state(plan: BufferPlan, sin: dict, sout: dict) -> None:
    """The step graph's state (input n <-> output n.out) into ``plan.state``, each with two ping-pong
    buffers n@0 / n@1, sorted into z (its z0 upload buffer), Adam moments and weights (their pristine
    copies)."""
    for o in sout:
        if not o.endswith(SUFFIX_OUT) or o[: -len(SUFFIX_OUT)] not in sin:
            raise PlanError(f"step output {o!r} has no matching input {o[: -len(SUFFIX_OUT)]!r}")
        n = o[: -len(SUFFIX_OUT)]
        if (sin[n].shape, sin[n].dtype) != (sout[o].shape, sout[o].dtype):
            raise PlanError(f"state {n!r}: input {sin[n].shape} {sin[n].dtype} but output "
                            f"{sout[o].shape} {sout[o].dtype}")
        plan.state.append(n)
    if Z_INPUT not in plan.state:
        raise PlanError("the step graph does not update z (no output 'z.out')")
    for n in plan.state:
        s = sin[n]
        plan.add_buffer(f"{n}@0", s.shape, s.dtype), plan.add_buffer(f"{n}@1", s.shape, s.dtype)
        if n == Z_INPUT:
            plan.add_buffer("z0", s.shape, s.dtype, host=True)
        elif n.endswith(".m") or n.endswith(".v"):
            plan.moments.append(n)
        else:
            plan.weights.append(n)
            plan.add_buffer(f"pristine:{n}", s.shape, s.dtype)


def _plan_per_step_scalars(plan: BufferPlan, sin: dict, scalars: set) -> None:
    """One buffer per scalar input of the step graph, (max(k, 1), stride): a 256-byte-aligned slot per step."""
    for n in sorted(scalars):
        if n not in sin:
            raise PlanError(f"scalar {n!r} is not an input of the step graph")
        item = np.dtype(sin[n].dtype).itemsize
        stride = -(-sin[n].nbytes // ALIGN) * ALIGN // item        # elements per 256-byte-aligned slot
        plan.add_buffer(f"per_step:{n}", (max(plan.k, 1), stride), sin[n].dtype)
        plan.per_step.append(n)


def _plan_readonly_weights(plan: BufferPlan, sin: dict) -> list:
    """The step graph's inputs with no other role (the weights a z-only step graph only reads), each with a
    pristine buffer; their names. PlanError for an Adam moment among them (read but never written)."""
    role_known = {FRAME_INPUT} | set(plan.state) | set(plan.per_step)
    readonly = [n for n in sin if n not in role_known]
    for n in readonly:
        if n.endswith(".m") or n.endswith(".v"):
            raise PlanError(f"Adam moment {n!r} is an input but the step graph never outputs {n + SUFFIX_OUT!r}")
        plan.add_buffer(f"pristine:{n}", sin[n].shape, sin[n].dtype)
    return readonly


def _step_bindings(plan: BufferPlan, t: int, readonly: list) -> dict:
    """{tensor name: Slot} of step t: it reads what t steps left and writes slot (t + 1) % 2, its scalars
    at slot t of their per-step buffers, read-only weights from their pristine copies."""
    b = {FRAME_INPUT: Slot(FRAME_INPUT)}
    for n in plan.state:
        b[n] = plan.slot_after(n, t)
        b[n + SUFFIX_OUT] = Slot(f"{n}@{(t + 1) % 2}")
    for n in plan.per_step:
        b[n] = Slot(f"per_step:{n}", t * plan.buffers[f"per_step:{n}"].nbytes // max(plan.k, 1))
    for n in readonly:
        b[n] = Slot(f"pristine:{n}")
    return b


def _plan_final(plan: BufferPlan, sin: dict, fin: dict, fout: dict, readonly: list) -> None:
    """The final graph's bindings (``plan.final``): the state after k steps (or the pristine weights) in,
    its outputs to pinned host buffers; the results to download (the outputs and the final z)."""
    fb = {}
    for n, s in fin.items():
        if n == FRAME_INPUT:
            fb[n] = Slot(FRAME_INPUT)
        elif n in plan.state:
            if (s.shape, s.dtype) != (sin[n].shape, sin[n].dtype):
                raise PlanError(f"final input {n!r} {s.shape} differs from the step state {sin[n].shape}")
            fb[n] = plan.slot_after(n, plan.k)
        elif n in readonly:
            fb[n] = Slot(f"pristine:{n}")
        else:
            raise PlanError(f"final graph input {n!r} is neither the frame, z, nor a weight of the step graph")
    for n, s in fout.items():
        plan.add_buffer(f"out:{n}", s.shape, s.dtype, host=True)
        fb[n] = Slot(f"out:{n}")
        plan.results[n] = f"out:{n}"
    plan.final = fb
    zfinal = plan.slot_after(Z_INPUT, plan.k).buffer      # the final latents come back too
    plan.buffers[zfinal].host = True
    plan.results[Z_INPUT] = zfinal
    plan.download = list(dict.fromkeys(plan.results.values()))


def _frame_ops(plan: BufferPlan) -> list:
    """The per-frame program (captured into the CUDA graph in this order): upload the frame and z0 and, with
    restore "copy", reset slot 0 (weights from their pristine copies, moments to zero)."""
    if plan.restore == "copy":
        ops = [("h2d", FRAME_INPUT), ("h2d_to", "z0", f"{Z_INPUT}@0")]
        ops += [("d2d", f"pristine:{n}", f"{n}@0") for n in plan.weights]
        ops += [("zero", f"{n}@0") for n in plan.moments]
        return ops
    return [("h2d", FRAME_INPUT), ("h2d", "z0")]


def _plan_forward(fin: dict, fout: dict, restore: str) -> BufferPlan:
    """k = 0 (the variant table's "forward"): the final graph alone, reading x and z0 from the host and
    the weights from their pristine copies (nothing changes them)."""
    if FRAME_INPUT not in fin or Z_INPUT not in fin:
        raise PlanError(f"the final graph needs the frame input {FRAME_INPUT!r} and the latent input {Z_INPUT!r}")
    plan = BufferPlan(k=0, restore=restore)
    B = plan.buffers
    B[FRAME_INPUT] = Buffer(FRAME_INPUT, fin[FRAME_INPUT].shape, fin[FRAME_INPUT].dtype, True)
    B["z0"] = Buffer("z0", fin[Z_INPUT].shape, fin[Z_INPUT].dtype, True)
    plan.final = {FRAME_INPUT: Slot(FRAME_INPUT), Z_INPUT: Slot("z0")}
    for n, s in fin.items():
        if n not in plan.final:
            B[f"pristine:{n}"] = Buffer(f"pristine:{n}", s.shape, s.dtype)
            plan.final[n] = Slot(f"pristine:{n}")
    for n, s in fout.items():
        B[f"out:{n}"] = Buffer(f"out:{n}", s.shape, s.dtype, True)
        plan.final[n] = Slot(f"out:{n}")
        plan.results[n] = f"out:{n}"
    plan.results[Z_INPUT] = "z0"
    plan.download = list(dict.fromkeys(plan.results.values()))
    plan.frame_ops = [("h2d", FRAME_INPUT), ("h2d", "z0")]
    return plan


def per_step_values(plan: BufferPlan, values: Callable[[int], dict]) -> dict:
    """Host arrays for the per-step buffers: ``values(t)`` -> {scalar name: value} for t = 0..k-1,
    each step's value at the start of its 256-byte slot."""
    out = {}
    steps = [values(t) for t in range(plan.k)]
    for n in plan.per_step:
        buf = plan.buffers[f"per_step:{n}"]
        arr = np.zeros(buf.shape, dtype=buf.dtype)
        for t, v in enumerate(steps):
            if n not in v:
                raise PlanError(f"no value for per-step input {n!r} at step {t}")
            val = np.asarray(v[n], dtype=buf.dtype).ravel()
            arr[t, :val.size] = val
        out[f"per_step:{n}"] = arr
    return out


# ----------------------------------------------------------------------------------------------
# CUDA (cuda-python); imported lazily
# ----------------------------------------------------------------------------------------------
def load_cudart():
    """``cuda.bindings.runtime`` (cuda-python >= 12.6) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python < 12.6
        return cudart
    except ImportError:
        raise GpuUnavailable("the TensorRT backend needs NVIDIA's cuda-python (module cuda.bindings), "
                             "which is not installed: pip install 'cuda-python>=12,<13' (on a Jetson: "
                             "see jetson/README.md)") from None


def _err_text(cudart, err) -> str:
    try:
        _, s = cudart.cudaGetErrorString(err)
        s = s.decode() if isinstance(s, bytes) else str(s)
    except Exception:  # noqa: BLE001 - best effort only
        s = ""
    name = getattr(err, "name", str(err))
    return f"{name} ({s})" if s else name


def check(cudart, result, what: str):
    """Unpack a cuda-python result tuple ``(err, *values)``; raise CudaError unless cudaSuccess."""
    if isinstance(result, tuple):
        err, rest = result[0], result[1:]
    else:
        err, rest = result, ()
    if err != cudart.cudaError_t.cudaSuccess:
        raise CudaError(f"{what} failed: {_err_text(cudart, err)}")
    return rest[0] if len(rest) == 1 else (rest or None)


def gpu_identity(device: int = 0, cudart=None) -> tuple:
    """(GPU name, "major.minor" compute capability). Raises GpuUnavailable with one clear reason."""
    cudart = cudart or load_cudart()
    res = cudart.cudaGetDeviceCount()
    err = res[0]
    if err != cudart.cudaError_t.cudaSuccess:
        raise GpuUnavailable(f"no usable NVIDIA GPU: CUDA reports {_err_text(cudart, err)} "
                             "(no NVIDIA driver, or no GPU visible to this process)")
    if res[1] <= device:
        raise GpuUnavailable(f"no NVIDIA GPU number {device}: CUDA sees {res[1]} device(s)")
    prop = check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = prop.name
    name = name.split(b"\0", 1)[0].decode(errors="replace") if isinstance(name, (bytes, bytearray)) else str(name)
    return name.strip(), f"{prop.major}.{prop.minor}"


class CudaGraph:
    """An instantiated CUDA graph (captured once, replayed per frame)."""

    def __init__(self, cudart, graph, graph_exec):
        self._cudart, self.graph, self.exec = cudart, graph, graph_exec

    def launch(self, stream) -> None:
        check(self._cudart, self._cudart.cudaGraphLaunch(self.exec, stream), "cudaGraphLaunch")

    def destroy(self) -> None:
        if self.exec is not None:
            check(self._cudart, self._cudart.cudaGraphExecDestroy(self.exec), "cudaGraphExecDestroy")
            check(self._cudart, self._cudart.cudaGraphDestroy(self.graph), "cudaGraphDestroy")
            self.exec = self.graph = None


class CudaBuffers:
    """Allocates a BufferPlan once: device buffers by name, pinned host mirrors, one stream.

    Nothing is allocated after construction: per frame the caller writes into the pinned host
    arrays (``host(name)``), enqueues copies (or replays the captured graph) and synchronizes.
    """

    def __init__(self, plan: BufferPlan, device: int = 0, cudart=None):
        self.cudart = cudart or load_cudart()
        self.plan = plan
        self.device_ptr: dict = {}
        self._host_ptr: dict = {}
        self._host: dict = {}
        self.stream = None
        c = self.cudart
        try:
            check(c, c.cudaSetDevice(device), "cudaSetDevice")
            self.stream = check(c, c.cudaStreamCreateWithFlags(c.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
            for name, buf in plan.buffers.items():
                self.device_ptr[name] = int(check(c, c.cudaMalloc(buf.nbytes), f"cudaMalloc({name}, {buf.nbytes} B)"))
                if buf.host:
                    ptr = int(check(c, c.cudaMallocHost(buf.nbytes), f"cudaMallocHost({name}, {buf.nbytes} B)"))
                    self._host_ptr[name] = ptr
                    ctype = np.ctypeslib.as_ctypes_type(np.dtype(buf.dtype))
                    view = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctype)), (max(1, int(np.prod(buf.shape))),))
                    self._host[name] = view[: int(np.prod(buf.shape))].reshape(buf.shape)
            if "zeros" in plan.buffers:      # the read-only zero moments of restore="bind"
                self.upload("zeros", np.zeros(plan.buffers["zeros"].shape, np.uint8))
        except Exception:
            self.close()
            raise

    # -- addresses and host views ------------------------------------------------------------------
    def address(self, slot: Slot) -> int:
        return self.device_ptr[slot.buffer] + slot.offset

    def host(self, name: str) -> np.ndarray:
        """The pinned host array of buffer ``name`` (write inputs into it with np.copyto)."""
        return self._host[name]

    # -- synchronous setup (load time) -------------------------------------------------------------
    def upload(self, name: str, array: np.ndarray) -> None:
        """Blocking copy of a host array into buffer ``name`` (load time only: pristine, per-step)."""
        buf = self.plan.buffers[name]
        a = np.ascontiguousarray(array, dtype=buf.dtype)
        if a.nbytes != buf.nbytes:
            raise PlanError(f"upload to {name!r}: {a.shape} {a.dtype} does not fill {buf.shape} {buf.dtype}")
        c = self.cudart
        check(c, c.cudaMemcpy(self.device_ptr[name], a.ctypes.data, a.nbytes,
                              c.cudaMemcpyKind.cudaMemcpyHostToDevice), f"cudaMemcpy(H2D {name})")

    def download(self, name: str) -> np.ndarray:
        """Blocking copy of buffer ``name`` to a new host array (diagnostics/tests, not per frame)."""
        buf = self.plan.buffers[name]
        out = np.empty(buf.shape, dtype=buf.dtype)
        c = self.cudart
        check(c, c.cudaMemcpy(out.ctypes.data, self.device_ptr[name], buf.nbytes,
                              c.cudaMemcpyKind.cudaMemcpyDeviceToHost), f"cudaMemcpy(D2H {name})")
        return out

    # -- asynchronous per-frame work on the one stream ---------------------------------------------
    def h2d(self, host_name: str, dev_name: Optional[str] = None) -> None:
        dev_name = dev_name or host_name
        n = self.plan.buffers[dev_name].nbytes
        c = self.cudart
        check(c, c.cudaMemcpyAsync(self.device_ptr[dev_name], self._host_ptr[host_name], n,
                                   c.cudaMemcpyKind.cudaMemcpyHostToDevice, self.stream), f"H2D {host_name}")

    def d2h(self, name: str) -> None:
        c = self.cudart
        check(c, c.cudaMemcpyAsync(self._host_ptr[name], self.device_ptr[name], self.plan.buffers[name].nbytes,
                                   c.cudaMemcpyKind.cudaMemcpyDeviceToHost, self.stream), f"D2H {name}")

    def d2d(self, src: str, dst: str) -> None:
        c = self.cudart
        check(c, c.cudaMemcpyAsync(self.device_ptr[dst], self.device_ptr[src], self.plan.buffers[dst].nbytes,
                                   c.cudaMemcpyKind.cudaMemcpyDeviceToDevice, self.stream), f"D2D {src} -> {dst}")

    def zero(self, name: str) -> None:
        c = self.cudart
        check(c, c.cudaMemsetAsync(self.device_ptr[name], 0, self.plan.buffers[name].nbytes, self.stream),
              f"memset {name}")

    def frame_prologue(self) -> None:
        """Enqueue the plan's per-frame program: upload x and z0, reset weights and moments."""
        for op in self.plan.frame_ops:
            if op[0] == "h2d":
                self.h2d(op[1])
            elif op[0] == "h2d_to":
                self.h2d(op[1], op[2])
            elif op[0] == "d2d":
                self.d2d(op[1], op[2])
            elif op[0] == "zero":
                self.zero(op[1])
            else:  # pragma: no cover - plan_search only emits the above
                raise PlanError(f"unknown frame op {op}")

    def frame_epilogue(self) -> None:
        """Enqueue the downloads of the results (final outputs, final z) into pinned host memory."""
        for name in self.plan.download:
            self.d2h(name)

    def results(self) -> dict:
        """Copies of the downloaded results by name (call after ``synchronize``)."""
        return {n: self._host[b].copy() for n, b in self.plan.results.items()}

    def synchronize(self) -> None:
        check(self.cudart, self.cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def capture(self, enqueue: Callable[[], None]) -> CudaGraph:
        """Capture everything ``enqueue()`` puts on the stream into one instantiated CUDA graph.

        Capture mode is thread-local: other threads (camera capture) may use CUDA meanwhile.
        If ``enqueue`` raises, capture is ended (and the partial graph discarded) before re-raising.
        """
        c = self.cudart
        check(c, c.cudaStreamBeginCapture(self.stream, c.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal),
              "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            res = c.cudaStreamEndCapture(self.stream)
            if res[0] == c.cudaError_t.cudaSuccess and res[1] is not None:
                c.cudaGraphDestroy(res[1])
            raise
        graph = check(c, c.cudaStreamEndCapture(self.stream), "cudaStreamEndCapture")
        # cudaGraphInstantiateWithFlags has the same signature in CUDA 11.4+ and 12.x (JetPack 5 and 6);
        # cudaGraphInstantiate's changed between them
        graph_exec = check(c, c.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags")
        return CudaGraph(c, graph, graph_exec)

    def close(self) -> None:
        """Free everything (idempotent); errors while freeing are ignored."""
        c = self.cudart
        for ptr in self.device_ptr.values():
            c.cudaFree(ptr)
        for ptr in self._host_ptr.values():
            c.cudaFreeHost(ptr)
        self.device_ptr, self._host_ptr, self._host = {}, {}, {}
        if self.stream is not None:
            c.cudaStreamDestroy(self.stream)
            self.stream = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
