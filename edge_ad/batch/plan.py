"""From ``edge-ad batch``'s SOURCE arguments to jobs: expansion, output names, what is already done."""
from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlparse

# live cameras never end: a batch re-scores recordings
LIVE_SCHEMES = ("realsense://", "oak://", "camera://")


class PlanError(ValueError):
    """A SOURCE argument that cannot become a job (bad @list file, live camera, endless synth://)."""


@dataclass(frozen=True)
class Job:
    """One source to score: ``uri`` as ``open_source`` takes it, ``name`` its results file's stem,
    ``key`` what identifies the source however it was written (``source_key``; "" = the uri's)."""

    uri: str
    name: str
    seed: int = 0
    threshold: Optional[float] = None
    crash_after: int = 0   # fault injection for tests (EDGE_AD_BATCH_FAULT): exit the worker after N frames
    key: str = ""

    @property
    def source(self) -> str:
        """The source's identity (``source_key`` of its uri unless make_jobs set ``key``)."""
        return self.key or source_key(self.uri)

    @property
    def results_file(self) -> str:
        return f"{self.name}.jsonl"


def _has_glob(s: str) -> bool:
    return any(c in s for c in "*?[")


def expand_sources(args: list) -> tuple[list, list]:
    """SOURCE arguments -> (uris in order without duplicates, problems [(argument, reason)]).

    An argument is a URI or path (folder, ROS bag, RealSense recording, ``rosbag://...``,
    ``synth://?n=N``), a glob (``runs/2024-*/bag_*.mcap``; no match is a problem), or ``@FILE``: one
    source per line of FILE (blank lines and ``#`` comments skipped, globs allowed). Live cameras and
    ``synth://`` without ``n`` raise PlanError: a batch only scores sources that end. Two spellings
    of one source (``cam``, ``./cam/``, its absolute path: the same ``source_key``) are one source."""
    uris, problems, seen = [], [], set()

    def add(uri: str):
        if uri.startswith(LIVE_SCHEMES):
            raise PlanError(f"{uri}: a live camera never ends; edge-ad batch scores recordings "
                            "(use edge-ad run --source for a camera)")
        if uri.startswith("synth://") and "n" not in parse_qs(urlparse(uri).query):
            raise PlanError(f"{uri}: synth:// without n=N never ends; give synth://?n=N")
        if source_key(uri) not in seen:
            seen.add(source_key(uri))
            uris.append(uri)

    def one(arg: str, origin: str):
        arg = arg.strip()
        if "://" not in arg and _has_glob(arg):
            hits = sorted(glob.glob(arg))
            if not hits:
                problems.append((arg, f"no file or folder matches {arg!r}" + origin))
            for h in hits:
                add(h)
        else:
            add(arg)

    for arg in args:
        arg = str(arg)
        if arg.startswith("@"):
            path = Path(arg[1:])
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as e:
                raise PlanError(f"cannot read source list {path}: {e}") from None
            for n, line in enumerate(lines, 1):
                line = line.strip()
                if line and not line.startswith("#"):
                    one(line, f" (line {n} of {path})")
        else:
            one(arg, "")
    return uris, problems


def source_name(uri: str) -> str:
    """A readable file stem for a source: the folder or file name without its suffix, the path of a
    ``rosbag://`` URI, the scheme of other URIs (``synth``); only [A-Za-z0-9._-]."""
    if uri.startswith(("rosbag://", "folder://")):
        uri = uri.split("://", 1)[1].split("?", 1)[0]
    elif "://" in uri:
        uri = uri.split("://", 1)[0]
    p = Path(uri.rstrip("/\\"))
    stem = p.stem if p.suffix in (".db3", ".bag", ".mcap") else p.name
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip(".") or "source"
    return stem


def source_key(uri: str) -> str:
    """What identifies a source however it was written: a path resolved (absolute, symlinks
    followed: ``cam``, ``./cam/`` and ``/data/cam`` are one source), likewise the path of a
    ``rosbag://`` / ``folder://`` URI (its query kept); other URIs (``synth://?n=4``) as given."""
    for scheme in ("rosbag://", "folder://"):
        if uri.startswith(scheme):
            path, sep, query = uri[len(scheme):].partition("?")
            return scheme + os.path.realpath(path) + sep + query
    return uri if "://" in uri else os.path.realpath(uri)


def hashed_name(uri: str) -> str:
    """``<source_name>-<8 hex of sha1(source_key)>``: the name of a source whose plain name is taken."""
    return f"{source_name(uri)}-{hashlib.sha1(source_key(uri).encode()).hexdigest()[:8]}"


def entry_source(entry: dict) -> Optional[str]:
    """The source of a summary.json entry: its ``source`` (written since names became stable), else
    its ``uri`` resolved from the current folder (entries of earlier versions)."""
    if entry.get("source"):
        return entry["source"]
    return source_key(entry["uri"]) if isinstance(entry.get("uri"), str) and entry["uri"] else None


def make_jobs(uris: list, seed: int = 0, threshold: Optional[float] = None,
              previous: Optional[dict] = None) -> list:
    """One Job per uri, its name a function of the source alone, never of the other sources given:

    - a source that OUT's summary.json already names (``previous``, from ``read_previous``: this
      run's and earlier runs' entries) keeps that name, so a rerun with another set of sources finds
      its results (resumed, or refused when the settings differ), never redoes it under a new name;
    - a new source gets its readable name (``source_name``) when no other source has that name, in
      this run or in ``previous``; else ``<name>-<8 hex of sha1(source_key)>`` (``hashed_name``),
      all the new sources sharing a name alike (the same names in any order)."""
    previous = previous or {}
    known, known_done = {}, {}   # source key -> its name in OUT (a finished entry preferred, then the latest)
    for name, entry in previous.items():
        key, done = entry_source(entry), entry.get("status") == "done"
        if key is not None and (key not in known or done >= known_done[key]):
            known[key], known_done[key] = name, done
    keys = [source_key(u) for u in uris]
    new_names = [source_name(u) for u, k in zip(uris, keys) if k not in known]
    jobs = []
    for uri, key in zip(uris, keys):
        name = known.get(key)
        if name is None:
            name = source_name(uri)
            if new_names.count(name) > 1 or name in previous:
                name = hashed_name(uri)
        jobs.append(Job(uri=uri, name=name, seed=seed, threshold=threshold, key=key))
    return jobs


def read_previous(out_dir: os.PathLike) -> dict:
    """The previous run's summary.json entries by name, its ``other_sources`` included ({} when
    there is none or it is unreadable, or names a key twice: runtime.manifest.loads_unique)."""
    from edge_ad.runtime.manifest import loads_unique
    try:
        old = loads_unique((Path(out_dir) / "summary.json").read_text())
        entries = list(old.get("other_sources", [])) + list(old.get("sources", []))
        return {e["name"]: e for e in entries if isinstance(e, dict) and e.get("name")}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def read_results(path: os.PathLike) -> tuple[list, Optional[dict]]:
    """A results file's records and its final summary (None when the last line is not one)."""
    recs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    last = recs[-1] if recs else None
    return recs, (last if isinstance(last, dict) and last.get("type") == "summary" else None)


def settings_differences(job: Job, previous: dict, model_sha256: str) -> list:
    """What differs between ``previous`` (a summary.json entry of the same name) and ``job`` run with
    the model ``model_sha256`` (manifest sha256): ["--threshold None -> 0.5", ...]; [] when nothing does.
    The source (``source_key``: however it was spelt), seed, --threshold override (None: the model's own;
    entries written before "threshold_override" kept it in "threshold") and model decide a source's rows."""
    diffs = []
    if entry_source(previous) != job.source:
        diffs.append(f"source {entry_source(previous)!r} -> {job.source!r}")
    if previous.get("seed") != job.seed:
        diffs.append(f"seed {previous.get('seed')!r} -> {job.seed!r}")
    override = previous.get("threshold_override", previous.get("threshold"))   # older entries: "threshold"
    if override != job.threshold:
        diffs.append(f"--threshold {override!r} -> {job.threshold!r}")
    if previous.get("model_sha256") != model_sha256:
        diffs.append(f"model_sha256 {previous.get('model_sha256')!r} -> {model_sha256!r}")
    return diffs


def finished(path: os.PathLike) -> bool:
    """True if ``path`` is a results file whose last line is the summary of a run that reached the
    source's end."""
    from edge_ad.runtime.capture import STOP_END
    if not Path(path).is_file():
        return False
    try:
        _, summary = read_results(path)
    except (OSError, ValueError):
        return False
    return summary is not None and summary.get("stopped") == STOP_END


def is_complete(out_dir: Path, job: Job, previous: Optional[dict], model_sha256: str) -> bool:
    """True if ``out_dir/<name>.jsonl`` is this source's finished result: the previous run's
    summary.json entry ``previous`` says it was done for the same source, seed, threshold and model
    (manifest sha256; ``settings_differences``), the file exists (only a completed source is renamed
    from ``.partial``) and its last line is the summary of a run that reached the source's end."""
    if not previous or previous.get("status") != "done" or settings_differences(job, previous, model_sha256):
        return False
    return finished(out_dir / job.results_file)
