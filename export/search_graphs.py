"""The search graphs of each variant (runtime/variants.py's table) as files: one builder per graph name
(``GRAPH_BUILDERS``), each building, checking (verify_graph: Adam's eps kept, one float precision) and
writing its graph, and returning its manifest entry.

  step, step_z, final, unrolled: all seeds in one graph, weights in the chunked layout of weights.npz
  grad_seed, grad_z_seed, final_seed (the CPU searches): one seed, unchunked, torch's column order
  grad_tail_seed, grad_z_tail_seed: the host-head search's tail (layers 2-4), with head_consts.npy
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import onnx

from edge_ad.runtime import variants
from edge_ad.runtime.backends.host_head import PANEL
from edge_ad.runtime.config import SearchConfig

from .errors import ExportError
from .onnx_graphs import BN_EPS, HEAD_LAYERS, Arch, build_graph, head_state_names, verify_graph


def generator_arrays(G) -> tuple[dict, dict]:
    """(float64 parameters by torch name, {layer: (running_mean, running_var)}) of a Generator."""
    sd = {k: v.detach().double().cpu().numpy() for k, v in G.state_dict().items()}
    bn = {l: (sd[f"gen.{l}.1.running_mean"], sd[f"gen.{l}.1.running_var"]) for l in range(4)}
    return sd, bn


def arch_of(G, n_seed: int, chunk_bytes: int = 1 << 20, dtype=np.float32) -> Arch:
    fg, c = G.cfg.features_g, G.cfg.channels
    return Arch(z_dim=G.cfg.z_dim, widths=(fg * 16, fg * 8, fg * 4, fg * 2, c), n_seed=n_seed,
                resolution=G.cfg.resolution, chunk_bytes=chunk_bytes, dtype=np.dtype(dtype))


def io_spec(model: onnx.ModelProto) -> dict:
    """The manifest's description of a graph's inputs and outputs: [{name, shape, dtype}] each."""
    def one(vi):
        t = vi.type.tensor_type
        return {"name": vi.name, "shape": [d.dim_value for d in t.shape.dim],
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}
    return {"inputs": [one(v) for v in model.graph.input], "outputs": [one(v) for v in model.graph.output]}


def state_entries(arch: Arch) -> list:
    """The manifest's description of a graph's state tensors (name, torch param, stacked shape, GEMM
    columns, and the panel width of a weight stored in column panels)."""
    return [{"name": s.name, "param": s.param, "shape": list(s.shape), "cols": list(s.cols) if s.cols else None,
             **({"panel": s.panel} if s.panel else {})} for s in arch.state()]


HOST_ADAM_PANEL = 32   # column-panel width of the layer 1-2 weights in the fused-adam graphs
HOST_HEAD_PANEL = PANEL   # the panel width runtime/backends/_head_kernel.c is written for (host_head.PANEL)
HEAD_CONSTS = "head_consts.npy"


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
        return {"file": f"{name}.onnx", **io_spec(model), "nodes": len(model.graph.node), "check": check,
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


def _save_seed_graph(one: Arch, kind: str, bn: dict, out_dir: Path, state: list, **extra) -> dict:
    """Build, check and write ``<kind>_seed.onnx`` (one seed, the CPU searches' weight layout ``state``);
    returns its manifest entry (``extra``: role, head, ...)."""
    model = build_graph(one, kind, bn)
    check = verify_graph(model, np.float32)
    fname = f"{kind}_seed.onnx"
    onnx.save(model, str(out_dir / fname))
    return {"file": fname, **io_spec(model), "nodes": len(model.graph.node), "check": check, "n_seed": 1,
            **extra, "state": state, "col_order": one.col_order}


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
    raise ImportError(f"export/search_graphs.py has no graph builder for {unbuilt_graphs()} (runtime/variants.py's table)")


def write_graphs(G, bn: dict, cfg: SearchConfig, arch: Arch, out_dir: Path, names: Sequence[str]) -> dict:
    """Build, check and write the graphs ``names`` (runtime/variants.py names) with GRAPH_BUILDERS; returns
    their manifest entries (a host-head graph the layout cannot have is left out).

    The per-seed graphs keep weights unchunked: the host's fused Adam makes weight chunks pointless and
    whole GEMMs are faster (measured 26-29 -> 22-26 ms per step at width 32); torch's (c, kh, kw) column
    order so that the forward col2im is one Col2Im op (measured per step 26.4 -> 23.9 ms, final pass
    16.6 -> 9.4 ms); layers 1-2 (P <= 64) in 32-column panels."""
    one = dataclasses.replace(arch_of(G, 1, 0, np.float32), col_order="col2im", panel=HOST_ADAM_PANEL)
    job = GraphJob(bn=bn, cfg=cfg, arch=arch, one=one, state=state_entries(one), out_dir=out_dir)
    out = {}
    for name in names:
        if name not in GRAPH_BUILDERS:
            raise ExportError(f"no builder for the graph {name!r}")
        entry = GRAPH_BUILDERS[name](name, job)
        if entry is not None:
            out[name] = entry
    return out
