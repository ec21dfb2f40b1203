"""``edge-ad bench``: FLOP accounting and a small interleaved run (tiny generator, one real frame)."""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")


def test_model_flops_counts_the_transposed_convolutions():
    from edge_ad.benchmarks.search_bench import model_flops
    # width 64 forward, by hand: z->1024 @4x4, 1024->512 @8x8, 512->256 @16x16, 256->128 @32x32, 128->4 @64x64
    fwd = 100 * 1024 * 16 + 1024 * 512 * 16 * 4 ** 2 + 512 * 256 * 16 * 8 ** 2 \
        + 256 * 128 * 16 * 16 ** 2 + 128 * 4 * 16 * 32 ** 2
    assert model_flops(100, 64, 4, 1, 0) == 2 * fwd
    # faithful step = forward + input gradient + weight gradient; z-only drops the weight gradient
    assert model_flops(100, 64, 4, 3, 19) == 2 * 3 * (19 * 3 * fwd + fwd)
    assert model_flops(100, 64, 4, 3, 19, weights=False) == 2 * 3 * (19 * 2 * fwd + fwd)


def test_bench_command_small_run(tmp_path, tiny_generator, kinect_root):
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", str(ck), "--frames", "1", "--repeats", "1", "--threads", "1",
                                  "--variant", "batched", "--variant", "onnx-step", "--variant", "onnx-z-only",
                                  "--no-rss", "--out", str(out)])
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["sgemm_peak_gflops"] > 1 and res["threads"] == 1
    v = res["variants"]
    assert set(v) == {"batched", "onnx-step", "onnx-z-only"}
    for m in v.values():
        assert m["median_s"] > 0 and m["gflops"] > 0 and 0 < m["frac_of_sgemm_peak"] < 2
    # the benchmarked ONNX search computes the same score as the PyTorch reference
    assert v["onnx-step"]["max_rel_score_diff_vs_batched"] < 1e-4
    assert v["onnx-z-only"]["gflop_per_frame"] < v["onnx-step"]["gflop_per_frame"]
    assert "| onnx-step |" in r.output
