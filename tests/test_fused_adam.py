"""The fused-adam search (issue 3): gradient graphs in onnxruntime + Adam on the host in one pass.

The host update (runtime/backends/host_adam.py: compiled kernel and its NumPy twin) must be torch's Adam, the
two implementations must agree bit for bit, and the search must give the step graphs' results on
real frames, reset its weights per frame, and be covered by the export's parity report."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge_ad.runtime.backends import host_adam
from edge_ad.runtime.config import SearchConfig, make_z0
from edge_ad.runtime.manifest import ManifestError, load_manifest
from edge_ad.runtime.scorer import Scorer

from conftest import flip_last_bytes

K, S = 2, 3
needs_kernel = pytest.mark.skipif(not host_adam.kernel_available(),
                                  reason="compiled Adam kernel not built (no C compiler at install)")


@pytest.fixture(scope="module")
def model(export_tiny):
    return export_tiny(K, S)


def _run_adam(impl, p0, grads, cfg, lr):
    n = p0.size
    p, m, v = (np.full(n, np.nan, np.float32) for _ in range(3))      # never read at step 1 (p0 given)
    for t, g in enumerate(grads, start=1):
        host_adam.adam_update(p, m, v, g, host_adam.coefficients(cfg, t, lr), p0 if t == 1 else None, impl)
    return p, m, v


@needs_kernel
def test_kernel_equals_numpy_bit_for_bit_and_is_torch_adam():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    n = 100_003                                                      # not a multiple of the NumPy chunk
    p0 = rng.standard_normal(n).astype(np.float32)
    grads = [(rng.standard_normal(n) * 10.0 ** rng.integers(-6, 1, n)).astype(np.float32) for _ in range(4)]
    cfg = SearchConfig()
    for lr in (cfg.lr_z, 1e-3):
        c = _run_adam("c", p0, grads, cfg, lr)
        npy = _run_adam("numpy", p0, grads, cfg, lr)
        for a, b in zip(c, npy):
            np.testing.assert_array_equal(a, b)
        # torch.optim.Adam in float64 on the same gradients: the scaled moments and coefficients are Adam's
        w = torch.nn.Parameter(torch.tensor(p0, dtype=torch.float64))
        opt = torch.optim.Adam([w], lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        for g in grads:
            w.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
        ref = w.detach().numpy()
        delta, ref_delta = c[0].astype(np.float64) - p0, ref - p0
        assert np.max(np.abs(delta - ref_delta)) <= 1e-5 * np.max(np.abs(ref_delta)) + 4 * np.spacing(np.abs(p0)).max()
        st = opt.state[w]
        # float32 sums of 4 gradients: error bounded by a few ulps of sum |g| (sum g^2), per element
        g_abs = np.sum([np.abs(g.astype(np.float64)) for g in grads], axis=0)
        assert np.all(np.abs(c[1] * (1 - cfg.beta1) - st["exp_avg"].numpy()) <= 1e-6 * g_abs)
        assert np.all(np.abs(c[2] * (1 - cfg.beta2) - st["exp_avg_sq"].numpy()) <= 1e-6 * g_abs ** 2)


@needs_kernel
def test_kernel_checks_its_buffers_itself():
    from edge_ad.runtime import _adam_kernel
    a = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match="g must hold float32, got format 'd'"):
        _adam_kernel.adam_update(a, a.copy(), a.copy(), np.zeros(8), 0.9, 0.999, 1.0, 1e-8)
    with pytest.raises(ValueError, match="v has 4 elements, p has 8"):
        _adam_kernel.adam_update(a, a.copy(), np.zeros(4, np.float32), a.copy(), 0.9, 0.999, 1.0, 1e-8)
    with pytest.raises(TypeError, match="p must be a writable C-contiguous float32 buffer"):
        _adam_kernel.adam_update(np.zeros(16, np.float32)[::2], a.copy(), a.copy(), a.copy(), 0.9, 0.999, 1.0, 1e-8)
    ro = a.copy()
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="m must be a writable"):
        _adam_kernel.adam_update(a, ro, a.copy(), a.copy(), 0.9, 0.999, 1.0, 1e-8)


@needs_kernel
def test_host_adam_equals_the_graphs_adam_bit_for_bit(tiny_generator):
    """step_z.onnx applies Adam to z inside the graph; grad_z.onnx (same builder, same layout) gives
    the gradient it used. The host update from that gradient must reproduce the graph's outputs."""
    import onnxruntime as ort

    from edge_ad.export.search_graphs import arch_of, generator_arrays
    from edge_ad.export.onnx_graphs import build_graph, stack_state
    from edge_ad.runtime.config import adam_scalars
    params, bn = generator_arrays(tiny_generator)
    arch = arch_of(tiny_generator, 2)
    run = {k: ort.InferenceSession(build_graph(arch, k, bn).SerializeToString(), providers=["CPUExecutionProvider"])
           for k in ("step_z", "grad_z")}
    rng = np.random.default_rng(1)
    feed = {k: v.astype(np.float32) for k, v in stack_state(arch, params).items()}
    feed["x"] = rng.uniform(-1, 1, (4, 64, 64)).astype(np.float32)
    z = rng.standard_normal((2, 1, 100)).astype(np.float32)
    m = (rng.standard_normal((2, 1, 100)) * 1e-3).astype(np.float32)
    v = (rng.random((2, 1, 100)) * 1e-5).astype(np.float32)
    cfg, t = SearchConfig(), 3
    sc = {k: np.array(val, np.float32) for k, val in adam_scalars(cfg, t).items()}
    names = {i.name for i in run["step_z"].get_inputs()}
    out = dict(zip([o.name for o in run["step_z"].get_outputs()],
                   run["step_z"].run(None, {**{k: val for k, val in feed.items() if k in names}, "z": z, "z.m": m,
                                            "z.v": v, **{k: val for k, val in sc.items() if k in names}})))
    g = run["grad_z"].run(["z.grad"], {**{k: val for k, val in feed.items()
                                          if k in {i.name for i in run["grad_z"].get_inputs()}}, "z": z})[0]
    for impl in ("c", "numpy"):
        p2, m2, v2 = z.copy(), m.copy(), v.copy()
        host_adam.adam_update(p2, m2, v2, np.ascontiguousarray(g), host_adam.coefficients(cfg, t, cfg.lr_z), impl=impl)
        np.testing.assert_array_equal(m2, out["z.m.out"])
        np.testing.assert_array_equal(v2, out["z.v.out"])
        np.testing.assert_array_equal(p2, out["z.out"])
    assert np.abs(out["z.out"] - z).max() > 1e-3                      # a real step


def test_adam_update_rejects_bad_buffers(monkeypatch):
    a = np.zeros(8, np.float32)
    coefs = host_adam.coefficients(SearchConfig(), 1, 0.05)
    with pytest.raises(TypeError, match="g must be an aligned C-contiguous float32"):
        host_adam.adam_update(a, a.copy(), a.copy(), np.zeros(8), coefs, impl="numpy")
    with pytest.raises(ValueError, match="m has 4 elements, expected 8"):
        host_adam.adam_update(a, a[:4].copy(), a.copy(), a.copy(), coefs, impl="numpy")
    with pytest.raises(TypeError, match="p must be an aligned C-contiguous"):
        host_adam.adam_update(np.zeros(16, np.float32)[::2], a.copy(), a.copy(), a.copy(), coefs, impl="numpy")
    with pytest.raises(ValueError, match="unknown Adam implementation"):
        host_adam.adam_update(a, a.copy(), a.copy(), a.copy(), coefs, impl="fortran")
    with pytest.raises(ValueError, match="p0 and p overlap|p and p0 overlap"):
        host_adam.adam_update(a, a.copy(), a.copy(), a.copy(), coefs, p0=a, impl="numpy")
    with pytest.raises(TypeError, match="aligned"):
        host_adam.adam_update(np.frombuffer(bytes(33), np.float32, 8, offset=1), a.copy(), a.copy(), a.copy(),
                              coefs, impl="numpy")
    p0 = np.arange(8, dtype=np.float32)
    before = p0.copy()
    host_adam.adam_update(a, a.copy(), a.copy(), np.ones(8, np.float32), coefs, p0=p0, impl="numpy")
    np.testing.assert_array_equal(p0, before)                          # the pristine copy is only read
    assert np.all(a < p0)                                              # p = p0 - step
    monkeypatch.setattr(host_adam, "_kernel", None)
    with pytest.raises(RuntimeError, match="compiled Adam kernel .* is not installed"):
        host_adam.adam_update(a, a.copy(), a.copy(), a.copy(), coefs, impl="c")


def test_export_writes_the_gradient_graphs(model, tiny_generator):
    from edge_ad.runtime.backends.onnxruntime_host_adam import regroup_state
    from edge_ad.runtime.weights_layout import from_gemm, from_panels, to_gemm
    man = load_manifest(model, verify=True)
    g, f = man["graphs"]["grad_seed"], man["graphs"]["final_seed"]
    assert man["files"][g["file"]] and man["files"][f["file"]]      # sha256 recorded
    assert g["state"] == f["state"] and g["n_seed"] == 1
    outs = {o["name"]: o["shape"] for o in g["outputs"]}
    for st in g["state"]:
        assert outs[st["name"] + ".grad"] == [1] + st["shape"][1:]
        if st["cols"] is not None:                                  # unchunked: one tensor per layer
            assert st["name"].endswith(".c0") and st["cols"][0] == 0
    import onnx
    ops = {n.op_type for n in onnx.load(str(model / g["file"])).graph.node}
    assert "MatMul" in ops and "Sqrt" not in ops                    # no Adam in the gradient graph
    with np.load(model / "weights.npz") as npz:
        w = {k: npz[k] for k in npz.files}
    assert g["col_order"] == "col2im" and man["layout"]["col_order"] == "d2s"
    panels = {st["name"]: st["panel"] for st in g["state"] if st.get("panel")}
    assert panels == {"W1.c0": 32, "W2.c0": 32}                     # layers 1-2 (P <= 64), in column panels
    full = regroup_state(w, man["layout"]["state"], g["state"], "d2s", "col2im")
    w1 = full["W1.c0"]
    assert w1.shape == tuple(next(st["shape"] for st in g["state"] if st["name"] == "W1.c0")[1:])
    for name in panels:
        full[name] = from_panels(full[name])                          # (N / 32, C_in, 32) -> (C_in, N)
    np.testing.assert_array_equal(w1[1], full["W1.c0"][:, 32:64])    # panel 1 = columns 32..63
    from edge_ad.runtime.weights_layout import to_panels
    np.testing.assert_array_equal(to_panels(full["W1.c0"], 32), w1)
    with pytest.raises(ValueError, match="does not divide"):
        to_panels(np.zeros((2, 10), np.float32), 4)
    for st in man["layout"]["state"]:         # every d2s chunk is a slice of its layer, re-ordered
        if st["cols"] is not None:
            layer = int(st["param"].split(".")[1])
            one = to_gemm(from_gemm(full[st["name"].split(".")[0] + ".c0"], layer, "col2im"), layer, "d2s")
            np.testing.assert_array_equal(one[:, st["cols"][0]:st["cols"][1]], w[st["name"]])
    # the col2im order is torch's own: layer 1's matrix is the checkpoint's (C_in, C_out, 4, 4) weight
    np.testing.assert_array_equal(full["W1.c0"].reshape(-1), tiny_generator.state_dict()["gen.1.0.weight"].numpy().reshape(-1))
    bad = [dict(st) for st in man["layout"]["state"]]
    chunks = [st for st in bad if st["cols"] is not None and st["name"].startswith("W1.")]
    assert len(chunks) > 1                                          # the tiny export chunks layer 1
    chunks[1]["cols"] = [chunks[1]["cols"][0] + 16, chunks[1]["cols"][1]]
    with pytest.raises(ValueError, match="not contiguous"):
        regroup_state(w, bad, g["state"], "d2s", "col2im")


@needs_kernel
def test_fused_adam_equals_the_step_graph_on_real_frames(model, val_frames):
    grouped = Scorer.load(model, variant="step", threads=1)         # all seeds in one graph, Adam in the graph
    fused = Scorer.load(model, variant="fused-adam", threads=2)     # (auto picks host-head: test_host_head.py)
    assert fused.mode == "fused-adam" and fused._search.workers == S and fused._search.adam_impl == "c"
    assert Scorer.load(model, variant="fused-adam", threads=1)._search.workers == 1   # one thread: one worker
    for i, (rgb, depth) in enumerate(val_frames(4)):
        z0 = make_z0(S, 100, 20 + i)
        a = grouped.score(rgb, depth, z0=z0, keep_reconstructions=True)
        b = fused.score(rgb, depth, z0=z0, keep_reconstructions=True)
        assert abs(b.score - a.score) <= 1e-5 * abs(a.score)        # unchunked vs chunked GEMM sums only
        np.testing.assert_allclose(b.seed_losses, a.seed_losses, rtol=1e-5)
        assert b.seed_losses.dtype == np.float64 and b.error_map.dtype == a.error_map.dtype
        np.testing.assert_allclose(b.error_map, a.error_map, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(b.z, a.z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.reconstructions, a.reconstructions, rtol=1e-5, atol=1e-6)
        assert np.ptp(b.seed_losses) > 0
        assert np.abs(b.z - z0).max() > 1e-3                        # z really moved


@needs_kernel
def test_z_only_fused_adam_equals_the_z_only_step_graph(model, val_frames):
    """lr_theta = 0: grad_z_seed.onnx (no weight gradients, pristine weights) + Adam on z on the host."""
    step_z = Scorer.load(model, lr_theta=0.0, variant="step", threads=1)
    fused = Scorer.load(model, lr_theta=0.0, variant="fused-adam", threads=2)   # z-only
    assert step_z.mode == "step_z" and fused.mode == "fused-adam" and fused._search.z_only
    assert fused._search.slots[0]["p"].size == 0                      # no weight copies or moments
    faithful = Scorer.load(model, variant="fused-adam", threads=2)
    for i, (rgb, depth) in enumerate(val_frames(3)):
        z0 = make_z0(S, 100, 40 + i)
        a = step_z.score(rgb, depth, z0=z0)
        b = fused.score(rgb, depth, z0=z0)
        assert abs(b.score - a.score) <= 1e-5 * abs(a.score)
        np.testing.assert_allclose(b.z, a.z, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(b.error_map, a.error_map, rtol=1e-5, atol=1e-7)
        assert b.score != faithful.score(rgb, depth, z0=z0).score    # the weight updates matter


@needs_kernel
def test_weights_reset_per_frame_and_numpy_adam_is_identical(model, val_frames, scores_a_b_a, monkeypatch):
    (rgb, depth), = val_frames(1)
    fused = Scorer.load(model, variant="fused-adam", threads=2)
    z0 = make_z0(S, 100, 3)                                           # frame A's z0 in scores_a_b_a
    first, _, _ = scores_a_b_a(fused)
    # the weight update is not a no-op: lr_theta changes the result
    bigger = Scorer.load(model, variant="fused-adam", threads=2, config=SearchConfig(k=K, n_seed=S, lr_theta=1e-3))
    assert bigger.score(rgb, depth, z0=z0).score != first.score
    monkeypatch.setattr(host_adam, "_kernel", None)         # an install without a C compiler: NumPy Adam
    numpy = Scorer.load(model, variant="fused-adam", threads=1)
    assert numpy._search.workers == 1 and numpy._search.adam_impl == "numpy"
    assert len(numpy._search.slots) == 1 and len(fused._search.slots) == S      # buffers per worker thread
    np.testing.assert_array_equal(numpy.score(rgb, depth, z0=z0).seed_losses, first.seed_losses)


def test_refusals_and_fallbacks(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="runs k >= 1"):
        Scorer.load(model, variant="fused-adam", config=SearchConfig(k=0, n_seed=S))
    with pytest.raises(ValueError, match="CPU provider only"):
        Scorer.load(model, variant="fused-adam", providers=["CUDAExecutionProvider"])
    with pytest.raises(ValueError, match="'seed-parallel' was removed: fused-adam runs"):
        Scorer.load(model, variant="seed-parallel")
    with pytest.raises(ValueError, match="unknown variant 'bogus'"):
        Scorer.load(model, variant="bogus")
    wide = Scorer.load(model, threads=8, variant="fused-adam")        # more threads than seeds: shared out
    assert wide._search.workers == S and wide._search.intra_threads == 8 // S
    monkeypatch.setattr(host_adam, "_kernel", None)                   # no compiled kernels: NumPy Adam
    auto = Scorer.load(model, threads=2)
    assert auto.mode == "fused-adam" and auto._search.adam_impl == "numpy"
    d = tmp_path / "m"
    shutil.copytree(model, d)
    flip_last_bytes(d / "grad_seed.onnx")
    with pytest.raises(ManifestError, match="grad_seed.onnx"):
        Scorer.load(d, variant="fused-adam")
    man = load_manifest(model)
    old = tmp_path / "old"
    shutil.copytree(model, old)
    for g in ("grad_seed", "grad_z_seed", "final_seed"):              # an export from before this variant
        (old / man["graphs"][g]["file"]).unlink()
        del man["graphs"][g], man["files"][g + ".onnx"]
    import json
    (old / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ManifestError, match="needs the graphs grad_seed, final_seed .*re-export with --target cpu"):
        Scorer.load(old, variant="fused-adam")
    assert Scorer.load(old, threads=2).mode == "step"                 # a gpu-only export still scores on the CPU
    assert Scorer.load(old, threads=2, lr_theta=0.0).mode == "step_z"


def test_parity_report_covers_the_fused_adam_and_host_head_searches(tiny_parity_export):
    man = tiny_parity_export(3, 2, 2)
    assert man["parity"]["passed"]
    assert {n: v["passed"] for n, v in man["parity"]["variants"].items()} == \
        {"host-head": True, "fused-adam": True, "step": True}
    for row in man["parity"]["frames"]:
        f = row["variants"]["fused-adam"]
        assert f["rel_diff"] <= 1e-4, row
        assert row["z_only"]["variants"]["fused-adam"]["rel_diff"] <= 1e-4, row
        st = row["variants"]["step"]["onnx_score"]
        assert abs(f["onnx_score"] - st) <= 1e-5 * abs(st)
        # the host-head search (tests/test_host_head.py): its own rows, same tolerance against float64
        h = row["variants"]["host-head"]
        assert h["rel_diff"] <= 1e-4 and row["z_only"]["variants"]["host-head"]["rel_diff"] <= 1e-4, row
        assert abs(h["onnx_score"] - f["onnx_score"]) <= 1e-5 * abs(f["onnx_score"])


@needs_kernel
def test_bench_fused_adam_variant(model, tiny_bench):
    from edge_ad.benchmarks import search_bench as benchmark
    from edge_ad.runtime.backends import host_head
    host = ("onnx-host-head", "onnx-host-head-z-only") if host_head.kernel_available() else ()
    res = tiny_bench(model, ("onnx-step", "onnx-fused-adam", "onnx-fused-adam-numpy", "onnx-z-only",
                             "onnx-fused-adam-z-only") + host)
    v = res["variants"]
    assert "| onnx-fused-adam |" in benchmark.format_table(res)
    for name in ("onnx-fused-adam", "onnx-fused-adam-numpy"):
        assert v[name]["max_rel_score_diff_vs_onnx-step"] <= 1e-5
        assert v[name]["gflop_per_frame"] == v["onnx-step"]["gflop_per_frame"]
    z = v["onnx-fused-adam-z-only"]
    assert z["max_rel_score_diff_vs_onnx-z-only"] <= 1e-5 and "max_rel_score_diff_vs_onnx-step" not in z
    assert z["gflop_per_frame"] == v["onnx-z-only"]["gflop_per_frame"] < v["onnx-step"]["gflop_per_frame"]
    if host:                                     # the host-head variants, reported the same way
        assert "| onnx-host-head |" in benchmark.format_table(res)
        assert v["onnx-host-head"]["max_rel_score_diff_vs_onnx-step"] <= 1e-5
        assert v["onnx-host-head"]["gflop_per_frame"] == v["onnx-step"]["gflop_per_frame"]
        hz = v["onnx-host-head-z-only"]
        assert hz["max_rel_score_diff_vs_onnx-z-only"] <= 1e-5 and hz["gflop_per_frame"] == z["gflop_per_frame"]
