"""Runs batch jobs on an engine: skips the sources a previous run completed, shows progress over
all sources' frames, renames each finished results file into place and keeps ``summary.json``
current after every source (so a killed driver loses nothing finished).

Each source keeps its name in the folder (plan.make_jobs), whatever the other sources of a run.
Finished results are never replaced: a rerun into the same folder with another model, seed or
threshold is refused before anything runs (ResultsConflict naming the file and the differing
setting); a results file that is redone anyway (cut short, or not in summary.json) is first kept
as ``<name>.jsonl.aside.<n>``; summary.json keeps the entries of earlier runs' sources that this run does
not name (``other_sources``)."""
from __future__ import annotations

import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from edge_ad.runtime.results import rotated_files

from .plan import Job, finished, is_complete, read_previous, settings_differences
from .worker import dumps, recorded_threshold, result_stats

SUMMARY = "summary.json"
EXIT_OK, EXIT_FATAL, EXIT_BAD_FRAMES, EXIT_NO_FRAMES = 0, 1, 3, 4   # as edge-ad run


class BatchProgress:
    """Frames read over all sources: a rich progress bar on a terminal, else a line every 5 s."""

    def __init__(self, quiet: bool = False, n_sources: int = 0):
        self.done = 0
        self.per_source, self.totals = {}, {}
        self.quiet, self.n_sources, self.finished = quiet, n_sources, 0
        self._bar = self._task = None
        self._last = 0.0
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._bar = Progress(TextColumn("frames"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                                 TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("", total=None)

    @property
    def total(self) -> Optional[int]:
        """Frames over all sources once every source reported its length; None until then (a bag
        has no length before it is read: a partial sum read as a total, 'frames 13/8')."""
        if not self.totals or len(self.totals) < self.n_sources:
            return None
        return sum(self.totals.values())

    def update(self, name: str, n: Optional[int], total: Optional[int]) -> None:
        """``n`` more frames of ``name`` (None: its count restarts, a retried source); its ``total``."""
        if n is None:
            self.done -= self.per_source.pop(name, 0)
        else:
            self.per_source[name] = self.per_source.get(name, 0) + n
            self.done += n
        if total is not None:
            self.totals[name] = total
        self._show()

    def source_finished(self) -> None:
        self.finished += 1
        self._show(force=True)

    def _show(self, force: bool = False) -> None:
        if self.quiet:
            return
        desc = f"{self.finished}/{self.n_sources} sources"
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, total=self.total, description=desc)
            return
        now = time.monotonic()
        if force or now - self._last >= 5.0:
            tot = f"/{self.total}" if self.total is not None else ""
            print(f"frames {self.done}{tot}, {desc}", file=sys.stderr, flush=True)
            self._last = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


class ResultsConflict(ValueError):
    """The output folder holds finished results that this run would replace (other settings)."""


def keep_aside(path: Path) -> Path:
    """Rename ``path`` to ``<name>.aside.<n>`` (the first n not taken; never replaces a file). Not ``<name>.<n>``:
    that is a rotated file of ``<name>`` (runtime/results.rotated_files), which the results writer of the source's
    next .partial would resume from (its frame index, and with it every frame's seed, going on from the kept rows)."""
    n = 1
    while True:
        target = path.with_name(f"{path.name}.aside.{n}")
        try:
            os.link(path, target)   # fails if target exists
        except FileExistsError:
            n += 1
            continue
        os.unlink(path)
        return target


def exit_status(summary: dict) -> int:
    """As ``edge-ad run``: 1 a source failed, 0 stopped by a signal, 4 no frame was scored, 3 some frames
    were bad or lost or a source gave no frame at all (``no_frames``), 0 ok."""
    t = summary["totals"]
    if t["failed"]:
        return EXIT_FATAL
    if summary.get("interrupted"):    # stopped by SIGINT / SIGTERM: as edge-ad run, 0 (unfinished sources said)
        return EXIT_OK
    if t["frames"] == 0:
        return EXIT_NO_FRAMES
    if t["frame_errors"] or t.get("truncated") or t.get("stream_gap_frames") or t.get("no_frames"):
        return EXIT_BAD_FRAMES       # bad frames, frames lost, or a source that gave none (the others did)
    return EXIT_OK


LOCK = ".lock"    # OUT/.lock: flock'ed by the batch writing OUT (runtime/results.try_lock)


class OutputBusy(RuntimeError):
    """Another edge-ad batch is writing the output folder (it holds OUT/.lock)."""


def run_batch(jobs: list, problems: list, out_dir: Path, engine, model_dir: Path, model_sha256: str,
              progress: Optional[BatchProgress] = None, log: Callable = print, handle_signals: bool = True) -> dict:
    """Score ``jobs`` on ``engine`` (LocalEngine or RayEngine) into ``out_dir``; returns the summary
    (also written to out_dir/summary.json). ``problems``: [(argument, reason)] that never became a
    job (a glob that matched nothing), reported as failed sources. One batch per folder: OutputBusy,
    before anything is read or written, while another holds ``out_dir``'s lock. ``handle_signals``: the first
    SIGINT / SIGTERM stops the batch in order (the sources being scored end after their frame, status
    "interrupted" with the frames so far, kept in their .partial files; summary.json says so, with
    ``interrupted``: the signal's name), a second one at once (KeyboardInterrupt)."""
    from edge_ad.runtime.results import try_lock
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK, "a") as lock:         # held until this batch returns (or its process dies)
        if not try_lock(lock):
            raise OutputBusy(f"{out_dir} is being written by another edge-ad batch (it holds {out_dir / LOCK}): "
                             "two batches never write one folder; give another --out, or wait for the other")
        return _run_batch(jobs, problems, out_dir, engine, model_dir, model_sha256, progress, log, handle_signals)


def _run_batch(jobs: list, problems: list, out_dir: Path, engine, model_dir: Path, model_sha256: str,
               progress: Optional[BatchProgress], log: Callable, handle_signals: bool = True) -> dict:
    """``run_batch`` under the folder's lock: the sources an earlier run finished are resumed, the others
    run on ``engine``; summary.json is rewritten before they run, after each one and at the end."""
    t0 = time.perf_counter()
    previous = read_previous(out_dir)
    progress = progress or BatchProgress(quiet=True)
    progress.n_sources = len(jobs)
    # summary.json's entries, by name, in the order they are listed: bad arguments, resumed sources, new ones
    entries = {f"!{arg}": _argument_entry(arg, reason) for arg, reason in problems}
    todo, resumed = _todo_and_resumed(jobs, previous, out_dir, model_sha256)
    for arg, reason in problems:   # said as for a source that fails while running, not only in summary.json
        log(f"source {arg}: FAILED: {reason}")
    for job, old in resumed:
        entries[job.name] = _resumed_entry(job, old, out_dir, model_dir)
        n = int(old.get("frames", 0)) + int(old.get("frame_errors", 0))
        progress.update(job.name, n, n)
        progress.source_finished()
    summary = _batch_summary(engine, model_dir, model_sha256, previous, jobs)
    for job in todo:
        entries[job.name] = _pending_entry(job, out_dir, log)
    _write_summary(summary, entries, out_dir, t0)

    def on_result(job: Job, res: dict) -> None:
        entries[job.name] = entry = _finished_entry(job, res, out_dir, model_dir, model_sha256, log)
        progress.source_finished()
        if entry["status"] == "failed":
            log(f"source {job.uri}: FAILED: {entry['error']}")
        _write_summary(summary, entries, out_dir, t0)

    from edge_ad.runtime.stop_signals import stop_signals
    stop = threading.Event()
    with stop_signals(stop, handle_signals) as sigs:
        try:
            if todo:
                engine.run(todo, out_dir, progress.update, on_result, stop=stop)
        finally:
            progress.close()
            if stop.is_set():     # stopped by a signal: the sources begun and not finished say how far they got
                summary["interrupted"] = sigs.name or "stop"
                for job in todo:
                    if entries[job.name]["status"] in ("pending", "interrupted"):
                        _interrupted(entries[job.name], out_dir / (job.results_file + ".partial"))
            _write_summary(summary, entries, out_dir, t0)
    return summary


def _todo_and_resumed(jobs: list, previous: dict, out_dir: Path, model_sha256: str) -> tuple:
    """(jobs to run, [(job, its earlier entry)] an earlier run finished with the same settings), from
    summary.json's earlier entries ``previous``. ResultsConflict, before anything is written, when a job
    would redo finished results made with other settings (finished results are never replaced)."""
    todo, resumed, conflicts = [], [], []
    for job in jobs:
        old = previous.get(job.name)
        if is_complete(out_dir, job, old, model_sha256):
            resumed.append((job, old))
        else:
            if old and old.get("status") == "done" and finished(out_dir / job.results_file):
                conflicts.append(f"{job.results_file} ({', '.join(settings_differences(job, old, model_sha256))})")
            todo.append(job)
    if conflicts:
        raise ResultsConflict(
            f"{out_dir} holds finished results made with other settings, which a batch never replaces: "
            f"{'; '.join(conflicts)}. Give another --out (or the earlier model, --seed and --threshold)")
    return todo, resumed


def _argument_entry(arg: str, reason: str) -> dict:
    """The summary entry of a command-line argument that never became a job (a glob that matched nothing)."""
    return {"name": None, "uri": arg, "file": None, "status": "failed", "error": reason,
            "frames": 0, "anomalies": 0, "frame_errors": 0, "errors": [], "wall_s": 0.0}


def _resumed_entry(job: Job, old: dict, out_dir: Path, model_dir: Path) -> dict:
    """The summary entry of a source an earlier run finished (its entry ``old``), marked resumed; an entry
    written before ``threshold_override`` existed gets its threshold fields now."""
    entry = dict(old, resumed=True, source=job.source)
    if "threshold_override" not in old:   # written before it: "threshold" was the override
        thr, thr_source = recorded_threshold(job, out_dir / job.results_file, model_dir)
        entry.update(threshold=thr, threshold_source=thr_source, threshold_override=old.get("threshold"))
    return entry


def _batch_summary(engine, model_dir: Path, model_sha256: str, previous: dict, jobs: list) -> dict:
    """summary.json's head (its sources and totals are filled by _write_summary); earlier runs' entries of
    sources this run does not name are kept as ``other_sources``."""
    names = {job.name for job in jobs}
    others = [e for name, e in previous.items() if name not in names]   # earlier runs' other sources
    summary = {"engine": engine.name, "model": str(model_dir), "model_sha256": model_sha256,
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "wall_s": None,
               "sources": [], "totals": {}}
    if others:
        summary["other_sources"] = others
    return summary


def _pending_entry(job: Job, out_dir: Path, log: Callable) -> dict:
    """The summary entry of a source about to run ("pending"). An earlier run's rows (perhaps another
    model's) are kept aside first, never read as this run's (a worker that fails before writing any
    would report their threshold and frame counts)."""
    stale = out_dir / (job.results_file + ".partial")
    # rows a batch before audit 33 #10 kept aside as <name>.partial.<n>: a rotated name of the new .partial, whose
    # writer would resume from them (their frame index, so every frame's seed)
    for old in [stale, *rotated_files(stale)]:
        if old.exists():
            kept = keep_aside(old)
            log(f"source {job.uri}: the earlier run's {old.name} is kept as {kept.name}")
    return {"name": job.name, "uri": job.uri, "source": job.source, "file": None, "status": "pending"}


def _write_summary(summary: dict, entries: dict, out_dir: Path, t0: float) -> None:
    """Write out_dir/summary.json atomically (tmp file + rename): ``summary`` with the sources' ``entries``
    (in order), the wall time since ``t0`` (time.perf_counter) and the totals."""
    summary["sources"] = [entries[k] for k in entries]
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    summary["totals"] = _totals(entries)
    tmp = out_dir / (SUMMARY + ".tmp")
    tmp.write_text(dumps(summary) + "\n")
    os.replace(tmp, out_dir / SUMMARY)


def _totals(entries: dict) -> dict:
    """summary.json's totals over the sources' entries: sources per status, frames, anomalies and bad
    frames, recordings cut short, frames lost in stream gaps, sources that gave no frame."""
    t = {"sources": len(entries),
         "done": sum(e["status"] == "done" for e in entries.values()),
         "failed": sum(e["status"] == "failed" for e in entries.values()),
         "pending": sum(e["status"] == "pending" for e in entries.values()),
         "interrupted": sum(e["status"] == "interrupted" for e in entries.values())}
    for k in ("frames", "anomalies", "frame_errors"):
        t[k] = sum(int(e.get(k) or 0) for e in entries.values())
    t["truncated"] = sum("recording_truncated" in e for e in entries.values())    # recordings cut short
    t["stream_gap_frames"] = sum((e.get("stream_gaps") or {}).get("frames", 0) for e in entries.values())
    t["no_frames"] = sum(bool(e.get("no_frames")) for e in entries.values())     # done, yet not one frame
    return t


def _finished_entry(job: Job, res: dict, out_dir: Path, model_dir: Path, model_sha256: str,
                    log: Callable) -> dict:
    """The summary entry of a source the engine finished (the worker's result ``res``: status, error,
    wall_s, attempts, threshold, the run's summary); its results file is moved into place when done."""
    partial = out_dir / (job.results_file + ".partial")
    if "threshold_source" in res:   # the worker's own word
        thr, thr_source = res.get("threshold"), res["threshold_source"]
    else:   # no word from the worker (it died, could not load the model, or raised): the rows it
            # wrote this run (an earlier run's .partial was moved aside: _pending_entry), else the manifest, say
        thr, thr_source = recorded_threshold(job, partial, model_dir)
    entry = {"name": job.name, "uri": job.uri, "source": job.source, "file": None, "status": res["status"],
             "error": res.get("error"),
             "frames": 0, "anomalies": 0, "frame_errors": 0, "errors": [],
             "wall_s": None if res.get("wall_s") is None else round(res["wall_s"], 3),
             "attempts": res.get("attempts", 1), "seed": job.seed,
             # the threshold the frames were flagged at and where it came from; the override alone
             # (None: the model's) decides, with the seed and model, whether a rerun resumes
             "threshold": thr, "threshold_source": thr_source,
             "threshold_override": job.threshold,
             "model_sha256": model_sha256, "resumed": False}
    if res.get("summary"):
        _add_run_summary(entry, res["summary"], job, log)
    _place_results(entry, job, partial, out_dir, log)
    if entry["status"] == "done" and not entry["frames"] and not entry["frame_errors"]:
        entry["no_frames"] = True                    # as edge-ad run's exit 4 for the same source
        from edge_ad.runtime.sources.pairing import no_pairs_note
        why = no_pairs_note((res.get("summary") or {}).get("source_stats"))
        log(f"source {job.uri}: the source gave no frames (nothing was scored from it)" + (f": {why}" if why else ""))
    return entry


def _add_run_summary(entry: dict, run: dict, job: Job, log: Callable) -> None:
    """Copy into ``entry`` what the source's run summary ``run`` says: the search, why it stopped, a fatal
    error, a recording cut short and stream gaps (the last two also said in ``log``)."""
    entry["search"] = run.get("search")
    entry["stopped"] = run.get("stopped")
    if run.get("fatal_error"):
        entry["fatal_error"] = run["fatal_error"]   # why the run stopped
    if run.get("recording_truncated"):             # where the recording ends
        entry["recording_truncated"] = run["recording_truncated"]
        cut = entry["recording_truncated"]
        log(f"source {job.uri}: recording cut short ({cut.get('reason')}): read up to its message "
            f"{cut.get('messages')}, frames after it are lost")
    if run.get("stream_gaps"):                     # a stream stalled: frames lost
        entry["stream_gaps"] = run["stream_gaps"]
        log(f"source {job.uri}: {entry['stream_gaps']['frames']} frame(s) lost in "
            f"{entry['stream_gaps']['gaps']} stream gap(s) (one stream stalled mid-recording)")


def _place_results(entry: dict, job: Job, partial: Path, out_dir: Path, log: Callable) -> None:
    """Count the rows of the source's ``partial`` results file into ``entry`` and, for a source done, rename
    it to its final name (an earlier file of that name kept aside first); a failed or unfinished source
    keeps its .partial name, never taken for complete. A worker that reported success without a file
    fails the source."""
    if partial.is_file():
        try:
            entry.update(result_stats(partial))
        except (OSError, ValueError) as e:
            entry.update(status="failed", error=f"unreadable results file: {e}")
        if entry["status"] == "done":
            final = out_dir / job.results_file
            if final.exists():   # an earlier file this run redid (cut short, unknown settings): kept
                entry["previous_file"] = keep_aside(final).name
                log(f"source {job.uri}: the earlier {final.name} is kept as {entry['previous_file']}")
            os.replace(partial, final)   # complete: only now under its final name
            entry["file"] = job.results_file
        else:
            entry["file"] = partial.name                     # kept, never taken for complete
    elif entry["status"] == "done":
        entry.update(status="failed", error="the worker reported success but wrote no results")


def _interrupted(entry: dict, partial: Path) -> None:
    """A source a stopped batch began and did not finish: "interrupted", with the rows its .partial holds (a
    source never begun stays "pending")."""
    if not partial.is_file():
        return
    entry.update(status="interrupted", file=partial.name)
    try:
        entry.update(result_stats(partial))
    except (OSError, ValueError):
        pass      # a torn last line (a worker killed past the grace): the counts stay as they were
