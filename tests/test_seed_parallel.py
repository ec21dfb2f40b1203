"""The seed-parallel search (issue 3): the single-seed unrolled graph (unrolled_seed.onnx) run once
per seed from concurrent threads gives the grouped unrolled graph's results, on real frames."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge_ad.runtime.config import SearchConfig, make_z0
from edge_ad.runtime.manifest import ManifestError, load_manifest
from edge_ad.runtime.scorer import Scorer

from conftest import flip_last_bytes

K, S = 2, 3


@pytest.fixture(scope="module")
def model(export_tiny):
    return export_tiny(K, S)


def test_export_writes_the_single_seed_graph(model):
    man = load_manifest(model, verify=True)
    g = man["graphs"]["unrolled_seed"]
    assert g["file"] == "unrolled_seed.onnx" and g["k"] == K and g["n_seed"] == 1
    assert man["files"]["unrolled_seed.onnx"]                       # sha256 recorded
    ins = {i["name"]: i for i in g["inputs"]}
    grouped = {i["name"]: i for i in man["graphs"]["unrolled"]["inputs"]}
    assert set(ins) == set(grouped)                                  # same state names and chunks
    for name, i in ins.items():
        assert i["dtype"] == "float32"
        if name in ("step_size_z", "step_size_theta", "inv_sqrt_bc2"):         # per-step (k,) vectors
            assert i["shape"] == grouped[name]["shape"] == [K]
        elif grouped[name]["shape"][:1] == [S]:
            assert i["shape"] == [1] + grouped[name]["shape"][1:], name
    assert {o["name"]: o["shape"] for o in g["outputs"]}["recon"] == [1, 4, 64, 64]


def test_seed_parallel_equals_grouped_unrolled_on_real_frames(model, val_frames):
    grouped = Scorer.load(model, variant="unrolled", threads=1)
    par = Scorer.load(model, variant="seed-parallel", threads=2)   # n_seed workers on >= 2 CPU threads
    assert grouped.mode == "unrolled" and par.mode == "seed-parallel" and par._search.workers == S
    for i, (rgb, depth) in enumerate(val_frames(4)):
        z0 = make_z0(S, 100, 10 + i)
        a = grouped.score(rgb, depth, z0=z0, keep_reconstructions=True)
        b = par.score(rgb, depth, z0=z0, keep_reconstructions=True)
        assert abs(b.score - a.score) <= 1e-5 * abs(a.score)
        np.testing.assert_allclose(b.seed_losses, a.seed_losses, rtol=1e-5)
        assert b.seed_losses.shape == (S,) and b.seed_losses.dtype == np.float64
        assert b.error_map.shape == a.error_map.shape == (64, 64) and b.error_map.dtype == a.error_map.dtype
        np.testing.assert_allclose(b.error_map, a.error_map, rtol=1e-5, atol=1e-7)
        assert b.z.shape == (S, 100) and b.reconstructions.shape == (S, 4, 64, 64)
        np.testing.assert_allclose(b.z, a.z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.reconstructions, a.reconstructions, rtol=1e-5, atol=1e-6)
        assert np.ptp(b.seed_losses) > 0                    # the seeds really differ (not one seed 3x)


def test_weights_reset_per_frame(model, scores_a_b_a):
    first, _, again = scores_a_b_a(Scorer.load(model, variant="seed-parallel", threads=2))
    assert again.score == first.score


def test_threads_1_explicit_and_two_workers(model, val_frames, monkeypatch):
    (rgb, depth), = val_frames(1)
    z0 = make_z0(S, 100, 0)
    ref = Scorer.load(model, variant="unrolled", threads=1).score(rgb, depth, z0=z0)
    one = Scorer.load(model, variant="seed-parallel", threads=1)
    assert one.mode == "seed-parallel" and one._search.workers == 1
    two = Scorer.load(model, variant="seed-parallel", threads=2, workers=2)
    assert two._search.workers == 2
    for s in (one, two):
        r = s.score(rgb, depth, z0=z0)
        assert abs(r.score - ref.score) <= 1e-5 * abs(ref.score)
    from edge_ad.runtime import host_adam
    monkeypatch.setattr(host_adam, "_kernel", None)                    # auto without the fused-adam kernel:
    assert Scorer.load(model, threads=1).mode == "unrolled"           # the grouped graph on one thread,
    assert Scorer.load(model, threads=2).mode == "seed-parallel"      # seeds on cores from two


def test_tampered_single_seed_graph_is_refused(model, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(model, d)
    flip_last_bytes(d / "unrolled_seed.onnx")
    with pytest.raises(ManifestError, match="unrolled_seed.onnx"):
        Scorer.load(d, variant="seed-parallel", threads=2)
    with pytest.raises(ManifestError, match="unrolled_seed.onnx"):
        Scorer.load(d, variant="unrolled", threads=1)                  # every file is checked


def test_fallbacks_and_refusals(model, export_tiny):
    z = Scorer.load(model, lr_theta=0.0, variant="step", threads=2)    # z-only: the z-only step graph
    assert z.mode == "step_z"
    with pytest.raises(ManifestError, match="k=2"):
        Scorer.load(model, variant="seed-parallel", config=SearchConfig(k=1, n_seed=S))
    single = export_tiny(1, 1)                                         # n_seed 1: nothing to split
    assert "unrolled_seed" not in load_manifest(single)["graphs"]
    assert Scorer.load(single, variant="unrolled", threads=2).mode == "unrolled"
    with pytest.raises(ManifestError, match="single-seed graph"):
        Scorer.load(single, variant="seed-parallel")


def test_parity_report_covers_the_seed_parallel_search(tiny_parity_export):
    man = tiny_parity_export(1, 2, 1)
    assert man["parity"]["passed"]
    for row in man["parity"]["frames"]:
        assert row["seed_parallel"]["rel_diff"] <= 1e-4, row
        assert abs(row["seed_parallel"]["onnx_score"] - row["unrolled"]["onnx_score"]) \
            <= 1e-5 * abs(row["unrolled"]["onnx_score"])


def test_bench_seed_parallel_variant(model, tiny_bench):
    from edge_ad.export import benchmark
    res = tiny_bench(model, ("onnx-unrolled", "onnx-seed-parallel", "onnx-seed-parallel-cores"))
    v = res["variants"]
    assert "| onnx-seed-parallel |" in benchmark.format_table(res)
    assert set(v) == {"onnx-unrolled", "onnx-seed-parallel", "onnx-seed-parallel-cores"}
    for name in ("onnx-seed-parallel", "onnx-seed-parallel-cores"):
        assert v[name]["max_rel_score_diff_vs_onnx-unrolled"] <= 1e-5
        assert v[name]["gflop_per_frame"] == v["onnx-unrolled"]["gflop_per_frame"]
