"""Adam on the host for the CPU search: one fused pass over float32 buffers, bit-identical to the graphs.

The exported graphs spell torch.optim.Adam as 10 elementwise ONNX ops per tensor (export/onnx_graphs.py
``adam``); onnxruntime runs each as a separate pass over the weights, ~18 ms per seed and step at width
32. The ``fused-adam`` search (backends/onnxruntime_host_adam.py) instead runs a gradient-only graph and
applies the update here, in place, with the C kernel ``_adam_kernel`` (built at install; 4.2-4.5 ms for
the same 3.6 M parameters). Without a compiler the install still works and the NumPy version below does
the same arithmetic (cache-sized chunks, ~10 ms). Both compute, in float32 and in the order of the
graphs' Adam ops (tests/test_fused_adam.py: C == NumPy == the graphs' in-graph Adam, bit for bit):

    m' = m * b1 + g          v' = v * b2 + g * g          p' = p - m' / (sqrt(v') * alpha + eps_k)

with the moments kept scaled (m / (1 - beta1), v / (1 - beta2)) and the coefficients b1, b2, alpha,
eps_k computed exactly as the graphs compute them from the host's float64 scalars (``coefficients``).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ..config import SearchConfig, adam_bias_corrections, adam_scalars

try:
    from .. import _adam_kernel as _kernel   # edge_ad.runtime._adam_kernel, built from this folder's _adam_kernel.c
except ImportError:        # not compiled (no C compiler at install time): the NumPy version is used
    _kernel = None

IMPLEMENTATIONS = ("c", "numpy")
_CHUNK = 1 << 15           # NumPy version: 32 Ki floats (128 KiB) per pass keeps the chain in L2


def kernel_available() -> bool:
    """True when the compiled single-pass kernel is installed."""
    return _kernel is not None


def default_implementation() -> str:
    return "c" if _kernel is not None else "numpy"


def coefficients(cfg: SearchConfig, t: int, lr: float) -> tuple:
    """(b1, b2, alpha, eps_k) as float32 for Adam step t (1-based) with learning rate ``lr``.

    Mirrors onnx_graphs.adam_coefs op by op in float32 on the float32-cast host scalars of
    config.adam_scalars (bias corrections in float64), so the host update equals the
    graphs' update bit for bit: k = max(lr / bc1, 1e-30) * (1 - beta1),
    alpha = sqrt(1 - beta2) * (1 / sqrt(bc2)) / k, eps_k = eps / k."""
    f = np.float32
    s = {k: f(v) for k, v in adam_scalars(cfg, t).items()}
    step = f(lr / adam_bias_corrections(t, cfg.beta1, cfg.beta2)[0])   # float64 on the host, like step_size_*
    k = f(max(step, f(1e-30)) * s["one_minus_beta1"])
    alpha = f(f(np.sqrt(s["one_minus_beta2"]) * s["inv_sqrt_bc2"]) / k)
    return s["beta1"], s["beta2"], alpha, f(s["eps"] / k)


def _check(name: str, a: np.ndarray, n: Optional[int] = None) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32 or not a.flags.c_contiguous or not a.flags.aligned:
        raise TypeError(f"adam_update: {name} must be an aligned C-contiguous float32 array, got "
                        f"{getattr(a, 'dtype', type(a).__name__)}")
    if n is not None and a.size != n:
        raise ValueError(f"adam_update: {name} has {a.size} elements, expected {n}")


def adam_update(p: np.ndarray, m: np.ndarray, v: np.ndarray, g: np.ndarray, coefs: tuple,
                p0: Optional[np.ndarray] = None, impl: Optional[str] = None) -> None:
    """One in-place Adam step on float32 buffers of equal size: p, m, v updated from gradient g.

    p0: the first step of a search: the weights are read from p0 (the pristine copy, not modified)
    and the moments are taken as zero (m and v are only written). coefs: ``coefficients(...)``.
    impl: "c" (compiled kernel; default when installed) or "numpy"."""
    impl = impl or default_implementation()
    n = p.size
    bufs = (("p", p), ("m", m), ("v", v), ("g", g)) + ((("p0", p0),) if p0 is not None else ())
    for name, a in bufs:
        _check(name, a, n)
    for i, (na, a) in enumerate(bufs):          # the kernel's pointers are restrict: no overlaps
        for nb, b in bufs[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"adam_update: {na} and {nb} overlap in memory")
    b1, b2, alpha, eps_k = (np.float32(c) for c in coefs)
    if impl == "c":
        if _kernel is None:
            raise RuntimeError("the compiled Adam kernel (edge_ad.runtime._adam_kernel) is not installed: "
                               "reinstall edge-ad with a C compiler available, or use impl='numpy'")
        _kernel.adam_update(p, m, v, g, float(b1), float(b2), float(alpha), float(eps_k), p0)
        return
    if impl != "numpy":
        raise ValueError(f"unknown Adam implementation {impl!r} (choose from {IMPLEMENTATIONS})")
    pf, mf, vf, gf = (a.reshape(-1) for a in (p, m, v, g))
    p0f = None if p0 is None else p0.reshape(-1)
    t1 = np.empty(min(n, _CHUNK), np.float32)
    for a in range(0, n, _CHUNK):
        b = min(a + _CHUNK, n)
        pc, mc, vc, gc, tc = pf[a:b], mf[a:b], vf[a:b], gf[a:b], t1[:b - a]
        if p0f is None:
            np.multiply(mc, b1, out=mc)
            mc += gc                                   # m' = m * b1 + g
            np.multiply(vc, b2, out=vc)
            np.multiply(gc, gc, out=tc)
            vc += tc                                   # v' = v * b2 + g * g
        else:
            mc[...] = gc                               # m = 0: m' = g, v' = g * g exactly
            np.multiply(gc, gc, out=vc)
            pc[...] = p0f[a:b]
        np.sqrt(vc, out=tc)
        tc *= alpha
        tc += eps_k                                    # sqrt(v') * alpha + eps_k
        np.divide(mc, tc, out=tc)
        pc -= tc                                       # p' = p - m' / (...)
