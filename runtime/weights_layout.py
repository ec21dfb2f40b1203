"""The generator's ConvTranspose weights as GEMM matrices: the column orders the graphs use (NumPy only).

A torch ConvTranspose2d(k=4) weight (C_in, C_out, 4, 4) becomes a (C_in, 16 * C_out) matrix whose
columns are the 16 * C_out rows of the GEMM output ``cols = W^T A``:
  layer 0 (1x1 -> 4x4), and order "col2im":  columns (c, kh, kw), torch's own order (Col2Im's too);
  order "d2s" (stride-2 layers):            columns (a, c', b, d, c) with kh = 2a + b, kw = 2c' + d,
                                            so DepthToSpace/SpaceToDepth (DCR) do the sub-pixel shuffles.
Exports record the order of every graph's weights (manifest "layout"/graph "state" entries); the
runtime converts between orders with ``from_gemm`` / ``to_gemm`` (export/onnx_graphs.py builds with
``to_gemm``)."""
from __future__ import annotations

import numpy as np

ORDERS = ("d2s", "col2im")


def to_gemm(w: np.ndarray, layer: int, order: str = "d2s") -> np.ndarray:
    """torch ConvT weight (C_in, C_out, 4, 4) -> (C_in, 16*C_out) in column ``order``."""
    if order not in ORDERS:
        raise ValueError(f"unknown column order {order!r} (choose from {ORDERS})")
    cin, cout = w.shape[:2]
    if layer == 0 or order == "col2im":
        return w.reshape(cin, cout * 16)
    return w.reshape(cin, cout, 2, 2, 2, 2).transpose(0, 2, 4, 3, 5, 1).reshape(cin, 16 * cout)


def from_gemm(m: np.ndarray, layer: int, order: str = "d2s") -> np.ndarray:
    """(C_in, 16*C_out) in column ``order`` -> the torch ConvT weight (C_in, C_out, 4, 4)."""
    if order not in ORDERS:
        raise ValueError(f"unknown column order {order!r} (choose from {ORDERS})")
    cin, cout = m.shape[0], m.shape[1] // 16
    if layer == 0 or order == "col2im":
        return m.reshape(cin, cout, 4, 4)
    # columns (a, c', b, d, c) -> axes (cin, c, a, b, c', d)
    return m.reshape(cin, 2, 2, 2, 2, cout).transpose(0, 5, 1, 3, 2, 4).reshape(cin, cout, 4, 4)


def to_panels(m: np.ndarray, panel: int) -> np.ndarray:
    """(C_in, N) GEMM matrix -> (N / panel, C_in, panel) column panels (a graph's "panel" entries)."""
    cin, n = m.shape
    if panel <= 0 or n % panel:
        raise ValueError(f"panel width {panel} does not divide the {n} columns")
    return np.ascontiguousarray(m.reshape(cin, n // panel, panel).transpose(1, 0, 2))


def from_panels(p: np.ndarray) -> np.ndarray:
    """(N / panel, C_in, panel) column panels -> the (C_in, N) GEMM matrix."""
    nb, cin, panel = p.shape
    return np.ascontiguousarray(p.transpose(1, 0, 2).reshape(cin, nb * panel))
