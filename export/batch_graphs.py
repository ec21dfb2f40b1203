"""Frame-batch graphs for configurations without search steps (k = 0: the shipped kinect models).

With k = 0 a frame's score needs one encoder pass (z_init = "encoder") and one generator pass with
the pristine weights, which every frame shares. Scoring B frames at once turns the generator's thin
layers (layer 0: one input position, layer 1: 16; 82 % of the weights) from matrix-vector products
that stream every weight once per frame into one GEMM per layer over the batch; layers 2-4 are
ConvTranspose nodes (frame by frame inside onnxruntime, cache-friendly), and every run saves the
per-run and per-op overheads of B separate runs.

  final_batch.onnx    x (B, C, R, R), z (B, S, z_dim) -> seed_losses (B, S), error_map (B, R, R),
                      recon (B, S, C, R, R); B is a free dimension ("batch"), the weights are
                      initializers (one copy; layer 1 in torch's (c, kh, kw) GEMM column order
                      with a Col2Im fold, layers 2-4 torch's ConvTranspose weights)
  encoder_batch.onnx  x (B, C, R, R) -> z (B, z_dim)   (export.onnx_graphs.build_encoder_graph, batch=True)

The per-frame graphs (final.onnx, encoder.onnx) stay the reference: ``Scorer.score_batch`` is tested
against ``Scorer.score`` frame by frame.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .onnx_graphs import BN_EPS, OPSET, Arch, producer_version

BATCH = "batch"   # the free batch dimension's name


def build_final_batch_graph(params: dict, bn_stats: dict, arch: Arch) -> onnx.ModelProto:
    """The k = 0 final pass over a batch of frames. params: the generator's float64 state by torch
    name (export.search_graphs.generator_arrays); bn_stats: {l: (running_mean, running_var)}."""
    S, C, R, Z = arch.n_seed, arch.channels, arch.resolution, arch.z_dim
    dt = np.float32
    nodes, inits = [], []

    def init(arr, name):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(arr, dtype=np.float64).astype(dt)), name))
        return name

    def i64(values, name):
        inits.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), name))
        return name

    def op(op_type, inputs, out, **attrs):
        nodes.append(helper.make_node(op_type, inputs, [out], name=f"batch/{out}", **attrs))
        return out

    conv = [params[f"gen.{l}.0.weight"] if l < 4 else params["gen.4.weight"] for l in range(5)]
    zf = op("Reshape", ["z", i64([-1, Z], "shape_z")], "zf")                                 # (B S, Z)
    y = op("MatMul", [zf, init(conv[0].reshape(Z, -1), "W0")], "y0")                        # (B S, 16 C0)
    h = op("Reshape", [y, i64([-1, arch.widths[0], 4, 4], "shape_h0")], "h0")                # (B S, C0, 4, 4)
    for l in range(1, 5):
        cin, cout, hin = arch.layer_io(l)
        mean, var = (np.asarray(t, dtype=np.float64) for t in bn_stats[l - 1])
        # BatchNorm (eval) then ReLU as one per-channel affine map, folded in float64:
        # (h - mean) * inv_std * gamma + beta = h * a + c, a = inv_std * gamma, c = beta - mean * a
        # (two elementwise passes over the activations instead of four; float32 rounding apart)
        a_bn = np.asarray(params[f"gen.{l - 1}.1.weight"], dtype=np.float64) / np.sqrt(var + BN_EPS)
        c_bn = np.asarray(params[f"gen.{l - 1}.1.bias"], dtype=np.float64) - mean * a_bn
        yb = op("Add", [op("Mul", [h, init(a_bn.reshape(1, -1, 1, 1), f"bn{l - 1}.scale")], f"g{l - 1}"),
                        init(c_bn.reshape(1, -1, 1, 1), f"bn{l - 1}.shift")], f"yb{l - 1}")
        a = op("Relu", [yb], f"a{l - 1}")                                                     # (B S, C_in, h, h)
        if hin * hin > 16:
            # P >= 64 positions per frame: ConvTranspose, which onnxruntime runs frame by frame (GEMM +
            # col2im per image), keeping each frame's 1-8 MB column buffer in cache (measured, best of 15,
            # 2 threads, final pass per frame: B = 4 2.34 ms vs 3.87 ms as one MatMul + Col2Im over the batch)
            h = op("ConvTranspose", [a, init(conv[l], f"W{l}")], f"h{l}", kernel_shape=[4, 4], strides=[2, 2],
                   pads=[1, 1, 1, 1])                                                         # (B S, C_out, 2h, 2h)
            continue
        # thin layer (layer 1: 16 positions): one GEMM with B S P rows over the shared 8 MB weight,
        # instead of one matrix product with 16 rows per frame that streams the whole weight
        A = op("Reshape", [a, i64([-1, cin, hin * hin], f"shape_a{l}")], f"A{l}")            # (B S, C_in, P)
        AT = op("Transpose", [A], f"AT{l}", perm=[0, 2, 1])                                   # (B S, P, C_in)
        Y = op("MatMul", [AT, init(conv[l].reshape(cin, -1), f"W{l}")], f"Y{l}")             # (B S, P, 16 C_out)
        cols = op("Transpose", [Y], f"cols{l}", perm=[0, 2, 1])                               # (B S, 16 C_out, P)
        h = op("Col2Im", [cols, i64([2 * hin, 2 * hin], f"img{l}"), i64([4, 4], f"blk{l}")], f"h{l}",
               strides=[2, 2], pads=[1, 1, 1, 1])                                             # (B S, C_out, 2h, 2h)
    h = op("Add", [h, init(params["gen.4.bias"].reshape(1, -1, 1, 1), "bias4")], "h4b")
    rec = op("Tanh", [h], "rec")                                                              # (B S, C, R, R)
    recon = op("Reshape", [rec, i64([-1, S, C, R, R], "shape_recon")], "recon")             # (B, S, C, R, R)
    diff = op("Sub", [recon, op("Unsqueeze", ["x", i64([1], "axis1")], "x5")], "diff")
    sq = op("Mul", [diff, diff], "sq")
    op("ReduceMean", [sq, i64([2, 3, 4], "axes_seed")], "seed_losses", keepdims=0)          # (B, S)
    op("ReduceMean", [sq, i64([1, 2], "axes_map")], "error_map", keepdims=0)                # (B, R, R)
    f = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, "adgan_final_batch",
        [helper.make_tensor_value_info("x", f, [BATCH, C, R, R]), helper.make_tensor_value_info("z", f, [BATCH, S, Z])],
        [helper.make_tensor_value_info("seed_losses", f, [BATCH, S]),
         helper.make_tensor_value_info("error_map", f, [BATCH, R, R]),
         helper.make_tensor_value_info("recon", f, [BATCH, S, C, R, R])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="edge-ad", producer_version=producer_version())
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    return model


def export_batch_graphs(params: dict, bn_stats: dict, arch: Arch, out_dir, encoder_layers=None) -> dict:
    """Write final_batch.onnx (and encoder_batch.onnx when the configuration has an encoder: its
    ``export.exporter.encoder_layers``) to ``out_dir``; returns their manifest graph entries."""
    from pathlib import Path

    from .onnx_graphs import ENCODER_INPUT, ENCODER_OUTPUT, build_encoder_graph
    out_dir = Path(out_dir)
    entries = {}
    model = build_final_batch_graph(params, bn_stats, arch)
    onnx.save(model, str(out_dir / "final_batch.onnx"))
    entries["final_batch"] = {"file": "final_batch.onnx", "role": "batch", "nodes": len(model.graph.node),
                              "inputs": {"x": [BATCH, arch.channels, arch.resolution, arch.resolution],
                                         "z": [BATCH, arch.n_seed, arch.z_dim]},
                              "outputs": {"seed_losses": [BATCH, arch.n_seed],
                                          "error_map": [BATCH, arch.resolution, arch.resolution],
                                          "recon": [BATCH, arch.n_seed, arch.channels, arch.resolution,
                                                    arch.resolution]},
                              "k": 0}
    if encoder_layers is not None:
        x_shape = (arch.channels, arch.resolution, arch.resolution)
        model = build_encoder_graph(encoder_layers, x_shape, arch.z_dim, np.float32, batch=True)
        onnx.save(model, str(out_dir / "encoder_batch.onnx"))
        entries["encoder_batch"] = {"file": "encoder_batch.onnx", "role": "batch", "nodes": len(model.graph.node),
                                    "input": ENCODER_INPUT, "output": ENCODER_OUTPUT,
                                    "inputs": {ENCODER_INPUT: [BATCH, *x_shape]},
                                    "outputs": {ENCODER_OUTPUT: [BATCH, arch.z_dim]}}
    return entries


def batch_parity(scorer, frames, starts: list, reference_scores: list, tolerance: float) -> dict:
    """The batch graphs against the float64 PyTorch reference: ``scorer.score_batch`` over every
    parity frame at once, frame i started as the per-frame parity run was (``starts[i]``: {"seed"}
    or {"z0"}); relative score differences to ``reference_scores``. The parity report's "batch"."""
    got = scorer.score_batch([(f["rgb"], f["depth"]) for f in frames], seeds=[s.get("seed") for s in starts],
                             z0s=[s.get("z0") for s in starts], check_faults=False)   # numerics only
    rel = []
    for r, ref in zip(got, reference_scores):
        if isinstance(r, Exception):
            rel.append(float("inf"))
        else:
            rel.append(abs(r.score - ref) / max(abs(ref), 1e-12))
    worst = max(rel, default=float("inf"))
    return {"graphs": ["final_batch"] + (["encoder_batch"] if "encoder_batch" in scorer.manifest["graphs"] else []),
            "rel_diff": rel, "max_rel_diff": worst, "passed": bool(rel) and worst <= tolerance,
            "summary": f"score_batch over {len(rel)} frames: max relative score difference {worst:.2e}, "
                       f"tolerance {tolerance:g}"}
