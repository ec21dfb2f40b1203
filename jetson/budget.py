"""FLOPs, memory traffic and a paper latency budget of the seeded search on Jetson Orin modules.

Counts come from the generator config (z_dim, features_g, channels) and the search config
(n_seed, k, lr_theta): per ConvTranspose layer, per seed, the forward pass, the input gradient
(always: z needs it) and the weight gradient (only when lr_theta > 0) each cost
``2 * H_in * W_in * C_in * C_out * 4 * 4`` FLOPs. A frame is k steps plus one final forward.
The count is checked against torch's own FLOP counter on the reference search, and against
``onnx_flops``, which measures the exported step graph itself (tests/test_jetson_budget.py).

NumPy-free and torch-free on purpose: ``python -m edge_ad.jetson.budget`` runs on the robot.

The budget is a paper estimate, not a measurement: time >= max(FLOPs / (fp32 peak * efficiency),
bytes / (DRAM bandwidth * efficiency)) + kernel launches. The device numbers are NVIDIA's
published module specifications (GPU cores, max GPU clock per power mode, LPDDR5 bandwidth).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

KERNEL = 4 * 4  # every ConvTranspose in the DCGAN generator has a 4x4 kernel
BN_EPS_FLOPS_PER_ELEM = 4   # (h - mean) * scale + shift, ReLU: counted as elementwise work
ADAM_FLOPS_PER_PARAM = 12   # m, v, bias-corrected ratio, sqrt, eps, divide, lr, subtract


@dataclass(frozen=True)
class Layer:
    cin: int
    cout: int
    hin: int          # square input side
    hout: int
    bn: bool          # BatchNorm + ReLU follow (else bias + Tanh)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward ConvTranspose, one seed: every input pixel scatters a
        C_in x C_out x 4 x 4 block."""
        return self.hin * self.hin * self.cin * self.cout * KERNEL

    @property
    def params(self) -> int:
        return self.cin * self.cout * KERNEL + (2 * self.cout if self.bn else self.cout)


def generator_layers(z_dim: int = 100, features_g: int = 64, channels: int = 4) -> list[Layer]:
    """The study's 64x64 DCGAN generator (models/dcgan.py), layer by layer."""
    fg = features_g
    return [Layer(z_dim, fg * 16, 1, 4, True), Layer(fg * 16, fg * 8, 4, 8, True),
            Layer(fg * 8, fg * 4, 8, 16, True), Layer(fg * 4, fg * 2, 16, 32, True),
            Layer(fg * 2, channels, 32, 64, False)]


@dataclass(frozen=True)
class FrameCost:
    """Work per scored frame (all seeds, all steps)."""

    features_g: int
    n_seed: int
    k: int
    updates_weights: bool
    conv_flops_forward: int       # one seed, one forward pass
    flops_step: int               # all seeds, one search step (fwd + grads + elementwise + Adam)
    flops_frame: int              # k steps + the final forward
    params_per_seed: int
    bytes_frame: int              # DRAM traffic lower bound, fp32 (see ``frame_cost``)
    kernels_per_step: int         # rough kernel count of one step (launch-overhead estimate)

    @property
    def gflop_frame(self) -> float:
        return self.flops_frame / 1e9

    @property
    def gbytes_frame(self) -> float:
        return self.bytes_frame / 1e9


def frame_cost(z_dim: int = 100, features_g: int = 64, channels: int = 4, n_seed: int = 3,
               k: int = 19, lr_theta: float = 6e-9, dtype_bytes: int = 4) -> FrameCost:
    """FLOPs and fp32 memory traffic of one frame's seeded k-step search.

    Memory traffic counts the passes over the per-seed weight state that remain even when each
    Adam update is one fused elementwise kernel: per step, read W twice (forward, input
    gradient), write dW once, then Adam reads W, dW, m, v and writes W, m, v (7 passes): 10 passes
    of 4 bytes per parameter and seed, plus activations (small at these sizes). z-only search
    (lr_theta = 0): only the 2 weight reads remain.
    """
    layers = generator_layers(z_dim, features_g, channels)
    upd = lr_theta > 0
    fwd = sum(2 * L.macs for L in layers)
    acts = sum(L.cout * L.hout * L.hout for L in layers)            # output elements, one seed
    elem_fwd = BN_EPS_FLOPS_PER_ELEM * acts
    params = sum(L.params for L in layers)
    grads = (2 if upd else 1) * fwd                                 # input grad (+ weight grad)
    adam = ADAM_FLOPS_PER_PARAM * ((params if upd else 0) + z_dim)
    step = n_seed * (fwd + grads + 3 * elem_fwd + adam)             # elementwise fwd + bwd ~ 3x
    frame = k * step + n_seed * (fwd + elem_fwd)
    passes = 10 if upd else 2
    act_bytes = 4 * acts * dtype_bytes                              # fwd write/read, bwd write/read
    step_bytes = n_seed * (passes * params * dtype_bytes + act_bytes)
    frame_bytes = k * step_bytes + n_seed * (params * dtype_bytes + act_bytes) \
        + (2 * n_seed * params * dtype_bytes if upd else 0)          # pristine-weight restore (D2D)
    # kernels per step, for a GPU export (edge-ad export --chunk-kb 0: one GEMM per layer and pass)
    # with TensorRT fusing each elementwise chain: GEMMs, im2col/col2im copies of the 4 stride-2
    # layers, BN/activation forward + backward, one fused Adam per state tensor (+ z), the loss
    L = len(layers)
    n_state = 3 * L - 1                                             # 5 kernels, 4 x (gamma, beta), bias
    kernels = L * (3 if upd else 2) + 8 * (L - 1) + 2 * L + ((n_state + 1) if upd else 1) + 5
    return FrameCost(features_g=features_g, n_seed=n_seed, k=k, updates_weights=upd,
                     conv_flops_forward=fwd, flops_step=step, flops_frame=frame,
                     params_per_seed=params, bytes_frame=frame_bytes, kernels_per_step=kernels)


@dataclass(frozen=True)
class Device:
    name: str
    power_mode: str
    cuda_cores: int
    gpu_mhz: int        # max GPU clock in that power mode
    dram_gbs: float     # LPDDR5 peak bandwidth, GB/s

    @property
    def fp32_tflops(self) -> float:
        """CUDA-core fp32 peak: 2 FLOPs (one FMA) per core per clock."""
        return 2 * self.cuda_cores * self.gpu_mhz * 1e6 / 1e12


# NVIDIA Jetson Orin module data sheets (JetPack 6.x; "MAXN SUPER" needs JetPack 6.2).
DEVICES = [
    Device("Orin Nano 8GB", "15W (JP 5.1/6.0)", 1024, 625, 68.0),
    Device("Orin Nano 8GB", "MAXN SUPER 25W (JP 6.2)", 1024, 1020, 102.0),
    Device("Orin NX 16GB", "25W", 1024, 918, 102.4),
    Device("Orin NX 16GB", "MAXN SUPER 40W (JP 6.2)", 1024, 1173, 102.4),
    Device("AGX Orin 64GB", "MAXN 60W", 2048, 1301, 204.8),
]

LAUNCH_US_STREAM = 8.0   # per kernel, eager enqueue from Python on a Jetson CPU (assumed)
LAUNCH_US_GRAPH = 2.0    # per kernel node, replayed CUDA graph (assumed)


def latency_ms(cost: FrameCost, dev: Device, compute_eff: float = 0.35, bw_eff: float = 0.7,
               cuda_graph: bool = True) -> dict:
    """Paper per-frame latency: compute and memory bounds (ms), launch overhead, total and frames/s.

    ``compute_eff``: fraction of fp32 peak that batch-1 grouped (de)convolutions reach;
    ``bw_eff``: fraction of DRAM peak that streaming elementwise kernels reach. Assumptions,
    to be replaced by measurements on the device.
    """
    t_flop = cost.flops_frame / (dev.fp32_tflops * 1e12 * compute_eff) * 1e3
    t_mem = cost.bytes_frame / (dev.dram_gbs * 1e9 * bw_eff) * 1e3
    launches = cost.kernels_per_step * cost.k
    t_launch = launches * (LAUNCH_US_GRAPH if cuda_graph else LAUNCH_US_STREAM) / 1e3
    total = max(t_flop, t_mem) + t_launch
    return {"compute_ms": t_flop, "memory_ms": t_mem, "launch_ms": t_launch, "total_ms": total,
            "fps": 1e3 / total, "bound": "memory" if t_mem > t_flop else "compute"}


def onnx_flops(onnx_path) -> int:
    """Multiply-add FLOPs (2 per MAC) of the Conv, ConvTranspose, MatMul and Gemm nodes of an ONNX
    graph, from ONNX shape inference. The exported search graphs write every (de)convolution as
    batched GEMMs, so this measures the step graph itself. Needs ``onnx`` (workstation extra)."""
    import onnx  # lazy: not part of the robot install
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    g = model.graph
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for init in g.initializer:
        shapes[init.name] = list(init.dims)

    def prod(xs):
        out = 1
        for v in xs:
            out *= v
        return out

    total = 0
    for node in g.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        a, w, y = (shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0]))
        if a is None or w is None or y is None or 0 in a + w + y:
            raise ValueError(f"cannot infer the shapes of {node.op_type} node {node.name!r}")
        if node.op_type == "MatMul":        # (..., M, K) @ (..., K, N) -> (..., M, N)
            macs = prod(y) * a[-1]
        elif node.op_type == "Gemm":
            trans_a = next((att.i for att in node.attribute if att.name == "transA"), 0)
            macs = prod(y) * (a[0] if trans_a else a[1])
        elif node.op_type == "Conv":        # W [C_out, C_in/g, kh, kw]: every output pixel
            macs = prod(y) * prod(w[1:])
        else:                               # ConvTranspose W [C_in, C_out/g, kh, kw]: every input pixel
            macs = prod(a) * prod(w[1:])
        total += 2 * macs
    return total


PIXEL_ROW_STORES = ("uint8", "float32")       # runtime/pixel_memory.py's ROW_STORES (its default first)
PIXEL_BOUND_BLOCKS = (8, 4)                   # runtime/pixel_memory.py's BOUND_BLOCKS
# the shipped kinect-rgbd models with a pixel memory: (name, frames, rows per frame, resolution, colour_norm)
SHIPPED_PIXEL_MEMORIES = (("cylinder", 300, 25, 64, True), ("rectangle", 300, 11, 64, False))


def pixel_memory_mb(n_frames: int, rows_per_frame: int, resolution: int = 64, store: str = "uint8",
                    colour_norm: bool = True) -> dict:
    """Host RAM (MB, 1e6 bytes) a loaded pixel memory holds (runtime/pixel_memory.py: ``PixelMemory.nbytes``):
    "rows", its rows as ``store`` keeps them (uint8, the default: each row's 4 R R image bytes + its 3 float32
    colour-normalization gains with ``colour_norm``; float32: 4 R R float32), and "bound", the bounded search's
    tables (per level of PIXEL_BOUND_BLOCKS that divides R: per row 2 F float32 block features, F = 4 (R / block)^2,
    and their float64 squared norm; the level's float64 centre). Kept numpy-free, so not
    runtime.pixel_memory.pixel_memory_bytes (what MAX_PIXEL_BYTES caps), which also counts each row's float64
    |r - mu|^2 (8 B a row: cylinder 199.95 MB there, 199.9 here). The scoring's host RAM on the robot: the pixel memory
    is NumPy on the CPU under every backend, in the Jetson's memory shared with the GPU."""
    if store not in PIXEL_ROW_STORES:
        raise ValueError(f"store must be one of {', '.join(PIXEL_ROW_STORES)}, got {store!r}")
    n, R = int(n_frames) * int(rows_per_frame), int(resolution)
    per_row = 4 * R * R + (12 if colour_norm else 0) if store == "uint8" else 4 * R * R * 4
    bound = sum(n * (2 * 4 * (R // b) ** 2 * 4 + 8) + 2 * 4 * (R // b) ** 2 * 8
                for b in PIXEL_BOUND_BLOCKS if R % b == 0)
    return {"rows": n * per_row / 1e6, "bound": bound / 1e6}


def pixel_memory_table(memories=SHIPPED_PIXEL_MEMORIES) -> str:
    """Markdown table: per pixel memory (name, frames, rows per frame, R, colour_norm) its host RAM under each row
    store (``pixel_memory_mb``)."""
    rows = ["| pixel memory | rows | row store | rows MB | bound tables MB | total MB |", "|---|---|---|---|---|---|"]
    for name, frames, per, R, cn in memories:
        for store in PIXEL_ROW_STORES:
            m = pixel_memory_mb(frames, per, R, store, cn)
            rows.append(f"| {name} | {frames * per} x 4 x {R} x {R} | {store} | {m['rows']:.1f} | {m['bound']:.1f} "
                        f"| {m['rows'] + m['bound']:.1f} |")
    return "\n".join(rows)


def budget_table(widths=(16, 32, 64), n_seed: int = 3, k: int = 19, lr_theta: float = 6e-9,
                 z_dim: int = 100) -> str:
    """Markdown table: per width, GFLOP and GB per frame and the paper latency on each device."""
    rows = ["| width | GFLOP/frame | GB/frame (fp32) | params/seed | device | power mode | fp32 TFLOPS "
            "| compute ms | memory ms | launch ms (graph) | total ms | frames/s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for w in widths:
        c = frame_cost(z_dim, w, 4, n_seed, k, lr_theta)
        for d in DEVICES:
            b = latency_ms(c, d)
            rows.append(f"| {w} | {c.gflop_frame:.1f} | {c.gbytes_frame:.2f} | {c.params_per_seed / 1e6:.2f} M "
                        f"| {d.name} | {d.power_mode} | {d.fp32_tflops:.2f} | {b['compute_ms']:.0f} "
                        f"| {b['memory_ms']:.0f} | {b['launch_ms']:.1f} | {b['total_ms']:.0f} | {b['fps']:.1f} |")
    return "\n".join(rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, nargs="+", default=[16, 32, 64], help="features_g values")
    ap.add_argument("--n-seed", type=int, default=3)
    ap.add_argument("-k", type=int, default=19)
    ap.add_argument("--lr-theta", type=float, default=6e-9)
    ap.add_argument("--onnx", help="also count the GEMM/conv FLOPs of this ONNX graph (one step or final graph)")
    ap.add_argument("--pixel-memory", action="store_true",
                    help="also print the host RAM of the shipped models' pixel memories under each row store")
    a = ap.parse_args(argv)
    if a.onnx and not Path(a.onnx).is_file():   # before the table, not a traceback after it
        ap.error(f"--onnx {a.onnx}: no such file (an export with k = 0 has final.onnx and no step.onnx)")
    print(budget_table(a.width, a.n_seed, a.k, a.lr_theta))
    if a.onnx:
        print(f"\n{a.onnx}: {onnx_flops(a.onnx) / 1e9:.3f} GFLOP in Conv/ConvTranspose/MatMul/Gemm nodes")
    if a.pixel_memory:
        print("\n" + pixel_memory_table())


if __name__ == "__main__":
    main()
