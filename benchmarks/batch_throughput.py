"""Frames/s of a k = 0 model (the shipped kinect models): one frame at a time, as ``edge-ad run``
scores ("one": ``Scorer.score`` per frame, each frame its own seed; "run": edge-ad run's loop itself,
``run_capture`` without an output file) vs ``Scorer.score_batch`` over batches,
interleaved in one process, with the fraction of the sgemm peak measured in the same run; and the
cost of the test-time shift-min ("shiftR": ``Scorer.score`` per frame with SearchConfig.score_shift_radius
R, (2R + 1)^2 shifted copies through the batch graphs) against "one" (R = 0): cost_vs_one = fps of one /
fps of shiftR, from the same rounds.

    python benchmarks/batch_throughput.py [--model DIR] [--threads 2] [--batch 4 --batch 8] [--frames 64] [--rounds 8]
        [--shift-radius 1 --shift-radius 2] [--out benchmarks/results/batch_k0_threads2.json]

Without --model it exports models/kinect-rgbd/rectangle.pt (no parity run) into a temporary folder.
Each round runs every mode over the same real kinect-rgbd val frames (raw RGB-D, preprocessing
included), in a rotating order; medians and bests (the least disturbed round on a shared machine)
are reported; the sgemm peak (torch.mm 2048^3) is measured
before the rounds (best of 10) and after each (best of 3), and the best is used. FLOPs per frame count the
multiply-adds x 2 of the encoder's convolutions and the generator's transposed convolutions.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_ad.benchmarks.search_bench import model_flops, sgemm_peak   # the definitions edge-ad bench uses

REPO = Path(__file__).resolve().parents[1]


def flops_per_frame(model_dir: Path, manifest: dict) -> dict:
    """Multiply-adds x 2 per frame: generator (n_seed passes) and encoder (its Conv nodes)."""
    import onnx
    from onnx import numpy_helper, shape_inference
    m = manifest["model"]
    fg, z, c = int(m["features_g"]), int(m["z_dim"]), int(m["channels"])
    gen = int(model_flops(z, fg, c, int(manifest["layout"]["n_seed"]), k=0))   # n_seed generator passes
    enc = 0
    if "encoder" in manifest["graphs"]:
        model = shape_inference.infer_shapes(onnx.load(str(model_dir / manifest["graphs"]["encoder"]["file"])))
        inits = {t.name: numpy_helper.to_array(t).shape for t in model.graph.initializer}
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.value_info}
        for node in model.graph.node:
            if node.op_type == "Conv":
                w = inits[node.input[1]]
                out = shapes[node.output[0]]
                enc += 2 * int(np.prod(out)) * int(np.prod(w[1:]))
    return {"generator": gen, "encoder": enc, "total": gen + enc}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="k = 0 export (default: export the shipped rectangle model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, action="append", help="frames per score_batch call (repeatable) [4, 8]")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--shift-radius", type=int, action="append",
                    help="also score one frame at a time with the shift-min of this radius (repeatable) [1, 2]; "
                         "0: none")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args(argv)
    a.batch = a.batch or [4, 8]
    radii = [r for r in (a.shift_radius or [1, 2]) if r > 0]
    from edge_ad.runtime.data_root import default_kinect_root
    KINECT = default_kinect_root()
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.config import frame_seed
    from edge_ad.runtime.sources.folder import read_pair

    tmp = None
    model_dir = Path(a.model) if a.model else None
    if model_dir is None:
        from edge_ad.export.exporter import export_model
        tmp = tempfile.TemporaryDirectory()
        model_dir = Path(tmp.name) / "rectangle"
        export_model(REPO / "models" / "kinect-rgbd" / "rectangle.pt", model_dir, parity=False, log=lambda *x: None)
    splits = json.loads((KINECT / "splits.json").read_text())
    classes = sorted(splits)
    frames = [read_pair(KINECT / classes[i % 3], str(splits[classes[i % 3]]["val"][i // 3])) for i in range(a.frames)]
    scorer = Scorer.load(model_dir, threads=a.threads)
    if scorer.config.k != 0 or "final_batch" not in scorer.manifest["graphs"]:
        raise SystemExit(f"{model_dir}: not a k = 0 export with final_batch.onnx (re-export with this edge-ad)")
    flops = flops_per_frame(model_dir, scorer.manifest)
    seeds = [frame_seed(0, i) for i in range(len(frames))]

    def one_at_a_time() -> float:
        t = time.perf_counter()
        for i, (rgb, depth) in enumerate(frames):
            scorer.score(rgb, depth, seed=seeds[i])
        return len(frames) / (time.perf_counter() - t)

    from edge_ad.runtime.capture import run_capture
    from edge_ad.runtime.sources.base import Frame, Source

    class InMemory(Source):
        """The benchmark's frames as a recording (no disk reads in the timed loop)."""
        uri = "memory://"

        def __iter__(self):
            for i, (rgb, depth) in enumerate(frames):
                yield Frame(str(i), rgb, depth, float(i))

    def run_loop() -> float:
        """edge-ad run's own loop (run_capture: watchdog thread, sensor checks, JSON records), no output file."""
        t = time.perf_counter()
        run_capture(InMemory(), scorer, seed=0, handle_signals=False, live=False)
        return len(frames) / (time.perf_counter() - t)

    def batched(b: int):
        def run() -> float:
            t = time.perf_counter()
            for s in range(0, len(frames), b):
                scorer.score_batch(frames[s:s + b], seeds=seeds[s:s + b], threads=a.threads)
            return len(frames) / (time.perf_counter() - t)
        return run

    def shifted(radius: int):
        s = Scorer.load(model_dir, threads=a.threads, config=scorer.config.replace(score_shift_radius=radius))

        def run() -> float:
            t = time.perf_counter()
            for i, (rgb, depth) in enumerate(frames):
                s.score(rgb, depth, seed=seeds[i])
            return len(frames) / (time.perf_counter() - t)
        return run

    modes = {"one": one_at_a_time, "run": run_loop, **{f"batch{b}": batched(b) for b in a.batch},
             **{f"shift{r}": shifted(r) for r in radii}}
    for f in modes.values():                                    # warm-up (sessions, caches)
        f()
    peaks = [sgemm_peak(a.threads, reps=10)]
    rounds = []
    names = list(modes)
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        fps = {n: modes[n]() for n in order}
        rounds.append({**{f"{n}_fps": fps[n] for n in names},
                       **{f"{n}_ratio": fps[n] / fps["one"] for n in names if n != "one"},
                       **{f"{n}_ratio_vs_run": fps[n] / fps["run"] for n in names if n.startswith("batch")}})
        peaks.append(sgemm_peak(a.threads, reps=3))             # every round: the peak sees the same load
    peak = max(peaks)
    gf = flops["total"] / 1e9
    summary = {}
    for n in names:
        col = [x[f"{n}_fps"] for x in rounds]
        g = gf * (2 * int(n[5:]) + 1) ** 2 if n.startswith("shift") else gf     # a shift-min frame is (2R + 1)^2 frames
        summary[n] = {"median_fps": statistics.median(col), "best_fps": max(col),
                      "median_fps_per_core": statistics.median(col) / a.threads, "best_fps_per_core": max(col) / a.threads,
                      "median_peak_fraction": statistics.median(col) * g / peak, "best_peak_fraction": max(col) * g / peak}
        if n != "one":
            summary[n]["median_ratio"] = statistics.median(x[f"{n}_ratio"] for x in rounds)
            summary[n]["best_ratio"] = max(col) / summary["one"]["best_fps"]
        if n.startswith("batch"):
            summary[n]["median_ratio_vs_run"] = statistics.median(x[f"{n}_ratio_vs_run"] for x in rounds)
            summary[n]["best_ratio_vs_run"] = max(col) / summary["run"]["best_fps"]
        if n.startswith("shift"):      # time per frame relative to R = 0, per round then the median
            summary[n]["median_cost_vs_one"] = statistics.median(1 / x[f"{n}_ratio"] for x in rounds)
            summary[n]["best_cost_vs_one"] = summary["one"]["best_fps"] / max(col)
    res = {"model": str(a.model or "models/kinect-rgbd/rectangle.pt (exported, k = 0)"),
           "config": scorer.config.name, "threads": a.threads, "batches": a.batch, "frames": len(frames),
           "rounds": rounds, "summary": summary, "sgemm_peak_gflops": peak, "sgemm_peaks": peaks,
           "gflop_per_frame": gf, "flops": flops, "shift_radii": radii, "max_batch": __import__("edge_ad.runtime.batch_scoring",
                                                                       fromlist=["MAX_BATCH"]).MAX_BATCH,
           "host": platform.processor() or platform.machine(), "search_mode": scorer.mode}
    print(f"{res['config']}: {gf:.3f} GFLOP/frame, {a.threads} threads, sgemm peak {peak:.1f} GFLOP/s "
          f"(runs {', '.join(f'{p:.1f}' for p in peaks)})")
    for i, x in enumerate(rounds):
        print(f"  round {i}: " + ", ".join(f"{n} {x[n + '_fps']:.1f} fps" for n in names))
    for n in names:
        m = summary[n]
        extra = f", x{m['median_ratio']:.2f} median / x{m['best_ratio']:.2f} best vs one" if n != "one" else ""
        if n.startswith("batch"):
            extra += f", x{m['median_ratio_vs_run']:.2f} / x{m['best_ratio_vs_run']:.2f} vs run"
        if n.startswith("shift"):
            extra = (f", cost x{m['median_cost_vs_one']:.2f} median / x{m['best_cost_vs_one']:.2f} best vs one "
                     f"({(2 * int(n[5:]) + 1) ** 2} copies per frame)")
        print(f"{n:>8}: median {m['median_fps']:.1f} fps ({m['median_fps_per_core']:.1f}/core, "
              f"{100 * m['median_peak_fraction']:.0f}% of peak), best {m['best_fps']:.1f} fps "
              f"({100 * m['best_peak_fraction']:.0f}%){extra}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    if tmp is not None:
        tmp.cleanup()
    return res


if __name__ == "__main__":
    main()
