"""The JSON-lines results file of a run: appended to, never overwritten, optionally rotated.

A robot's run is restarted (systemd ``Restart=on-failure``) onto the same ``--out``:

* the file is opened for appending; the last intact line that carries an ``index`` tells the
  restarted run where the frame count continues (``ResultWriter.next_index``);
* a torn last line (a process killed mid-write) is cut off the file and kept, verbatim, in a
  ``resumed`` event, so every line of the file stays valid JSON and nothing is lost. NUL bytes a
  power cut left at the file's end are cut too and only counted (``torn_zero_bytes``), whatever
  their length. Only a tail that looks like one of our lines cut short counts as torn: without
  its NUL bytes shorter than TORN_MAX bytes and starting like ``{"type": "``, or only NUL bytes
  after a line of ours (or in an otherwise empty file). Any other file that does not end in a
  newline (not a results file, or someone else's data) is refused with ResultsFileError naming
  the file and what its end holds, and left byte for byte unchanged;
* with ``model`` (``Scorer.identity``: path, manifest sha256, configuration name and settings hash)
  a file whose latest model record names another model is refused (OtherModelError, a ResultsFileError; the
  file unchanged), and the ``resumed`` event and the ``rotated`` event that begins each rotated file name
  this run's model (so a file still names it when the one holding the ``start`` event was pruned);
* one writer at a time: the file is opened (created) and locked (``flock``, exclusive, released when it
  is closed or its process dies) before anything is read or cut; a file another run holds is refused
  (ResultsFileError, left unchanged), so two runs never interleave their lines and frame indices;
* with ``rotate_bytes`` the file is renamed to ``<name>.<n>`` (n = 1, 2, ... growing; the highest
  is the newest) once it exceeds that size, and a fresh file is started. A rotated name that
  exists is never reused (``os.link`` refuses to replace a file). With ``rotate_keep`` N, the only deletion:
  after a rotation the oldest rotated files beyond the newest N are removed (a ``pruned`` event names them),
  so a service that runs for months never fills its disk with results (opt-in; without it nothing is deleted);
* a line that cannot be written for lack of space (ENOSPC, EDQUOT, EFBIG: a full disk, a quota, a file-size
  limit) pauses the results instead of ending the run: the bytes of a short write are cut off again (the
  file still ends in a whole line), later lines are dropped (counted: ``lost_lines``) and each one retries;
  the first that fits is preceded by a ``results_lost`` event (since, until, lines, error). ``space_notes``
  lists each pause and resume for the caller to say (and empty). Any other OSError is raised, as before.

Every line is flushed as written, so a hard kill loses at most the line being written.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Optional

TAIL_BYTES = 1 << 16   # how much of a file's end is read to find its last intact line
TORN_MAX = 1 << 14     # the longest tail taken for a torn line (our lines: < 1 KB, summaries < 4 KB)
LINE_START = b'{"type": "'   # how every line a ResultWriter writes begins (json.dumps of a dict with "type" first)
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)   # a write failing for lack of space: results pause


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte of ``data`` is written (a short write on a filling disk: the rest, which
    then raises OSError ENOSPC)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def rotate_bytes_of(megabytes) -> Optional[int]:
    """The size in bytes a rotation limit of ``megabytes`` MB (10^6 bytes) means: None for None or 0 (no rotation),
    else int(MB x 10^6) and at least 1 byte, so that any size > 0 rotates (edge-ad run's --rotate-mb, the ROS
    node's rotate_mb: one rule; int() alone made a size under one byte 0, a traceback in edge-ad run and no
    rotation at all in the node)."""
    if megabytes is None or megabytes == 0:
        return None
    return max(1, int(megabytes * 1e6))


def rotation_problem(results: bool, rotate: bool, keep: bool, *, results_name: str = "--out",
                     rotate_name: str = "--rotate-mb", keep_name: str = "--rotate-keep") -> Optional[str]:
    """Why rotation settings would do nothing (None: they make sense): keeping the newest N rotated files without
    rotating (the file then grows without bound), or rotating without a results file. One rule for edge-ad run
    and the ROS node, each with its own option names."""
    if keep and not rotate:
        return f"{keep_name} keeps the newest N of the files {rotate_name} rotates: give {rotate_name} too"
    if (rotate or keep) and not results:
        return f"{rotate_name} / {keep_name} rotate the results file: give {results_name} too"
    return None


def not_rotatable(path, rotate: bool, keep: bool, *, rotate_name: str = "--rotate-mb",
                  keep_name: str = "--rotate-keep") -> Optional[str]:
    """Why ``path`` cannot be rotated (None: it can, or no rotation is asked): an existing --out that is not a
    regular file (a device such as /dev/stdout or /dev/null, a pipe, a socket) is written as a stream; rotating
    it would rename the device path and put a regular file in its place. One rule for edge-ad run (checked before
    anything is opened) and ResultWriter (the ROS node's results_path)."""
    if not (rotate or keep):
        return None
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode):
        return None
    return (f"{path} is not a regular file (a device, pipe or socket: written as a stream): {rotate_name} / "
            f"{keep_name} cannot rotate it; give a file name to rotate, or leave rotation out")


class ResultsFileError(ValueError):
    """An existing --out file that a run must not append to (it does not end like a results file).
    ``path``: the file; ``problem``: what is wrong with it, without the message's advice (which
    names edge-ad run's --out; the ROS node says results_path)."""

    def __init__(self, message: str, path: Optional[os.PathLike] = None, problem: Optional[str] = None):
        super().__init__(message)
        self.path, self.problem = path, problem


class OtherModelError(ResultsFileError):
    """A results file whose latest model record names another model than the run's.
    ``previous``: that record's model identity; ``model``: the run's (``Scorer.identity`` dicts);
    ``differences``: ``model_differences(previous, model)``."""

    def __init__(self, path: os.PathLike, previous: dict, model: dict, earlier_config_sha256s=()):
        self.previous, self.model = previous, model
        self.differences = model_differences(previous, model, earlier_config_sha256s)
        problem = f"holds results of another model ({previous.get('path')}: {', '.join(self.differences)})"
        super().__init__(f"{path} {problem}; the scores of two models are never mixed in one file: "
                         "give another --out, or the model that wrote it", path, problem)


def rotated_files(path: os.PathLike) -> list:
    """Rotated files of ``path`` (``<name>.<n>``), oldest first."""
    path = Path(path)
    pat = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found = []
    if path.parent.is_dir():
        for p in path.parent.iterdir():
            m = pat.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def _windows_from_end(f, size: int):
    """(start, bytes) of an open binary file's windows of TAIL_BYTES, from its end back to its start."""
    end = size
    while end > 0:
        start = max(0, end - TAIL_BYTES)
        f.seek(start)
        yield start, f.read(end - start)
        end = start


def tail_size(path: os.PathLike) -> int:
    """How many bytes follow the file's last newline (the whole size when it has none)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        for start, data in _windows_from_end(f, size):
            cut = data.rfind(b"\n")
            if cut >= 0:
                return size - start - cut - 1
    return size


def zero_tail_size(path: os.PathLike) -> int:
    """How many NUL bytes the file ends with (what a power cut leaves after the last write)."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        for start, data in _windows_from_end(f, size):
            kept = len(data.rstrip(b"\0"))
            if kept:
                return size - start - kept
    return size


def last_line_start(path: os.PathLike, before: int) -> Optional[bytes]:
    """The first bytes (up to len(LINE_START)) of the last line ending at byte ``before`` (the
    offset just after its newline); None when ``before`` is 0 (no line there)."""
    if before <= 0:
        return None
    end = before - 1                     # the newline itself
    with open(path, "rb") as f:
        for start, data in _windows_from_end(f, end):
            cut = data.rfind(b"\n")
            if cut >= 0 or start == 0:
                f.seek(start + cut + 1)
                return f.read(min(len(LINE_START), end - (start + cut + 1)))
    return b""                           # the file starts with that newline: an empty line


def last_text_line_start(path: os.PathLike, before: int) -> Optional[bytes]:
    """``last_line_start`` of the last line ending at or before byte ``before`` that is not empty: empty
    lines (an ``echo >> results.jsonl``) are skipped; None when the file holds none before it."""
    with open(path, "rb") as f:
        for start, data in _windows_from_end(f, before):
            kept = len(data.rstrip(b"\r\n"))
            if kept:
                return last_line_start(path, start + kept + 1)   # just after that line's newline
    return None


def torn_tail(path: os.PathLike, limit: Optional[int] = None) -> bytes:
    """The bytes after the file's last newline: a line a killed writer did not finish (b"" if none);
    at most the first ``limit`` of them when given."""
    path = Path(path)
    size, n = path.stat().st_size, tail_size(path)
    with open(path, "rb") as f:
        f.seek(size - n)
        return f.read(n if limit is None else min(n, limit))


def torn_problem(tail_bytes: int, head: bytes, zero_bytes: int = 0,
                 previous_line: Optional[bytes] = None) -> Optional[str]:
    """Why a tail of ``tail_bytes`` bytes without a newline is not a line of ours cut short (None
    when it is one). ``head``: its first bytes; ``zero_bytes``: how many NUL bytes it ends with (a
    power cut's, not counted against TORN_MAX); ``previous_line``: the start of the line before it
    (None: the file holds nothing else)."""
    text_bytes = tail_bytes - zero_bytes
    text = head[:text_bytes]
    if text_bytes == 0:   # only NUL bytes: torn after a line of ours, or in a file of nothing else
        if previous_line is None or previous_line.startswith(LINE_START):
            return None
        return (f"it ends in {zero_bytes} NUL bytes after a line that does not start like a results line: "
                f"{previous_line!r}")
    if text_bytes > TORN_MAX:
        return (f"its last {text_bytes} bytes have no newline (a line torn by a kill is < {TORN_MAX} bytes), "
                f"starting {text[:40]!r}")
    if not (text.startswith(LINE_START) or LINE_START.startswith(text)):
        return f"it ends in {text_bytes} bytes without a newline that do not start like a results line: {text[:40]!r}"
    return None


def try_lock(f) -> bool:
    """Take an exclusive advisory lock (``flock``) on the open file ``f``, held until it is closed (or its
    process dies); False when another open file holds it. Where there is no flock (not POSIX, a filesystem
    without locks) nothing is locked and True is returned: the lock guards against a mistake, not an attack."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def last_index(path: os.PathLike) -> Optional[int]:
    """The ``index`` of the last intact line that has one (None when none), read backwards from
    the file's end in TAIL_BYTES windows (a long stretch of events is skipped, not misread)."""
    rec = last_record(path, "index", lambda v: isinstance(v, int))
    return None if rec is None else rec["index"]


def last_record(path: os.PathLike, key: str, accept) -> Optional[dict]:
    """The last intact line (a dict) whose ``key`` holds a value that ``accept(value)`` takes (None
    when none), read backwards from the file's end in TAIL_BYTES windows; only lines that contain
    ``"key"`` are parsed."""
    path = Path(path)
    needle = json.dumps(key).encode()
    end = path.stat().st_size
    with open(path, "rb") as f:
        while end > 0:
            start = max(0, end - TAIL_BYTES)
            f.seek(start)
            data = f.read(end - start)
            lines = data.split(b"\n")
            if start > 0:
                lines = lines[1:]  # may be the tail of a line that starts before the window
            for raw in reversed(lines):
                if needle not in raw:
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(rec, dict) and key in rec and accept(rec[key]):
                    return rec
            if start == 0:
                return None
            first_nl = data.find(b"\n")
            new_end = start + first_nl + 1 if first_nl >= 0 else start  # re-read the cut line next time
            end = new_end if new_end < end else start  # a line longer than a window: skip it
    return None


# what makes two runs' scores comparable; keys a record written before them lacks are not compared
MODEL_KEYS = ("manifest_sha256", "configuration", "config_sha256")
LATER_MODEL_KEYS = ("config_sha256",)


def model_differences(previous: dict, model: dict, earlier_config_sha256s=()) -> list:
    """What differs between the model identities ``previous`` and ``model`` ({"path", "manifest_sha256",
    "configuration", "config_sha256"}, ``Scorer.identity``): ["manifest_sha256 'ab..' -> 'cd..'", ...];
    [] when the scores are the same model's (a copy of a model in another directory is the same model).
    A key of LATER_MODEL_KEYS that ``previous`` lacks (written by an edge-ad before it) is not compared:
    such a file is resumed by the same model files and configuration name, as then.
    ``earlier_config_sha256s``: values an earlier edge-ad wrote for the same settings
    (``Scorer.earlier_config_sha256s``), which count as the same config_sha256."""
    def same(k):
        return previous.get(k) == model.get(k) or (k in LATER_MODEL_KEYS and k not in previous) \
            or (k == "config_sha256" and previous.get(k) in tuple(earlier_config_sha256s))
    return [f"{k} {previous.get(k)!r} -> {model.get(k)!r}" for k in MODEL_KEYS if not same(k)]


def _is_identity(v) -> bool:
    return isinstance(v, dict) and "manifest_sha256" in v


class ResultWriter:
    """JSON lines appended to ``path`` (or nowhere), each flushed as written.

    ``next_index``: the frame index a restarted run continues from (0 for a new file).
    ``rotate_bytes``: rotate the file once it grows past this many bytes (None: never).
    ``rotate_keep``: after a rotation, delete the oldest rotated files beyond the newest ``rotate_keep``
    (None: keep every one).
    ``earlier_config_sha256s``: config_sha256 values an earlier edge-ad wrote for ``model``'s
    settings (``Scorer.earlier_config_sha256s``): a file naming one is the same model's.
    """

    def __init__(self, path: Optional[os.PathLike] = None, rotate_bytes: Optional[int] = None,
                 model: Optional[dict] = None, earlier_config_sha256s=(), rotate_keep: Optional[int] = None):
        self.path = None if path is None else Path(path)
        self.model = model
        self.earlier_config_sha256s = tuple(earlier_config_sha256s)
        self.rotate_bytes = None if rotate_bytes is None else int(rotate_bytes)
        if self.rotate_bytes is not None and self.rotate_bytes <= 0:
            raise ValueError(f"rotate_bytes must be > 0, got {rotate_bytes}")
        if rotate_keep is not None and (isinstance(rotate_keep, bool) or int(rotate_keep) != rotate_keep
                                        or rotate_keep < 1):
            raise ValueError(f"rotate_keep must be a whole number >= 1, got {rotate_keep!r}")
        self.rotate_keep = None if rotate_keep is None else int(rotate_keep)
        if self.path is not None:    # before anything is opened: a device path is never renamed or replaced
            why = not_rotatable(self.path, self.rotate_bytes is not None, self.rotate_keep is not None,
                                rotate_name="rotate_bytes", keep_name="rotate_keep")
            if why:
                raise ResultsFileError(why, self.path, "is not a regular file: it cannot be rotated")
        self._f = None
        self.next_index = 0
        self.rotations = 0
        self._rotating = False    # while rotate() writes the new file's first events: no rotation from them
        self.pruned: list = []    # the files each pruning deleted, a list per pruning: the caller says (and empties) it
        self.paused: Optional[dict] = None   # while lines cannot be written for lack of space: since, lines, error
        self.lost_lines = 0                  # lines dropped while paused, all pauses together
        self.space_notes: list = []          # each pause (its dict) and resume (the results_lost event), to be said
        self.resumed: Optional[dict] = None  # the 'resumed' event, when an earlier run's file was found
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:      # created here (O_EXCL), or an existing file: locked before anything is read, cut or written
            self._f, created = os.fdopen(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL,
                                                 0o666), "a", encoding="utf-8"), True
        except FileExistsError:
            self._f, created = open(self.path, "a", encoding="utf-8"), False
        locked = False
        try:
            locked = try_lock(self._f)
            if not locked:
                problem = "is being written by another edge-ad run (it holds the file's lock)"
                raise ResultsFileError(f"{self.path} {problem}; two runs never write one results file: give "
                                       "another --out, or stop the other run", self.path, problem)
            if model is not None:
                self._check_same_model(model)     # before anything is cut or written
            torn = self._resume()
        except BaseException:
            if created and locked and os.fstat(self._f.fileno()).st_size == 0:
                self.path.unlink(missing_ok=True)    # refused (a rotated file of another model): no empty file left;
            self._f.close()                          # only the file this writer created and holds, never another's
            self._f = None
            raise
        self._size = os.fstat(self._f.fileno()).st_size       # after a torn tail was cut
        if self.resumed is not None:
            if torn:  # (< TORN_MAX bytes, NUL bytes off: longer tails are refused in _resume)
                self.resumed["torn_line"] = torn.decode("utf-8", errors="replace")
            self.write(self.resumed)

    def _check_same_model(self, model: dict) -> None:
        """Refuse (OtherModelError, the file left unchanged) to append this model's scores to a file
        whose latest model record (a ``start`` / ``resumed`` / ``rotated`` event or a summary, in the file or its
        newest rotated file that has one) names another model: scores of two models are never
        mixed in one file. A file without any model record (older edge-ad) is appended to."""
        candidates = ([self.path] if self.path.exists() else []) + list(reversed(rotated_files(self.path)))
        for p in candidates:
            rec = last_record(p, "model", _is_identity) if p.stat().st_size else None
            if rec is None:
                continue
            if model_differences(rec["model"], model, self.earlier_config_sha256s):
                raise OtherModelError(self.path, rec["model"], model, self.earlier_config_sha256s)
            return

    def _resume(self) -> bytes:
        """Find where an earlier run stopped; cut a torn last line off (returned, kept in the event)."""
        candidates = [self.path] if self.path.exists() else []
        candidates += list(reversed(rotated_files(self.path)))
        torn, cut = b"", 0
        if self.path.exists() and self.path.stat().st_size:
            size, n = self.path.stat().st_size, tail_size(self.path)
            zeros = zero_tail_size(self.path) if n else 0     # <= n: NUL bytes hold no newline
            previous = last_text_line_start(self.path, size - n)    # the last intact line's start (not an empty one)
            problem = None
            if n:
                head = torn_tail(self.path, limit=min(n - zeros, TORN_MAX + 1))
                problem = torn_problem(n, head, zeros, previous)
            if problem is None and previous is not None and not previous.startswith(LINE_START):
                problem = f"its last line does not start like a results line ({LINE_START.decode()!r}): {previous!r}"
            if problem is not None:   # not a results file (or not a torn line of ours): never cut, never appended to
                problem = f"does not look like an edge-ad results file: {problem}"
                raise ResultsFileError(f"{self.path} {problem}. Left unchanged; move it away or give "
                                       "another --out", self.path, problem)
            if n:
                torn, cut = head, n   # the line cut by a kill (NUL bytes off), and every byte cut
                with open(self.path, "r+b") as f:   # moved out of the file into the resumed event
                    f.truncate(size - n)
        for p in candidates:   # the newest file with an intact indexed line says where to continue
            if p.stat().st_size == 0:
                continue
            idx = last_index(p)
            if idx is not None:
                self.next_index = idx + 1
                self.resumed = {"type": "event", "event": "resumed", "time": time.time(),
                                "next_index": self.next_index, "previous_file": str(p)}
                break
        if self.resumed is None and self.path.exists() and (self.path.stat().st_size or cut):
            self.resumed = {"type": "event", "event": "resumed", "time": time.time(), "next_index": 0,
                            "previous_file": str(self.path)}
        if self.resumed is not None and self.model is not None:
            self.resumed["model"] = self.model
        if cut:
            self.resumed["torn_bytes"] = cut           # every byte cut off, NUL bytes included
            if cut > len(torn):
                self.resumed["torn_zero_bytes"] = cut - len(torn)
        return torn

    def write(self, record: dict) -> None:
        if self._f is None:
            return
        line = (json.dumps(record, allow_nan=False) + "\n").encode("utf-8")
        if self.paused is not None:     # no space a moment ago: first say what was lost, if that fits now
            now = time.time()
            lost = {"type": "event", "event": "results_lost", "time": now, **self.paused, "until": now}
            if not self._append((json.dumps(lost) + "\n").encode("utf-8")):
                self.paused["lines"] += 1
                self.lost_lines += 1
                return
            self.paused = None
            self.space_notes.append(lost)
        if not self._append(line):
            self.paused = {"since": time.time(), "lines": 1, "error": str(self._no_space)}
            self.lost_lines += 1
            self.space_notes.append(dict(self.paused))
            return
        if self.rotate_bytes is not None and self._size >= self.rotate_bytes and not self._rotating:
            self.rotate()

    def _append(self, data: bytes) -> bool:
        """Append ``data`` whole (True), or, when there is no space for it (NO_SPACE), not at all: the bytes of a
        short write are cut off again, the file ends at its last whole line (False). Flushed as written."""
        fd = self._f.fileno()
        try:
            write_all(fd, data)
        except OSError as e:
            if e.errno not in NO_SPACE:
                raise
            os.ftruncate(fd, self._size)        # cutting needs no space
            self._no_space = e
            return False
        self._size += len(data)
        return True

    def rotate(self) -> Path:
        """Close the file, rename it to ``<name>.<n>`` (a new n, never an existing file), start afresh."""
        self._close_file()
        existing = rotated_files(self.path)
        n = int(existing[-1].name.rsplit(".", 1)[1]) + 1 if existing else 1
        while True:
            target = self.path.with_name(f"{self.path.name}.{n}")
            try:
                os.link(self.path, target)  # fails if target exists: never replaces a file
            except FileExistsError:
                n += 1
                continue
            os.unlink(self.path)
            break
        self.rotations += 1
        self._f = open(self.path, "a", encoding="utf-8")
        try_lock(self._f)        # the fresh file is this run's too (one opened in the instant between: not ours)
        self._size = 0
        rotated = {"type": "event", "event": "rotated", "time": time.time(), "previous_file": str(target)}
        if self.model is not None:   # every file names its model from its first line: once the file holding the
            rotated["model"] = self.model   # start event is pruned, a restart by another model is still refused
        self._rotating = True        # a rotate_bytes below these events' size: the next line rotates, not these
        try:
            self.write(rotated)
            self.prune()
        finally:
            self._rotating = False
        return target

    def prune(self) -> list:
        """With ``rotate_keep`` N: delete the rotated files older than the newest N (``rotated_files``), and write
        a ``pruned`` event naming them; returns them ([] without ``rotate_keep`` or nothing beyond N)."""
        if self.rotate_keep is None or self.path is None:
            return []
        old = rotated_files(self.path)[:-self.rotate_keep]
        gone = []
        for p in old:
            try:
                os.unlink(p)
                gone.append(str(p))
            except FileNotFoundError:
                pass
        if gone:
            self.pruned.append(gone)
            self.write({"type": "event", "event": "pruned", "time": time.time(), "files": gone,
                        "keep": self.rotate_keep})
        return gone

    def _close_file(self) -> None:
        if self._f is not None:
            self._f.flush()
            try:
                os.fsync(self._f.fileno())
            except OSError:
                pass
            self._f.close()
            self._f = None

    def close(self) -> None:
        self._close_file()
