"""The NumPy reference of the host head (layers 0-1 with Adam on their weights) that the tests compare the
compiled kernel (runtime/backends/_head_kernel.c via runtime/backends/host_head.Head) with. Not a runtime path: the
host-head search runs the kernel only (its AVX2 loops; elsewhere the runtime runs fused-adam).

Same interface as ``Head``: ``forward(z, w, a1)`` then ``backward(da1, z, dz, p, m, v, p0, coefs)``; the
weight gradient of the last backward pass is kept in ``g`` (the kernel never writes it to memory)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from edge_ad.runtime.backends import host_adam
from edge_ad.runtime.backends.host_head import PANEL, HeadDims


def split(w: np.ndarray, d: HeadDims):
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


class NumpyHead:
    """Layers 0-1 of one seed's generator in NumPy (float32 GEMMs) and Adam through host_adam's NumPy path."""

    def __init__(self, dims: HeadDims, consts: np.ndarray):
        dims.check()
        self.d = dims
        self.consts = np.ascontiguousarray(consts, dtype=np.float32).reshape(-1)
        if self.consts.size != 2 * dims.c0 or not np.all(np.isfinite(self.consts)):
            raise ValueError(f"head constants: expected {2 * dims.c0} finite floats (bn0 mean, inv_std), "
                             f"got {self.consts.size}")
        self.g = np.zeros(dims.n_head, np.float32)          # the head's weight gradient of the last backward
        self._saved = None

    def forward(self, z: np.ndarray, w: np.ndarray, a1: np.ndarray) -> None:
        d = self.d
        W0, gamma, beta, W1 = split(w, d)
        mean, inv_std = self.consts[:d.c0, None], self.consts[d.c0:, None]
        a0 = (z.reshape(1, -1) @ W0).reshape(d.c0, 16)                   # (C0, 16 positions)
        xhat = (a0 - mean) * inv_std
        h0 = np.maximum(xhat * gamma[:, None] + beta[:, None], np.float32(0))
        cols = np.matmul(W1.transpose(0, 2, 1), h0).reshape(d.n1, 16)    # (N1, 16) = W1^T h0
        a1[...] = col2im_l1(cols, d.c1)
        self._saved = (np.array(z, np.float32).reshape(-1), xhat, h0)

    def backward(self, da1: np.ndarray, z: np.ndarray, dz: np.ndarray, p: np.ndarray, m: Optional[np.ndarray],
                 v: Optional[np.ndarray], p0: Optional[np.ndarray], coefs: Optional[tuple]) -> None:
        d = self.d
        if self._saved is None:
            raise RuntimeError("backward before forward")
        zf, xhat, h0 = self._saved
        w = p0 if p0 is not None else p
        W0, gamma, _, W1 = split(w, d)
        inv_std = self.consts[d.c0:, None]
        dcols = im2col_l1(np.asarray(da1, np.float32).reshape(d.c1, 8, 8))   # (N1, 16)
        Wf = W1.transpose(1, 0, 2).reshape(d.c0, d.n1)                   # (C0, N1)
        dh0 = Wf @ dcols                                                  # (C0, 16)
        dy = np.where(h0 > 0, dh0, np.float32(0))
        da0 = (dy * (gamma[:, None] * inv_std)).reshape(-1)              # (N0,)
        dz.reshape(-1)[...] = W0 @ da0
        if m is None:
            return
        gW0, gg, gb, gW1 = split(self.g, d)
        gW0[...] = np.outer(zf, da0)
        gg[...] = np.sum(dy * xhat, axis=1)
        gb[...] = np.sum(dy, axis=1)
        gW1[...] = (h0 @ dcols.T).reshape(d.c0, d.n1 // PANEL, PANEL).transpose(1, 0, 2)
        host_adam.adam_update(p, m, v, self.g, coefs, p0, "numpy")
