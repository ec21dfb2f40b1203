"""The ADGAN-RGBD search as ONNX graphs, written op by op (NumPy + onnx only, no torch).

Why hand-built and not ``torch.onnx.export``: the exporters cannot export ``autograd.grad``, and the
two routes that work carry silent-corruption traps (the dynamo optimiser deletes Adam's ``+ eps``;
the legacy exporter demotes float64 scalars to float32). Here every op is chosen explicitly, Adam's
hyper-parameters (eps included) are graph *inputs* computed in float64 by the host, and the same
builder emits float32 (deployment) and float64 (maths check against the float64 reference) graphs.
``verify_graph`` checks both properties on any graph and is what the tests and the exporter run.

Layout (S = n_seed, every seed owns its weights, z and Adam moments; seeds never mix):
  z                    (S, 1, z_dim)
  ConvT weight l       (S, C_in, C_out*16)   the torch [C_in, C_out, 4, 4] weight, flattened;
                       split along C_in into row chunks ``W{l}.c{i}`` (cache-sized Adam chains)
  BN gamma/beta l      (S, C_l);  last bias (S, channels)
  activations          (S, C, H, W)
A ConvTranspose(k4, s2, p1) is one batched GEMM ``cols = W^T A`` (S, C_out*16, H_in*W_in) and a
col2im by stride-2 sub-pixel slices; its backward shares one im2col of dY:
``dA = W colD`` and ``dW = A colD^T``. BatchNorm is eval-mode (running statistics are constants).

Adam is torch.optim.Adam's update in 10 elementwise passes per tensor (scaled moments, see ``adam``);
weight chunks of ~1 MiB keep each tensor's Adam chain in cache (measured 1.56 -> 1.19 s/frame at
width 32 against no chunking).

Graphs: ``step`` (one Adam step on z and on all weights), ``step_z`` (lr_theta = 0: weights are
read-only inputs, no weight gradients), ``final`` (per-seed loss, error map, reconstructions),
``unrolled`` (k steps and the final pass in one graph; optional), ``grad`` / ``grad_z`` (gradients
only, for the runtime's fused-adam search, which applies Adam on the host).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_ad.runtime.weights_layout import to_gemm, to_panels

OPSET = 18
# Arch.panel applies to the stride-2 layers with at most this many input positions (layers 1-2 at
# 64x64): measured in the gradient graph, width 32, grad step: panels for layer 1 -1.6 to -2.4 ms,
# also layer 2 another -0.8 to -1.5 ms, layers 3-4 too: no consistent gain
PANEL_MAX_P = 64
BN_EPS = 1e-5
HEAD_LAYERS = 2     # layers 0-1 (z -> 4x4 -> 8x8) run on the host in the host-head search (runtime/backends/host_head.py)
# Adam's hyper-parameters per step, all graph inputs (scalars of the graph dtype), computed by
# the host in float64 (runtime.config.adam_bias_corrections) and cast once.
SCALARS = ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps",
           "step_size_z", "step_size_theta", "inv_sqrt_bc2")

_ONNX_DTYPE = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}


@dataclass(frozen=True)
class StateTensor:
    """One stacked parameter tensor of the search state (a column chunk of a ConvT weight, or a
    whole BatchNorm/bias vector)."""

    name: str            # ONNX input name, e.g. "W2.c0"
    param: str           # torch parameter name, e.g. "gen.2.0.weight"
    shape: tuple         # stacked shape (S, ...)
    cols: Optional[tuple] = None  # (start, stop) in the flattened GEMM column order, for weights
    panel: int = 0       # > 0: stored as column panels (S, cols // panel, C_in, panel), see Arch.panel


@dataclass
class Arch:
    """Everything the builder needs to know about a generator."""

    z_dim: int
    widths: tuple        # output channels of the 5 ConvT layers: fg*16, fg*8, fg*4, fg*2, channels
    n_seed: int
    resolution: int = 64
    chunk_bytes: int = 1 << 20   # target bytes of one weight chunk (all seeds); 0 = no chunking
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float32))
    # GEMM column order of the stride-2 layers (runtime.weights_layout): "d2s" (a, c', b, d, c) with
    # DepthToSpace/SpaceToDepth shuffles (every backend), or "col2im" (torch's (c, kh, kw)) with the
    # ONNX Col2Im op in the forward pass: 4-7x faster col2im in onnxruntime's CPU EP (measured), but
    # TensorRT has no Col2Im, so only the CPU-only fused-adam graphs use it
    col_order: str = "d2s"
    # > 0: the weights of the layers with few input positions (P <= PANEL_MAX_P, one chunk) are stored
    # as column panels (S, N / panel, C_in, panel) and their GEMMs run batched over the panels:
    # onnxruntime then never repacks a multi-MB weight for a product with P rows (layer 1 at width 32:
    # 8 MB for 16 rows). CPU-only fused-adam graphs; the host's Adam is elementwise, any layout works.
    panel: int = 0

    @property
    def channels(self) -> int:
        return self.widths[-1]

    def layer_io(self, l: int) -> tuple[int, int, int]:
        """(C_in, C_out, H_in) of ConvT layer l (H_in = 1 for the z layer)."""
        cin = self.z_dim if l == 0 else self.widths[l - 1]
        return cin, self.widths[l], 1 if l == 0 else 4 * 2 ** (l - 1)

    def col_chunks(self, l: int) -> list[tuple[int, int]]:
        """Column ranges of layer l's (C_in, C_out*16) weight, ~chunk_bytes each (all seeds)."""
        cin, cout, _ = self.layer_io(l)
        n = cout * 16
        col_bytes = self.n_seed * cin * np.dtype(self.dtype).itemsize
        step = n if self.chunk_bytes <= 0 else max(16, (self.chunk_bytes // col_bytes) // 16 * 16)
        return [(a, min(a + step, n)) for a in range(0, n, step)]

    def panel_layer(self, l: int) -> bool:
        """True if layer l's weight is stored as column panels (stride-2 layer with P <= PANEL_MAX_P
        input positions, one chunk, panel width dividing its 16 * C_out columns)."""
        cin, cout, hin = self.layer_io(l)
        return (self.panel > 0 and l > 0 and hin * hin <= PANEL_MAX_P and len(self.col_chunks(l)) == 1
                and (cout * 16) % self.panel == 0)

    def state(self) -> list[StateTensor]:
        """The parameter state tensors in a fixed order (weights, BN gamma/beta, last bias)."""
        S, out = self.n_seed, []
        for l in range(5):
            cin, cout, _ = self.layer_io(l)
            conv = f"gen.{l}.0.weight" if l < 4 else "gen.4.weight"
            panels = self.panel_layer(l)
            for i, (a, b) in enumerate(self.col_chunks(l)):
                if panels:
                    out.append(StateTensor(f"W{l}.c{i}", conv, (S, (b - a) // self.panel, cin, self.panel), (a, b),
                                           self.panel))
                else:
                    out.append(StateTensor(f"W{l}.c{i}", conv, (S, cin, b - a), (a, b)))
            if l < 4:
                out.append(StateTensor(f"bn{l}.gamma", f"gen.{l}.1.weight", (S, cout)))
                out.append(StateTensor(f"bn{l}.beta", f"gen.{l}.1.bias", (S, cout)))
        out.append(StateTensor("bias4", "gen.4.bias", (S, self.channels)))
        return out


def stack_state(arch: Arch, params: dict) -> dict[str, np.ndarray]:
    """Per-seed stacked state arrays from single-copy torch-layout parameters (NumPy arrays)."""
    out = {}
    for st in arch.state():
        p = np.asarray(params[st.param], dtype=np.float64)
        if st.cols is not None:
            p = to_gemm(p, int(st.param.split(".")[1]), arch.col_order)[:, st.cols[0]:st.cols[1]]
            if st.panel:                                                  # (C_in, N) -> (N / panel, C_in, panel)
                p = to_panels(p, st.panel)
        out[st.name] = np.ascontiguousarray(np.broadcast_to(p, st.shape).astype(arch.dtype))
    return out


class _Builder:
    def __init__(self, arch: Arch):
        self.arch, self.dt = arch, np.dtype(arch.dtype)
        self.odt = _ONNX_DTYPE[self.dt]
        self.nodes, self.inits, self.inputs, self.outputs = [], [], [], []
        self._n, self._i64 = 0, {}
        self.scope = "fwd"   # node-name prefix (fwd/bwd/adam/loss), for profiles

    # -- primitives --------------------------------------------------------------------------
    def op(self, op_type: str, inputs: list, out: Optional[str] = None, **attrs) -> str:
        self._n += 1
        out = out or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{self.scope}/n{self._n}_{op_type}", **attrs))
        return out

    def const(self, value, name: str) -> str:
        arr = np.asarray(value, dtype=self.dt)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def i64(self, values) -> str:
        key = tuple(int(v) for v in np.atleast_1d(values))
        if key not in self._i64:
            name = f"i64_{len(self._i64)}"
            self.inits.append(numpy_helper.from_array(np.array(key, dtype=np.int64), name))
            self._i64[key] = name
        return self._i64[key]

    def input(self, name: str, shape) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, self.odt, list(shape)))
        return name

    def output(self, src: str, name: str, shape) -> str:
        if src != name:
            self.op("Identity", [src], name)
        self.outputs.append(helper.make_tensor_value_info(name, self.odt, list(shape)))
        return name

    def reshape(self, x, shape):
        return self.op("Reshape", [x, self.i64(shape)])

    def slice(self, x, starts, ends, axes):
        return self.op("Slice", [x, self.i64(starts), self.i64(ends), self.i64(axes)])

    def transpose(self, x, perm):
        return self.op("Transpose", [x], perm=list(perm))

    def sum(self, xs):
        return xs[0] if len(xs) == 1 else self.op("Sum", xs)

    # -- stride-2, kernel-4, pad-1 transposed convolution pieces -----------------------------
    def col2im(self, cols, cout, hin):
        """cols (S, 16*C, h*h), rows (a, c', b, d, c) -> (S, C, 2h, 2h), overlaps summed.

        Output pixel o = 2(i + a) + b - 1: DepthToSpace interleaves (b, d), then the four (a, c')
        images are shifted by (2a - 1, 2c' - 1) pixels and added. Column order "col2im": rows
        (c, kh, kw), one Col2Im op (kernel 4, stride 2, pad 1: the transposed convolution's fold)."""
        S = self.arch.n_seed
        if self.arch.col_order == "col2im":
            return self.op("Col2Im", [cols, self.i64([2 * hin, 2 * hin]), self.i64([4, 4])],
                           strides=[2, 2], pads=[1, 1, 1, 1])
        t = self.reshape(cols, [S * 4, 4 * cout, hin, hin])
        t = self.op("DepthToSpace", [t], blocksize=2, mode="DCR")          # (4S, C, 2h, 2h)
        t = self.reshape(t, [S, 4, cout, 2 * hin, 2 * hin])
        t = self.op("Pad", [t, self.i64([0, 0, 0, 1, 1, 0, 0, 0, 1, 1])])   # (S, 4, C, 2h+2, 2h+2)
        parts = [self.slice(t, [2 * a + c, 2 - 2 * a, 2 - 2 * c], [2 * a + c + 1, 2 - 2 * a + 2 * hin,
                                                                   2 - 2 * c + 2 * hin], [1, 3, 4])
                 for a in (0, 1) for c in (0, 1)]
        return self.reshape(self.sum(parts), [S, cout, 2 * hin, 2 * hin])

    def im2col(self, dy, cout, hin):
        """dY (S, C, 2h, 2h) -> colD (S, 16*C, h*h): colD[(a,c',b,d,c),(i,j)] = dYpad[c, 2(i+a)+b, 2(j+c')+d]."""
        S = self.arch.n_seed
        if self.arch.col_order == "col2im":
            # rows (c, kh, kw): a stride-2 Conv of every channel with the 16 one-hot 4x4 kernels is
            # exactly the im2col (products with 1 and sums with 0; measured 1.5-2.6x faster than
            # Pad + SpaceToDepth + Slices + Concat + Transpose in onnxruntime)
            eye = self.const(np.eye(16).reshape(16, 1, 4, 4), f"onehot4x4_{self._n}")
            t = self.op("Conv", [self.reshape(dy, [S * cout, 1, 2 * hin, 2 * hin]), eye],
                        strides=[2, 2], pads=[1, 1, 1, 1])                  # (S C, (kh, kw), h, h)
            return self.reshape(t, [S, cout * 16, hin * hin])
        p = self.op("Pad", [dy, self.i64([0, 0, 1, 1, 0, 0, 1, 1])])         # (S, C, 2h+2, 2h+2)
        t = self.op("SpaceToDepth", [p], blocksize=2)                        # (S, (b, d, c), h+1, h+1)
        parts = [self.slice(t, [a, c], [a + hin, c + hin], [2, 3]) for a in (0, 1) for c in (0, 1)]
        return self.reshape(self.op("Concat", parts, axis=1), [S, cout * 16, hin * hin])


def _state_names(arch: Arch) -> list[str]:
    return [st.name for st in arch.state()]


def head_state_names(arch: Arch) -> list[str]:
    """The state tensors of the host head (layers 0 .. HEAD_LAYERS - 1, with their BatchNorms but the last's)."""
    names = _state_names(arch)
    return names[:names.index(f"bn{HEAD_LAYERS - 1}.gamma")]


def tail_state_names(arch: Arch) -> list[str]:
    """The state tensors of the tail graphs (grad_tail / grad_z_tail): the rest, from bn1.gamma on."""
    names = _state_names(arch)
    return names[names.index(f"bn{HEAD_LAYERS - 1}.gamma"):]


STEP_KINDS = ("step", "step_z")
GRAD_KINDS = ("grad", "grad_z", "grad_tail", "grad_z_tail")


def _build(arch: Arch, kind: str, k: int = 0) -> "_Builder":
    """kind: 'step' | 'step_z' | 'final' | 'unrolled' (k steps, then the final pass) | 'grad' (the
    gradients of the summed seed losses w.r.t. z and every state tensor, no Adam: the host applies it)
    | 'grad_z' (the gradient w.r.t. z only: lr_theta = 0) | 'grad_tail' / 'grad_z_tail': 'grad' / 'grad_z'
    for layers 2-4 only (HEAD_LAYERS = 0-1 run on the host, runtime/backends/host_head.py): the input "a1" is layer
    1's transposed-convolution output (S, C1, 8, 8) before BN1, the outputs are "a1.grad" and the
    gradients of the tail's state tensors (bn1.gamma onwards).

    The graph's inputs are declared first (_SearchGraph), then one kind's passes are chained:
    final: forward -> losses; step / step_z: forward -> backward -> Adam on z (and on the state);
    grad*: forward -> backward -> the gradients; unrolled: k x (forward -> backward -> Adam) -> final."""
    g = _SearchGraph(arch, kind, k)
    if kind == "final":
        g.final_outputs(g.P, g.z)
    elif kind in STEP_KINDS:
        g.step_outputs()
    elif kind in GRAD_KINDS:
        g.grad_outputs()
    elif kind == "unrolled":
        g.unrolled_outputs(k)
    else:
        raise ValueError(f"unknown graph kind {kind!r}")
    return g.b


class _SearchGraph:
    """One search graph being built (``_build``): its inputs and the passes chained into it.

    S seeds, C channels, R resolution; the search state is the stacked tensors of ``arch.state()``
    (weight column chunks and BatchNorm / bias vectors, one copy per seed); a tail graph (grad_tail,
    grad_z_tail) has only the state from bn{HEAD_LAYERS - 1}.gamma on and starts at layer HEAD_LAYERS."""

    def __init__(self, arch: Arch, kind: str, k: int):
        self.b = b = _Builder(arch)
        self.arch, self.kind = arch, kind
        self.S, self.R, self.C = arch.n_seed, arch.resolution, arch.channels
        self.tail = kind in ("grad_tail", "grad_z_tail")
        self.first = HEAD_LAYERS if self.tail else 0           # the first layer this graph computes
        self.states = [st for st in arch.state() if not self.tail or st.name in tail_state_names(arch)]
        self.shapes = {st.name: st.shape for st in self.states}
        self._declare_inputs(k)
        # per BN layer: the names of its running mean and 1 / sqrt(var + eps), filled by build_graph via initializers
        self.bn_consts = {l: (f"bn{l}.mean", f"bn{l}.inv_std") for l in range(4)}
        self.chunks = {l: [st for st in self.states if st.name.startswith(f"W{l}.c")] for l in range(5)}
        self.coef_cache = {}
        numel = self.C * self.R * self.R
        self.two_over_n = b.const(2.0 / numel, "two_over_numel") if kind != "final" else None

    def _declare_inputs(self, k: int) -> None:
        """The graph inputs, in this order: x (C, R, R); z (S, 1, z_dim), or a tail graph's a1
        (S, C1, 8, 8); the state tensors P; then a step's Adam inputs: the SCALARS (), the moments
        z.m / z.v (S, 1, z_dim) and ('step') every state tensor's .m / .v; the unrolled graph's
        per-step scalars are (k,) vectors (step t reads element t) besides five constant scalars."""
        b, arch, kind, S, shapes = self.b, self.arch, self.kind, self.S, self.shapes
        self.x = b.input("x", [self.C, self.R, self.R])
        if self.tail:
            self.z = b.input("a1", [S, arch.widths[HEAD_LAYERS - 1], 8, 8])   # layer 1's ConvT output, before BN1
        else:
            self.z = b.input("z", [S, 1, arch.z_dim])
        self.P = P = {st.name: b.input(st.name, shapes[st.name]) for st in self.states}
        if kind not in ("final",) + GRAD_KINDS:
            self.sc = {n: b.input(n, []) for n in SCALARS if kind != "unrolled"}
            self.mz, self.vz = b.input("z.m", [S, 1, arch.z_dim]), b.input("z.v", [S, 1, arch.z_dim])
            self.M = {n: b.input(n + ".m", shapes[n]) for n in P} if kind == "step" else {}
            self.V = {n: b.input(n + ".v", shapes[n]) for n in P} if kind == "step" else {}
            if kind == "unrolled":
                # per-step scalars as (k,) vectors; step t reads element t
                self.vec = {n: b.input(n, [k]) for n in ("step_size_z", "step_size_theta", "inv_sqrt_bc2")}
                self.const = {n: b.input(n, []) for n in ("beta1", "one_minus_beta1", "beta2", "one_minus_beta2",
                                                         "eps")}
                self.M = {n: b.input(n + ".m", shapes[n]) for n in P}
                self.V = {n: b.input(n + ".v", shapes[n]) for n in P}

    # -- the graph of each kind ---------------------------------------------------------------
    def final_outputs(self, P: dict, z: str) -> None:
        """The final pass: seed_losses (S,) = per-seed MSE, error_map (R, R) = the squared error averaged
        over seeds and channels, recon (S, C, R, R)."""
        b, S, C, R, x = self.b, self.S, self.C, self.R, self.x
        recon, _ = self.forward(P, z)
        diff = b.op("Sub", [recon, x])
        sq = b.op("Mul", [diff, diff])
        b.output(b.op("ReduceMean", [sq, b.i64([1, 2, 3])], keepdims=0), "seed_losses", [S])
        b.output(b.op("ReduceMean", [sq, b.i64([0, 1])], keepdims=0), "error_map", [R, R])
        b.output(recon, "recon", [S, C, R, R])

    def step_outputs(self) -> None:
        """One Adam step: z.out, z.m.out, z.v.out (S, 1, z_dim), and for 'step' (lr_theta > 0) every state
        tensor's n.out, n.m.out, n.v.out (its own shape)."""
        b, S, P, z, sc, shapes = self.b, self.S, self.P, self.z, self.sc, self.shapes
        learn_theta = self.kind == "step"
        recon, saved = self.forward(P, z)
        grads = self.backward(P, z, recon, saved, learn_theta, self.two_over_n)
        z_out = ("z.out", "z.m.out", "z.v.out")
        self.adam(z, self.mz, self.vz, grads["z"], sc["step_size_z"], sc, z_out)
        b.outputs += [helper.make_tensor_value_info(n, b.odt, [S, 1, self.arch.z_dim]) for n in z_out]
        if learn_theta:
            M, V = self.M, self.V
            for n in P:
                outs = (n + ".out", n + ".m.out", n + ".v.out")
                self.adam(P[n], M[n], V[n], grads[n], sc["step_size_theta"], sc, outs)
                b.outputs += [helper.make_tensor_value_info(o, b.odt, list(shapes[n])) for o in outs]

    def grad_outputs(self) -> None:
        """The gradients of the summed seed losses: z.grad (S, 1, z_dim), or a tail graph's a1.grad
        (S, C1, 8, 8); for 'grad' / 'grad_tail' also every state tensor's n.grad (its own shape)."""
        b, S, P, z, kind = self.b, self.S, self.P, self.z, self.kind
        recon, saved = self.forward(P, z)
        grads = self.backward(P, z, recon, saved, kind in ("grad", "grad_tail"), self.two_over_n)
        if self.tail:
            b.output(grads["a1"], "a1.grad", [S, self.arch.widths[HEAD_LAYERS - 1], 8, 8])
        else:
            b.output(grads["z"], "z.grad", [S, 1, self.arch.z_dim])
        if kind in ("grad", "grad_tail"):
            for n in P:
                b.output(grads[n], n + ".grad", self.shapes[n])

    def unrolled_outputs(self, k: int) -> None:
        """k Adam steps on z and the state in one graph, then the final pass's outputs and z.out (S, 1, z_dim)."""
        b = self.b
        zt, Pt = self.z, dict(self.P)
        mzt, vzt, Mt, Vt = self.mz, self.vz, dict(self.M), dict(self.V)
        for t in range(k):
            s = dict(self.const)
            for n in self.vec:
                s[n] = b.op("Gather", [self.vec[n], b.i64([t])], axis=0)
                s[n] = b.reshape(s[n], [])
            recon, saved = self.forward(Pt, zt)
            grads = self.backward(Pt, zt, recon, saved, True, self.two_over_n)
            zt, mzt, vzt = self.adam(zt, mzt, vzt, grads["z"], s["step_size_z"], s)
            for n in list(Pt):
                Pt[n], Mt[n], Vt[n] = self.adam(Pt[n], Mt[n], Vt[n], grads[n], s["step_size_theta"], s)
        self.final_outputs(Pt, zt)
        b.output(zt, "z.out", [self.S, 1, self.arch.z_dim])

    # -- the passes ---------------------------------------------------------------------------
    def _cat(self, xs, axis):
        return xs[0] if len(xs) == 1 else self.b.op("Concat", xs, axis=axis)

    def _part(self, t, st, axis):
        """The columns of t that belong to weight chunk st."""
        n = st.cols[1] - st.cols[0]
        full = self.arch.layer_io(int(st.param.split(".")[1]))[1] * 16
        return t if n == full else self.b.slice(t, [st.cols[0]], [st.cols[1]], [axis])

    def forward(self, P: dict, z: str):
        """Returns recon (S, C, R, R) and what the backward pass needs: saved[f"A{l}"] (S, C_in, P) the
        input of layer l's GEMM, saved[f"bn{l}"] = (xhat, relu output, gamma as (S, C, 1, 1))."""
        b, arch, S, first = self.b, self.arch, self.S, self.first
        b.scope = "fwd"
        saved = {}
        if first == 0:
            # layer 0: z (S, 1, z_dim) @ W0 (S, z_dim, N0) -> (S, C0, 4, 4)
            cin, cout, _ = arch.layer_io(0)
            y = self._cat([b.op("MatMul", [z, P[st.name]]) for st in self.chunks[0]], 2)   # (S, 1, C0*16)
            h = b.reshape(y, [S, cout, 4, 4])
        else:                                 # the tail: layer first - 1's ConvT output is the input
            cin, cout, _ = arch.layer_io(first - 1)
            h = z
        for l in range(max(first - 1, 0), 5):
            if l > 0 and l >= first:
                cin, cout, hin = arch.layer_io(l)
                A = b.reshape(a, [S, cin, hin * hin])                         # (S, C_in, P)
                h = b.col2im(self._conv_t_columns(l, A, P), cout, hin)        # (S, C_out, 2h, 2h)
                saved[f"A{l}"] = A
            if l < 4:
                a = self._bn_relu(l, h, P, cout, saved)
            else:
                h = b.op("Add", [h, b.reshape(P["bias4"], [S, cout, 1, 1])])
                recon = b.op("Tanh", [h])
        return recon, saved

    def _conv_t_columns(self, l: int, A: str, P: dict) -> str:
        """Layer l's transposed-convolution GEMM: A (S, C_in, P) -> cols (S, 16*C_out, P), with its weight
        in column panels, in chunks with A^T W (thin layers, P <= 16) or in chunks with W^T A."""
        b, S, chunks = self.b, self.S, self.chunks
        cin, _, hin = self.arch.layer_io(l)
        if self.arch.panel_layer(l):
            st = chunks[l][0]
            nb, pw = st.shape[1], st.shape[3]
            AT = b.reshape(b.transpose(A, [0, 2, 1]), [S, 1, hin * hin, cin])        # (S, 1, P, C_in)
            y = b.op("MatMul", [AT, P[st.name]])                      # (S, nb, P, panel)
            return b.reshape(b.transpose(y, [0, 1, 3, 2]), [S, nb * pw, hin * hin])  # (S, 16*C_out, P)
        if hin * hin <= 16:
            # thin layer (P <= 16): A^T W per chunk is the faster GEMM orientation (measured
            # 8.4 -> 5.6 ms at width 32), then one small transpose of the columns
            AT = b.transpose(A, [0, 2, 1])                            # (S, P, C_in)
            return b.transpose(self._cat([b.op("MatMul", [AT, P[st.name]]) for st in chunks[l]], 2),
                               [0, 2, 1])                             # (S, 16*C_out, P)
        return self._cat([b.op("MatMul", [b.transpose(P[st.name], [0, 2, 1]), A])
                          for st in chunks[l]], 1)                    # (S, 16*C_out, P)

    def _bn_relu(self, l: int, h: str, P: dict, cout: int, saved: dict) -> str:
        """Eval-mode BatchNorm l (running statistics, per-seed gamma / beta) and ReLU of h (S, C_out, H, W);
        keeps (xhat, output, gamma (S, C_out, 1, 1)) in saved[f"bn{l}"] for the backward pass."""
        b, S = self.b, self.S
        mean, inv_std = self.bn_consts[l]
        g4 = b.reshape(P[f"bn{l}.gamma"], [S, cout, 1, 1])
        xhat = b.op("Mul", [b.op("Sub", [h, mean]), inv_std])
        yb = b.op("Add", [b.op("Mul", [xhat, g4]), b.reshape(P[f"bn{l}.beta"], [S, cout, 1, 1])])
        a = b.op("Relu", [yb])
        saved[f"bn{l}"] = (xhat, a, g4)
        return a

    def backward(self, P: dict, z_in: str, recon: str, saved: dict, want_theta: bool, gscale) -> dict:
        """Gradients of sum_j loss_j w.r.t. z (S, 1, z_dim) (a tail graph: a1) and (optionally) every state
        tensor, layer 4 down to layer 0 (or the tail's input)."""
        b, arch, S, first, bn_consts = self.b, self.arch, self.S, self.first, self.bn_consts
        grads = {}
        b.scope = "bwd"
        diff = b.op("Sub", [recon, self.x])
        d = b.op("Mul", [diff, gscale])                                         # d loss / d recon
        d = b.op("Mul", [d, b.op("Sub", [b.const(1.0, f"one_{b._n}"), b.op("Mul", [recon, recon])])])
        for l in range(4, max(first - 1, 0) - 1, -1):
            cin, cout, hin = arch.layer_io(l)
            if l < 4:
                xhat, a, g4 = saved[f"bn{l}"]
                zero = b.const(0.0, f"zero_{b._n}")
                d = b.op("Where", [b.op("Greater", [a, zero]), d, zero])       # ReLU'
                if want_theta:
                    grads[f"bn{l}.gamma"] = b.op("ReduceSum", [b.op("Mul", [d, xhat]), b.i64([2, 3])], keepdims=0)
                    grads[f"bn{l}.beta"] = b.op("ReduceSum", [d, b.i64([2, 3])], keepdims=0)
                d = b.op("Mul", [d, b.op("Mul", [g4, bn_consts[l][1]])])       # d loss / d h_l
            elif want_theta:
                grads["bias4"] = b.op("ReduceSum", [d, b.i64([2, 3])], keepdims=0)
            if l == first - 1:                # the tail ends at its input: d loss / d a1
                grads["a1"] = d
                break
            if l == 0:
                self._layer0_backward(P, z_in, d, cout, want_theta, grads)
                break
            d = self._conv_t_backward(l, P, d, saved, want_theta, grads)
        return grads

    def _layer0_backward(self, P: dict, z_in: str, d: str, cout: int, want_theta: bool, grads: dict) -> None:
        """Layer 0 (z @ W0): grads["z"] (S, 1, z_dim) from d (S, C0, 4, 4), and W0's chunks' (S, z_dim, cols)."""
        b, S, chunks = self.b, self.S, self.chunks
        dy = b.reshape(d, [S, 1, cout * 16])
        dys = [self._part(dy, st, 2) for st in chunks[0]]
        grads["z"] = b.sum([b.op("MatMul", [dyc, b.transpose(P[st.name], [0, 2, 1])])
                            for dyc, st in zip(dys, chunks[0])])     # (S, 1, z_dim)
        if want_theta:
            zT = b.transpose(z_in, [0, 2, 1])
            for dyc, st in zip(dys, chunks[0]):
                grads[st.name] = b.op("MatMul", [zT, dyc])           # (S, z_dim, cols)

    def _conv_t_backward(self, l: int, P: dict, d: str, saved: dict, want_theta: bool, grads: dict) -> str:
        """Layer l's transposed convolution backwards: d loss / d h_l (S, C_out, 2h, 2h) -> d loss / d A_l
        (S, C_in, h, h); with want_theta the weight's gradient per panel block or chunk (its own shape)."""
        b, S, chunks = self.b, self.S, self.chunks
        cin, cout, hin = self.arch.layer_io(l)
        colD = b.im2col(d, cout, hin)                                     # (S, 16*C_out, P)
        if self.arch.panel_layer(l):
            st = chunks[l][0]
            nb, pw = st.shape[1], st.shape[3]
            Db = b.reshape(colD, [S, nb, pw, hin * hin])                    # (S, nb, panel, P)
            if want_theta:                                                # (S, nb, C_in, panel)
                grads[st.name] = b.op("MatMul", [b.reshape(saved[f"A{l}"], [S, 1, cin, hin * hin]),
                                                 b.transpose(Db, [0, 1, 3, 2])])
            # sum over the panels as a (1 x nb) GEMV: onnxruntime's ReduceSum over a middle axis
            # took 5 ms here, this 0.3 ms
            per_panel = b.reshape(b.op("MatMul", [P[st.name], Db]), [S, nb, cin * hin * hin])   # (S, nb, C_in P)
            dA = b.reshape(b.op("MatMul", [b.const(np.ones((1, nb)), f"ones_{b._n}"), per_panel]),
                           [S, cin, hin * hin])                           # (S, C_in, P)
            return b.reshape(dA, [S, cin, hin, hin])
        cds = [self._part(colD, st, 1) for st in chunks[l]]
        if want_theta:
            for cd, st in zip(cds, chunks[l]):
                grads[st.name] = b.op("MatMul", [saved[f"A{l}"], b.transpose(cd, [0, 2, 1])])
        dA = b.sum([b.op("MatMul", [P[st.name], cd]) for cd, st in zip(cds, chunks[l])])  # (S, C_in, P)
        return b.reshape(dA, [S, cin, hin, hin])                            # d loss / d A_l

    def adam_coefs(self, step_size, s):
        """Per-group scalars, computed once per step in the graph from the host's inputs:
        alpha = sqrt(1 - beta2) * inv_sqrt_bc2 / k and eps / k with k = max(step, tiny) * (1 - beta1)."""
        b = self.b
        key = (step_size, id(s))
        if key not in self.coef_cache:
            b.scope = "adam"
            k = b.op("Mul", [b.op("Max", [step_size, b.const(1e-30, f"tiny_{b._n}")]), s["one_minus_beta1"]])
            alpha = b.op("Div", [b.op("Mul", [b.op("Sqrt", [s["one_minus_beta2"]]), s["inv_sqrt_bc2"]]), k])
            self.coef_cache[key] = (alpha, b.op("Div", [s["eps"], k]))
        return self.coef_cache[key]

    def adam(self, p, m, v, g, step_size, s, out=None):
        """torch.optim.Adam (no weight decay, no amsgrad) in 10 elementwise passes: returns (p', m', v').

        The moment state is kept scaled, m~ = m / (1 - beta1) and v~ = v / (1 - beta2) (both start
        at zero like torch's), so that m~' = beta1 m~ + g, v~' = beta2 v~ + g^2 and
        p' = p - step m / (sqrt(v) / sqrt(bc2) + eps) = p - m~' / (alpha sqrt(v~') + eps / k)."""
        b = self.b
        alpha, eps_k = self.adam_coefs(step_size, s)
        b.scope = "adam"
        m1 = b.op("Add", [b.op("Mul", [m, s["beta1"]]), g], out and out[1])
        v1 = b.op("Add", [b.op("Mul", [v, s["beta2"]]), b.op("Mul", [g, g])], out and out[2])
        den = b.op("Add", [b.op("Mul", [b.op("Sqrt", [v1]), alpha]), eps_k])
        p1 = b.op("Sub", [p, b.op("Div", [m1, den])], out and out[0])
        return p1, m1, v1


def build_graph(arch: Arch, kind: str, bn_stats: dict, k: int = 0) -> onnx.ModelProto:
    """Build one graph. bn_stats: {l: (running_mean[C], running_var[C])} for l = 0..3 (NumPy)."""
    b = _build(arch, kind, k)
    for l in range(4):
        mean, var = (np.asarray(t, dtype=np.float64) for t in bn_stats[l])
        # computed in float64, stored in the graph dtype (never demoted through float32)
        b.const(mean.reshape(1, -1, 1, 1), f"bn{l}.mean")
        b.const((1.0 / np.sqrt(var + BN_EPS)).reshape(1, -1, 1, 1), f"bn{l}.inv_std")
    graph = helper.make_graph(b.nodes, f"adgan_{kind}", b.inputs, b.outputs, b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-ad", producer_version=producer_version())
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


def producer_version() -> str:
    """The ONNX files' producer_version: this edge-ad's version ("unknown" if it cannot be read)."""
    try:
        from edge_ad import __version__
        return __version__
    except Exception:  # pragma: no cover
        return "unknown"


def eps_closure(model: onnx.ModelProto) -> set:
    """Names of Adam's eps in a graph: the ``eps`` input or a float constant in (0, 1e-6), and every
    scalar derived from it by Mul/Div/Cast/Identity (e.g. eps / step)."""
    g = model.graph
    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    found = {vi.name for vi in g.input if vi.name == "eps"}
    found |= {t.name for t in g.initializer if t.data_type in floats and list(t.dims) == []
              and 0 < abs(float(numpy_helper.to_array(t))) < 1e-6}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in floats and list(a.t.dims) in ([], [1]) \
                        and 0 < abs(float(numpy_helper.to_array(a.t).ravel()[0])) < 1e-6:
                    found.add(n.output[0])
    changed = True
    while changed:
        changed = False
        for n in g.node:
            if n.op_type in ("Mul", "Div", "Cast", "Identity") and set(n.input) & found and n.output[0] not in found:
                found.add(n.output[0])
                changed = True
    return found


class GraphCheckError(ValueError):
    """A graph that would silently compute the wrong search (a known exporter trap)."""


def verify_graph(model: onnx.ModelProto, dtype=np.float32, n_adam: Optional[int] = None) -> dict:
    """Check the two silent-corruption traps on any step graph and return what was found.

    1. Adam's eps must survive: every Adam denominator ``sqrt(v_hat) + eps`` must still be an Add
       of ``eps`` (a graph input, or a small constant, or a scalar derived from it) -> counts them.
    2. No float tensor of another precision: every float initializer, Constant, graph input/output
       and Cast target must be of ``dtype`` (catches float64 scalars demoted to float32).
    Raises GraphCheckError naming the problem.
    """
    want = _ONNX_DTYPE[np.dtype(dtype)]
    floats = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
    g = model.graph
    bad = []
    for t in g.initializer:
        if t.data_type in floats and t.data_type != want:
            bad.append(f"initializer {t.name} is {TensorProto.DataType.Name(t.data_type)}")
    for vi in list(g.input) + list(g.output):
        et = vi.type.tensor_type.elem_type
        if et in floats and et != want:
            bad.append(f"graph input/output {vi.name} is {TensorProto.DataType.Name(et)}")
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.type == onnx.AttributeProto.TENSOR and a.t.data_type in floats and a.t.data_type != want:
                    bad.append(f"Constant {n.output[0]} is {TensorProto.DataType.Name(a.t.data_type)}")
                if a.name in ("value_float", "value_floats") and want != TensorProto.FLOAT:
                    bad.append(f"Constant {n.output[0]} is a float32 attribute")
        if n.op_type == "Cast":
            to = next(a.i for a in n.attribute if a.name == "to")
            if to in floats and to != want:
                bad.append(f"Cast {n.name} to {TensorProto.DataType.Name(to)}")
    if bad:
        raise GraphCheckError(f"graph mixes float precisions (expected {TensorProto.DataType.Name(want)}): "
                              + "; ".join(bad[:8]))
    eps_set = eps_closure(model)
    eps_adds = [n for n in g.node if n.op_type == "Add" and (set(n.input) & eps_set)]
    sqrt_count = sum(1 for n in g.node if n.op_type == "Sqrt")
    if n_adam is not None and len(eps_adds) < n_adam:
        raise GraphCheckError(f"Adam eps missing: {len(eps_adds)} additions of eps for {n_adam} Adam "
                              f"updates (an optimiser removed '+ eps' as adding zero?)")
    if sqrt_count and not eps_adds:
        raise GraphCheckError("Adam eps missing: the graph takes square roots but never adds eps")
    return {"eps_adds": len(eps_adds), "sqrt": sqrt_count, "dtype": TensorProto.DataType.Name(want)}


# ------------------------------------------------------------------------------------------------
# izi encoder (SearchConfig.z_init == "encoder"): a plain forward conv stack, E(x) -> z
# ------------------------------------------------------------------------------------------------
ENCODER_INPUT, ENCODER_OUTPUT = "x", "z"


def build_encoder_graph(layers: list, x_shape, z_dim: int, dtype=np.float32, batch: bool = False) -> onnx.ModelProto:
    """The izi encoder's forward pass as an ONNX graph: x (C, R, R) -> z (z_dim,); with ``batch``,
    x (B, C, R, R) -> z (B, z_dim) for any B (export.batch_graphs: k = 0 frame batches).

    layers: in order, dicts {"weight": (O, I, kh, kw), "bias": (O,) or None, "stride": int,
    "pad": int, "slope": float or None} (slope: LeakyReLU after the conv, None = no activation).
    LeakyReLU is written as Max(y, slope * y) (identical for 0 <= slope < 1, and defined for every
    float dtype). Weights are stored in ``dtype`` (computed from float64, never via float32)."""
    dt = np.dtype(dtype)
    odt = _ONNX_DTYPE[dt]
    nodes, inits = [], []

    def init(arr, name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op_type, inputs, out, **attrs):
        nodes.append(helper.make_node(op_type, inputs, [out], name=f"enc/{out}_{op_type}", **attrs))
        return out

    C, R = int(x_shape[0]), int(x_shape[1])
    h = node("Reshape", [ENCODER_INPUT, init(np.array([-1 if batch else 1, C, R, R], np.int64), "shape_in")],
             "x4")                                                                        # (B or 1, C, R, R)
    for i, L in enumerate(layers):
        w = np.asarray(L["weight"], dtype=np.float64).astype(dt)
        ins = [h, init(w, f"enc{i}.weight")]
        if L.get("bias") is not None:
            ins.append(init(np.asarray(L["bias"], dtype=np.float64).astype(dt), f"enc{i}.bias"))
        s, p = int(L["stride"]), int(L["pad"])
        h = node("Conv", ins, f"conv{i}", kernel_shape=list(w.shape[2:]), strides=[s, s], pads=[p] * 4)
        if L.get("slope") is not None:
            if not 0 <= float(L["slope"]) < 1:
                raise ValueError(f"LeakyReLU slope must be in [0, 1), got {L['slope']}")
            scaled = node("Mul", [h, init(np.asarray(float(L["slope"]), dtype=dt), f"enc{i}.slope")], f"scaled{i}")
            h = node("Max", [h, scaled], f"act{i}")
    out_shape = [-1, z_dim] if batch else [z_dim]
    node("Reshape", [h, init(np.array(out_shape, np.int64), "shape_out")], ENCODER_OUTPUT)   # (B, z_dim, 1, 1) -> (B, z_dim)
    lead = ["batch"] if batch else []
    graph = helper.make_graph(nodes, "izi_encoder", [helper.make_tensor_value_info(ENCODER_INPUT, odt, lead + [C, R, R])],
                              [helper.make_tensor_value_info(ENCODER_OUTPUT, odt, lead + [z_dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-ad", producer_version=producer_version())
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model
