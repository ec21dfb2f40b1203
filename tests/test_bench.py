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
    # audit 26 #11: a second bench with the same --out replaced the first's JSON; refused before it runs
    before = out.read_bytes()
    r = CliRunner().invoke(main, ["bench", str(ck), "--frames", "1", "--repeats", "1", "--threads", "1",
                                  "--variant", "batched", "--no-rss", "--out", str(out)])
    assert r.exit_code == 1 and f"--out {out} exists" in r.output and "| batched |" not in r.output, r.output
    assert out.read_bytes() == before


ENC_CFG_FIELDS = dict(name="izi-mem-bench-test", n_seed=1, k=0, lr_theta=0.0, score_fg_power=0.5, z_init="encoder",
                      score_latent_power=1.0, latent_metric="cosine", score_shift_radius=1)


@pytest.fixture(scope="module")
def encoder_checkpoint(tmp_path_factory, tiny_generator, kinect_root):
    """A tiny checkpoint laid out as the shipped kinect models are (scoring: izi encoder, latent bank of
    E(x) of 12 real train frames, k = 0, test-time shift-min R = 1), its export (no parity run) and
    the bank."""
    from conftest import save_bank_checkpoint
    from edge_ad.export.exporter import export_model
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.encoder import Encoder, EncoderConfig, latent_bank
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.preprocess import PreprocessSpec
    torch.manual_seed(5)
    E = Encoder(EncoderConfig(z_dim=100, width=4, channels=4)).eval()
    bank = latent_bank(E, to_tensor(load_kinect(kinect_root, "rectangle", "train", PreprocessSpec())[1][:12]).numpy())
    cfg = SearchConfig(**ENC_CFG_FIELDS)
    d = tmp_path_factory.mktemp("bench_enc")
    ck = d / "g.pt"
    save_bank_checkpoint(ck, tiny_generator, E, bank, cfg)
    export_model(ck, d / "model", parity=False, log=lambda *a: None)
    return ck, d / "model", E, bank, cfg


def test_bench_runs_the_pytorch_variants_with_the_checkpoints_encoder_and_bank(tmp_path, encoder_checkpoint,
                                                                                monkeypatch):
    """Audit 2 #1: on a checkpoint whose scoring starts from an encoder and multiplies by the latent
    distance (the shipped kinect models), eager / batched / eager-z-only crashed ('no latent distance was
    given'). They score now as edge-ad eval scores the checkpoint (score_batch with its encoder and bank),
    with and without --model."""
    from click.testing import CliRunner

    from edge_ad.benchmarks import search_bench
    from edge_ad.cli import main
    from edge_ad.models.search import score_batch
    from edge_ad.runtime.preprocess import PreprocessSpec
    monkeypatch.setattr(search_bench, "sgemm_peak", lambda threads: 50.0)
    ck, model, E, bank, cfg = encoder_checkpoint
    from edge_ad.models.checkpoint import load_generator
    G = load_generator(ck)
    (fid, x), = search_bench.bench_frames(1, PreprocessSpec())
    want = float(score_batch(G, x[None], cfg, seed=0, encoder=E, latent_bank=bank)[0])     # eval's scoring
    for extra in ([], ["--model", str(model)]):
        out = tmp_path / f"bench{len(extra)}.json"
        r = CliRunner().invoke(main, ["bench", str(ck), *extra, "--frames", "1", "--repeats", "1", "--threads", "1",
                                      "--variant", "eager", "--variant", "batched", "--variant", "eager-z-only",
                                      "--variant", "onnx-auto", "--no-rss", "--out", str(out)])
        assert r.exit_code == 0, r.output
        res = json.loads(out.read_text())
        v = res["variants"]
        # audit 33 #5: with k = 0 there is no search step to drop: eager-z-only is eager's computation, skipped
        assert set(v) == {"eager", "batched", "onnx-auto"} and set(res["skipped"]) == {"eager-z-only"}
        assert "note: skipping eager-z-only: k = 0: no search step to drop" in r.output, r.output
        for name in ("eager", "batched"):
            assert v[name]["scores"][0] == pytest.approx(want, rel=1e-5), name
        assert v["onnx-auto"]["max_rel_score_diff_vs_batched"] < 1e-4
        assert v["onnx-auto"]["speedup_vs_eager"] > 0
        assert v["batched"]["gflop_per_frame"] == pytest.approx(9 * search_bench.model_flops(100, 8, 4, 1, 0) / 1e9)
        # audit 33 #5: the latent distance (and the encoder) are not in the count, so no GFLOP/s or % of peak
        assert all(m["gflops"] is None and m["frac_of_sgemm_peak"] is None for m in v.values())
        assert res["flops_not_counted"] == "the encoder pass and the latent-bank distance"
        assert "| batched |" in r.output and " - | - |" in r.output
        assert ("GFLOP/frame counts the generator passes only (the encoder pass and the latent-bank distance are "
                "not counted): no GFLOP/s or % sgemm peak") in r.output, r.output


def test_bench_skips_a_pytorch_variant_that_cannot_score_the_export_and_keeps_the_others(
        tmp_path, encoder_checkpoint, tiny_generator, monkeypatch):
    """A checkpoint without the encoder the export's configuration starts from: the PyTorch variants are
    skipped with a note (in the output and results), the runtime's run; only those asked: a one-line error."""
    from click.testing import CliRunner

    from edge_ad.benchmarks import search_bench
    from edge_ad.cli import main
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    monkeypatch.setattr(search_bench, "sgemm_peak", lambda threads: 50.0)
    _, model, _, _, _ = encoder_checkpoint
    bare = tmp_path / "bare.pt"
    save_checkpoint(bare, tiny_generator, preprocess=PreprocessSpec())
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, ["bench", str(bare), "--model", str(model), "--frames", "1", "--repeats", "1",
                                  "--threads", "1", "--variant", "eager", "--variant", "batched",
                                  "--variant", "onnx-auto", "--no-rss", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "note: skipping eager, batched: the export's scoring configuration" in r.output
    res = json.loads(out.read_text())
    assert set(res["variants"]) == {"onnx-auto"} and set(res["skipped"]) == {"eager", "batched"}
    assert "carries none" in res["skipped"]["eager"]
    r = CliRunner().invoke(main, ["bench", str(bare), "--model", str(model), "--frames", "1", "--repeats", "1",
                                  "--threads", "1", "--variant", "eager", "--no-rss"])
    assert r.exit_code == 1 and "Error: none of the requested variants can run here" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_bench_says_when_the_export_is_of_another_checkpoint(tmp_path, tiny_generator, monkeypatch):
    """Audit 28 #9: bench CHECKPOINT --model DIR timed the eager search of one checkpoint against the export of
    another and reported the speed-up between the two, without a word. The export's manifest names its source's
    sha256: another checkpoint is said before the run (and recorded in the results' "warning"); the
    checkpoint's own export is taken silently. (A warning, not a refusal: the variants that cannot score
    another model's export are skipped, test_bench_skips_a_pytorch_variant_...)"""
    from click.testing import CliRunner

    import edge_ad.benchmarks.search_bench as bench_mod
    from edge_ad.cli import main
    from edge_ad.export.exporter import export_model
    from edge_ad.models.checkpoint import save_checkpoint
    from edge_ad.runtime.config import SearchConfig
    from edge_ad.runtime.preprocess import PreprocessSpec
    ck, other = tmp_path / "g.pt", tmp_path / "other.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec())
    save_checkpoint(other, tiny_generator, preprocess=PreprocessSpec(near_mm=300))
    export_model(ck, tmp_path / "m", search=SearchConfig(k=1, n_seed=1), parity=False, log=lambda *a: None)

    def stop(*a, **k):
        raise bench_mod.Skipped("stopped here")
    monkeypatch.setattr(bench_mod, "run_bench", stop)
    r = CliRunner().invoke(main, ["bench", str(other), "--model", str(tmp_path / "m"), "--no-rss"])
    assert f"warning: --model {tmp_path / 'm'} was exported from g.pt (sha256 " in r.output, r.output
    assert f"not from {other} (sha256 " in r.output and "their ratios compare two models" in r.output
    r = CliRunner().invoke(main, ["bench", str(ck), "--model", str(tmp_path / "m"), "--no-rss"])
    assert "warning" not in r.output and "stopped here" in r.output, r.output
