"""Why Adam dominates the CPU search (issue 3): onnxruntime vs numpy on the exported graphs' Adam chain
(10 elementwise ops per weight chunk: m' = b1 m + g, v' = b2 v + g^2, p' = p - m' / (alpha sqrt(v') + eps_k)),
one thread, the same total elements (3.65 M floats, one width-32 seed) split into chunks of several sizes.
Then the fused-adam search's host update (runtime/backends/host_adam.py) over one seed's distinct, in-place buffers:
the compiled single-pass kernel and its NumPy twin.

    .venv/bin/python benchmarks/adam_chain.py
"""
from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

TOTAL = 3_654_000   # ~ the width-32 generator's parameters (one seed)


def adam_graph(n: int, chunks: int):
    nodes, inputs, outputs = [], [helper.make_tensor_value_info(s, TensorProto.FLOAT, [])
                                  for s in ("B1", "B2", "alpha", "epsk")], []

    def op(kind, ins, out):
        nodes.append(helper.make_node(kind, ins, [out]))
        return out

    for c in range(chunks):
        p, m, v, g = (f"{t}{c}" for t in "pmvg")
        inputs += [helper.make_tensor_value_info(t, TensorProto.FLOAT, [n]) for t in (p, m, v, g)]
        m1 = op("Add", [op("Mul", [m, "B1"], f"bm{c}"), g], f"m1_{c}")
        v1 = op("Add", [op("Mul", [v, "B2"], f"bv{c}"), op("Mul", [g, g], f"gg{c}")], f"v1_{c}")
        den = op("Add", [op("Mul", [op("Sqrt", [v1], f"sq{c}"), "alpha"], f"sa{c}"), "epsk"], f"den{c}")
        p1 = op("Sub", [p, op("Div", [m1, den], f"r{c}")], f"p1_{c}")
        outputs += [helper.make_tensor_value_info(t, TensorProto.FLOAT, [n]) for t in (p1, m1, v1)]
    return helper.make_model(helper.make_graph(nodes, "adam_chain", inputs, outputs),
                             opset_imports=[helper.make_opsetid("", 17)])


def main(repeats: int = 10):
    rng = np.random.default_rng(0)
    print(f"{'chunk floats':>12s} {'chunks':>6s} {'ORT ms':>8s} {'us/op':>6s} {'numpy ms':>9s} {'ORT/numpy':>9s}")
    for n in (348_000, 87_000, 43_500, 21_750, 10_875):
        chunks = TOTAL // n
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        model = adam_graph(n, chunks)
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feed = {i.name: (np.array(0.9, np.float32) if not i.type.tensor_type.shape.dim
                         else rng.random(n, dtype=np.float32)) for i in model.graph.input}
        for _ in range(2):
            sess.run(None, feed)
        t = time.perf_counter()
        for _ in range(repeats):
            sess.run(None, feed)
        t_ort = (time.perf_counter() - t) / repeats
        p, m, v, g = (rng.random(n, dtype=np.float32) for _ in range(4))
        t = time.perf_counter()
        for _ in range(repeats):
            for _ in range(chunks):
                m1 = m * np.float32(0.9) + g
                v1 = v * np.float32(0.9) + g * g
                p1 = p - m1 / (np.sqrt(v1) * np.float32(0.5) + np.float32(1e-8))
        t_np = (time.perf_counter() - t) / repeats
        print(f"{n:12d} {chunks:6d} {1e3 * t_ort:8.2f} {1e6 * t_ort / (10 * chunks):6.1f} {1e3 * t_np:9.2f} "
              f"{t_ort / t_np:9.2f}")


def host_update(repeats: int = 20):
    """ms per Adam step over one seed's TOTAL parameters, in place, every buffer distinct (as in the search)."""
    from edge_ad.runtime.backends import host_adam
    from edge_ad.runtime.config import SearchConfig
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(TOTAL).astype(np.float32)
    p, m, v = (np.zeros(TOTAL, np.float32) for _ in range(3))
    g = (rng.standard_normal(TOTAL) * 1e-3).astype(np.float32)
    coefs = host_adam.coefficients(SearchConfig(), 2, 6e-9)
    impls = ["numpy"] + (["c"] if host_adam.kernel_available() else [])
    for impl in impls:
        host_adam.adam_update(p, m, v, g, coefs, p0=p0, impl=impl)
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            host_adam.adam_update(p, m, v, g, coefs, impl=impl)
            ts.append(time.perf_counter() - t)
        print(f"host_adam ({impl:5s}) over {TOTAL} floats, in place: {1e3 * np.median(ts):6.2f} ms per step")


if __name__ == "__main__":
    main()
    host_update()
