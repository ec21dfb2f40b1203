"""Scoring a batch of frames at once (``Scorer.score_batch``), for configurations without search steps.

With k = 0 a frame's score is one encoder pass and one generator pass with weights shared by every
frame, so B frames go through the export's batch graphs together (final_batch.onnx, encoder_batch.onnx:
export/batch_graphs.py): the generator's thin layers become GEMMs over the batch instead of B
matrix-vector products that each stream the layer's weights. Everything else is ``score_input``'s
own definition: ``scorer.frame_input`` for the input, ``initial_latents`` for z0, the latent
memory's distance (the group's in one GEMM: ``LatentMemory.distances``, equal to ``distance`` per
frame), ``ScoreResult.of_search`` for the result. Results equal ``Scorer.score`` frame by frame to
float32 rounding (tests/test_batch_scoring.py). ``score_inputs`` is that scoring of preprocessed
frames; ``Scorer.score_input`` uses it too for the shifted copies of its test-time shift-min
(SearchConfig.score_shift_radius > 0), and ``score_batch`` sends every frame's copies through it together.
``Scorer.load`` builds the sessions (``BatchGraphs``) when they apply (``batch_applies``) and hands
them, its latent memory and its lock to these functions.

Models without the batch graphs (k >= 1, older exports) and scorers loaded with backend "tensorrt"
(whose engines must run the search) are scored frame by frame with ``score``.
"""
from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from typing import Optional, Sequence

import numpy as np

from .config import draw_seed
from .integrity import read_model_file
from .manifest import ManifestError
from .preprocess import FrameError, shift_frame, shift_offsets


# frames per graph run: larger batches gain nothing once the thin layers' weights are shared (their
# activations then leave the caches; benchmarks/batch_throughput.py, benchmarks/README.md)
MAX_BATCH = 4


class OrtBatchGraphs:
    """onnxruntime sessions of final_batch.onnx (and encoder_batch.onnx) of a model directory on
    ``threads`` intra-op threads; each file is read once, checked against the manifest's sha256, and
    handed to onnxruntime as bytes. ``providers``: the resolved onnxruntime providers."""

    def __init__(self, model_dir, manifest: dict, threads: Optional[int], providers: list):
        from .backends.onnxruntime_backend import onnxruntime_module, session_options
        ort = onnxruntime_module()
        so = session_options(threads)
        self.threads = so.intra_op_num_threads

        def session(name: str):
            fname = manifest["graphs"][name]["file"]
            data = read_model_file(model_dir, fname)          # no symlinks (runtime/integrity.py)
            if hashlib.sha256(data).hexdigest() != manifest["files"].get(fname):
                raise ManifestError(f"{model_dir}: {fname} does not match its sha256 in the manifest")
            return ort.InferenceSession(data, so, providers=providers)
        self.final = session("final_batch")
        self.encoder = session("encoder_batch") if "encoder_batch" in manifest["graphs"] else None
        self.closed = False

    def encode(self, X: np.ndarray) -> np.ndarray:
        """E(x) of every frame: X (B, C, R, R) float32 -> (B, z_dim) float32."""
        self._check_open()
        return self.encoder.run(None, {"x": X})[0]

    def run(self, X: np.ndarray, Z0: np.ndarray) -> dict:
        """X (B, C, R, R), Z0 (B, n_seed, z_dim) -> {seed_losses (B, S), error_map (B, R, R), recon (B, S, C, R, R)}."""
        self._check_open()
        sl, em, rec = self.final.run(["seed_losses", "error_map", "recon"], {"x": X, "z": Z0})
        return {"seed_losses": sl, "error_map": em, "recon": rec}

    def close(self) -> None:
        """Release the sessions (their weights and arenas)."""
        self.final = self.encoder = None
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("these batch graphs are closed (Scorer.close)")


def batch_applies(manifest: dict, cfg, backend: str) -> bool:
    """True when a scorer loaded with ``backend`` scores ``cfg``'s batches through the batch graphs:
    backend "onnxruntime" (a TensorRT scorer keeps to its engines) and a model exported with batch
    graphs for its configuration (k = 0, final_batch.onnx; encoder_batch.onnx too when the
    configuration starts from the encoder)."""
    graphs = manifest.get("graphs", {})
    return (backend == "onnxruntime" and cfg.k == 0 and "final_batch" in graphs
            and (cfg.z_init != "encoder" or "encoder_batch" in graphs))


class BatchGraphs:
    """The batch graphs' sessions of one Scorer, per intra-op thread count. ``Scorer.load`` builds them
    on its own ``threads`` (a cost accepted at every k = 0 onnxruntime load: the demo model loads in
    73 ms instead of 55 ms on the review's CPU, and the shift-min and score_batch need no first-call
    build; on the CUDA provider a second copy of the generator's weights); ``score_batch(threads=N)``
    with another N builds that count's sessions the first time it is asked for. Kept: the load's set
    and the most recent other one (KEEP_OTHER); an older one is dropped, not closed, so a call already
    holding it finishes, and its sessions are freed when that call lets go of it (CPython: at once)."""

    KEEP_OTHER = 1      # session sets kept besides the load's: a caller varying N does not grow memory

    def __init__(self, model_dir, manifest: dict, threads: Optional[int], providers: list):
        self._model_dir, self._manifest, self._providers = model_dir, manifest, providers
        first = OrtBatchGraphs(model_dir, manifest, threads, providers)
        self.threads = first.threads                     # the load's count (load's None: every core)
        self._by_threads = {first.threads: first}
        self._lock = threading.Lock()

    def get(self, threads: Optional[int] = None) -> OrtBatchGraphs:
        """The sessions running on ``threads`` intra-op threads (None: the load's)."""
        n = self.threads if threads is None else int(threads)
        if n < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        with self._lock:
            graphs = self._by_threads.pop(n, None)
            if graphs is None:
                graphs = OrtBatchGraphs(self._model_dir, self._manifest, n, self._providers)
            self._by_threads[n] = graphs              # the most recent last (dicts keep insertion order)
            others = [m for m in self._by_threads if m != self.threads]
            for m in others[:max(0, len(others) - self.KEEP_OTHER)]:
                del self._by_threads[m]               # dropped, not closed: a caller may still be running it
            return graphs

    def close(self) -> None:
        """Release every session set (idempotent)."""
        with self._lock:
            for g in self._by_threads.values():
                g.close()
            self._by_threads.clear()


def score_inputs(scorer, X: np.ndarray, seeds: Sequence, z0s: Sequence, keep_reconstructions: bool = False, *,
                 graphs: OrtBatchGraphs, memory=None, pixel_distances: Optional[Sequence] = None) -> list:
    """Score preprocessed frames X (B, C, R, R) float32 (finite, checked by the caller) through the batch
    ``graphs``, each exactly as ``Scorer.score_input`` scores a frame as it is (no shift-min): E(X) in
    encoder passes, z0 from ``scorer.initial_latents``, generator passes of at most MAX_BATCH frames,
    the latent distances to ``memory`` (the scorer's LatentMemory, or None) in one GEMM,
    ``pixel_distances`` (B,) each input's pixel distance, that of the FRAME it is a copy of
    (``Scorer.pixel_distance``; None without the pixel factor), the result
    from ``ScoreResult.of_search`` (``score_scale``). seeds / z0s: per frame. One entry per frame: a
    ScoreResult, or the ValueError of a bad explicit z0 (that frame only). Run it holding the scorer's lock."""
    from .scorer import ScoreResult
    t0 = time.perf_counter()
    X = np.ascontiguousarray(X, dtype=np.float32)
    chunks = range(0, len(X), MAX_BATCH)  # graph runs of at most MAX_BATCH frames: their activations stay in cache
    E = (np.concatenate([graphs.encode(X[a:a + MAX_BATCH]) for a in chunks])
         if graphs.encoder is not None else None)                                    # (B, z_dim)
    results: list = [None] * len(X)
    z0 = []
    for i in range(len(X)):
        try:
            z0.append(np.array(scorer.initial_latents(z0s[i], seeds[i], x=X[i], e=None if E is None else E[i])))
        except ValueError as e:   # a bad explicit z0: that frame only
            results[i] = e
            z0.append(None)
    keep = [i for i, z in enumerate(z0) if z is not None]
    if not keep:
        return results
    Z0 = np.ascontiguousarray(np.stack([z0[i] for i in keep]), dtype=np.float32)   # (B', n_seed, z_dim)
    Xk = X[keep] if len(keep) != len(X) else X
    te = time.perf_counter()
    runs = [graphs.run(Xk[a:a + MAX_BATCH], Z0[a:a + MAX_BATCH]) for a in range(0, len(Xk), MAX_BATCH)]
    out = {n: np.concatenate([r[n] for r in runs]) for n in ("seed_losses", "error_map", "recon")}
    t1 = time.perf_counter()
    # nearest bank row of every frame's latent in one GEMM (equal to memory.distance per frame)
    dists = memory.distances(E[keep]) if memory is not None else None                 # (B',) float64
    B = len(keep)
    for b, i in enumerate(keep):
        timings = {"search_s": (t1 - t0) / B, "steps_s": 0.0, "final_s": (t1 - te) / B, "batch_size": B}
        if E is not None:
            timings["encoder_s"] = (te - t0) / B
        results[i] = ScoreResult.of_search(X[i], scorer.config, out["seed_losses"][b], out["error_map"][b],
                                           z=Z0[b], z0=Z0[b],   # k = 0: the latents are where they started
                                           recon=out["recon"][b] if keep_reconstructions else None,
                                           dist=None if dists is None else float(dists[b]), timings=timings,
                                           pixel_dist=None if pixel_distances is None else float(pixel_distances[i]))
    return results


def frame_pair(entry) -> tuple:
    """One entry of score_batch's ``frames`` as (rgb, depth), or FrameError naming what it is instead
    (None, one array, a dict or a string, a 1-tuple without depth, another length), so that one bad entry fails
    only its frame."""
    if entry is None:
        raise FrameError("missing frame: the entry is None, not an (rgb, depth) pair")
    if isinstance(entry, np.ndarray):       # one image (its rows would read as the pair's items)
        raise FrameError(f"an (rgb, depth) pair is needed, got one array of shape {entry.shape} (an image without "
                         "its partner?)")
    if isinstance(entry, (dict, str, bytes)):   # its keys / characters would read as the pair's items
        raise FrameError(f"an (rgb, depth) pair is needed, got a {type(entry).__name__}"
                         + (f" with keys {sorted(map(str, entry))}" if isinstance(entry, dict) else ""))
    try:
        items = tuple(entry)
    except TypeError:
        raise FrameError(f"an (rgb, depth) pair is needed, got {type(entry).__name__}") from None
    if len(items) == 1:
        raise FrameError("missing depth image: the entry is (rgb,) without depth")
    if len(items) != 2:
        raise FrameError(f"an (rgb, depth) pair is needed, got {len(items)} items")
    return items


def score_batch(scorer, frames: Sequence, seeds: Optional[Sequence] = None, z0s: Optional[Sequence] = None,
                keep_reconstructions: bool = False, check_faults: bool = True, *,
                graphs: Optional[OrtBatchGraphs] = None, memory=None, lock=None, pixels=None) -> list:
    """Score raw frames [(rgb, depth), ...] together. Returns one entry per frame: a ScoreResult, or
    the FrameError / ValueError of a frame that cannot be scored (the others are still scored; an
    entry that is None or lacks its depth is such a frame: ``frame_pair``; so is a sensor fault,
    ``check_faults``: sensor_faults.SensorFaultError, as ``Scorer.score``).
    seeds / z0s: per frame, as ``Scorer.score``'s seed / z0 (None: seed None; with R > 0 one random
    seed for the frame's copies). With score_shift_radius
    R > 0 every frame's (2R + 1)^2 shifted copies go through the graphs together and each frame gets
    the minimum (scorer.shift_min), as ``Scorer.score``.
    graphs: the scorer's batch-graph sessions (None: frame by frame with ``scorer.score``); memory: its
    LatentMemory (or None); pixels: its PixelMemory (or None: each frame's distance, ``Scorer.pixel_distance``'s,
    for all its copies); lock: held while the graphs run (the scorer's)."""
    from .scorer import frame_input, shift_min
    n = len(frames)
    seeds = [None] * n if seeds is None else list(seeds)
    z0s = [None] * n if z0s is None else list(z0s)
    if len(seeds) != n or len(z0s) != n:
        raise ValueError(f"score_batch: {n} frames but {len(seeds)} seeds and {len(z0s)} z0s")
    if n > MAX_BATCH:   # at most MAX_BATCH frames at a time
        return [r for s in range(0, n, MAX_BATCH)
                for r in score_batch(scorer, frames[s:s + MAX_BATCH], seeds[s:s + MAX_BATCH], z0s[s:s + MAX_BATCH],
                                     keep_reconstructions, check_faults, graphs=graphs, memory=memory, lock=lock,
                                     pixels=pixels)]
    results: list = [None] * n
    if graphs is None:
        for i, entry in enumerate(frames):
            try:
                rgb, depth = frame_pair(entry)
                results[i] = scorer.score(rgb, depth, z0=z0s[i], seed=seeds[i], keep_reconstructions=keep_reconstructions,
                                          check_faults=check_faults)
            except (FrameError, ValueError) as e:
                results[i] = e
        return results
    t0 = time.perf_counter()
    xs, ok = [], []
    for i, entry in enumerate(frames):
        try:
            rgb, depth = frame_pair(entry)
            x = frame_input(rgb, depth, scorer.preprocess_spec, check_faults)     # (4, R, R) float32
        except (FrameError, ValueError) as e:
            results[i] = e
            continue
        xs.append(x)
        ok.append(i)
    if not ok:
        return results
    offsets = shift_offsets(scorer.config.score_shift_radius)                       # [(0, 0)] when R = 0
    S = len(offsets)
    if S > 1:   # a frame without seed and z0 draws one seed, shared by its copies (as Scorer.score_shifted)
        seeds = [draw_seed() if seeds[i] is None and z0s[i] is None else seeds[i] for i in range(n)]
    # frame j's copy s at row j * S + s: (B * S, C, R, R); the frame itself when R = 0
    X = np.stack([shift_frame(x, dy, dx) if S > 1 else x for x in xs for dy, dx in offsets]).astype(np.float32)
    # each frame's pixel distance (its own shift search: pixel_shift_radius), all frames' copies in one call,
    # the same for the frame's S copies; timed as pixel_s, not as preprocessing
    tp = time.perf_counter()
    pd = (pixels.frame_distances(np.stack(xs), scorer.config.pixel_shift_radius, gain=scorer.config.pixel_gain_limits)
          if pixels is not None
          else None)                                                                 # (len(ok),) float64
    t1 = time.perf_counter()
    pixel_s = 0.0 if pd is None else (t1 - tp) / len(ok)                             # per frame
    with lock or contextlib.nullcontext():
        copies = score_inputs(scorer, X, [seeds[i] for i in ok for _ in offsets], [z0s[i] for i in ok for _ in offsets],
                              keep_reconstructions, graphs=graphs, memory=memory,
                              pixel_distances=None if pd is None else np.repeat(pd, S))
    t2 = time.perf_counter()
    scored = sum(not isinstance(c, Exception) for c in copies) // S
    for j, i in enumerate(ok):
        mine = copies[j * S:(j + 1) * S]
        bad = next((c for c in mine if isinstance(c, Exception)), None)
        if bad is not None:
            results[i] = bad
            continue
        r = shift_min(mine, offsets) if S > 1 else mine[0]
        # as Scorer.score: total_s = preprocess_s + search_s, the pixel distance's share (pixel_s) in search_s
        r.timings = {"preprocess_s": (tp - t0) / len(ok), "search_s": (t2 - t1) / scored + pixel_s, "steps_s": 0.0,
                     "final_s": sum(c.timings["final_s"] for c in mine), "total_s": (t2 - t0) / scored,
                     "batch_size": scored, **({"shifts": S} if S > 1 else {}),
                     **({} if pd is None else {"pixel_s": pixel_s})}
        results[i] = r
    return results


def score_batch_versions(scorer, frames: Sequence, seeds: Optional[Sequence] = None, z0s: Optional[Sequence] = None,
                         keep_reconstructions: bool = False, check_faults: bool = True, *,
                         graphs: Optional[OrtBatchGraphs] = None, memories: tuple = (None, None),
                         pixels: tuple = (None, None), lock=None) -> list:
    """``score_batch`` with the silhouette lever (runtime/silhouette.py): each frame's versions made on the raw
    frame, each version's frames scored together by ``score_batch`` (the id version with the fault check
    ``check_faults``; a version whose input cannot be made is left out, as ``Scorer.score``), the dil version against
    the dil memories; per frame the winning version's result (runtime.silhouette.silhouette_min; ``silhouette_version``,
    ``silhouette_scores``), or the frame's FrameError / ValueError. ``memories`` / ``pixels``: (the model's, the dil
    version's) LatentMemory / pixel memory (PixelMemory, silhouette.PairedPixelMemory; None without the factor). One
    seed per frame for its versions (drawn when neither seed nor z0 is given)."""
    from .silhouette import VERSIONS, silhouette_versions, spec_range, winning_result
    n = len(frames)
    seeds = [None] * n if seeds is None else list(seeds)
    z0s = [None] * n if z0s is None else list(z0s)
    if len(seeds) != n or len(z0s) != n:
        raise ValueError(f"score_batch: {n} frames but {len(seeds)} seeds and {len(z0s)} z0s")
    seeds = [draw_seed() if seeds[i] is None and z0s[i] is None else seeds[i] for i in range(n)]
    t0 = time.perf_counter()
    made: list = [None] * n                       # per frame {version: (rgb, depth)}, or None: the frame's own error
    for i, entry in enumerate(frames):
        try:
            made[i] = silhouette_versions(*frame_pair(entry), scorer.preprocess_spec.resolution,
                                          spec_range(scorer.preprocess_spec))
        except ValueError:                        # FrameError too: the id version's scoring below names it
            pass
    tv = time.perf_counter() - t0
    by_version = {}
    for v in VERSIONS:
        fr = [frames[i] if v == "id" else (None if made[i] is None else made[i][v]) for i in range(n)]
        dil = v == "dil"
        by_version[v] = score_batch(scorer, fr, seeds, z0s, keep_reconstructions, check_faults if v == "id" else False,
                                    graphs=graphs, memory=memories[dil], lock=lock, pixels=pixels[dil])
    results: list = [None] * n
    for i in range(n):
        first = by_version["id"][i]
        if isinstance(first, Exception) or made[i] is None:
            results[i] = first if isinstance(first, Exception) else FrameError(
                "the silhouette lever (silhouette_versions_weight > 0) makes its versions on the raw frame, "
                "which must be H x W x 3 uint8 + H x W uint8 / uint16 depth")
            continue
        mine = {v: by_version[v][i] for v in VERSIONS if not isinstance(by_version[v][i], Exception)}
        r = winning_result(mine, scorer.config.silhouette_versions_weight,
                           ("preprocess_s", "search_s", "steps_s", "final_s", "pixel_s", "total_s"), ("batch_size",))
        r.timings["preprocess_s"] = r.timings.get("preprocess_s", 0.0) + tv / n
        r.timings["total_s"] = r.timings.get("total_s", 0.0) + tv / n
        results[i] = r
    return results
