"""Profile the seed-parallel search vs the grouped unrolled graph (onnxruntime profiler): kernel time
per node scope (fwd/bwd/adam/loss) and op type, per session."""
import json, time, collections, os, sys
import numpy as np
from edge_ad.runtime.scorer import Scorer
from edge_ad.runtime.config import make_z0
d = sys.argv[1] if len(sys.argv) > 1 else '/tmp/w32ref'   # an export of a width-32 checkpoint (reference configuration)
x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64)).astype(np.float32); z0 = make_z0(3, 100, 0)
def summarize(path):
    ev = json.load(open(path))
    by_scope, by_op, tot = collections.Counter(), collections.Counter(), 0
    for e in ev:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        name = e["name"][:-len("_kernel_time")]
        by_scope[name.split("/")[0]] += e["dur"]; by_op[e["args"].get("op_name", "?")] += e["dur"]; tot += e["dur"]
    return tot, by_scope, by_op
cases = [("unrolled_t1", dict(variant="unrolled", threads=1)), ("unrolled_t2", dict(variant="unrolled", threads=2)),
         ("seedpar_w3", dict(variant="seed-parallel", threads=2)), ("seedpar_w2", dict(variant="seed-parallel", threads=2, workers=2)),
         ("seedpar_w1", dict(variant="seed-parallel", threads=1))]
for label, kw in cases:
    s = Scorer.load(d, profile=os.path.join(sys.argv[2] if len(sys.argv) > 2 else '/tmp', label), **kw)
    s.score_input(x, z0=z0)
    t = time.perf_counter(); s.score_input(x, z0=z0); wall = time.perf_counter() - t
    sessions = getattr(s._search, "_worker_sessions", None) or list(s._search.sessions.values())
    print(f"== {label}: wall {wall:.3f} s/frame (2nd run); load {os.getloadavg()[0]:.2f}")
    seen = set()
    for sess in sessions:
        if id(sess) in seen:
            continue
        seen.add(id(sess))
        tot, sc, op = summarize(sess.end_profiling())
        print(f"  session: kernel time per run {tot/2e6:.3f} s; scopes " + ", ".join(f"{k} {v/2e6:.3f}" for k, v in sc.most_common())
              + "; top ops " + ", ".join(f"{k} {v/2e6:.3f}" for k, v in op.most_common(6)))
    sys.stdout.flush()
