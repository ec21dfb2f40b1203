"""The search variants: one table of what each runs, when it is chosen and how it is built.

Every way to run one frame's search is a row of ``VARIANTS``. ``Scorer.load`` picks and builds a row
(``choose`` / ``resolve``, ``Variant.build``), the exporter writes the graphs of the rows its targets
need (``for_export``, ``graphs_for_export``) and checks parity per exported row, and the benchmark
(benchmarks/search_bench.py) and jetson/gpu_check.py run rows by name.

  variant     graphs (lr_theta > 0 | lr_theta = 0)        export target  chosen by "auto"
  forward     final | final                               every target   k = 0 (no search step: E(x) or z0
                                                                         and one generator pass)
  host-head   grad_tail_seed | grad_z_tail_seed,          cpu            onnxruntime on the CPU, when both
              final_seed (+ head_consts.npy)                             compiled kernels are installed and
                                                                         the head kernel's AVX2 loops run
                                                                         here (x86-64): the CPU default
  fused-adam  grad_seed | grad_z_seed, final_seed         cpu            onnxruntime on the CPU otherwise
                                                                         (ARM such as a Jetson's cores,
                                                                         x86 without AVX2; the host Adam is
                                                                         NumPy when nothing was compiled)
  step        step | step_z, final                        gpu            TensorRT, and onnxruntime with the
                                                                         CUDA provider
  unrolled    unrolled (k steps in one graph)             gpu, only with never (variant="unrolled"), until a
                                                          --unrolled     GPU measurement shows it wins

An export for lr_theta > 0 also carries each variant's z-only graph, so ``Scorer.load(dir,
lr_theta=0.0)`` (the named fast option) runs on every exported variant. Removed variants (REMOVED)
are refused by name with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from .config import SearchConfig
from .manifest import ManifestError

TARGETS = ("cpu", "gpu")
BACKENDS = ("onnxruntime", "tensorrt")
# Scorer.load's backend_options per backend (TensorRT: runtime/backends/tensorrt.load_search's keywords)
BACKEND_OPTIONS = {"onnxruntime": (), "tensorrt": ("precision", "on_mismatch")}


def check_backend_options(backend: str, options: Optional[dict]) -> dict:
    """``options`` as a dict of the keywords ``backend`` takes (BACKEND_OPTIONS), else ValueError."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(BACKEND_OPTIONS[backend]))
    if unknown:
        takes = ", ".join(BACKEND_OPTIONS[backend]) or "none"
        raise ValueError(f"backend {backend!r} takes no option {', '.join(map(repr, unknown))} (its options: {takes})")
    return options

# names that earlier versions accepted, with what replaced them
REMOVED = {
    "seed-parallel": "removed: fused-adam runs the same per-seed split faster and in half the memory "
                     "(benchmarks/README.md); use variant='auto'",
}


@dataclass(frozen=True)
class BuildContext:
    """What a variant's constructor gets from ``Scorer.load``: the verified directory and its manifest,
    the pristine weights as weights.npz holds them, the effective configuration and the run options."""

    model_dir: Path
    manifest: dict
    pristine: dict              # {state name: one copy} (weights.npz)
    cfg: SearchConfig
    backend: str
    providers: Optional[list]   # onnxruntime providers (resolved), None for TensorRT
    threads: Optional[int]
    backend_options: dict = field(default_factory=dict)   # TensorRT: load_search's precision / on_mismatch

    @property
    def x_shape(self) -> tuple:
        lay = self.manifest["layout"]
        return (int(lay["channels"]), int(lay["resolution"]), int(lay["resolution"]))

    @property
    def graph_paths(self) -> dict:
        return {name: str(self.model_dir / g["file"]) for name, g in self.manifest["graphs"].items()}


@dataclass(frozen=True)
class Variant:
    """One row of the table: a search and everything needed to export, choose and build it."""

    name: str
    graphs: tuple                 # manifest graph names it runs with lr_theta > 0
    z_graphs: tuple               # ... with lr_theta = 0 (the z-only search)
    targets: tuple                # export targets that write its graphs (TARGETS)
    backends: tuple               # BACKENDS it runs on
    cpu_only: bool                # onnxruntime's CPU provider only (host buffers)
    k_zero: bool                  # True: only for k = 0; False: only for k >= 1
    when: str                     # when "auto" chooses it (docs, error messages)
    build: Callable[[BuildContext], object]     # -> a search object with run(x, z0)
    explicit_export: bool = False  # exported only when asked for by name (--unrolled)

    def needs(self, cfg: SearchConfig) -> tuple:
        """The graph names this variant runs for ``cfg``."""
        return self.graphs if cfg.updates_weights else self.z_graphs

    def applies(self, cfg: SearchConfig) -> bool:
        return (cfg.k == 0) == self.k_zero

    def mode(self, cfg: SearchConfig) -> str:
        """``Scorer.mode``: the variant's name ("step_z" for the step variant's z-only graph)."""
        return "step_z" if self.name == "step" and not cfg.updates_weights else self.name


# -- constructors -----------------------------------------------------------------------------------
def _state_shapes(ctx: BuildContext) -> dict:
    return {st["name"]: tuple(st["shape"]) for st in ctx.manifest["layout"]["state"]}


def _dtype(ctx: BuildContext):
    return np.dtype(ctx.manifest["layout"].get("dtype", "float32"))


def _ort_graphs(mode: str):
    """forward / step / unrolled, all seeds in one graph: on backend "tensorrt" the TensorRT search
    (runtime/backends/tensorrt.load_search, with ``ctx.backend_options``), else onnxruntime's
    (runtime/backends/onnxruntime_backend.OrtSearch)."""
    def build(ctx: BuildContext):
        if ctx.backend == "tensorrt":
            from .backends.tensorrt import load_search
            return load_search(ctx.model_dir, ctx.manifest, ctx.pristine, ctx.cfg,
                               "forward" if mode == "forward" else VARIANTS["step"].mode(ctx.cfg),
                               **ctx.backend_options)
        from .backends.onnxruntime_backend import OrtSearch
        m = VARIANTS["step"].mode(ctx.cfg) if mode == "step" else mode
        return OrtSearch(ctx.graph_paths, ctx.pristine, _state_shapes(ctx), ctx.cfg,
                         int(ctx.manifest["layout"]["z_dim"]), ctx.x_shape, dtype=_dtype(ctx), mode=m,
                         providers=ctx.providers, threads=ctx.threads)
    return build


def _host_search(head: bool):
    """fused-adam / host-head: runtime/backends/onnxruntime_host_adam.OrtHostAdamSearch (one seed per
    worker thread, Adam on the host; host-head: layers 0-1 too)."""
    def build(ctx: BuildContext):
        from .backends.onnxruntime_host_adam import OrtHostAdamSearch, load_head, regroup_state
        man, cfg, model_dir = ctx.manifest, ctx.cfg, ctx.model_dir
        gname = VARIANTS["host-head" if head else "fused-adam"].needs(cfg)[0]
        gs, fs = man["graphs"][gname], man["graphs"]["final_seed"]
        state, order = gs.get("state"), gs.get("col_order", "d2s")
        if not state or fs.get("state") != state or fs.get("col_order", "d2s") != order:
            raise ManifestError(f"{model_dir}: {gname}/final_seed graphs lack a common weight layout "
                                "('state', 'col_order')")
        try:
            weights = regroup_state(ctx.pristine, man["layout"]["state"], state,
                                    man["layout"].get("col_order", "d2s"), order)
        except ValueError as e:
            raise ManifestError(f"{model_dir}: {e}") from None
        n_threads = int(ctx.threads) if ctx.threads else None
        workers = cfg.n_seed if (n_threads or _cpu_count()) >= 2 else 1    # seeds on cores from two threads
        paths = ctx.graph_paths
        return OrtHostAdamSearch({gname: paths[gname], "final_seed": paths["final_seed"]}, weights, state, cfg,
                                 int(man["layout"]["z_dim"]), ctx.x_shape, dtype=_dtype(ctx),
                                 providers=ctx.providers, workers=workers, threads=n_threads or _cpu_count(),
                                 head=load_head(model_dir, man, gs) if head else None)
    return build


def _cpu_count() -> int:
    import os
    return os.cpu_count() or 1


# -- the table -------------------------------------------------------------------------------------------
VARIANTS = {v.name: v for v in (
    Variant("forward", ("final",), ("final",), TARGETS, BACKENDS, False, True,
            "k = 0 (no search step)", _ort_graphs("forward")),
    Variant("host-head", ("grad_tail_seed", "final_seed"), ("grad_z_tail_seed", "final_seed"), ("cpu",),
            ("onnxruntime",), True, False,
            "the CPU default: onnxruntime on the CPU with both compiled kernels and the head kernel's AVX2 loops",
            _host_search(True)),
    Variant("fused-adam", ("grad_seed", "final_seed"), ("grad_z_seed", "final_seed"), ("cpu",),
            ("onnxruntime",), True, False,
            "onnxruntime on the CPU without the host head (ARM, x86 without AVX2, no compiled head kernel)",
            _host_search(False)),
    Variant("step", ("step", "final"), ("step_z", "final"), ("gpu",), BACKENDS, False, False,
            "TensorRT, and onnxruntime with the CUDA provider", _ort_graphs("step")),
    Variant("unrolled", ("unrolled",), ("unrolled",), ("gpu",), ("onnxruntime",), False, False,
            "never (variant='unrolled', exported with --unrolled)", _ort_graphs("unrolled"), explicit_export=True),
)}
# the CPU variants in "auto"'s order of preference
CPU_ORDER = ("host-head", "fused-adam")


def host_head_runs_here() -> bool:
    """True when the host-head search runs at full speed here: both compiled kernels installed and the
    head kernel's AVX2 + FMA loops usable on this CPU (runtime/backends/host_head.vectorized)."""
    from .backends import host_adam, host_head
    return host_adam.kernel_available() and host_head.vectorized()


# -- export side -----------------------------------------------------------------------------------------
def for_export(cfg: SearchConfig, targets: Sequence[str] = TARGETS, unrolled: bool = False) -> list:
    """The variants an export for ``targets`` writes: k = 0 -> forward only; else the targets' variants
    (unrolled only when asked for)."""
    bad = [t for t in targets if t not in TARGETS]
    if bad or not targets:
        raise ValueError(f"unknown export targets {bad or list(targets)}; choose from {TARGETS}")
    return [v for v in VARIANTS.values() if v.applies(cfg) and set(v.targets) & set(targets)
            and (not v.explicit_export or unrolled)]


def graphs_for_export(cfg: SearchConfig, variants: Sequence[Variant]) -> list:
    """The graph names those variants run for ``cfg`` and, when it updates the weights, for its z-only
    twin (lr_theta = 0, the named fast option), in table order without repeats."""
    cfgs = [cfg] + ([cfg.replace(lr_theta=0.0)] if cfg.updates_weights else [])
    return list(dict.fromkeys(g for v in variants for c in cfgs for g in v.needs(c)))


# -- load side -------------------------------------------------------------------------------------------
def exported(v: Variant, cfg: SearchConfig, graphs: dict) -> bool:
    """True when ``graphs`` (the manifest's) hold what ``v`` runs for ``cfg`` (an unrolled graph: for this k)."""
    if not v.applies(cfg) or not set(v.needs(cfg)) <= set(graphs):
        return False
    return v.name != "unrolled" or int(graphs["unrolled"].get("k", -1)) == cfg.k


def choose(cfg: SearchConfig, backend: str, on_cpu: bool, graphs: dict, model_dir="model") -> Variant:
    """"auto": the variant for this configuration, backend and device among the exported ones.
    Raises ManifestError when the export has none that runs here (re-export with the right --target)."""
    if cfg.k == 0:
        want = ["forward"]
    elif backend == "onnxruntime" and on_cpu:
        want = [n for n in CPU_ORDER if n != "host-head" or host_head_runs_here()]
        want.append("step")                  # a GPU-only export still scores on the CPU (slower)
    else:
        want = ["step"]
    for name in want:
        if exported(VARIANTS[name], cfg, graphs):
            return VARIANTS[name]
    have = sorted(v.name for v in VARIANTS.values() if exported(v, cfg, graphs))
    where = "the CPU" if backend == "onnxruntime" and on_cpu else f"{backend} on a GPU"
    raise ManifestError(f"{model_dir}: no exported search runs on {where} for k={cfg.k}, "
                        f"lr_theta={cfg.lr_theta} (this export has: {', '.join(have) or 'none'}; "
                        f"{where} runs {' or '.join(want)}); re-export with --target "
                        f"{'cpu' if on_cpu and backend == 'onnxruntime' else 'gpu'}")


def resolve(name: str, cfg: SearchConfig, backend: str, on_cpu: bool, graphs: dict, model_dir="model") -> Variant:
    """The variant ``name`` ("auto" or a row of VARIANTS), checked against the configuration, the
    backend, the device and the export; ValueError / ManifestError naming what does not fit."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if name == "auto":
        return choose(cfg, backend, on_cpu, graphs, model_dir)
    if name in REMOVED:
        raise ValueError(f"variant {name!r} was {REMOVED[name]}")
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r} (auto, {', '.join(VARIANTS)})")
    v = VARIANTS[name]
    if not v.applies(cfg):
        raise ValueError(f"variant {name!r} runs {'only k = 0' if v.k_zero else 'k >= 1'}; this configuration has "
                         f"k = {cfg.k}" + (" (variant 'forward')" if cfg.k == 0 else ""))
    if backend not in v.backends:
        raise ValueError(f"variant {name!r} is an onnxruntime (CPU) variant, not a {backend} one")
    if v.cpu_only and not on_cpu:
        raise ValueError(f"variant {name!r} runs on the CPU provider only")
    if not exported(v, cfg, graphs):
        missing = sorted(set(v.needs(cfg)) - set(graphs))
        raise ManifestError(f"{model_dir}: variant {name!r} needs the graphs {', '.join(v.needs(cfg))}"
                            + (f" (missing: {', '.join(missing)})" if missing else
                               f" for k={cfg.k} (exported for k={graphs['unrolled'].get('k')})")
                            + f"; re-export with --target {v.targets[0]}"
                            + (" --unrolled" if v.explicit_export else ""))
    return v
