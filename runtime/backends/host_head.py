"""The generator's thin head (layers 0-1: z -> 4x4 -> 8x8) on the host, with Adam fused into its backward pass.

Used by the ``host-head`` search (backends/onnxruntime_host_adam.py, ``OrtHostAdamSearch(head=...)``):
per seed and step

    head.forward(z, w, a1)             # layers 0-1 (+ BN0/ReLU) -> a1 (C1, 8, 8), layer 1's output before BN1
    grad_tail_seed.onnx(x, a1, tail weights) -> a1.grad, the tail's gradients   # layers 2-4 in onnxruntime
    head.backward(a1.grad, z, dz, p, m, v, p0, coefs)   # -> dz; Adam on W0, gamma0, beta0, W1 in the same
                                                        #    pass as their gradients

Why (benchmarks/README.md, "Current: the host-head search"): these two layers hold 2.92 of the 3.58 M
weights at width 32 but their GEMMs have 1 and 16 rows; in onnxruntime layer 1's three GEMMs took
5.5 ms per step (MLAS repacks the 8 MB weight for a 16-row product) and their gradients went through
memory once more for the host's Adam. The C kernel (``_head_kernel``, built at install) reads W1 once per
pass, with AVX2 + FMA loops (x86-64; elsewhere the runtime runs the fused-adam search). Its NumPy
reference, which the tests compare it with, is tests/host_head_reference.py.

Layout: ``w`` is the prefix of the search's flat state buffer in the manifest's state order:
W0 (Z, 16 C0) columns (c, kh, kw) | gamma0 (C0) | beta0 (C0) | W1 column panels (N1 / 32, C0, 32),
N1 = 16 C1, columns (c, kh, kw). ``consts``: bn0 running mean (C0) then 1 / sqrt(var + eps) (C0),
float32 as the graphs store them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


try:
    from .. import _head_kernel as _kernel   # edge_ad.runtime._head_kernel, built from this folder's _head_kernel.c
except ImportError:        # not compiled (no C compiler at install time)
    _kernel = None

PANEL = 32          # W1's column panel width (the kernel's vector blocking)


def kernel_available() -> bool:
    """True when the compiled head kernel is installed."""
    return _kernel is not None


def vectorized() -> bool:
    """True when the kernel runs here: x86-64 with AVX2 + FMA. Elsewhere (ARM, older x86) the kernel refuses
    (portable loops were slower than onnxruntime's layers 0-1: measured 5.7 + 30 ms vs ~10 ms per step at
    width 32, and were removed) and ``Scorer.load``'s "auto" runs the fused-adam search."""
    return _kernel is not None and bool(_kernel.has_avx2())


@dataclass(frozen=True)
class HeadDims:
    """z_dim, C0 (layer 0's output channels, fg * 16) and N1 = 16 * C1 (layer 1's GEMM columns)."""

    z_dim: int
    c0: int
    n1: int

    @property
    def n0(self) -> int:
        return 16 * self.c0

    @property
    def c1(self) -> int:
        return self.n1 // 16

    @property
    def n_head(self) -> int:
        """Elements of the head's prefix of the flat state: W0, gamma0, beta0, W1."""
        return self.z_dim * self.n0 + 2 * self.c0 + self.c0 * self.n1

    def check(self) -> None:
        if self.z_dim < 1 or self.c0 < 4 or self.c0 % 4 or self.n1 < PANEL or self.n1 % PANEL:
            raise ValueError(f"unsupported head dims {self}: C0 must be a multiple of 4, N1 of {PANEL}")


def _check_disjoint(fn: str, bufs: dict, written: tuple) -> None:
    """The kernel's pointers are restrict: a written buffer must not overlap any other (and every buffer
    must be an aligned NumPy array; dtype, contiguity and sizes the kernel checks itself)."""
    for name, a in bufs.items():
        if a is not None and not (isinstance(a, np.ndarray) and a.flags.aligned):
            raise TypeError(f"{fn}: {name} must be an aligned NumPy array")
    for w in written:
        for name, a in bufs.items():
            if name != w and a is not None and np.may_share_memory(bufs[w], a):
                raise ValueError(f"{fn}: {w} and {name} overlap in memory")


class Head:
    """Layers 0-1 of one seed's generator on the host (the compiled kernel): ``forward`` then ``backward``
    per search step. One instance per worker thread (it owns the scratch buffer)."""

    def __init__(self, dims: HeadDims, consts: np.ndarray):
        dims.check()
        self.d = dims
        if _kernel is None:
            raise RuntimeError("the compiled head kernel (edge_ad.runtime._head_kernel) is not installed: "
                               "reinstall edge-ad with a C compiler available (the fused-adam search runs without it)")
        self.consts = np.ascontiguousarray(consts, dtype=np.float32).reshape(-1)
        if self.consts.size != 2 * dims.c0 or not np.all(np.isfinite(self.consts)):
            raise ValueError(f"head constants: expected {2 * dims.c0} finite floats (bn0 mean, inv_std), "
                             f"got {self.consts.size}")
        self.work = np.zeros(_kernel.work_size(dims.z_dim, dims.c0, dims.n1), np.float32)

    def forward(self, z: np.ndarray, w: np.ndarray, a1: np.ndarray) -> None:
        """z (z_dim,) and the head weights ``w`` (n_head,) -> a1 (C1, 8, 8) in place (layer 1's output, before BN1)."""
        d = self.d
        _check_disjoint("head.forward", {"z": z, "w": w, "a1": a1}, ("a1",))
        _kernel.forward(z, w, self.consts, self.work, a1, d.z_dim, d.c0, d.n1)

    def backward(self, da1: np.ndarray, z: np.ndarray, dz: np.ndarray, p: np.ndarray, m: Optional[np.ndarray],
                 v: Optional[np.ndarray], p0: Optional[np.ndarray], coefs: Optional[tuple]) -> None:
        """da1 (C1, 8, 8) -> dz (z_dim,) in place; with m, v: Adam on the head weights p (n_head,) in place.

        The gradients use the weights of this step's forward: p0 when given (the first step: moments
        taken as zero, p written), else p. m = v = None: z only (p is read, never written)."""
        d = self.d
        update = m is not None
        if update != (v is not None) or (update and coefs is None):
            raise ValueError("head.backward: give m, v and coefs (the weight update) or none of them (z only)")
        bufs = {"da1": da1, "z": z, "dz": dz, "p": p, "m": m, "v": v, "p0": p0}
        _check_disjoint("head.backward", bufs, ("dz", "p", "m", "v") if update else ("dz",))
        b1, b2, alpha, eps_k = (float(c) for c in coefs) if update else (0.0, 0.0, 0.0, 0.0)
        _kernel.backward(da1, z, dz, p, m, v, p0, self.consts, self.work, d.z_dim, d.c0, d.n1, b1, b2, alpha, eps_k)
