"""The precision guard: which precisions swallow the generator's lr_theta Adam step."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from edge_ad.runtime.backends.precision import (PrecisionError, PrecisionWarning, analyze, check_precision,
                                       update_threshold)


def _weights(rng):
    # DCGAN-like: conv taps ~N(0, 0.02), BatchNorm scales ~N(1, 0.02), shifts small
    return {"gen.1.0.weight": rng.normal(0, 0.02, (64, 32, 4, 4)),
            "gen.1.1.weight": rng.normal(1, 0.02, 32),
            "gen.1.1.bias": rng.normal(0, 0.01, 32)}


def test_fp16_loses_every_update_and_is_refused(rng):
    W = _weights(rng)
    rep = analyze(W, 6e-9, "fp16")
    # 6e-9 is below float16's smallest subnormal (5.96e-8): the step itself is 0
    assert rep.lr_theta_stored == 0.0
    assert np.float16(6e-9) == 0
    assert rep.swallowed == rep.n_weights == sum(w.size for w in W.values())
    with pytest.raises(PrecisionError, match="fp16.*stored as 0.*100.0%"):
        check_precision(W, 6e-9, "fp16")


def test_fp16_allowed_explicitly_warns_loudly(rng):
    with pytest.warns(PrecisionWarning, match="LOSSY PRECISION ALLOWED"):
        rep = check_precision(_weights(rng), 6e-9, "fp16", allow_lossy=True)
    assert rep.fraction == 1.0


def test_fp32_drops_exactly_the_weights_near_one(rng):
    W = _weights(rng)
    rep = analyze(W, 6e-9, "fp32")
    # in [0.125, 0.25) half an ulp is 2**-27 = 7.45e-9 > 6e-9; in [0.0625, 0.125) it is 3.7e-9
    assert update_threshold(6e-9, np.float32) == 0.125
    assert rep.per_tensor["gen.1.1.weight"] == 1.0          # BN scales ~1: all frozen
    assert rep.per_tensor["gen.1.1.bias"] == 0.0            # |w| < 0.06: all move
    big = np.abs(W["gen.1.0.weight"]) >= 0.125
    assert rep.per_tensor["gen.1.0.weight"] == pytest.approx(big.mean())
    # cross-check against plain float32 arithmetic on a few values
    for w, lost in [(0.13, True), (1.0, True), (0.1, False), (0.01, False)]:
        w32 = np.float32(w)
        assert ((w32 + np.float32(6e-9)) == w32) == lost


def test_fp32_warns_but_is_allowed(rng):
    with pytest.warns(PrecisionWarning, match=r"fp32: .* rounded away for 32/"):
        rep = check_precision(_weights(rng), 6e-9, "fp32")
    assert not rep.worse_than_fp32


def test_no_warning_when_nothing_is_lost():
    W = {"w": np.full(100, 0.01)}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rep = check_precision(W, 6e-9, "fp32")
    assert rep.swallowed == 0


def test_tf32_keeps_fp32_storage_but_demands_measurement(rng):
    W = _weights(rng)
    with pytest.warns(PrecisionWarning, match="measure score drift and AUROC"):
        rep = check_precision(W, 6e-9, "tf32")
    assert rep.swallowed == analyze(W, 6e-9, "fp32").swallowed


def test_z_only_search_may_use_fp16(rng):
    # lr_theta = 0: no weight update to lose; lr_z = 0.05 survives fp16 for |z| <= 6
    rep = check_precision(_weights(rng), 0.0, "fp16")
    assert rep.swallowed == 0 and rep.z_ok
    # a tiny lr_z would not: refused
    with pytest.raises(PrecisionError, match="lr_z"):
        check_precision(_weights(rng), 0.0, "fp16", lr_z=1e-4)


def test_larger_lr_survives_fp16():
    # with a 1e-3 step fp16 loses updates only for |w| >= 4
    assert update_threshold(1e-3, np.float16) == 4.0
    rep = analyze({"w": np.array([0.5, 1.0, 3.0, 5.0])}, 1e-3, "fp16")
    assert rep.swallowed == 1


def test_bad_input_is_named():
    with pytest.raises(PrecisionError, match="unknown precision 'int8'"):
        analyze({"w": np.ones(3)}, 6e-9, "int8")
    with pytest.raises(PrecisionError, match="'w' contains NaN"):
        analyze({"w": np.array([1.0, np.nan])}, 6e-9)
