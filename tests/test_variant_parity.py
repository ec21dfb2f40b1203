"""Every search variant that ships against the float64 PyTorch reference, at the shipped lr_theta = 6e-9
AND at a large lr_theta = 1e-3 (and z only).

At 6e-9 the weight updates move the score by ~1e-7 (each weight by about one float32 ulp per step), so
end-of-search parity cannot see a bug in the weight-update path (a dropped, doubled or misordered Adam
step on the weights). At 1e-3 the weights move far above float32 rounding and change the score by
percent, so the same tolerances see it. Variants: the onnxruntime step loop (the step / step_z graphs
the CUDA EP runs), fused-adam and host-head (each with the compiled kernels and with NumPy), and the
TensorRT runner on its fakes (tests/test_tensorrt_fakes.py: the engines run the step / step_z and final
graphs in onnxruntime; the engine build is the real code on the recording fake builder).

Tiny generator exported with k = 3, n_seed = 2, two real val frames, fixed z0. Tolerances (float32 vs
float64; measured on these frames at all three lr_theta: score and seed losses <= 6e-7 relative, error map
<= 2e-7 of its max, z <= 2.1e-6 absolute): score and seed losses 1e-5 relative, error map 1e-5 of its max,
z 5e-5 absolute.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_ad.runtime.backends import host_adam, host_head  # noqa: E402
from edge_ad.runtime.config import SearchConfig, make_z0  # noqa: E402
from edge_ad.runtime.preprocess import preprocess  # noqa: E402
from edge_ad.runtime.scorer import Scorer  # noqa: E402

K, S = 3, 2
LR_THETAS = (6e-9, 1e-3, 0.0)
VARIANTS = [("step", None), ("fused-adam", "c"), ("fused-adam", "numpy"), ("host-head", "c"),
            ("host-head", "numpy"), ("tensorrt", None)]
REL, Z_ABS = 1e-5, 5e-5


def _needs(variant, adam):
    if adam == "c" and not host_adam.kernel_available():
        return "compiled Adam kernel not built"
    if variant == "host-head" and not host_head.vectorized():
        return "the host head needs its compiled AVX2 kernel"
    return None


@pytest.fixture(scope="module")
def setup(export_tiny, tiny_generator, val_frames):
    """(model dir, [(rgb, depth, z0)], {lr_theta: [float64 reference SearchResult per frame]})."""
    from edge_ad.models.search import search
    d = export_tiny(K, S)
    frames = [(rgb, depth, make_z0(S, 100, 30 + i)) for i, (rgb, depth) in enumerate(val_frames(2))]
    refs = {lr: [search(tiny_generator, preprocess(rgb, depth), SearchConfig(k=K, n_seed=S, lr_theta=lr), z0=z0,
                        dtype=torch.float64) for rgb, depth, z0 in frames] for lr in LR_THETAS}
    return d, frames, refs


def _load(d, variant, adam, cfg, monkeypatch, tmp_path):
    if variant != "tensorrt":
        if adam == "numpy":                                     # an install without the compiled Adam kernel
            monkeypatch.setattr(host_adam, "_kernel", None)
        return Scorer.load(d, config=cfg, variant=variant, threads=2)
    import edge_ad.runtime.backends.tensorrt as T
    from test_tensorrt_fakes import FakeCudart, make_fake_trt
    with monkeypatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")                         # the precision guard's fp32 report
        mp.setitem(sys.modules, "tensorrt", make_fake_trt())
        mp.setattr(T, "load_cudart", lambda: FakeCudart())
        mp.setenv("EDGE_AD_ENGINE_CACHE", str(tmp_path / "engines"))
        s = Scorer.load(d, config=cfg, backend="tensorrt")
    assert s._search.mode == ("step" if cfg.updates_weights else "step_z")
    return s


@pytest.mark.parametrize("lr_theta", LR_THETAS)
@pytest.mark.parametrize("variant,adam", VARIANTS)
def test_variant_equals_the_float64_reference(setup, variant, adam, lr_theta, monkeypatch, tmp_path):
    why = _needs(variant, adam)
    if why:
        pytest.skip(why)
    d, frames, refs = setup
    cfg = SearchConfig(k=K, n_seed=S, lr_theta=lr_theta)
    s = _load(d, variant, adam, cfg, monkeypatch, tmp_path)
    if variant in ("fused-adam", "host-head"):
        assert s.mode == variant and s._search.adam_impl == adam
    for i, ((rgb, depth, z0), ref) in enumerate(zip(frames, refs[lr_theta])):
        r = s.score(rgb, depth, z0=z0)
        what = f"{variant} ({adam}), lr_theta {lr_theta:g}, frame {i}"
        assert abs(r.score - ref.score) <= REL * abs(ref.score), f"{what}: score {r.score} vs {ref.score}"
        np.testing.assert_allclose(r.seed_losses, ref.seed_losses, rtol=REL, err_msg=what)
        np.testing.assert_allclose(r.error_map, ref.error_map, rtol=0, atol=REL * np.abs(ref.error_map).max(),
                                   err_msg=what)
        np.testing.assert_allclose(r.z, ref.z, rtol=0, atol=Z_ABS, err_msg=what)


def test_the_large_lr_theta_makes_the_weight_path_visible(setup):
    """The premise: at 1e-3 the weight updates move the reference score far beyond the tolerance (so a
    broken weight update fails above), at 6e-9 they do not (why the shipped setting alone cannot see it)."""
    _, _, refs = setup
    for a, b, c in zip(refs[1e-3], refs[6e-9], refs[0.0]):
        assert abs(a.score - c.score) > 100 * REL * c.score
        assert abs(b.score - c.score) < REL * c.score
