"""Every gradient the exported graphs compute, per tensor, against torch autograd in float64.

End-of-search parity at the shipped lr_theta = 6e-9 barely sees the weight gradients (each weight moves
by about one float32 ulp per step), so a wrong weight gradient (a flipped sign, a ReLU' that lets dead
units through) passes it. Here each gradient is compared directly with torch autograd on the float64
generator, on real kinect frames, with the loss the search minimises (sum over seeds of the per-seed MSE):

* the same builder in float64 (export/onnx_graphs.py; the exported column-order "d2s", with column
  panels and with column chunks; onnxruntime has no float64 Col2Im): max |graph - torch| <= 1e-10 *
  max |torch| per tensor (measured <= 3e-15);
* the exported float32 files (grad_seed, grad_z_seed, grad_tail_seed, grad_z_tail_seed: Col2Im, im2col by
  Conv, panels): <= 1e-5 * max |torch| per tensor (float32 rounding; measured <= 7e-7);
* the step graphs' gradients: with zero input moments the scaled first moment out (``<name>.m.out``) IS
  the gradient; two chained steps of step / step_z equal torch.optim.Adam's (lr_theta = 1e-3) in float64.
"""
from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edge_ad.export.onnx_graphs import HEAD_LAYERS, build_graph, stack_state, tail_state_names  # noqa: E402
from edge_ad.export.search_graphs import arch_of, generator_arrays  # noqa: E402
from edge_ad.runtime.config import SearchConfig, adam_scalars, make_z0  # noqa: E402
from edge_ad.runtime.preprocess import preprocess  # noqa: E402

TOL64 = 1e-10
TOL32 = 1e-5


def reference_gradients(G, x: np.ndarray, z: np.ndarray) -> list:
    """Per seed j (z (S, z_dim)): {torch parameter name: d loss_j / d param, "z": d loss_j / d z_j (z_dim,),
    "a1": d loss_j / d a1 (C1, 8, 8), a1: layer 1's transposed-convolution output before BN1, "a1_value"},
    loss_j = mean((G(z_j) - x)^2), all float64 (torch autograd, BatchNorm in eval mode)."""
    G64 = copy.deepcopy(G).double().eval()
    xt = torch.as_tensor(x, dtype=torch.float64)[None]
    out = []
    for zj in z:
        G64.zero_grad(set_to_none=True)
        zt = torch.tensor(zj, dtype=torch.float64).reshape(1, -1, 1, 1).requires_grad_(True)
        a1 = G64.gen[1][0](G64.gen[0](zt))                                   # (1, C1, 8, 8), before BN1
        a1.retain_grad()
        h = G64.gen[1][2](G64.gen[1][1](a1))
        for layer in G64.gen[HEAD_LAYERS:]:
            h = layer(h)
        loss = torch.mean((h - xt) ** 2)
        loss.backward()
        g = {n: p.grad.numpy().copy() for n, p in G64.named_parameters()}
        g.update(z=zt.grad.reshape(-1).numpy().copy(), a1=a1.grad[0].numpy().copy(), a1_value=a1.detach()[0].numpy())
        out.append(g)
    return out


def in_layout(arch, per_seed: list) -> dict:
    """Per-seed torch-layout tensors -> the graph's stacked state layout {name: (S, ...)} in float64."""
    a64 = dataclasses.replace(arch, dtype=np.dtype(np.float64))
    stacked = [stack_state(a64, g) for g in per_seed]                        # each broadcast to all seeds
    return {st.name: np.stack([s[st.name][j] for j, s in enumerate(stacked)]) for st in arch.state()}


def assert_close(got, want, tol, what):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    scale = np.abs(want).max()
    if scale == 0:                       # e.g. a chunk of columns of channels that are dead for this frame
        assert np.abs(got).max() == 0, f"{what}: torch's gradient is zero, the graph's is not"
        return
    err = np.abs(got - want).max() / scale
    assert err <= tol, f"{what}: max |graph - torch autograd| = {err:.2e} x max |torch| (tolerance {tol:g})"


@pytest.fixture(scope="module")
def case(val_frames):
    """A real val frame (sphere) and two latents (float64)."""
    rgb, depth = val_frames(3)[2]
    return preprocess(rgb, depth), make_z0(2, 100, 21).astype(np.float64)


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _check_gradient_graph(sess, arch, params, kind, x, z, ref, tol, label):
    """Run a gradient graph (grad / grad_z / grad_tail / grad_z_tail) on the generator's state ``params``
    (arch's layout) and compare every output with torch's ``ref``."""
    dt = np.float32 if tol > TOL64 else np.float64
    S = arch.n_seed
    feed = {"x": x.astype(dt)}
    tail = kind.endswith("tail")
    if tail:
        feed["a1"] = np.stack([r["a1_value"] for r in ref[:S]]).astype(dt)
    else:
        feed["z"] = z[:S].reshape(S, 1, -1).astype(dt)
    names = {i.name for i in sess.get_inputs()}
    feed.update({k: v.astype(dt) for k, v in params.items() if k in names})
    assert set(feed) == names, f"{label}: inputs {sorted(names - set(feed))} not fed"
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
    want = in_layout(arch, ref[:S])
    if tail:
        assert_close(outs.pop("a1.grad"), np.stack([r["a1"] for r in ref[:S]]), tol, f"{label} a1.grad")
    else:
        assert_close(outs.pop("z.grad"), np.stack([r["z"] for r in ref[:S]])[:, None], tol, f"{label} z.grad")
    weights = kind in ("grad", "grad_tail")
    expected = [n for n in want if not tail or n in tail_state_names(arch)] if weights else []
    assert sorted(n[:-5] for n in outs) == sorted(expected), f"{label}: outputs {sorted(outs)}"
    for n in expected:
        assert_close(outs[n + ".grad"], want[n], tol, f"{label} {n}.grad")


def _arch(G, n_seed, chunk_bytes, dtype, **kw):
    """(the graph layout Arch, the generator's state stacked in it as float64 {name: (S, ...)})."""
    arch = dataclasses.replace(arch_of(G, n_seed, chunk_bytes, dtype), **kw)
    params, _ = generator_arrays(G)
    return arch, stack_state(dataclasses.replace(arch, dtype=np.dtype(np.float64)), params)


# the layouts the float64 builds cover: the fused-adam graphs' (whole weights, layers 1-2 in 32-column
# panels) but d2s, plain whole weights, and small column chunks (several chunks per weight)
LAYOUTS64 = {"panels": dict(chunk_bytes=0, panel=32), "whole": dict(chunk_bytes=0),
             "chunks": dict(chunk_bytes=1 << 17)}


@pytest.mark.parametrize("kind,layout", [(k, lay) for k in ("grad", "grad_z", "grad_tail", "grad_z_tail")
                                         for lay in sorted(LAYOUTS64)
                                         if not (k.endswith("tail") and lay == "chunks")])  # the host head: whole weights
def test_float64_gradient_graphs_equal_torch_autograd(tiny_generator, case, kind, layout):
    x, z = case
    kw = dict(LAYOUTS64[layout])
    arch, params = _arch(tiny_generator, 1, kw.pop("chunk_bytes"), np.float64, **kw)
    _, bn = generator_arrays(tiny_generator)
    sess = _session(build_graph(arch, kind, bn))
    ref = reference_gradients(tiny_generator, x, z)
    _check_gradient_graph(sess, arch, params, kind, x, z, ref, TOL64, f"{kind} ({layout}, float64)")


@pytest.mark.parametrize("kind", ["grad", "grad_z", "grad_tail", "grad_z_tail"])
def test_exported_float32_gradient_graphs_equal_torch_autograd(export_tiny, tiny_generator, case, kind):
    """The files Scorer.load runs (their manifest's weight layout: Col2Im, panels), float32."""
    from edge_ad.runtime.manifest import load_manifest
    d = export_tiny(3, 2)
    man = load_manifest(d, verify=True)
    entry = man["graphs"][f"{kind}_seed"]
    arch, params = _arch(tiny_generator, 1, 0, np.float32, col_order=entry["col_order"],
                         panel=max([st.get("panel", 0) for st in entry["state"]]))
    assert [dict(name=s.name, shape=list(s.shape)) for s in arch.state()] == \
        [dict(name=s["name"], shape=s["shape"]) for s in entry["state"]]   # the same layout as the export
    x, z = case
    sess = ort.InferenceSession(str(d / entry["file"]), providers=["CPUExecutionProvider"])
    _check_gradient_graph(sess, arch, params, kind, x, z, reference_gradients(tiny_generator, x, z), TOL32,
                          f"{entry['file']} (float32)")


def _torch_adam_steps(G, x, z, cfg, steps):
    """torch.optim.Adam on each seed's z and weight copy (as models.search.search_eager), float64; the
    state after ``steps`` steps: per seed {param name: value, "z": value}."""
    out = []
    xt = torch.as_tensor(x, dtype=torch.float64)[None]
    for zj in z:
        Gj = copy.deepcopy(G).double().eval()
        zt = torch.tensor(zj, dtype=torch.float64).reshape(1, -1, 1, 1).requires_grad_(True)
        oz = torch.optim.Adam([zt], lr=cfg.lr_z, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        ot = torch.optim.Adam(Gj.parameters(), lr=cfg.lr_theta, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
        for _ in range(steps):
            oz.zero_grad(), ot.zero_grad()
            torch.mean((Gj(zt) - xt) ** 2).backward()
            oz.step()
            if cfg.updates_weights:
                ot.step()
        st = {n: p.detach().numpy().copy() for n, p in Gj.named_parameters()}
        st["z"] = zt.detach().reshape(-1).numpy().copy()
        out.append(st)
    return out


@pytest.mark.parametrize("kind", ["step", "step_z"])
def test_step_graphs_gradients_and_two_adam_steps_in_float64(tiny_generator, case, kind):
    """Step 1 from zero moments: m.out = the gradient (scaled moments: m' = beta1 m + g); two chained steps
    of the graph equal two torch.optim.Adam steps (lr_theta = 1e-3: weights move ~1e-3, far above any
    rounding), every state tensor. Chunked weights, two seeds."""
    x, z = case
    cfg = SearchConfig(n_seed=2, lr_theta=1e-3 if kind == "step" else 0.0)
    arch, params = _arch(tiny_generator, 2, 1 << 17, np.float64)
    _, bn = generator_arrays(tiny_generator)
    sess = _session(build_graph(arch, kind, bn))
    names = {i.name for i in sess.get_inputs()}
    state = {k: v.copy() for k, v in params.items()}
    state["z"] = z.reshape(2, 1, -1).copy()
    for n in [n for n in names if n.endswith(".m") or n.endswith(".v")]:
        state[n] = np.zeros_like(state[n[:-2]])
    ref = reference_gradients(tiny_generator, x, z)
    want_g = in_layout(arch, ref)
    out_names = [o.name for o in sess.get_outputs()]
    for t in (1, 2):
        sc = adam_scalars(cfg, t)
        feed = {n: (x.astype(np.float64) if n == "x" else np.asarray(sc[n], np.float64) if n in sc else state[n]) for n in names}
        outs = dict(zip(out_names, sess.run(None, feed)))
        if t == 1:
            assert_close(outs["z.m.out"], np.stack([r["z"] for r in ref])[:, None], TOL64, f"{kind} z gradient")
            for n in want_g if kind == "step" else []:
                assert_close(outs[n + ".m.out"], want_g[n], TOL64, f"{kind} {n} gradient")
        state.update({o[:-4]: v for o, v in outs.items()})
    after = _torch_adam_steps(tiny_generator, x, z, cfg, 2)
    assert_close(state["z"][:, 0], np.stack([a["z"] for a in after]), TOL64, f"{kind}: z after 2 steps")
    if kind == "step":
        want = in_layout(arch, after)
        for n in want:
            moved = np.abs(want[n] - params[n]).max()
            assert moved > 1e-4, f"{n}: torch's Adam did not move it ({moved})"
            assert np.abs(state[n] - want[n]).max() <= TOL64 * max(moved, 1e-3), f"{kind}: {n} after 2 steps"
