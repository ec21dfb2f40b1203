"""TF32 emulation used by benchmarks/precision_study.py (the measured TF32 option)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ad.benchmarks.precision_study import _auroc, emulate_tf32, tf32_round  # noqa: E402


def test_tf32_round_to_nearest_even_at_10_bits():
    u = 2.0 ** -10      # TF32 ulp at 1
    x = torch.tensor([1.0, 1 + u, 1 + u / 2, 1 + 3 * u / 2, 1 + u / 4, 1 + 3 * u / 4, -2.5, 0.0], dtype=torch.float32)
    got = tf32_round(x).tolist()
    assert got == [1.0, 1 + u, 1.0, 1 + 2 * u, 1.0, 1 + u, -2.5, 0.0]   # ties to even
    r = torch.randn(10000, dtype=torch.float32)
    t = tf32_round(r)
    assert torch.all((t.view(torch.int32) & 0x1FFF) == 0)                  # 13 low mantissa bits cleared
    assert torch.max(torch.abs(t - r) / torch.abs(r)) <= 2.0 ** -11 + 1e-12
    assert torch.isinf(tf32_round(torch.tensor([float("inf")]))).all()


def test_emulation_rounds_forward_and_backward_gemms_and_restores(tiny_generator):
    import torch.nn.functional as F
    orig = F.conv_transpose2d
    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 4, 4, requires_grad=True)
    y_ref = orig(x, w, None, 2, 1)
    y_ref.sum().backward()
    gx_ref, gw_ref = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    with emulate_tf32():
        y = F.conv_transpose2d(x, w, None, 2, 1)
        (y * 1.001).sum().backward()     # a non-representable upstream gradient gets rounded too
    assert F.conv_transpose2d is orig
    xr, wr = tf32_round(x.detach()), tf32_round(w.detach())
    torch.testing.assert_close(y, orig(xr, wr, None, 2, 1))
    assert not torch.equal(y, y_ref) and (y - y_ref).abs().max() < 1e-2
    # the backward used the rounded operands: close to, but not equal to, the fp32 gradients
    assert not torch.equal(w.grad, gw_ref * 1.001)
    torch.testing.assert_close(w.grad, gw_ref * 1.001, rtol=5e-3, atol=5e-3)
    torch.testing.assert_close(x.grad, gx_ref * 1.001, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("op, w_shape", [("conv_transpose2d", (4, 3, 4, 4)), ("conv2d", (3, 4, 4, 4))])
def test_emulated_backward_is_the_conv_backward_of_rounded_operands_and_rounded_upstream(op, w_shape):
    """Exactly (atol 0) what TF32 GEMMs compute in the backward: the fp32 conv backward fed the rounded
    operands and the rounded upstream gradient. Catches a backward that leaves the upstream gradient
    unrounded (the 5e-3 tolerance above cannot: the difference is ~1e-4)."""
    import torch.nn.functional as F
    orig = getattr(F, op)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen, requires_grad=True)
    w = torch.randn(*w_shape, generator=gen, requires_grad=True)
    with emulate_tf32():
        y = getattr(F, op)(x, w, None, 2, 1)
    g = torch.randn(y.shape, generator=gen)                 # an upstream gradient with full fp32 mantissas
    assert not torch.equal(tf32_round(g), g)
    gx, gw = torch.autograd.grad(y, (x, w), g)
    xr = tf32_round(x.detach()).requires_grad_(True)
    wr = tf32_round(w.detach()).requires_grad_(True)
    want_x, want_w = torch.autograd.grad(orig(xr, wr, None, 2, 1), (xr, wr), tf32_round(g))
    assert torch.equal(gx, want_x) and torch.equal(gw, want_w)


def test_emulated_search_drifts_a_little(tiny_generator):
    from edge_ad.models.search import search_eager
    from edge_ad.runtime.config import SearchConfig, make_z0
    cfg = SearchConfig(k=3, n_seed=2)
    x = np.tanh(np.random.default_rng(0).standard_normal((4, 64, 64))).astype(np.float32)
    z0 = make_z0(2, tiny_generator.cfg.z_dim, 0)
    a = search_eager(tiny_generator, x, cfg, z0=z0).score
    with emulate_tf32():
        b = search_eager(tiny_generator, x, cfg, z0=z0).score
    assert a != b and abs(a - b) / a < 1e-2


def test_auroc():
    assert _auroc([0.1, 0.2], [0.3, 0.4]) == 1.0
    assert _auroc([0.3, 0.4], [0.1, 0.2]) == 0.0
    assert _auroc([0.1, 0.3], [0.2, 0.3]) == 0.625
