"""Device buffer planning (pure) and CudaBuffers against a CPU fake of cuda-python's runtime."""
from __future__ import annotations

import numpy as np
import pytest

from edge_ad.runtime.backends.cuda_buffers import (CudaBuffers, CudaError, GpuUnavailable, PlanError, Slot,
                                          TensorSpec, gpu_identity, per_step_values, plan_search)
from test_tensorrt_fakes import FakeCudart

S, Z, C, R = 2, 8, 4, 8
SCALARS = ("beta1", "eps", "step_size_z", "step_size_theta")


def _io(update_weights=True):
    """Tensor specs shaped like export/onnx_graphs.py's step and final graphs (tiny sizes)."""
    state = {"z": (S, 1, Z), "W0.c0": (S, Z, 16), "bn0.gamma": (S, 4)}
    ins = [TensorSpec("x", (C, R, R)), TensorSpec("z", state["z"])]
    ins += [TensorSpec(n, s) for n, s in state.items() if n != "z"]
    ins += [TensorSpec(n, ()) for n in SCALARS]
    moments = ["z"] + ([n for n in state if n != "z"] if update_weights else [])
    ins += [TensorSpec(f"{n}.{mv}", state[n]) for n in moments for mv in "mv"]
    outs = [TensorSpec("z.out", state["z"])]
    outs += [TensorSpec(f"{n}.out", state[n]) for n in state if n != "z" and update_weights]
    outs += [TensorSpec(f"{n}.{mv}.out", state[n]) for n in moments for mv in "mv"]
    fin = [TensorSpec("x", (C, R, R))] + [TensorSpec(n, s) for n, s in state.items()]
    fout = [TensorSpec("seed_losses", (S,)), TensorSpec("error_map", (R, R))]
    return ins, outs, fin, fout


@pytest.mark.parametrize("restore", ["copy", "bind"])
def test_plan_roles_and_ping_pong(restore):
    plan = plan_search(*_io(), k=3, restore=restore)
    assert sorted(plan.weights) == ["W0.c0", "bn0.gamma"]
    assert sorted(plan.moments) == sorted(["z.m", "z.v", "W0.c0.m", "W0.c0.v", "bn0.gamma.m", "bn0.gamma.v"])
    assert plan.per_step == sorted(SCALARS)
    # step t writes slot (t+1)%2 and (from the second step on) reads slot t%2
    for t, b in enumerate(plan.steps):
        for n in plan.state:
            assert b[n + ".out"] == Slot(f"{n}@{(t + 1) % 2}")
            if t > 0 or restore == "copy":
                assert b[n] == Slot(f"{n}@{t % 2}")
        assert b["step_size_z"] == Slot("per_step:step_size_z", 256 * t)   # TensorRT: 256-byte aligned
    # nothing ever writes the pristine weights, z0 or the zero moments
    written = {b[n + ".out"].buffer for b in plan.steps for n in plan.state}
    assert not any(w.startswith("pristine:") or w in ("z0", "zeros") for w in written)
    # after 3 steps the state is in slot 1; the final graph reads it, and z comes back
    assert plan.final["z"] == Slot("z@1") and plan.final["W0.c0"] == Slot("W0.c0@1")
    assert plan.final["seed_losses"] == Slot("out:seed_losses")
    assert plan.results == {"seed_losses": "out:seed_losses", "error_map": "out:error_map", "z": "z@1"}
    # pinned host memory only for what crosses the bus per frame
    assert {n for n, b in plan.buffers.items() if b.host} == {"x", "z0", "out:seed_losses", "out:error_map", "z@1"}
    w = S * Z * 16 + S * 4
    zs = S * Z
    expected = 4 * (C * R * R + 2 * zs + zs + 3 * w + 4 * (zs + w) + S + R * R) + 3 * 256 * len(SCALARS)
    if restore == "copy":
        # per-frame program: frame + z0 upload, weight restore from pristine, moment reset
        assert ("h2d", "x") in plan.frame_ops and ("h2d_to", "z0", "z@0") in plan.frame_ops
        assert ("d2d", "pristine:W0.c0", "W0.c0@0") in plan.frame_ops
        assert ("zero", "W0.c0.m@0") in plan.frame_ops
        assert plan.device_bytes == expected
    else:
        # step 1 reads the pristine weights, one shared zero buffer and z0 in place: no copies
        assert plan.frame_ops == [("h2d", "x"), ("h2d", "z0")]
        b0 = plan.steps[0]
        assert b0["W0.c0"] == Slot("pristine:W0.c0") and b0["z"] == Slot("z0")
        assert b0["W0.c0.m"] == b0["z.v"] == Slot("zeros")
        assert plan.buffers["zeros"].nbytes == 4 * S * Z * 16          # the largest moment
        assert plan.device_bytes == expected + 4 * S * Z * 16


def test_plan_even_k_and_zero_k():
    assert plan_search(*_io(), k=4).final["z"] == Slot("z@0")
    p0 = plan_search(*_io(), k=0, restore="copy")
    assert p0.steps == [] and p0.final["z"] == Slot("z@0")
    b0 = plan_search(*_io(), k=0)
    assert b0.final["z"] == Slot("z0") and b0.final["W0.c0"] == Slot("pristine:W0.c0")
    with pytest.raises(PlanError, match="restore must be"):
        plan_search(*_io(), k=1, restore="magic")


def test_plan_z_only_binds_pristine_weights_read_only():
    plan = plan_search(*_io(update_weights=False), k=2)
    assert plan.weights == [] and sorted(plan.moments) == ["z.m", "z.v"]
    assert plan.steps[0]["W0.c0"] == plan.steps[1]["W0.c0"] == Slot("pristine:W0.c0")
    assert plan.final["W0.c0"] == Slot("pristine:W0.c0")
    assert not any(op[0] == "d2d" for op in plan.frame_ops)   # nothing to restore


def test_plan_errors_name_the_tensor():
    ins, outs, fin, fout = _io()
    with pytest.raises(PlanError, match="'W0.c0.out' has no matching input"):
        plan_search([s for s in ins if s.name != "W0.c0"], outs, fin, fout, 2)
    bad = [TensorSpec("z.out", (S, 1, Z + 1)) if s.name == "z.out" else s for s in outs]
    with pytest.raises(PlanError, match=r"state 'z'.*\(2, 1, 9\)"):
        plan_search(ins, bad, fin, fout, 2)
    with pytest.raises(PlanError, match="final graph input 'mystery'"):
        plan_search(ins, outs, fin + [TensorSpec("mystery", (1,))], fout, 2)
    with pytest.raises(PlanError, match="dynamic shape"):
        TensorSpec("x", (-1, 4))
    with pytest.raises(PlanError, match="does not update z"):
        plan_search(ins, [s for s in outs if s.name != "z.out"], fin, fout, 2)


def test_per_step_values_fill_k_slots():
    plan = plan_search(*_io(), k=3)
    vals = per_step_values(plan, lambda t: {n: (t + 1) * (i + 1) for i, n in enumerate(SCALARS)})
    assert vals["per_step:step_size_z"][:, 0].tolist() == [3.0, 6.0, 9.0]
    assert not vals["per_step:step_size_z"][:, 1:].any()
    with pytest.raises(PlanError, match="no value for per-step input 'beta1' at step 0"):
        per_step_values(plan, lambda t: {})


def _buffers(fake=None, k=3, restore="copy"):
    fake = fake or FakeCudart()
    plan = plan_search(*_io(), k=k, restore=restore)
    return fake, plan, CudaBuffers(plan, cudart=fake)


@pytest.mark.parametrize("restore", ["copy", "bind"])
def test_allocates_every_buffer_once_and_frees(restore):
    fake, plan, bufs = _buffers(restore=restore)
    assert fake.n_malloc == len(plan.buffers)
    assert fake.n_malloc_host == sum(b.host for b in plan.buffers.values())
    assert bufs.host("x").shape == (C, R, R) and bufs.host("z0").dtype == np.float32
    if restore == "bind":   # the shared zero moments really are zero (fresh memory is garbage)
        assert not bufs.download("zeros").any()
    bufs.close()
    assert fake.device == {} and fake.pinned == {}
    bufs.close()   # idempotent


def test_frame_program_restores_weights_and_zeroes_moments(rng):
    fake, plan, bufs = _buffers()
    pristine = rng.standard_normal((S, Z, 16)).astype(np.float32)
    bufs.upload("pristine:W0.c0", pristine)
    bufs.upload("W0.c0@0", np.zeros_like(pristine))          # a previous frame's updated weights
    x = rng.standard_normal((C, R, R)).astype(np.float32)
    z0 = rng.standard_normal((S, 1, Z)).astype(np.float32)
    np.copyto(bufs.host("x"), x), np.copyto(bufs.host("z0"), z0)
    graph = bufs.capture(bufs.frame_prologue)
    n_alloc = fake.n_malloc
    assert np.all(bufs.download("W0.c0@0") == 0)            # captured, not executed yet
    graph.launch(bufs.stream), bufs.synchronize()
    np.testing.assert_array_equal(bufs.download("W0.c0@0"), pristine)
    np.testing.assert_array_equal(bufs.download("x"), x)
    np.testing.assert_array_equal(bufs.download("z@0"), z0)
    assert not bufs.download("W0.c0.m@0").any()
    # next frame: new pinned contents, same graph, no allocation
    x2 = x + 1
    np.copyto(bufs.host("x"), x2)
    bufs.upload("W0.c0@0", np.ones_like(pristine))
    graph.launch(bufs.stream), bufs.synchronize()
    np.testing.assert_array_equal(bufs.download("x"), x2)
    np.testing.assert_array_equal(bufs.download("W0.c0@0"), pristine)
    assert fake.n_malloc == n_alloc and fake.n_graph_launch == 2
    graph.destroy(), bufs.close()


def test_upload_size_mismatch_is_named():
    _, _, bufs = _buffers()
    with pytest.raises(PlanError, match="upload to 'pristine:W0.c0'"):
        bufs.upload("pristine:W0.c0", np.zeros((S, Z, 15), np.float32))


def test_cuda_errors_become_exceptions_and_release_memory():
    fake = FakeCudart(fail_malloc_after=3)
    with pytest.raises(CudaError, match=r"cudaMalloc\(.*\) failed: cudaErrorMemoryAllocation \(out of memory\)"):
        CudaBuffers(plan_search(*_io(), k=2), cudart=fake)
    assert fake.device == {}     # the three buffers allocated before the failure were freed


def test_gpu_identity_and_missing_driver():
    assert gpu_identity(cudart=FakeCudart()) == ("Fake Orin", "8.7")
    with pytest.raises(GpuUnavailable, match="no usable NVIDIA GPU: CUDA reports cudaErrorInsufficientDriver"):
        gpu_identity(cudart=FakeCudart(no_driver=True))


def test_real_cuda_python_without_gpu_says_so():
    """On this CPU machine the real cuda-python imports but finds no driver: one clear error."""
    pytest.importorskip("cuda.bindings.runtime")
    from edge_ad.runtime.backends.cuda_buffers import load_cudart
    cudart = load_cudart()
    if cudart.cudaGetDeviceCount()[0] == cudart.cudaError_t.cudaSuccess:
        pytest.skip("a GPU is visible here")
    with pytest.raises(GpuUnavailable, match="no usable NVIDIA GPU"):
        gpu_identity(cudart=cudart)
