"""The engine without Ray: worker processes on this machine, each with its own Scorer loaded once.

Each worker talks to the driver over its own pipe (no shared queue whose lock a dying worker could
hold). The driver waits on the pipes and on the processes' sentinels: a worker that dies
mid-source is replaced and its source retried (up to ``max_attempts`` in all); the other workers go
on undisturbed."""
from __future__ import annotations

import multiprocessing as mp
import signal
import threading
import time
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable, Optional

from .worker import load_scorer, score_source

PROGRESS_EVERY_S = 0.2
STOP_GRACE_S = 10.0   # after the driver's stop (SIGTERM to a worker), how long a worker may take to finish its frame


def interrupted(job_name: str, attempts: int) -> dict:
    """The result of a source a stopped batch did not finish (its rows so far stay in its .partial file)."""
    return {"status": "interrupted", "error": "the batch was stopped (SIGINT / SIGTERM) while this source was "
            "scored", "summary": None, "wall_s": None, "attempts": attempts}


def _worker_main(conn, model_dir: str, threads: Optional[int], trusted_keys: Optional[list] = None) -> None:
    """A worker process: load the Scorer (signed by one of ``trusted_keys``, PEM bytes, when given), then score
    the jobs the driver sends until it sends None. Ctrl-C
    (SIGINT to the terminal's process group) is the driver's to handle; SIGTERM (the driver stopping the batch,
    or systemd stopping the service) ends the source after its frame, its results closed with a summary, and
    a driver gone (its pipe broken) ends the worker quietly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def send(msg) -> bool:
        try:
            conn.send(msg)
            return True
        except (OSError, EOFError):     # BrokenPipeError: the driver is gone, nobody reads: stop, quietly
            stop.set()
            return False
    try:
        scorer, load_error = load_scorer(model_dir, threads, trusted_keys), None
    except Exception as e:   # reported per job: the driver loaded the manifest, so this is rare
        scorer, load_error = None, f"the worker cannot load the model {model_dir}: {e}"
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        job, out_path, attempt = task
        if scorer is None:
            if not send(("result", job.name, {"status": "failed", "error": load_error, "summary": None,
                                              "wall_s": 0.0})):
                return
            continue
        pending = {"n": 0, "total": None, "t": time.monotonic()}

        def progress(n: int, total: Optional[int]) -> None:
            pending["n"] += n
            if stop.is_set():
                return
            if total is not None:
                send(("progress", job.name, 0, total))
            now = time.monotonic()
            if pending["n"] and now - pending["t"] >= PROGRESS_EVERY_S:
                send(("progress", job.name, pending["n"], None))
                pending["n"], pending["t"] = 0, now
        try:
            res = score_source(scorer, job, out_path, progress, attempt, stop=stop)
        except Exception as e:   # a bug or an unexpected library error: this source fails, the worker goes on
            res = {"status": "failed", "error": f"{type(e).__name__}: {e}", "summary": None, "wall_s": 0.0}
        if pending["n"] and not send(("progress", job.name, pending["n"], None)):
            return
        if not send(("result", job.name, res)):
            return


class LocalEngine:
    """``workers`` processes with ``threads`` intra-op threads each."""

    name = "local"

    def __init__(self, model_dir: Path, workers: int, threads: Optional[int], max_attempts: int = 3,
                 trusted_keys: Optional[list] = None):
        self.model_dir, self.workers, self.threads = Path(model_dir), max(1, int(workers)), threads
        self.max_attempts = max_attempts
        self.trusted_keys = list(trusted_keys) if trusted_keys else None    # PEM bytes: each worker checks
        self._ctx = mp.get_context("spawn")   # never fork a process that holds onnxruntime threads

    def _start(self) -> dict:
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(theirs, str(self.model_dir), self.threads,
                                                            self.trusted_keys), daemon=True)
        proc.start()
        theirs.close()
        return {"proc": proc, "conn": ours, "job": None}

    def run(self, jobs: list, out_dir: Path, on_progress: Callable, on_result: Callable,
            stop: Optional[threading.Event] = None) -> None:
        """Score ``jobs``; ``on_progress(name, frames, total)`` as frames are read, ``on_result(job,
        result)`` once per job (its rows are in ``out_dir/<name>.jsonl.partial``). Once ``stop`` is set (the
        driver's SIGINT / SIGTERM) no source starts, each busy worker is sent SIGTERM and its source ends
        after its frame (result "interrupted"; one that takes over STOP_GRACE_S is killed, as interrupted);
        the sources never started get no result."""
        queue = list(jobs)
        attempts = {j.name: 0 for j in jobs}
        workers = [self._start() for _ in range(min(self.workers, len(queue)))]
        deadline = None
        try:
            while queue or any(w["job"] is not None for w in workers):
                if stop is not None and stop.is_set() and deadline is None:
                    queue.clear()
                    deadline = time.monotonic() + STOP_GRACE_S
                    for w in workers:
                        if w["job"] is not None:
                            w["proc"].terminate()       # SIGTERM: the worker closes the source's results
                if deadline is not None and time.monotonic() > deadline:
                    for w in workers:
                        if w["job"] is not None and w["proc"].is_alive():
                            w["proc"].kill()            # a frame stuck past the grace: its results stay as written
                for w in workers:
                    if w["job"] is None and queue:
                        job = queue.pop(0)
                        attempts[job.name] += 1
                        w["job"] = job
                        try:
                            w["conn"].send((job, str(out_dir / (job.results_file + ".partial")), attempts[job.name]))
                        except OSError:
                            pass          # the worker is gone: its sentinel says so below, the job is retried
                busy = [w for w in workers if w["job"] is not None]
                ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy], timeout=1.0)
                for w in busy:
                    if w["conn"] in ready:
                        try:
                            while w["conn"].poll():
                                msg = w["conn"].recv()
                                if msg[0] == "progress":
                                    on_progress(msg[1], msg[2], msg[3])
                                else:
                                    on_result(w["job"], dict(msg[2], attempts=attempts[w["job"].name]))
                                    w["job"] = None
                                    break
                        except (EOFError, OSError):
                            pass          # the worker died: its sentinel says so below
                    if w["job"] is not None and not w["proc"].is_alive():
                        job = w["job"]
                        code = w["proc"].exitcode
                        w["job"] = None
                        if deadline is not None:      # stopped: no retry, no new worker
                            on_result(job, interrupted(job.name, attempts[job.name]))
                            continue
                        w.update(self._start())
                        if attempts[job.name] < self.max_attempts:
                            on_progress(job.name, None, None)        # restart the source's count
                            queue.insert(0, job)
                        else:
                            on_result(job, {"status": "failed", "summary": None, "wall_s": None,
                                            "attempts": attempts[job.name],
                                            "error": f"the worker died {attempts[job.name]} times while scoring "
                                                     f"this source (last exit status {code})"})
        finally:
            for w in workers:
                try:
                    w["conn"].send(None)
                except (OSError, ValueError):
                    pass
            for w in workers:
                w["proc"].join(timeout=5)
                if w["proc"].is_alive():
                    w["proc"].terminate()
                w["conn"].close()
