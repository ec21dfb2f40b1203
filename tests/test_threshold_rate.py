"""models/kinect-rgbd/threshold_rate.py: thresholds read from the pooled normal frames (val + train
leave-one-out) and the z-margins to the issue's targets, on scores whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_kinect_script

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def tr():
    return load_kinect_script("threshold_rate")


def test_rate_table_pools_val_and_train_normals(tr):
    val = {"clean": np.arange(100) / 100, "dark": np.arange(100) / 100 + 0.5}      # normal scores
    loo = {"clean": (np.arange(300) + 0.5) / 300, "dark": (np.arange(300) + 0.5) / 300 + 0.5}   # no ties with val
    anomalies = {"clean": np.r_[np.full(180, 5.0), np.full(20, 0.0)], "dark": np.full(200, 5.0)}
    rows = tr.rate_table(val, anomalies, loo, [0.05, 0.10])
    pool = np.r_[val["clean"], loo["clean"]]
    for row in rows:
        assert row["threshold"] == np.quantile(pool, 1 - row["rate"], method="higher")   # the 400 frames, not 100
        assert row["false_alarms"]["clean"] == pytest.approx((pool > row["threshold"]).mean())
        assert row["flagged"]["clean"] == pytest.approx(0.9) and row["worst_nuisance"] == "dark"
        assert row["false_alarms"]["dark"] > 0.4                                       # half the dark frames above
        assert row["z_margins"]["flagged"] == pytest.approx(0.0, abs=1e-9)           # exactly at 90 %
        assert row["z_margins"]["nuisance_false_alarms"] < -5 and row["min_z"] == row["z_margins"]["nuisance_false_alarms"]
    assert rows[0]["false_alarms"]["clean"] == pytest.approx(0.0475)                   # 19 of 400 above


def test_z_margin_sign_and_scale(tr):
    assert tr.z_margin(0.95, 0.90, 200, above=True) == pytest.approx(0.05 / np.sqrt(0.95 * 0.05 / 200))
    assert tr.z_margin(0.12, 0.10, 100, above=False) == pytest.approx(-0.02 / np.sqrt(0.12 * 0.88 / 100))
    assert tr.z_margin(0.0, 0.10, 100, above=False) == pytest.approx(0.10 / np.sqrt(0.01 / 100))   # floored se
