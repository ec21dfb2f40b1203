"""The fused-adam and host-head searches: onnxruntime computes one seed's gradients, the host applies Adam.

Why (benchmarks/README.md, "Previous: the fused-adam search"): in the unrolled graphs Adam on the per-seed weight
copies is 10 elementwise ONNX ops per tensor, each a separate pass over 3.6 M weights (width 32): ~42 %
of a seed's time. Standard ONNX has no fused optimiser op, so this search splits each step:

    for each seed j (concurrently: by default one worker thread per seed, one intra-op thread each):
        z_j = z0_j;  p_j, m_j, v_j: flat float32 buffers (weights and scaled Adam moments)
        step 1:      grad_seed(x, z_j, pristine) -> g;  Adam reads the pristine weights (p0) and zero
                     moments and writes p_j, m_j, v_j (no per-frame copy or reset of the buffers)
        step 2..k:   grad_seed(x, z_j, p_j) -> g;       Adam in place on p_j, m_j, v_j
        final_seed(x, z_j, p_j) -> seed loss, error map, reconstruction
    (Adam on z_j, 100 floats, takes the same kernel with the z learning rate. With lr_theta = 0 the
    z-only graph grad_z_seed skips the weight gradients and the weights stay the pristine copy. The
    weights' Adam of step t runs just before the graph of step t + 1 (or the final pass) reads them.)

The host-head search (``head=``, since session 10: the CPU default where the head kernel has AVX2) is
the same loop with layers 0-1 on the host (runtime/backends/host_head.py): per step head.forward -> a1,
grad_tail_seed(x, a1, tail weights) -> a1.grad and the tail's gradients, head.backward -> dz with Adam
on the head's weights fused into it; the one-pass Adam then only covers the tail's weights.

The update is runtime/backends/host_adam.adam_update (compiled kernel, or its NumPy twin when the install had no
C compiler), the same float32 arithmetic as the graphs' Adam, so scores match the step graphs. Every buffer and IOBinding is
allocated at load, one set per worker thread (a worker runs its seeds in turn, so one thread holds
one seed's weights and moments, not n_seed): the weights/gradient views of the flat buffers are wrapped
as OrtValues (on the CPU they share memory), so steady-state scoring allocates nothing per frame but
onnxruntime's own arena and the small result copies.
CPU only: the GPU path keeps the whole search on the device (the step graphs on the CUDA EP / TensorRT).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from edge_ad.runtime.backends import host_adam, host_head
from edge_ad.runtime.config import SearchConfig
from edge_ad.runtime.manifest import ManifestError
from edge_ad.runtime.model_arrays import load_npy
from edge_ad.runtime.weights_layout import from_gemm, to_gemm, to_panels

from .onnxruntime_backend import onnxruntime_module, ortvalue_makers, session_options


def regroup_state(pristine: dict, src: Sequence[dict], dst: Sequence[dict], src_order: str = "d2s",
                  dst_order: str = "d2s") -> dict:
    """Weights in the ``src`` layout (weights.npz: {name: one copy}, column chunks per the manifest's
    layout.state, GEMM column order ``src_order``) -> the ``dst`` layout (a graph's "state" entry and
    "col_order"; runtime.weights_layout). Entries are dicts with name, param, shape (stacked,
    (S, ...)), cols ((start, stop) GEMM columns, or None for whole tensors) and, for a weight stored as
    column panels, panel (the panel width: (N / panel, C_in, panel), weights_layout.to_panels)."""
    by_param: dict = {}
    for st in src:
        by_param.setdefault(st["param"], []).append(st)
    out = {}
    for st in dst:
        parts = by_param.get(st["param"])
        if not parts:
            raise ValueError(f"no weights for {st['name']} ({st['param']}) in the source layout")
        want = tuple(st["shape"])[1:]
        if st.get("cols") is None:
            if len(parts) != 1:
                raise ValueError(f"{st['param']}: whole tensor wanted, the source splits it in {len(parts)}")
            arr = np.asarray(pristine[parts[0]["name"]])
        else:
            parts = sorted(parts, key=lambda p: p["cols"][0])
            ends = [p["cols"][1] for p in parts[:-1]]
            if [p["cols"][0] for p in parts[1:]] != ends or parts[0]["cols"][0] != 0:
                raise ValueError(f"{st['param']}: the source column chunks are not contiguous")
            full = np.concatenate([np.asarray(pristine[p["name"]]) for p in parts], axis=-1)   # (C_in, 16 C_out)
            if src_order != dst_order:
                layer = int(st["param"].split(".")[1])                     # "gen.<l>.0.weight" / "gen.4.weight"
                full = to_gemm(from_gemm(full, layer, src_order), layer, dst_order)
            arr = full[..., st["cols"][0]:st["cols"][1]]
            if st.get("panel"):
                arr = to_panels(arr, int(st["panel"]))                          # (N / panel, C_in, panel)
        if arr.shape != want:
            raise ValueError(f"{st['name']}: regrouped shape {arr.shape} != the graph's {want}")
        out[st["name"]] = arr
    return out


def load_head(model_dir: Path, man: dict, graph: dict) -> dict:
    """The host head of a tail graph's manifest entry: dims, bn0 constants and the head's state names,
    checked against what runtime/backends/_head_kernel.c computes (its layout: W0 (Z, 16 C0), gamma0, beta0,
    W1 as 32-column panels, torch's (c, kh, kw) column order) and the manifest's sha256 list."""
    info = graph.get("head") or {}
    try:
        dims = host_head.HeadDims(int(info["dims"]["z_dim"]), int(info["dims"]["c0"]), int(info["dims"]["n1"]))
        dims.check()
        state = [str(n) for n in info["state"]]
        if info["consts"] not in man.get("files", {}):        # only files whose sha256 was verified
            raise ValueError(f"{info['consts']} is not among the manifest's checksummed files")
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise ManifestError(f"{model_dir}: the tail graph's 'head' entry is incomplete or unusable ({e})") from None
    consts = load_npy(model_dir, info["consts"], (2 * dims.c0,), np.float32,   # header checked before reading
                      said_by="manifest.json: 2 x the tail graph's head.dims.c0")
    by_name = {st["name"]: st for st in graph.get("state") or []}
    want = {"W0.c0": ([1, dims.z_dim, dims.n0], None), "bn0.gamma": ([1, dims.c0], None),
            "bn0.beta": ([1, dims.c0], None),
            "W1.c0": ([1, dims.n1 // host_head.PANEL, dims.c0, host_head.PANEL], host_head.PANEL)}
    layout_ok = (graph.get("col_order") == "col2im" and state == list(want)
                 and all(n in by_name and list(by_name[n]["shape"]) == shape and by_name[n].get("panel") == panel
                         for n, (shape, panel) in want.items()))
    if not layout_ok:
        raise ManifestError(f"{model_dir}: the host head's weights in this export are not in the layout the head "
                            f"kernel computes (W0 (Z, 16 C0), bn0 gamma/beta, W1 in {host_head.PANEL}-column panels, "
                            f"col2im column order) for dims {dims}")
    return {"dims": dims, "consts": consts, "state": state}


class SeedWorkers:
    """Runs per-seed work on ``workers`` threads: seed s on worker s % workers, the calling thread
    being worker 0 (so one worker needs no thread). ``run(fn)`` calls fn(worker, seed) for every seed
    and returns when all are done, re-raising the first worker error after waiting for the others."""

    def __init__(self, n_seed: int, workers: int):
        self.workers = max(1, min(int(workers), n_seed))
        self.plan = [[s for s in range(n_seed) if s % self.workers == w] for w in range(self.workers)]
        self._pool = None
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(self.workers - 1, thread_name_prefix="edge-ad-seed")

    def run(self, fn) -> None:
        def work(w):
            for s in self.plan[w]:
                fn(w, s)
        futures = [self._pool.submit(work, w) for w in range(1, self.workers)] if self._pool else []
        try:
            work(0)
        finally:
            if futures:
                from concurrent.futures import wait
                wait(futures)            # every worker has stopped before anything is raised or reused
        for f in futures:
            f.result()                   # worker 0's error (above) first, then the first pool worker's

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _adam_implementation(adam: Optional[str]) -> str:
    """The host Adam's implementation: ``adam`` ("c": the compiled kernel, or "numpy"); None: the compiled
    kernel if installed, else NumPy. ValueError for an unknown name, RuntimeError for "c" without the kernel."""
    impl = adam or host_adam.default_implementation()
    if impl not in host_adam.IMPLEMENTATIONS:
        raise ValueError(f"unknown Adam implementation {impl!r} (choose from {host_adam.IMPLEMENTATIONS})")
    if impl == "c" and not host_adam.kernel_available():
        raise RuntimeError("the compiled Adam kernel is not installed (adam='numpy' runs without it)")
    return impl


def _check_head_kernel(head: Optional[dict]) -> None:
    """RuntimeError when the host-head search (``head`` given) cannot run here: no compiled head kernel, or a
    CPU without AVX2 + FMA."""
    if head and not host_head.kernel_available():
        raise RuntimeError("the compiled head kernel is not installed (reinstall edge-ad with a C compiler; "
                           "variant 'fused-adam' runs without it)")
    if head and not host_head.vectorized():
        raise RuntimeError("the host head runs on x86-64 CPUs with AVX2 + FMA only; variant 'fused-adam' "
                           "runs here")


def _gradient_binding(session, io: dict, weights: dict, g_ov: Optional[dict], graph_names: Sequence[str],
                      tail: bool):
    """An IOBinding of the gradient graph ``session``: the frame and z in, z.grad out (the host-head ``tail``
    graph: a1 in, a1.grad out), the graph's weights ``weights`` ({name: OrtValue}) in and, unless z-only
    (``g_ov`` None), their gradients out into ``g_ov``. ``io``: {name: OrtValue} of x, z, z.grad, a1, a1.grad."""
    binding = session.io_binding()
    binding.bind_ortvalue_input("x", io["x"])
    if tail:                           # the tail graph starts at a1 and ends at a1.grad
        binding.bind_ortvalue_input("a1", io["a1"])
        binding.bind_ortvalue_output("a1.grad", io["a1.grad"])
    else:
        binding.bind_ortvalue_input("z", io["z"])
        binding.bind_ortvalue_output("z.grad", io["z.grad"])
    for nm in graph_names:
        binding.bind_ortvalue_input(nm, weights[nm])
        if g_ov is not None:
            binding.bind_ortvalue_output(nm + ".grad", g_ov[nm])
    return binding


class OrtHostAdamSearch:
    """n_seed single-seed searches on the CPU: gradients in onnxruntime (grad_seed.onnx), Adam on the
    host (host_adam), the final pass in final_seed.onnx. ``run`` returns what OrtSearch.run returns:
    seed_losses (S,), error_map (mean over seeds), recon (S, C, H, W), z (S, z_dim), steps_s, final_s.

    graphs: {"grad_seed" (or "grad_z_seed" for lr_theta = 0: z-only, the weights stay pristine):
    path or bytes, "final_seed": path or bytes}; pristine: {name: one copy} in the
    graphs' layout (see ``regroup_state``); state: the graphs' "state" entries. workers: threads running
    seeds (default n_seed; 1 = the seeds in turn on the calling thread); threads: all CPU threads to use
    (default: one per worker), split evenly into each worker's onnxruntime intra-op pool. adam: the host
    Adam, "c" (the compiled kernel, default when installed) or "numpy".

    head: the host-head search (mode "host-head"): {"dims": host_head.HeadDims, "consts": bn0's
    constants, "state": the head's state names, the first of ``state``}. graphs then holds
    "grad_tail_seed" (or "grad_z_tail_seed") instead of "grad_seed": per step the host runs layers 0-1
    (host_head.Head.forward -> a1), the tail graph gives a1.grad and the tail's weight gradients, and
    the host's backward pass through layers 0-1 (-> dz) applies Adam to their weights as it goes."""

    def __init__(self, graphs: dict, pristine: dict, state: Sequence[dict], cfg: SearchConfig, z_dim: int,
                 x_shape: Sequence[int], dtype=np.float32, providers: Optional[list] = None,
                 workers: Optional[int] = None, adam: Optional[str] = None, threads: Optional[int] = None,
                 head: Optional[dict] = None):
        self._ort = onnxruntime_module()
        self.cfg, self.mode, self.dtype = cfg, ("host-head" if head else "fused-adam"), np.dtype(dtype)
        self.z_only = not cfg.updates_weights          # lr_theta = 0: the z-only graph, weights stay pristine
        grad_graph = self._gradient_graph(graphs, cfg, providers, head)
        self.adam_impl = _adam_implementation(adam)
        _check_head_kernel(head)
        self.device, self._run_opts = "cpu", None
        S = cfg.n_seed
        self.S, self.z_dim = S, z_dim
        graph_names = self._lay_out_state(state, head)
        self._workers = SeedWorkers(S, workers or S)
        self.workers = self._workers.workers
        # threads beyond one per worker go to each worker's intra-op pool (e.g. 8 cores, 3 seeds: 2 each)
        self.intra_threads = max(1, int(threads or self.workers) // self.workers)
        so = session_options(self.intra_threads)
        sess = [{"grad": self._ort.InferenceSession(graphs[grad_graph], so, providers=["CPUExecutionProvider"]),
                 "final": self._ort.InferenceSession(graphs["final_seed"], so, providers=["CPUExecutionProvider"])}
                for _ in range(self.workers)]
        self.sessions = sess[0]
        self._keep = []                    # the host arrays the OrtValues share memory with
        self._ov, _ = ortvalue_makers(self._ort, self.dtype, "cpu", self._keep)
        self.p0 = np.concatenate([np.asarray(pristine[nm], dtype=np.float32).reshape(-1) for nm in self.names])
        p0_ov = self._views(self.p0, self.names)
        self.x = np.zeros(tuple(x_shape), np.float32)
        x_ov = self._wrap(self.x)
        C, R = int(x_shape[0]), int(x_shape[1])
        self.slots = [self._slot(sess[w], x_ov, p0_ov, graph_names, head, C, R) for w in range(self.workers)]
        # per seed: its z0 and results (copied out of the worker's slot when its search ends)
        self.z0 = np.zeros((S, 1, 1, z_dim), np.float32)
        self.results = {"seed_losses": np.zeros(S, np.float32), "error_map": np.zeros((S, R, R), np.float32),
                        "recon": np.zeros((S, C, R, R), np.float32), "z": np.zeros((S, z_dim), np.float32)}
        self._coefs = [(host_adam.coefficients(cfg, t, cfg.lr_z), host_adam.coefficients(cfg, t, cfg.lr_theta))
                       for t in range(1, cfg.k + 1)]
        self._times = np.zeros((S, 2))

    def _gradient_graph(self, graphs: dict, cfg: SearchConfig, providers: Optional[list],
                        head: Optional[dict]) -> str:
        """The name of the gradient graph this search runs (runtime/variants.py: grad_seed, grad_z_seed or
        their host-head tail twins). ValueError unless it runs here: float32, k >= 1, that graph among
        ``graphs``, the CPU provider first."""
        if self.dtype != np.float32:
            raise ValueError(f"the {self.mode} search runs float32 graphs")
        if cfg.k < 1:
            raise ValueError(f"the {self.mode} search needs k >= 1 (with k = 0 there is no search step)")
        from edge_ad.runtime.variants import VARIANTS
        grad_graph = VARIANTS["host-head" if head else "fused-adam"].needs(cfg)[0]
        if grad_graph not in graphs:
            raise ValueError(f"the {self.mode} search with lr_theta = {cfg.lr_theta} needs the {grad_graph} graph")
        providers = [p if isinstance(p, str) else p[0] for p in (providers or ["CPUExecutionProvider"])]
        if providers[0] != "CPUExecutionProvider":
            raise ValueError(f"the {self.mode} search runs on the CPU (host buffers); on a GPU use the "
                             "step graphs (variant 'step': the CUDA provider) or the TensorRT backend")
        return grad_graph

    def _lay_out_state(self, state: Sequence[dict], head: Optional[dict]) -> list:
        """Place one seed's state tensors one after another in a flat float32 buffer (``names``, ``n_params``;
        each tensor's one-seed shape and span): the host head's tensors first (``n_head`` floats), the graph's
        after them. Returns the graph's tensor names. ValueError when ``head`` does not fit the state."""
        self.names = [st["name"] for st in state]
        self._shapes = {st["name"]: (1,) + tuple(st["shape"])[1:] for st in state}
        sizes = [int(np.prod(self._shapes[n])) for n in self.names]
        offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self._span = {nm: (int(offs[i]), int(offs[i + 1])) for i, nm in enumerate(self.names)}
        self.n_params = int(offs[-1])
        # the host head's tensors are the first of the flat state (n_head floats); the graph gets the rest
        head_names = list(head["state"]) if head else []
        if self.names[:len(head_names)] != head_names:
            raise ValueError(f"the head's state {head_names} is not the start of the search state {self.names}")
        nh = int(offs[len(head_names)])
        self.head_dims = head["dims"] if head else None
        if head and nh != self.head_dims.n_head:
            raise ValueError(f"the head's weights hold {nh} floats, its dims {self.head_dims} need {self.head_dims.n_head}")
        self.n_head = nh
        return self.names[len(head_names):]

    def _views(self, flat: np.ndarray, names: Sequence[str], base: int = 0) -> dict:
        """{name: OrtValue} of the tensors ``names`` in the flat buffer ``flat`` (which starts at offset ``base``
        of the flat state), each in its one-seed shape, sharing ``flat``'s memory."""
        return {nm: self._ov(flat[self._span[nm][0] - base:self._span[nm][1] - base].reshape(self._shapes[nm]))
                for nm in names}

    def _wrap(self, a: np.ndarray):
        """An OrtValue sharing the memory of the host array ``a`` (kept alive with the search)."""
        self._keep.append(a)
        return self._ort.OrtValue.ortvalue_from_numpy(a, "cpu", 0)

    def _slot(self, sess: dict, x_ov, p0_ov: dict, graph_names: list, head: Optional[dict], C: int, R: int) -> dict:
        """One worker's search buffers and IOBindings (a worker runs its seeds in turn): p, m, v flat (n,)
        float32 weights / scaled moments, g (n - n_head,) the graph's gradients, z, zm, zv, zg (1, 1, z_dim),
        the final outputs; with the head: a1, da1 (1, C1, 8, 8) and the head's scratch. ``first`` / ``step``:
        the gradient graph bound to the pristine weights (step 1) / to p (later steps); ``final``: the final
        pass on p (the pristine weights for the z-only search)."""
        n, nh, z_dim = self.n_params, self.n_head, self.z_dim
        b = {k: np.zeros(0 if self.z_only else n, np.float32) for k in ("p", "m", "v")}
        b["g"] = np.zeros(0 if self.z_only else n - nh, np.float32)
        b.update({k: np.zeros((1, 1, z_dim), np.float32) for k in ("z", "zm", "zv", "zg")})
        io = {"x": x_ov, "z": self._wrap(b["z"]), "z.grad": self._wrap(b["zg"])}   # bound by name
        if head:
            b["head"] = host_head.Head(self.head_dims, head["consts"])
            a1_shape = (1, self.head_dims.c1, 8, 8)
            b["a1"], b["da1"] = np.zeros(a1_shape, np.float32), np.zeros(a1_shape, np.float32)
            io.update({"a1": self._wrap(b["a1"]), "a1.grad": self._wrap(b["da1"])})
        b["out"] = {"seed_losses": np.zeros(1, np.float32), "error_map": np.zeros((R, R), np.float32),
                    "recon": np.zeros((1, C, R, R), np.float32)}
        p_ov = p0_ov if self.z_only else self._views(b["p"], self.names)
        g_ov = None if self.z_only else self._views(b["g"], graph_names, nh)
        steps = [_gradient_binding(sess["grad"], io, weights, g_ov, graph_names, head is not None)
                 for weights in (p0_ov, p_ov)]          # step 1 reads the pristine weights, later steps p_j
        fin = sess["final"].io_binding()
        fin.bind_ortvalue_input("x", x_ov)
        fin.bind_ortvalue_input("z", io["z"])
        for nm in self.names:
            fin.bind_ortvalue_input(nm, p_ov[nm])
        for k, a in b["out"].items():
            fin.bind_ortvalue_output(k, self._wrap(a))
        b.update(first=steps[0], step=steps[1], final=fin, sess=sess)
        return b

    def _search_seed(self, w: int, s: int) -> None:
        b = self.slots[w]
        grad, final = b["sess"]["grad"], b["sess"]["final"]
        t0 = time.perf_counter()
        b["z"][...] = self.z0[s]          # step 1's graph input; its Adam step reads z0 as p0
        nh = self.n_head
        head, p, m, v, p0 = b.get("head"), b["p"], b["m"], b["v"], self.p0
        zf, zgf = b["z"].reshape(-1), b["zg"].reshape(-1)
        # the graph's weights get the previous step's Adam just before the graph reads them (after the head's
        # forward pass, which streams ~12 MB: the updated tail weights are then still in cache; measured
        # -2 to -9 % per frame at 1 thread in interleaved A/B runs, the same scores bit for bit)
        pending = None                     # (coefficients, p0 or None) of the graph weights' due Adam step
        for t, (cz, cp) in enumerate(self._coefs, start=1):
            first = t == 1
            if head is not None:           # layers 0-1 on the host: a1 for the tail graph
                head.forward(zf, (p0 if first or self.z_only else p)[:nh], b["a1"])
            if pending is not None:
                host_adam.adam_update(p[nh:], m[nh:], v[nh:], b["g"], pending[0], pending[1], self.adam_impl)
            grad.run_with_iobinding(b["first"] if first else b["step"])
            if head is not None:           # back through layers 0-1: dz, and Adam on their weights in the same pass
                if self.z_only:
                    head.backward(b["da1"], zf, zgf, p0[:nh], None, None, None, None)
                else:
                    head.backward(b["da1"], zf, zgf, p[:nh], m[:nh], v[:nh], p0[:nh] if first else None, cp)
            host_adam.adam_update(b["z"], b["zm"], b["zv"], b["zg"], cz, self.z0[s] if first else None, self.adam_impl)
            if not self.z_only:
                pending = (cp, p0[nh:] if first else None)
        if pending is not None:            # the last step's, before the final pass
            host_adam.adam_update(p[nh:], m[nh:], v[nh:], b["g"], pending[0], pending[1], self.adam_impl)
        t1 = time.perf_counter()
        final.run_with_iobinding(b["final"])
        r = self.results
        r["seed_losses"][s] = b["out"]["seed_losses"][0]
        r["error_map"][s] = b["out"]["error_map"]
        r["recon"][s] = b["out"]["recon"][0]
        r["z"][s] = b["z"].reshape(-1)
        self._times[s] = (t1 - t0, time.perf_counter() - t1)

    def run(self, x: np.ndarray, z0: np.ndarray) -> dict:
        """x (C, H, W), z0 (n_seed, z_dim) -> {seed_losses, error_map, recon, z, steps_s, final_s}."""
        self.x[...] = x
        self.z0[...] = np.asarray(z0, dtype=np.float32).reshape(self.S, 1, 1, self.z_dim)
        self._workers.run(self._search_seed)
        r = self.results
        return {"seed_losses": r["seed_losses"].astype(np.float64),
                "error_map": (np.sum(r["error_map"], axis=0, dtype=np.float32) / np.float32(self.S)).astype(np.float32),
                "recon": r["recon"].copy(), "z": r["z"].copy(),
                "steps_s": float(self._times[:, 0].max()), "final_s": float(self._times[:, 1].max())}

    def close(self) -> None:
        """Stop the worker threads."""
        self._workers.close()
