"""FLOP counts of the seeded search (checked against torch's FLOP counter) and the paper budget."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.jetson.budget import (DEVICES, budget_table, frame_cost, generator_layers, latency_ms,
                                   main, onnx_flops)


def _conv_flops(width):
    return sum(2 * L.macs for L in generator_layers(100, width, 4))


@pytest.mark.parametrize("width", [8, 16])
def test_conv_flops_match_torch_counter_on_eager_search(width):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from edge_ad.models.dcgan import GanConfig, Generator
    from edge_ad.models.search import search_eager
    from edge_ad.runtime.config import SearchConfig

    torch.manual_seed(0)
    G = Generator(GanConfig(features_g=width)).eval()
    cfg = SearchConfig(k=2, n_seed=2)
    with FlopCounterMode(display=False) as fc:
        search_eager(G, np.zeros((4, 64, 64), np.float32), cfg, seed=0)
    # per seed: k steps of (forward + input grad + weight grad) + the final forward
    expected = cfg.n_seed * (cfg.k * 3 + 1) * _conv_flops(width)
    assert fc.get_total_flops() == expected


def test_width32_is_about_37_gflop_of_convolutions():
    c = frame_cost(features_g=32)
    conv = 3 * (19 * 3 + 1) * _conv_flops(32)
    assert 36e9 < conv < 38e9                       # the feasibility study's "about 37 GFLOP"
    assert conv < c.flops_frame < 1.1 * conv        # elementwise + Adam add a few percent
    # widths scale ~quadratically (the z layer linearly)
    c16, c64 = frame_cost(features_g=16), frame_cost(features_g=64)
    assert 3.3 < c.flops_frame / c16.flops_frame < 4.0
    assert 3.6 < c64.flops_frame / c.flops_frame < 4.0


def test_z_only_search_is_cheaper_and_lighter():
    full, zonly = frame_cost(features_g=32), frame_cost(features_g=32, lr_theta=0.0)
    # no weight gradient (2 of 3 GEMM passes per step) and no Adam on the weights
    assert 0.6 * full.flops_frame < zonly.flops_frame < 2 / 3 * full.flops_frame
    assert zonly.bytes_frame < full.bytes_frame / 4


def test_params_match_the_torch_generator():
    torch = pytest.importorskip("torch")
    from edge_ad.models.dcgan import GanConfig, Generator
    for w in (8, 32):
        G = Generator(GanConfig(features_g=w))
        assert frame_cost(features_g=w).params_per_seed == sum(p.numel() for p in G.parameters())


def test_latency_budget_orders_devices_and_is_memory_bound_at_width32():
    c = frame_cost(features_g=32)
    t = {(d.name, d.power_mode): latency_ms(c, d) for d in DEVICES}
    nano = t[("Orin Nano 8GB", "15W (JP 5.1/6.0)")]
    agx = t[("AGX Orin 64GB", "MAXN 60W")]
    assert agx["total_ms"] < nano["total_ms"]
    assert nano["bound"] == "memory"    # ~8 GB of weight-state traffic per frame
    assert latency_ms(c, DEVICES[0], cuda_graph=False)["launch_ms"] > nano["launch_ms"]


def test_table_and_cli(capsys):
    table = budget_table((16, 32))
    assert table.count("\n") == 1 + 2 * len(DEVICES)
    main(["--width", "32"])
    assert "Orin Nano" in capsys.readouterr().out


@pytest.mark.parametrize("width", [8, 16])
def test_exported_graphs_have_the_counted_flops(tmp_path, width):
    """Measure the GEMM FLOPs of the exported step and final graphs: 3 and 1 forward passes."""
    pytest.importorskip("onnx")
    import onnx

    from edge_ad.export.onnx_graphs import Arch, build_graph
    S = 2
    arch = Arch(z_dim=100, widths=(16 * width, 8 * width, 4 * width, 2 * width, 4), n_seed=S,
                chunk_bytes=1 << 16)   # small chunks: the count must not depend on chunking
    bn = {l: (np.zeros(arch.widths[l]), np.ones(arch.widths[l])) for l in range(4)}
    fwd = _conv_flops(width)
    for kind, passes in (("step", 3), ("step_z", 2), ("final", 1)):
        p = tmp_path / f"{kind}.onnx"
        onnx.save(build_graph(arch, kind, bn), p)
        assert onnx_flops(p) == S * passes * fwd, kind


def test_budget_onnx_that_is_missing_is_a_usage_error(tmp_path, capsys):
    """--onnx naming no file: exit 2 with one line naming it, before the table (it printed the table,
    then a FileNotFoundError traceback: a k = 0 export has no step.onnx)."""
    import pytest

    from edge_ad.jetson.budget import main
    with pytest.raises(SystemExit) as e:
        main(["--onnx", str(tmp_path / "step.onnx")])
    out = capsys.readouterr()
    assert e.value.code == 2 and "step.onnx: no such file" in out.err and out.out == ""


def test_pixel_memory_ram_is_what_a_loaded_memory_holds():
    """jetson.budget.pixel_memory_mb (NumPy-free, for the robot) equals PixelMemory.nbytes() of a memory built
    under each row store and colour normalization (rows and bound tables, to the byte), and the shipped cylinder's
    table rows are the session-35 numbers: uint8 122.97 MB of rows (float32 491.52) + 76.94 MB of bound tables."""
    from edge_ad.jetson.budget import PIXEL_ROW_STORES, pixel_memory_mb, pixel_memory_table
    from edge_ad.runtime.pixel_memory import ROW_STORES, PixelMemory
    from edge_ad.runtime.preprocess import PreprocessSpec
    assert PIXEL_ROW_STORES == ROW_STORES
    rng = np.random.default_rng(0)
    F = rng.integers(0, 256, (3, 16, 16, 4), dtype=np.uint8)
    for colour_norm in ("gray", "none"):
        spec = PreprocessSpec(resolution=16, colour_norm=colour_norm, colour_reference=(0.6, 0.6, 0.6))
        for store in ROW_STORES:
            got = PixelMemory(F, spec, ["mirror", "blur:0.7"], rows=store).nbytes()
            want = pixel_memory_mb(3, 3, 16, store, colour_norm != "none")
            assert {k: v / 1e6 for k, v in got.items()} == pytest.approx(want, rel=0, abs=1e-12)
    cyl = pixel_memory_mb(300, 25, 64, "uint8", True), pixel_memory_mb(300, 25, 64, "float32", True)
    assert round(cyl[0]["rows"], 2) == 122.97 and round(cyl[1]["rows"], 2) == 491.52
    assert round(cyl[0]["bound"], 2) == round(cyl[1]["bound"], 2) == 76.94
    assert "| cylinder | 7500 x 4 x 64 x 64 | uint8 | 123.0 | 76.9 | 199.9 |" in pixel_memory_table()
    with pytest.raises(ValueError, match="store must be one of uint8, float32, got 'float16'"):
        pixel_memory_mb(1, 1, 64, "float16")
