"""The TensorRT runner's frame logic on CPU: fake ``tensorrt`` (engines = the exported ONNX graphs
in onnxruntime) and fake CUDA runtime (host memory at real addresses, recorded CUDA graphs).

What this verifies without a GPU: engine I/O -> buffer plan, per-step address binding and
ping-pong, per-frame weight restore and moment reset, CUDA-graph capture and replay, the final pass,
and no allocation per frame; against a plain onnxruntime step loop and the float64 torch reference.
What it cannot verify: TensorRT's parser/builder and kernels, real CUDA (see the module docstring of
runtime/backends/tensorrt.py: not yet run on hardware).
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edge_ad.runtime.backends.tensorrt import TensorRTSearch, TensorRTUnavailable  # noqa: E402
from edge_ad.runtime.config import SearchConfig, adam_bias_corrections, make_z0  # noqa: E402
from test_tensorrt_fakes import FakeCudart, make_fake_trt  # noqa: E402


def scalars_for(cfg: SearchConfig):
    """torch.optim.Adam's per-step constants, float64 on the host (as the exporter documents)."""
    def values(t):
        bc1, bc2 = adam_bias_corrections(t + 1, cfg.beta1, cfg.beta2)
        return {"beta1": cfg.beta1, "one_minus_beta1": 1 - cfg.beta1, "beta2": cfg.beta2,
                "one_minus_beta2": 1 - cfg.beta2, "eps": cfg.eps, "step_size_z": cfg.lr_z / bc1,
                "step_size_theta": cfg.lr_theta / bc1, "inv_sqrt_bc2": 1 / np.sqrt(bc2)}
    return values


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, tiny_generator):
    from edge_ad.export.onnx_graphs import Arch, build_graph, stack_state
    G = tiny_generator
    S = 2
    fg, zd = G.cfg.features_g, G.cfg.z_dim
    arch = Arch(z_dim=zd, widths=(16 * fg, 8 * fg, 4 * fg, 2 * fg, 4), n_seed=S, chunk_bytes=1 << 16)
    sd = {k: v.detach().double().numpy() for k, v in G.state_dict().items()}
    bn = {l: (sd[f"gen.{l}.1.running_mean"], sd[f"gen.{l}.1.running_var"]) for l in range(4)}
    d = tmp_path_factory.mktemp("graphs")
    paths = {}
    for kind in ("step", "step_z", "final"):
        p = d / f"{kind}.onnx"
        onnx.save(build_graph(arch, kind, bn), p)
        eng = d / f"{kind}.engine"          # the fake runtime "deserializes" the ONNX path
        eng.write_bytes(str(p).encode())
        paths[kind] = (p, eng)
    params = {n: p.detach().double().numpy() for n, p in G.named_parameters()}
    return arch, paths, stack_state(arch, params)


def _ort_loop(arch, paths, kind, pristine, cfg, x, z0):
    """The search as a plain host loop over onnxruntime sessions (what the runner must equal)."""
    step = ort.InferenceSession(str(paths[kind][0]), providers=["CPUExecutionProvider"])
    final = ort.InferenceSession(str(paths["final"][0]), providers=["CPUExecutionProvider"])
    names = [i.name for i in step.get_inputs()]
    state = {"z": z0.reshape(arch.n_seed, 1, -1).astype(np.float32)}
    state.update({n: v.copy() for n, v in pristine.items()})
    for n in names:
        if n.endswith(".m") or n.endswith(".v"):
            state[n] = np.zeros(state[n[:-2]].shape, np.float32)
    sc = scalars_for(cfg)
    for t in range(cfg.k):
        feeds = {n: (x if n == "x" else np.array(sc(t)[n], np.float32) if n in sc(t) else state[n]) for n in names}
        outs = step.run(None, feeds)
        for o, v in zip(step.get_outputs(), outs):
            state[o.name[:-4]] = v
    fo = final.run(None, {i.name: x if i.name == "x" else state[i.name] for i in final.get_inputs()})
    out = dict(zip([o.name for o in final.get_outputs()], fo))
    out["z"] = state["z"].reshape(arch.n_seed, -1)
    return out


def _frame(seed):
    r = np.random.default_rng(seed)
    return np.tanh(r.standard_normal((4, 64, 64))).astype(np.float32)


@pytest.mark.parametrize("cuda_graph,restore", [(True, "bind"), (False, "bind"), (True, "copy")])
def test_runner_equals_plain_loop_and_resets_weights(graphs, cuda_graph, restore):
    arch, paths, pristine = graphs
    cfg = SearchConfig(n_seed=arch.n_seed, k=3, lr_theta=1e-3)   # a visible weight update
    fake = FakeCudart()
    r = TensorRTSearch(paths["step"][1], paths["final"][1], pristine, scalars_for(cfg), cfg.k,
                       cuda_graph=cuda_graph, restore=restore, trt=make_fake_trt(), cudart=fake)
    z0 = make_z0(arch.n_seed, arch.z_dim, seed=1)
    x1, x2 = _frame(1), _frame(2)
    out1 = r.run(x1, z0)
    n_alloc = (fake.n_malloc, fake.n_malloc_host)
    out2 = r.run(x2, z0)
    out1_again = r.run(x1, z0)
    ref1 = _ort_loop(arch, paths, "step", pristine, cfg, x1, z0)
    ref2 = _ort_loop(arch, paths, "step", pristine, cfg, x2, z0)
    assert out1["z"].shape == (arch.n_seed, arch.z_dim) and out1["seed_losses"].dtype == np.float64
    for n in ("seed_losses", "error_map", "recon", "z"):
        np.testing.assert_allclose(out1[n], ref1[n], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(out2[n], ref2[n], rtol=1e-6, atol=1e-7)
        # the weights were restored from the pristine copy: frame 1 again is bit-identical
        np.testing.assert_array_equal(out1_again[n], out1[n])
    assert (fake.n_malloc, fake.n_malloc_host) == n_alloc          # nothing allocated per frame
    assert fake.n_graph_launch == (3 if cuda_graph else 0)
    # the weights did move during the search (lr_theta > 0): the state after k steps differs
    w_final = r.bufs.download(r.plan.final["W1.c0"].buffer)
    assert not np.array_equal(w_final, pristine["W1.c0"])
    np.testing.assert_array_equal(r.bufs.download("pristine:W1.c0"), pristine["W1.c0"])
    r.close()


def test_runner_z_only_graph(graphs):
    arch, paths, pristine = graphs
    cfg = SearchConfig(n_seed=arch.n_seed, k=2, lr_theta=0.0)
    r = TensorRTSearch(paths["step_z"][1], paths["final"][1], pristine, scalars_for(cfg), cfg.k,
                       trt=make_fake_trt(), cudart=FakeCudart())
    assert r.plan.weights == [] and sorted(r.plan.moments) == ["z.m", "z.v"]
    z0 = make_z0(arch.n_seed, arch.z_dim, seed=3)
    out = r.run(_frame(3), z0)
    ref = _ort_loop(arch, paths, "step_z", pristine, cfg, _frame(3), z0)
    np.testing.assert_allclose(out["seed_losses"], ref["seed_losses"], rtol=1e-6)
    r.close()


def test_runner_matches_float64_reference(graphs, tiny_generator):
    """The orchestration + host scalars reproduce models.search.search (float64) to fp32 accuracy."""
    torch = pytest.importorskip("torch")
    from edge_ad.models.search import search
    arch, paths, pristine = graphs
    cfg = SearchConfig(n_seed=arch.n_seed, k=5)                   # reference hyper-parameters
    r = TensorRTSearch(paths["step"][1], paths["final"][1], pristine, scalars_for(cfg), cfg.k,
                       trt=make_fake_trt(), cudart=FakeCudart())
    z0 = make_z0(arch.n_seed, arch.z_dim, seed=5)
    x = _frame(5)
    out = r.run(x, z0)
    ref = search(tiny_generator, x, cfg, z0=z0, dtype=torch.float64)
    np.testing.assert_allclose(out["seed_losses"], ref.seed_losses, rtol=1e-4)
    np.testing.assert_allclose(out["error_map"], ref.error_map, rtol=1e-3, atol=1e-6)
    r.close()


def test_graph_capture_failure_falls_back_to_eager(graphs, monkeypatch):
    arch, paths, pristine = graphs
    cfg = SearchConfig(n_seed=arch.n_seed, k=2)
    fake = FakeCudart()
    from test_tensorrt_fakes import cudaError_t
    monkeypatch.setattr(fake, "cudaStreamEndCapture",
                        lambda s: (setattr(s, "capture", None), (cudaError_t.cudaErrorStreamCaptureUnsupported, None))[1])
    r = TensorRTSearch(paths["step"][1], paths["final"][1], pristine, scalars_for(cfg), cfg.k,
                       trt=make_fake_trt(), cudart=fake)
    z0 = make_z0(arch.n_seed, arch.z_dim, seed=1)
    out = r.run(_frame(1), z0)
    assert not r.cuda_graph and fake.n_graph_launch == 0
    ref = _ort_loop(arch, paths, "step", pristine, cfg, _frame(1), z0)
    np.testing.assert_allclose(out["seed_losses"], ref["seed_losses"], rtol=1e-6)
    r.close()


def test_missing_pristine_tensor_is_named(graphs):
    arch, paths, pristine = graphs
    partial = {k: v for k, v in pristine.items() if k != "bias4"}
    fake = FakeCudart()
    with pytest.raises(ValueError, match="no pristine value for the engine input 'bias4'"):
        TensorRTSearch(paths["step"][1], paths["final"][1], partial, scalars_for(SearchConfig()), 2,
                       trt=make_fake_trt(), cudart=fake)
    assert fake.device == {}          # everything allocated so far was freed


def test_no_gpu_is_one_clear_error(graphs):
    arch, paths, pristine = graphs
    with pytest.raises(TensorRTUnavailable, match="cannot run here: no usable NVIDIA GPU.*InsufficientDriver"):
        TensorRTSearch(paths["step"][1], paths["final"][1], pristine, scalars_for(SearchConfig()), 2,
                       trt=make_fake_trt(), cudart=FakeCudart(no_driver=True))


def test_old_tensorrt_is_refused(graphs):
    arch, paths, pristine = graphs
    with pytest.raises(Exception, match="TensorRT >= 8.5"):
        TensorRTSearch(paths["step"][1], paths["final"][1], pristine, scalars_for(SearchConfig()), 2,
                       trt=make_fake_trt("8.4.3"), cudart=FakeCudart())


def test_engine_io_dtypes_do_not_depend_on_trt_nptype():
    """Audit 28 #12: engine_io read each tensor's dtype with trt.nptype, which TensorRT 8.5 (JetPack 5) builds with
    np.bool: "module 'numpy' has no attribute 'bool'" under numpy >= 1.24. The DataType names are mapped here."""
    import enum

    from edge_ad.runtime.backends import tensorrt

    class DataType(enum.IntEnum):      # TensorRT's names
        FLOAT, HALF, INT8, INT32, INT64, BOOL, UINT8, BF16 = range(8)
    assert [tensorrt._np_dtype(d) for d in list(DataType)[:7]] == ["float32", "float16", "int8", "int32", "int64",
                                                                    "bool", "uint8"]
    with pytest.raises(ValueError, match="unsupported TensorRT tensor type BF16: numpy has no dtype for it"):
        tensorrt._np_dtype(DataType.BF16)
    # the fake TensorRT's nptype raises as TensorRT 8.5's does under numpy >= 1.24: every runner test here reads
    # its engines' I/O without it (test_tensorrt_fakes.make_fake_trt)
    with pytest.raises(AttributeError, match="np.bool"):
        make_fake_trt().nptype(DataType.BOOL)

