"""``edge-ad bench``: per-frame search latency of every implementation, interleaved in one run.

Variants (same generator, same frames, same z0; the onnx ones are rows of runtime/variants.py):
  eager          study-style PyTorch: per seed a deepcopy of G and two torch Adams (search_eager)
  batched        the batched PyTorch reference (models.search.search)
  onnx-auto      what ``Scorer.load`` picks by default here (the CPU default: host-head where its
                 kernels run their AVX2 loops, else fused-adam; forward for k = 0)
  onnx-auto-full-pixels  onnx-auto with the pixel memory's full search (every row through one GEMM, as before
                 session 34; runtime/pixel_memory.PixelMemory.full_search) instead of its bounded search: the
                 baseline of the pixel factor's cost (configurations with score_pixel_power > 0 only); its
                 scores equal onnx-auto's bit for bit
  onnx-step      the step variant: k runs of step.onnx + final.onnx on preallocated buffers
  onnx-unrolled  the unrolled variant (unrolled.onnx; only in exports made with --unrolled)
  onnx-fused-adam        per seed a gradient graph (grad_seed.onnx) and Adam on the host in one fused pass
                         (runtime/backends/host_adam.py, compiled kernel), seeds on worker threads
  onnx-fused-adam-numpy  the same with the NumPy host Adam (what an install without a C compiler runs)
  onnx-host-head         fused-adam with layers 0-1 on the host, Adam fused into their backward pass
                         (runtime/backends/host_head.py, compiled kernel), layers 2-4 in grad_tail_seed.onnx
  eager-z-only   search_eager with lr_theta = 0
  onnx-z-only, onnx-fused-adam-z-only, onnx-host-head-z-only   lr_theta = 0 (the named fast option) in
                 the step, fused-adam and host-head variants
Reported per variant: median per-frame latency over frames x repeats, frames/s, GFLOP/s achieved
(model FLOPs: 2 x multiply-adds of the transposed convolutions in the forward, input-gradient and
weight-gradient passes; elementwise work not counted) and as a fraction of this machine's sgemm
peak measured in the same run (torch.mm 2048^3 with the same thread count), peak RSS (each variant
in a fresh process scoring one frame, so the onnx variants are measured without torch loaded).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

# bench variant -> (runtime variant (runtime/variants.py), z-only); eager / batched are the PyTorch references
ONNX_VARIANTS = {"onnx-auto": ("auto", False), "onnx-auto-full-pixels": ("auto", False), "onnx-step": ("step", False), "onnx-unrolled": ("unrolled", False),
                 "onnx-fused-adam": ("fused-adam", False), "onnx-fused-adam-numpy": ("fused-adam", False),
                 "onnx-host-head": ("host-head", False), "onnx-z-only": ("step", True),
                 "onnx-fused-adam-z-only": ("fused-adam", True), "onnx-host-head-z-only": ("host-head", True)}
ALL_VARIANTS = ("eager", "batched", "onnx-auto", "onnx-auto-full-pixels", "onnx-step", "onnx-unrolled", "onnx-fused-adam",
                "onnx-fused-adam-numpy", "onnx-host-head", "eager-z-only", "onnx-z-only", "onnx-fused-adam-z-only",
                "onnx-host-head-z-only")
DEFAULT_VARIANTS = ("eager", "batched", "onnx-auto", "onnx-auto-full-pixels", "onnx-step", "onnx-unrolled", "onnx-fused-adam",
                    "onnx-host-head", "eager-z-only", "onnx-z-only", "onnx-fused-adam-z-only", "onnx-host-head-z-only")


def model_flops(z_dim: int, fg: int, channels: int, n_seed: int, k: int, weights: bool = True) -> float:
    """FLOPs of one frame's search: n_seed x (k steps x (fwd + dX + dW [if weights]) + final fwd)."""
    widths = [z_dim, fg * 16, fg * 8, fg * 4, fg * 2, channels]
    macs = sum(widths[l] * widths[l + 1] * 16 * (1 if l == 0 else (4 * 2 ** (l - 1)) ** 2) for l in range(5))
    per_step = macs * (3 if weights else 2)
    return 2.0 * n_seed * (k * per_step + macs)


def sgemm_peak(threads: int, n: int = 2048, reps: int = 5) -> float:
    """Best-of-``reps`` GFLOP/s of a float32 n^3 matrix product (torch.mm) on ``threads`` threads."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        best = 0.0
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2.0 * n ** 3 / (time.perf_counter() - t) / 1e9)
        return best
    finally:
        torch.set_num_threads(old)


def bench_frames(n: int, spec=None) -> list:
    """n real kinect-rgbd val frames, alternating classes: [(id, x (4, 64, 64) float32)]."""
    from edge_ad.runtime.preprocess import preprocess
    from edge_ad.runtime.sources.folder import read_pair

    from edge_ad.runtime.data_root import default_kinect_root
    root = default_kinect_root()
    splits = json.loads((root / "splits.json").read_text())
    classes = sorted(splits)
    out = []
    for i in range(n):
        cls = classes[i % len(classes)]
        fid = str(splits[cls]["val"][i // len(classes)])
        rgb, d = read_pair(root / cls, fid)
        out.append((f"{cls}/{fid}", preprocess(rgb, d, spec)))
    return out


class Skipped(Exception):
    """A bench variant that cannot run on this checkpoint / export; the message says why."""


TORCH_VARIANTS = ("eager", "batched", "eager-z-only")


def torch_scoring(checkpoint, model_dir: Path, man: dict, cfg) -> dict:
    """What the PyTorch variants need to score as the export's own configuration does (as ``edge-ad
    eval`` scores the checkpoint): {"encoder": the checkpoint's izi encoder (models.encoder.Encoder) when
    cfg.z_init == "encoder", "latent_bank": the export's latent_bank.npy (the bank its onnx variants
    score with) and "bank_rows_per_frame", its layout as the manifest's augment list (the texts
    cfg.bank_trusted_augment names), when cfg multiplies by the latent distance}. Raises Skipped
    when the checkpoint lacks the encoder or the export the bank."""
    out = {"encoder": None, "latent_bank": None, "bank_rows_per_frame": None}
    if cfg.z_init == "encoder":
        from edge_ad.models.search import checkpoint_encoder
        out["encoder"] = checkpoint_encoder(checkpoint)
        if out["encoder"] is None:
            raise Skipped(f"the export's scoring configuration {cfg.name!r} starts from an encoder, but "
                          f"{checkpoint} carries none")
    if cfg.uses_latent_bank:
        from edge_ad.runtime.latent_memory import rows_per_frame_of
        from edge_ad.runtime.model_arrays import load_npy
        entry = man.get("latent_bank")
        if not isinstance(entry, dict) or entry.get("file") not in man.get("files", {}):
            raise Skipped(f"the scoring configuration {cfg.name!r} needs a latent bank, but {model_dir} has none")
        out["latent_bank"] = load_npy(model_dir, entry["file"], entry["shape"], np.float32)   # (N, z_dim)
        rows_per_frame_of(entry.get("augment"))                  # a list of texts (None: none)
        out["bank_rows_per_frame"] = list(entry.get("augment") or [])
    if cfg.uses_pixel_memory:   # the export's pixel_memory.npy, as its onnx variants score with it (review 18 #2)
        from edge_ad.runtime.preprocess import PreprocessSpec
        from edge_ad.runtime.scorer import load_pixel_memory
        try:
            out["pixel_memory"] = load_pixel_memory(model_dir, man, cfg, PreprocessSpec.from_dict(man["preprocess"]))
        except ValueError as e:            # ManifestError: no memory in this export
            raise Skipped(str(e)) from None
    return out


def _make_runner(variant: str, G, model_dir: Path, cfg, threads: int, scoring: Optional[dict] = None) -> Callable:
    """variant -> f(x, z0, seed) -> score (z0 None: from the seed, or E(x) for z_init "encoder").
    ``scoring``: torch_scoring's parts, needed by the PyTorch variants of configurations with an
    encoder, a latent bank or a test-time shift-min (scored by models.search.search_min_shift)."""
    if variant in TORCH_VARIANTS:
        import torch

        from edge_ad.models.search import search, search_eager, search_min_shift
        torch.set_num_threads(threads)
        c = cfg.replace(lr_theta=0.0) if variant == "eager-z-only" else cfg
        if cfg.z_init == "encoder" or cfg.uses_latent_bank or cfg.score_shift_radius or cfg.uses_pixel_memory:
            parts = scoring or {}
            return lambda x, z0, seed: search_min_shift(G, x, c, z0=z0, seed=seed, eager=variant != "batched",
                                                        **parts).score
        f = search if variant == "batched" else search_eager
        return lambda x, z0, seed: f(G, x, c, z0=z0, seed=seed).score
    from edge_ad.runtime.scorer import Scorer
    name, z_only = ONNX_VARIANTS[variant]
    s = Scorer.load(model_dir, config=cfg.replace(lr_theta=0.0) if z_only else cfg, variant=name, threads=threads)
    if variant == "onnx-fused-adam-numpy":
        s._search.adam_impl = "numpy"          # the host Adam of an install without a C compiler
    if variant == "onnx-auto-full-pixels":     # the pixel memory's full search (the bounded one's tables dropped)
        s._pixels = s._pixels.full_search()
        if s._dil_pixels is not None:          # the silhouette lever's PairedPixelMemory
            s._dil_pixels = type(s._dil_pixels)(s._dil_pixels.pixels.full_search(), s._dil_pixels.opened.full_search())
    def run(x, z0, seed):
        return s.score_input(x, z0=z0, seed=seed).score
    run.mode = s.mode
    run.pixels = s._pixels                    # the pixel memory (None without the pixel factor): its bytes
    run.close = s.close                       # the scorer's buffers and seed threads, when the bench is done
    return run


def _runs(variant: str, cfg, man: dict) -> bool:
    """True when the export ``man`` has what bench variant ``variant`` runs (PyTorch ones always)."""
    from edge_ad.runtime.variants import VARIANTS, exported
    if variant not in ONNX_VARIANTS or ONNX_VARIANTS[variant][0] == "auto":
        return True
    name, z_only = ONNX_VARIANTS[variant]
    return exported(VARIANTS[name], cfg.replace(lr_theta=0.0) if z_only else cfg, man["graphs"])


def _rss_probe(variant: str, checkpoint: str, model_dir: str, threads: int) -> float:
    """Peak RSS (MiB) of a fresh process that loads ``variant`` and scores one frame."""
    code = (
        "import sys, resource, json\n"
        "from edge_ad.benchmarks.search_bench import _probe_main\n"
        f"_probe_main({variant!r}, {checkpoint!r}, {model_dir!r}, {threads})\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"RSS probe {variant} failed: {r.stderr[-500:]}")
    return float(r.stdout.strip().splitlines()[-1])


def _probe_main(variant: str, checkpoint: str, model_dir: str, threads: int) -> None:
    from edge_ad.runtime.config import SearchConfig, make_z0
    from edge_ad.runtime.manifest import load_manifest
    man = load_manifest(model_dir, verify=False)
    cfg = SearchConfig.from_dict(man["search"])
    G = scoring = None
    if not variant.startswith("onnx"):
        from edge_ad.models.checkpoint import load_generator
        G = load_generator(checkpoint)
        scoring = torch_scoring(checkpoint, Path(model_dir), man, cfg)
    run = _make_runner(variant, G, Path(model_dir), cfg, threads, scoring)
    x = np.zeros((man["layout"]["channels"],) + (man["layout"]["resolution"],) * 2, np.float32)
    z0 = None if cfg.z_init == "encoder" else make_z0(cfg.n_seed, man["layout"]["z_dim"], 0)
    run(x, z0, 0)
    assert variant.startswith("eager") or variant == "batched" or "torch" not in sys.modules
    print(peak_rss_mib())


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Not ru_maxrss: Linux carries the parent's peak
    across fork + exec into the child's ru_maxrss, which would make every probe read the same."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_bench(checkpoint: str, model_dir: Optional[str] = None, *, n_frames: int = 2, repeats: int = 2,
              threads: Optional[int] = None, variants: Sequence[str] = DEFAULT_VARIANTS, rss: bool = True,
              log: Callable = print) -> dict:
    """Interleaved benchmark; returns the results dict (see module docstring)."""
    from edge_ad.models.checkpoint import load_generator

    from edge_ad.export.exporter import export_model
    threads = int(threads or os.cpu_count() or 1)
    G = load_generator(checkpoint)
    tmp = None
    if model_dir is None:
        tmp = tempfile.mkdtemp(prefix="edge-ad-bench-")
        model_dir = tmp
    try:
        if tmp:
            log(f"exporting {checkpoint} to {tmp} (no parity check) ...")
            export_model(checkpoint, tmp, parity=False, unrolled="onnx-unrolled" in variants, log=lambda *a: None)
        return _bench_export(checkpoint, G, Path(model_dir), n_frames, repeats, threads, variants, rss, log)
    finally:
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


def _bench_export(checkpoint: str, G, model_dir: Path, n_frames: int, repeats: int, threads: int,
                  variants: Sequence[str], rss: bool, log: Callable) -> dict:
    """run_bench on the export ``model_dir`` of ``checkpoint`` (generator G)."""
    from edge_ad.runtime.config import SearchConfig, frame_seed, make_z0
    from edge_ad.runtime.manifest import load_manifest
    from edge_ad.runtime.preprocess import PreprocessSpec
    man = load_manifest(model_dir)
    cfg = SearchConfig.from_dict(man["search"])
    unknown = set(variants) - set(ALL_VARIANTS)
    if unknown:
        raise ValueError(f"unknown variants {sorted(unknown)}; choose from {ALL_VARIANTS}")
    skipped = {v: "not in this export (runtime/variants.py: its graphs were not exported for this "
                  "configuration)" for v in variants if not _runs(v, cfg, man)}
    if not cfg.uses_pixel_memory and "onnx-auto-full-pixels" in variants:
        skipped["onnx-auto-full-pixels"] = "no pixel memory in this configuration (score_pixel_power 0): no pixel search"
    if cfg.k == 0:      # the z-only variants drop the weights' step: with no step, each is its full variant again
        skipped.update({v: "k = 0: no search step to drop, the same computation as its full-search variant"
                        for v in variants if "z-only" in v and v not in skipped})
    scoring = None
    if any(v in TORCH_VARIANTS for v in variants):
        try:
            scoring = torch_scoring(checkpoint, model_dir, man, cfg)
        except Skipped as e:
            skipped.update({v: str(e) for v in variants if v in TORCH_VARIANTS})
    for line in skipped_lines(skipped):
        log(f"note: skipping {line}")
    variants = [v for v in variants if v not in skipped]
    if not variants:
        raise Skipped("none of the requested variants can run here (see the notes above)")
    # the frames as the export preprocesses them (its manifest: the checkpoint's own preprocessing when
    # exported with its scoring, plain for a --scoring reference export)
    frames = bench_frames(n_frames, PreprocessSpec.from_dict(man["preprocess"]))
    # z0 per frame: from the encoder (E(x) + z_init_sigma * noise of the frame's seed) for z_init
    # "encoder", else the same random latents for every variant
    z0s = [None if cfg.z_init == "encoder" else make_z0(cfg.n_seed, G.cfg.z_dim, frame_seed(0, i))
           for i in range(len(frames))]
    seeds = [frame_seed(0, i) for i in range(len(frames))]
    load0 = os.getloadavg()
    peak0 = sgemm_peak(threads)
    log(f"sgemm peak ({threads} threads): {peak0:.1f} GFLOP/s; load average {load0[0]:.1f}")
    runners = {}
    try:
        for v in variants:
            runners[v] = _make_runner(v, G, model_dir, cfg, threads, scoring)
        for v in variants:                       # warm-up (first-run allocations, lazy init)
            runners[v](frames[0][1], z0s[0], seeds[0])
        times = {v: [] for v in variants}
        scores = {v: [] for v in variants}
        for rep in range(repeats):
            for i, (fid, x) in enumerate(frames):
                for v in variants:               # interleaved: the same machine state for all
                    t = time.perf_counter()
                    s = runners[v](x, z0s[i], seeds[i])
                    times[v].append(time.perf_counter() - t)
                    if rep == 0:
                        scores[v].append(s)
                log(f"  rep {rep + 1}/{repeats} frame {fid}: " +
                    ", ".join(f"{v} {times[v][-1]:.2f}s" for v in variants))
    finally:
        for r in runners.values():
            getattr(r, "close", lambda: None)()  # the onnxruntime runners' scorers (PyTorch ones hold nothing)
    peak = max(peak0, sgemm_peak(threads))
    load1 = os.getloadavg()
    fg = G.cfg.features_g
    res = {}
    copies = (2 * cfg.score_shift_radius + 1) ** 2
    uncounted = flops_not_counted(cfg)
    for v in variants:
        med = float(np.median(times[v]))
        # every copy of the test-time shift-min is one search; the encoder pass and the memories are not counted:
        # with them in the frame's time, a rate of the generator's FLOPs would read as the CPU idling (audit 33 #5)
        flops = copies * model_flops(G.cfg.z_dim, fg, G.cfg.channels, cfg.n_seed, cfg.k, weights="z-only" not in v)
        res[v] = {"median_s": med, "min_s": float(np.min(times[v])), "fps": 1.0 / med,
                  "gflop_per_frame": flops / 1e9, "gflops": None if uncounted else flops / med / 1e9,
                  "frac_of_sgemm_peak": None if uncounted else flops / med / 1e9 / peak, "scores": scores[v]}
    for v in variants:
        ref = "eager-z-only" if "z-only" in v else "eager"
        if ref in res:
            res[v]["speedup_vs_" + ref] = res[ref]["median_s"] / res[v]["median_s"]
    if "batched" in res:
        for v in variants:
            if v.startswith("onnx") and "z-only" not in v:
                res[v]["max_rel_score_diff_vs_batched"] = float(np.max(
                    np.abs(np.array(scores[v]) - scores["batched"]) / np.abs(scores["batched"])))
    if "onnx-step" in res:                       # the same float32 search, Adam in the graph: rounding only
        for v in variants:
            if v.startswith("onnx") and v != "onnx-step" and "z-only" not in v:
                res[v]["max_rel_score_diff_vs_onnx-step"] = float(np.max(
                    np.abs(np.array(scores[v]) - scores["onnx-step"]) / np.abs(scores["onnx-step"])))
    for v in variants:
        if getattr(runners[v], "mode", None):
            res[v]["runs"] = runners[v].mode       # the runtime variant behind it (onnx-auto: the default's)
    base = "onnx-auto-full-pixels"           # the pixel memory's bounded search against its full one, same run
    if base in res and "onnx-auto" in res:
        res["onnx-auto"]["speedup_vs_" + base] = res[base]["median_s"] / res["onnx-auto"]["median_s"]
        res["onnx-auto"]["max_rel_score_diff_vs_" + base] = float(np.max(
            np.abs(np.array(scores["onnx-auto"]) - scores[base]) / np.abs(scores[base])))
    for v in variants:
        pixels = getattr(runners[v], "pixels", None)
        if pixels is not None:                   # MB of the pixel memory's float32 rows and bound tables
            res[v]["pixel_memory_mb"] = {k: round(b / 1e6, 1) for k, b in pixels.nbytes().items()}
    for v in ("onnx-fused-adam-z-only", "onnx-host-head-z-only"):
        if "onnx-z-only" in res and v in res:
            res[v]["max_rel_score_diff_vs_onnx-z-only"] = float(np.max(
                np.abs(np.array(scores[v]) - scores["onnx-z-only"]) / np.abs(scores["onnx-z-only"])))
    if rss:
        for v in variants:
            try:
                res[v]["peak_rss_mib"] = _rss_probe(v, str(checkpoint), str(model_dir), threads)
            except Exception as e:  # report, do not lose the timings
                res[v]["peak_rss_mib"] = None
                res[v]["rss_error"] = str(e)[:300]
    import onnxruntime
    import torch
    out = {
        "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
        "threads": threads, "load_average_start": load0, "load_average_end": load1,
        "sgemm_peak_gflops": peak, "model": G.cfg.to_dict(), "search": cfg.to_dict(),
        "frames": [f for f, _ in frames], "repeats": repeats, "variants": res, "skipped": skipped,
        "flops_not_counted": uncounted,
        "note": "interleaved in one process; medians over frames x repeats; timings on a shared machine are noisy",
    }
    return out


def flops_not_counted(cfg) -> Optional[str]:
    """The work of a frame under ``cfg`` that model_flops does not count, in words (None: all of it is counted):
    the encoder pass and the latent-bank / pixel-memory distances (for the shipped models most of the frame)."""
    parts = [what for on, what in ((cfg.z_init == "encoder" and (cfg.uses_latent_bank or cfg.uses_pixel_memory),
                                    "the encoder pass"),
                                   (cfg.uses_latent_bank, "the latent-bank distance"),
                                   (cfg.uses_pixel_memory, "the pixel-memory distance")) if on]
    return " and ".join(parts) if parts else None


def skipped_lines(skipped: dict) -> list:
    """{variant: why} -> one "v1, v2: why" line per reason."""
    by_reason: dict = {}
    for v, why in skipped.items():
        by_reason.setdefault(why, []).append(v)
    return [f"{', '.join(vs)}: {why}" for why, vs in by_reason.items()]


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_table(r: dict) -> str:
    """Markdown table of a run_bench result."""
    rows = ["| variant | median s/frame | frames/s | GFLOP/frame | GFLOP/s | % sgemm peak | speed-up | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|"]
    for v, m in r["variants"].items():
        sp = m.get("speedup_vs_eager", m.get("speedup_vs_eager-z-only"))
        rss = m.get("peak_rss_mib")
        rate = "- | -" if m["gflops"] is None else f"{m['gflops']:.1f} | {100 * m['frac_of_sgemm_peak']:.0f}%"
        rows.append(f"| {v} | {m['median_s']:.3f} | {m['fps']:.2f} | {m['gflop_per_frame']:.1f} | {rate} | "
                    f"{'' if sp is None else f'{sp:.2f}x'} | {'' if rss is None else f'{rss:.0f}'} |")
    notes = "".join(f"\nskipped {line}" for line in skipped_lines(r.get("skipped", {})))
    auto = r["variants"].get("onnx-auto", {})
    if "speedup_vs_onnx-auto-full-pixels" in auto:
        mb = {v: r["variants"][v].get("pixel_memory_mb", {}) for v in ("onnx-auto", "onnx-auto-full-pixels")}
        notes += (f"\nonnx-auto (the pixel memory's bounded search) vs onnx-auto-full-pixels (its full search): "
                  f"{auto['speedup_vs_onnx-auto-full-pixels']:.2f}x, max relative score difference "
                  f"{auto['max_rel_score_diff_vs_onnx-auto-full-pixels']:.1e}; pixel memory MB (rows + bound tables) "
                  f"{sum(mb['onnx-auto'].values()):.1f} vs {sum(mb['onnx-auto-full-pixels'].values()):.1f}")
    if r.get("flops_not_counted"):
        what = r["flops_not_counted"]
        notes += (f"\nGFLOP/frame counts the generator passes only ({what} {'are' if ' and ' in what else 'is'} not "
                  "counted): no GFLOP/s or % sgemm peak")
    return "\n".join(rows) + ("\n" + notes if notes else "") + (f"\n\nsgemm peak {r['sgemm_peak_gflops']:.1f} GFLOP/s on {r['threads']} threads "
                              f"({r['machine']['cpu']}); load average {r['load_average_start'][0]:.1f} -> "
                              f"{r['load_average_end'][0]:.1f}")
