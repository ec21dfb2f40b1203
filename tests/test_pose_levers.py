"""models/kinect-rgbd/pose_levers.py: the centroid-aligned memory picks, per train frame, the copy moved
onto the test frame's centroid, and the nuisance differences pair each copy with its own frame."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import load_kinect_script

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def pl():
    return load_kinect_script("pose_levers")


def _onehot(i: int, n: int = 400) -> np.ndarray:
    v = np.zeros(n)
    v[i] = 1.0
    return v


def test_aligned_distance_uses_the_copy_moved_onto_the_test_centroid(pl):
    R, n = 2, 3                                              # shifts -2..2, three train frames
    AU = np.zeros((2, n, 2 * R + 1, 2 * R + 1, 400))
    for m in range(2):
        for i in range(n):
            for a in range(2 * R + 1):
                for b in range(2 * R + 1):
                    AU[m, i, a, b] = _onehot(((m * n + i) * 25 + a * 5 + b))   # every copy its own direction
    AC = np.full((2, n, 2), 30.0)
    AC[0, 1] = (29.0, 31.0)                                  # train frame 1's centroid
    # a test latent equal to frame 1's copy moved by (+1, -1): the centroid (30, 30) minus (29, 31)
    e = AU[0, 1, 1 + R, -1 + R][None]
    d = pl.aligned_distance(e, np.array([[30.2, 29.9]]), AU, AC, radius=R)
    assert d[0] == pytest.approx(1e-6)                       # found (and floored), not another copy
    # the same latent with a centroid that asks for another shift of frame 1: no exact copy
    d = pl.aligned_distance(e, np.array([[31.0, 31.0]]), AU, AC, radius=R)
    assert d[0] == pytest.approx(2.0)                         # orthogonal rows: 2 - 2 cos = 2
    # a shift beyond the radius does not count even if the clipped copy matches: that copy is excluded
    # (scored 4, the largest), so the minimum is another frame's orthogonal row, 2 (with it: 1e-6)
    d = pl.aligned_distance(AU[0, 1, 2 * R, 0][None], np.array([[29.0 + 3, 31.0 - 3]]), AU, AC, radius=R)
    assert d[0] == pytest.approx(2.0)


def test_nuisance_differences_pair_each_copy_with_its_own_frame(pl):
    bank = pl.Bank.__new__(pl.Bank)
    rows = np.array([[1.0, 0, 0], [0, 1.0, 0], [1.0, 0, 0],    # frame 0, its two copies
                     [0, 0, 1.0], [0, 0, 1.0], [0, 1.0, 0]])   # frame 1, its two copies
    bank.U, bank.rows_per_frame = rows, 3
    D = bank.nuisance_differences()
    assert D.shape == (4, 3)
    np.testing.assert_allclose(D, [[-1, 1, 0], [0, 0, 0], [0, 0, 0], [0, 1, -1]])
