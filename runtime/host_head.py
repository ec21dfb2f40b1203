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
memory once more for the host's Adam. The C kernel (``_head_kernel``, built at install) reads W1 once per pass; the NumPy version
below (``impl="numpy"``) computes the same quantities with NumPy GEMMs and ``host_adam.adam_update``
and is the reference the tests compare the kernel with (float32 sums in another order: equal to ~1e-6).

Layout: ``w`` is the prefix of the search's flat state buffer in the manifest's state order:
W0 (Z, 16 C0) columns (c, kh, kw) | gamma0 (C0) | beta0 (C0) | W1 column panels (N1 / 32, C0, 32),
N1 = 16 C1, columns (c, kh, kw). ``consts``: bn0 running mean (C0) then 1 / sqrt(var + eps) (C0),
float32 as the graphs store them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import host_adam

try:
    from . import _head_kernel as _kernel
except ImportError:        # not compiled (no C compiler at install time)
    _kernel = None

IMPLEMENTATIONS = ("c", "numpy")
PANEL = 32          # W1's column panel width (the kernel's vector blocking)


def kernel_available() -> bool:
    """True when the compiled head kernel is installed."""
    return _kernel is not None


def vectorized() -> bool:
    """True when the kernel runs its AVX2 + FMA loops on this CPU (x86-64). Its portable loops (ARM,
    older x86) are slower than onnxruntime's layers 0-1 (measured 5.7 + 30 ms vs ~10 ms per step at
    width 32), so ``Scorer.load``'s "auto" picks the host-head search only when this is True."""
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


def _split(w: np.ndarray, d: HeadDims):
    """Views of the head prefix: W0 (Z, N0), gamma0 (C0), beta0 (C0), W1 panels (N1 / 32, C0, 32)."""
    o_g = d.z_dim * d.n0
    o_w1 = o_g + 2 * d.c0
    return (w[:o_g].reshape(d.z_dim, d.n0), w[o_g:o_g + d.c0], w[o_g + d.c0:o_w1],
            w[o_w1:d.n_head].reshape(d.n1 // PANEL, d.c0, PANEL))


def col2im_l1(cols: np.ndarray, c1: int) -> np.ndarray:
    """cols (16 C1 rows (c, kh, kw), 16 positions (i, j)) -> (C1, 8, 8): kernel 4, stride 2, pad 1, overlaps summed."""
    c = cols.reshape(c1, 4, 4, 4, 4)                        # (co, kh, kw, i, j)
    out = np.zeros((c1, 10, 10), np.float32)                # padded by 1: pixel 2i - 1 + kh -> 2i + kh
    for kh in range(4):
        for kw in range(4):
            out[:, kh:kh + 8:2, kw:kw + 8:2] += c[:, kh, kw]
    return out[:, 1:9, 1:9]


def im2col_l1(d: np.ndarray) -> np.ndarray:
    """(C1, 8, 8) -> cols (16 C1 rows (c, kh, kw), 16 positions): the transpose of ``col2im_l1``."""
    c1 = d.shape[0]
    pad = np.zeros((c1, 10, 10), np.float32)
    pad[:, 1:9, 1:9] = d
    out = np.empty((c1, 4, 4, 4, 4), np.float32)
    for kh in range(4):
        for kw in range(4):
            out[:, kh, kw] = pad[:, kh:kh + 8:2, kw:kw + 8:2]
    return out.reshape(c1 * 16, 16)


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
    """Layers 0-1 of one seed's generator on the host: ``forward`` then ``backward`` per search step.

    One instance per worker thread (it owns the scratch buffer). impl: "c" (the compiled kernel, default
    when installed) or "numpy"; generic=True runs the kernel's portable loops instead of AVX2 (tests)."""

    def __init__(self, dims: HeadDims, consts: np.ndarray, impl: Optional[str] = None, generic: bool = False):
        dims.check()
        self.d = dims
        self.impl = impl or ("c" if _kernel is not None else "numpy")
        if self.impl not in IMPLEMENTATIONS:
            raise ValueError(f"unknown head implementation {self.impl!r} (choose from {IMPLEMENTATIONS})")
        if self.impl == "c" and _kernel is None:
            raise RuntimeError("the compiled head kernel (edge_ad.runtime._head_kernel) is not installed: "
                               "reinstall edge-ad with a C compiler available, or use impl='numpy'")
        self.consts = np.ascontiguousarray(consts, dtype=np.float32).reshape(-1)
        if self.consts.size != 2 * dims.c0 or not np.all(np.isfinite(self.consts)):
            raise ValueError(f"head constants: expected {2 * dims.c0} finite floats (bn0 mean, inv_std), "
                             f"got {self.consts.size}")
        self.generic = bool(generic)
        if self.impl == "c":
            self.work = np.zeros(_kernel.work_size(dims.z_dim, dims.c0, dims.n1), np.float32)
        else:
            self.g = np.zeros(dims.n_head, np.float32)        # the head's gradient (NumPy path only)
            self._saved = None

    def forward(self, z: np.ndarray, w: np.ndarray, a1: np.ndarray) -> None:
        """z (z_dim,) and the head weights ``w`` (n_head,) -> a1 (C1, 8, 8) in place (layer 1's output, before BN1)."""
        d = self.d
        _check_disjoint("head.forward", {"z": z, "w": w, "a1": a1}, ("a1",))
        if self.impl == "c":
            _kernel.forward(z, w, self.consts, self.work, a1, d.z_dim, d.c0, d.n1, self.generic)
            return
        W0, gamma, beta, W1 = _split(w, d)
        mean, inv_std = self.consts[:d.c0, None], self.consts[d.c0:, None]
        a0 = (z.reshape(1, -1) @ W0).reshape(d.c0, 16)                   # (C0, 16 positions)
        xhat = (a0 - mean) * inv_std
        h0 = np.maximum(xhat * gamma[:, None] + beta[:, None], np.float32(0))
        cols = np.matmul(W1.transpose(0, 2, 1), h0).reshape(d.n1, 16)    # (N1, 16) = W1^T h0
        a1[...] = col2im_l1(cols, d.c1)
        self._saved = (np.array(z, np.float32).reshape(-1), xhat, h0)

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
        if self.impl == "c":
            _kernel.backward(da1, z, dz, p, m, v, p0, self.consts, self.work, d.z_dim, d.c0, d.n1,
                             b1, b2, alpha, eps_k, self.generic)
            return
        if self._saved is None:
            raise RuntimeError("head.backward before head.forward")
        zf, xhat, h0 = self._saved
        w = p0 if p0 is not None else p
        W0, gamma, _, W1 = _split(w, d)
        inv_std = self.consts[d.c0:, None]
        dcols = im2col_l1(np.asarray(da1, np.float32).reshape(d.c1, 8, 8))   # (N1, 16)
        Wf = W1.transpose(1, 0, 2).reshape(d.c0, d.n1)                   # (C0, N1)
        dh0 = Wf @ dcols                                                  # (C0, 16)
        dy = np.where(h0 > 0, dh0, np.float32(0))
        da0 = (dy * (gamma[:, None] * inv_std)).reshape(-1)              # (N0,)
        dz.reshape(-1)[...] = W0 @ da0
        if not update:
            return
        gW0, gg, gb, gW1 = _split(self.g, d)
        gW0[...] = np.outer(zf, da0)
        gg[...] = np.sum(dy * xhat, axis=1)
        gb[...] = np.sum(dy, axis=1)
        gW1[...] = (h0 @ dcols.T).reshape(d.c0, d.n1 // PANEL, PANEL).transpose(1, 0, 2)
        host_adam.adam_update(p, m, v, self.g, coefs, p0, "numpy")
