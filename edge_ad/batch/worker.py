"""The worker's side of ``edge-ad batch`` (torch-free): the model directory packed for shipping, the
Scorer loaded once per worker, one source scored with ``run_capture`` exactly as ``edge-ad run``
scores it (same record-building code, same ``frame_seed(seed, i)`` latents, so the same scores)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Callable, Optional

from edge_ad.runtime.manifest import MANIFEST, sha256_file
from edge_ad.runtime.sources.base import Source

from .plan import Job

Progress = Callable[[int, Optional[int]], None]   # (frames since the last call, the source's total or None)

FAULT_EXIT = 70   # exit status of a worker killed by the EDGE_AD_BATCH_FAULT fault injection


def manifest_sha256(model_dir: os.PathLike) -> str:
    """sha256 of the model's manifest.json (which holds the sha256 of every other file)."""
    return sha256_file(Path(model_dir) / MANIFEST)


def pack_model(model_dir: os.PathLike) -> tuple[bytes, str]:
    """The model directory as an uncompressed tar (manifest.json, its signature manifest.sig when signed, and
    the files its ``files`` table lists, nothing else) and the tar's sha256, to ship to workers without a shared
    filesystem (they check the signature again with the batch's trusted keys). The manifest is verified first
    (ManifestError for a tampered directory)."""
    from edge_ad.runtime.manifest import load_manifest
    from edge_ad.runtime.signing import SIGNATURE
    model_dir = Path(model_dir)
    man = load_manifest(model_dir, verify=True)
    buf = io.BytesIO()
    signed = [SIGNATURE] if (model_dir / SIGNATURE).is_file() else []
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in ["manifest.json"] + signed + sorted(man["files"]):
            tar.add(model_dir / name, arcname=name, recursive=False)
    blob = buf.getvalue()
    return blob, hashlib.sha256(blob).hexdigest()


def unpack_model(blob: bytes, blob_sha256: str, want_manifest_sha256: str, dest: os.PathLike) -> Path:
    """Unpack a ``pack_model`` tar into ``dest`` after checking its sha256, then check that the
    manifest is the driver's (its sha256); ``Scorer.load`` then verifies every file against it.
    Raises ValueError naming the mismatch."""
    got = hashlib.sha256(blob).hexdigest()
    if got != blob_sha256:
        raise ValueError(f"the shipped model archive is corrupt (sha256 {got[:16]}..., expected {blob_sha256[:16]}...)")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
        for m in tar.getmembers():   # plain files at the top level only
            if not m.isfile() or "/" in m.name or m.name in ("", ".", ".."):
                raise ValueError(f"the shipped model archive holds an unexpected entry {m.name!r}")
        tar.extractall(dest, filter="data")
    got = manifest_sha256(dest)
    if got != want_manifest_sha256:
        raise ValueError(f"the shipped manifest differs from the driver's (sha256 {got[:16]}...)")
    return dest


def load_scorer(model_dir: os.PathLike, threads: Optional[int] = None, trusted_keys: Optional[list] = None):
    """The worker's Scorer, loaded once (sha256 of every file checked by Scorer.load; with ``trusted_keys``,
    edge-ad batch --trusted-key's public keys as PEM bytes, the model must be signed by one of them)."""
    from edge_ad.runtime import Scorer
    return Scorer.load(model_dir, threads=threads, trusted_keys=list(trusted_keys) if trusted_keys else None)


class _CountingSource(Source):
    """Wraps a Source: reports each frame it yields to ``progress``; with ``crash_after`` > 0 the
    process exits (status FAULT_EXIT) instead of yielding frame crash_after + 1 (fault injection).
    ``uri``, ``stream``, ``labelled``, ``live``, ``stats``, ``warnings`` and ``events`` are the wrapped source's."""

    def __init__(self, source: Source, progress: Optional[Progress], crash_after: int = 0):
        self._source, self._progress, self._crash_after = source, progress, crash_after
        self.frames = 0

    uri = property(lambda self: self._source.uri)
    stream = property(lambda self: self._source.stream)
    labelled = property(lambda self: self._source.labelled)
    live = property(lambda self: self._source.live)
    stats = property(lambda self: self._source.stats)
    warnings = property(lambda self: self._source.warnings)
    events = property(lambda self: self._source.events)

    def __iter__(self):
        for fr in self._source:
            if self._crash_after and self.frames >= self._crash_after:
                os._exit(FAULT_EXIT)
            self.frames += 1
            if self._progress is not None:
                self._progress(1, None)
            yield fr

    def close(self):
        self._source.close()


def score_source(scorer, job: Job, out_path: os.PathLike, progress: Optional[Progress] = None,
                 attempt: int = 1, stop=None) -> dict:
    """Score every frame of ``job.uri`` into ``out_path`` (JSON lines, as ``edge-ad run --source
    URI --seed SEED --out`` writes them) and return {"status": "done" | "failed", "error",
    "summary", "wall_s", "threshold", "threshold_source"}: the threshold the frames are flagged at
    (``job.threshold``, the --threshold override, else the model's calibrated one; None: the model has
    none, nothing flagged) and where it came from. A source that cannot be opened or fails mid-way is
    "failed" with the reason. ``stop`` (a threading.Event; the batch stopped by a signal): once set, the
    source ends after its frame, "interrupted" (its results closed with a summary)."""
    from edge_ad.runtime.capture import STOP_END, STOP_REQUESTED, run_capture
    from edge_ad.runtime.sources import SourceError, open_source
    t0 = time.perf_counter()
    thr, thr_source = threshold_used(scorer, job)
    out_path = Path(out_path)
    out_path.unlink(missing_ok=True)       # a partial file of an earlier attempt is scratch

    def failed(error: str) -> dict:
        return {"status": "failed", "error": error, "summary": None, "wall_s": time.perf_counter() - t0,
                "threshold": thr, "threshold_source": thr_source}
    try:
        source = open_source(job.uri)
    except SourceError as e:
        return failed(str(e))
    if source.live:
        source.close()
        return failed(f"{job.uri} is a live camera; a batch scores recordings")
    try:
        total = len(source)
    except TypeError:
        total = None
    if progress is not None:
        progress(0, total)
    counted = _CountingSource(source, progress, job.crash_after if attempt == 1 else 0)
    failures = []
    summary = run_capture(counted, scorer, threshold=thr, out=out_path, seed=job.seed, handle_signals=False,
                          live=False, log=lambda msg: failures.append(msg) if msg.startswith("source failed") else None,
                          stop=stop)
    status = {STOP_END: "done", STOP_REQUESTED: "interrupted"}.get(summary["stopped"], "failed")
    error = "the batch was stopped (SIGINT / SIGTERM) while this source was scored" \
        if status == "interrupted" else None
    if status == "failed":   # the reason: the run's fatal_error (a backend failure, a frame timeout, ...)
        reason = summary.get("fatal_error") or (failures[-1] if failures else None)
        error = f"stopped: {summary['stopped']}" + (f": {reason}" if reason else "")
    return {"status": status, "error": error, "summary": summary, "wall_s": time.perf_counter() - t0,
            "threshold": thr, "threshold_source": thr_source}


THRESHOLD_OVERRIDE = "--threshold"
THRESHOLD_MANIFEST = "the model's manifest (its calibrated threshold)"
THRESHOLD_NONE = "none: the model carries no threshold for its configuration, no frame flagged"


def threshold_used(scorer, job: Job) -> tuple:
    """(threshold, where it came from) of ``job`` scored with ``scorer``: the --threshold override
    (``job.threshold``), else the model's calibrated one (``scorer_threshold``), else (None, none)."""
    from edge_ad.runtime.capture import scorer_threshold
    if job.threshold is not None:
        return float(job.threshold), THRESHOLD_OVERRIDE
    thr = scorer_threshold(scorer)
    return (thr, THRESHOLD_MANIFEST) if thr is not None else (None, THRESHOLD_NONE)


def recorded_threshold(job: Job, results_path: os.PathLike, model_dir: os.PathLike) -> tuple:
    """(threshold, where it came from) of a source whose worker did not say (it died, or the entry
    was written before summary.json recorded it): the --threshold override (``job.threshold``); else
    the threshold its rows in ``results_path`` were flagged at (the summary line's, else the last frame
    row's); else, no row scored, the one ``Scorer.load(model_dir)`` would use (``manifest_threshold``).
    The same values as ``threshold_used``; a manifest that cannot be read gives (None, "unknown: ...")."""
    from edge_ad.runtime.manifest import ManifestError
    from edge_ad.runtime.scorer import manifest_threshold
    if job.threshold is not None:
        return float(job.threshold), THRESHOLD_OVERRIDE
    found, thr = False, None
    try:
        from .plan import read_results
        recs, summary = read_results(results_path)
        rows = [summary] if summary is not None else [r for r in recs if r.get("type") == "frame"]
        if rows:
            found, thr = True, rows[-1].get("threshold")
    except (OSError, ValueError):
        pass                                   # no rows to read: the manifest says
    if not found:
        try:
            thr = manifest_threshold(model_dir)
        except (ManifestError, OSError, ValueError, KeyError, TypeError) as e:
            return None, f"unknown: the model's manifest could not be read ({e})"
    return (float(thr), THRESHOLD_MANIFEST) if thr is not None else (None, THRESHOLD_NONE)


def result_stats(path: os.PathLike, max_errors: int = 20) -> dict:
    """Counts of a results file for summary.json: frames (scored), anomalies, frame_errors and the
    first ``max_errors`` error lines' {frame, error}."""
    from .plan import read_results
    recs, _ = read_results(path)
    frames = [r for r in recs if r.get("type") == "frame"]
    errors = [r for r in recs if r.get("type") == "error"]
    return {"frames": len(frames), "anomalies": sum(bool(r.get("anomalous")) for r in frames),
            "frame_errors": len(errors),
            "errors": [{"frame": r.get("frame"), "error": r.get("error")} for r in errors[:max_errors]]}


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, allow_nan=False)
