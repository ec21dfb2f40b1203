"""The engine with Ray (Ray Core actors): one ``ScoringActor`` per worker, each with its own Scorer
loaded once from the model directory shipped through the object store (no shared filesystem for the
model: the driver packs it, the actor checks the archive's and the manifest's sha256 and
``Scorer.load`` checks every file). The actor writes a source's rows to its own temporary file and
returns them to the driver, which writes OUTDIR; frame counts stream to a small progress actor.
An actor that dies mid-source (``RayActorError``) is replaced and its source retried.

Sources are read by the workers at the path given: on a real cluster the recordings must be
readable from every node at the same path (network storage), as with any Ray job's input files."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from .plan import Job
from .worker import load_scorer, manifest_sha256, pack_model, score_source, unpack_model

PROGRESS_EVERY_S = 0.25
CLOSE_TIMEOUT_S = 10.0   # how long the driver waits for idle actors to delete their model copy


def import_ray():
    try:
        import ray
    except ImportError:
        raise ImportError("edge-ad batch --ray needs Ray: pip install 'edge-ad[ray]'") from None
    return ray


class _Progress:
    """Frame counts per source, added by actors (fire and forget), read by the driver."""

    def __init__(self):
        self.delta, self.totals = {}, {}

    def add(self, name: str, n: int, total: Optional[int]) -> None:
        self.delta[name] = self.delta.get(name, 0) + n
        if total is not None:
            self.totals[name] = total

    def take(self) -> tuple:
        d, t = self.delta, self.totals
        self.delta, self.totals = {}, {}
        return d, t


class _ScoringActor:
    """Holds one Scorer; ``score(job, attempt)`` scores a whole source."""

    def __init__(self, blob: bytes, blob_sha256: str, want_manifest: str, threads: Optional[int], progress,
                 trusted_keys: Optional[list] = None):
        self._tmp = tempfile.TemporaryDirectory(prefix="edge-ad-batch-")
        model_dir = unpack_model(blob, blob_sha256, want_manifest, Path(self._tmp.name) / "model")
        self.scorer = load_scorer(model_dir, threads, trusted_keys)
        self.progress = progress

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        """Delete the unpacked model (~30 MB): ray.kill ends the process without running finalizers."""
        self._tmp.cleanup()

    def score(self, job: Job, attempt: int) -> dict:
        out = Path(self._tmp.name) / job.results_file
        pending = {"n": 0, "t": time.monotonic()}

        def progress(n: int, total: Optional[int]) -> None:
            pending["n"] += n
            now = time.monotonic()
            if total is not None or (pending["n"] and now - pending["t"] >= PROGRESS_EVERY_S):
                self.progress.add.remote(job.name, pending["n"], total)
                pending["n"], pending["t"] = 0, now
        try:
            res = score_source(self.scorer, job, out, progress, attempt)
        except Exception as e:
            res = {"status": "failed", "error": f"{type(e).__name__}: {e}", "summary": None, "wall_s": 0.0}
        if pending["n"]:
            self.progress.add.remote(job.name, pending["n"], None)
        res["rows"] = out.read_bytes() if out.exists() else b""
        out.unlink(missing_ok=True)
        return res


def _close_actors(ray, actors: list) -> None:
    """Ask idle actors to delete their model copy before they are killed (a busy or dead one cannot);
    best effort: waits CLOSE_TIMEOUT_S at most and never raises over the run's own outcome."""
    if not actors:
        return
    try:
        ray.wait([a.close.remote() for a in actors], num_returns=len(actors), timeout=CLOSE_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - cleanup only; the actors are killed next either way
        pass


class RayEngine:
    """``workers`` actors of ``threads`` CPUs each on the cluster at ``address`` ("local": start one
    on this machine with ``workers * threads`` CPUs)."""

    name = "ray"

    def __init__(self, model_dir: Path, address: str, workers: Optional[int], threads: Optional[int],
                 max_attempts: int = 3, log: Callable = print, trusted_keys: Optional[list] = None):
        self.model_dir, self.address, self.workers = Path(model_dir), address, workers
        self.trusted_keys = list(trusted_keys) if trusted_keys else None    # PEM bytes: every actor checks
        self.threads = max(1, int(threads or 1))
        self.max_attempts, self.log = max_attempts, log
        self._started = False

    def _init(self, ray) -> int:
        """Connect (or start a local cluster); returns the number of actors to run."""
        self._started = not ray.is_initialized()
        if not self._started:
            pass                     # a caller's ray.init (e.g. a test's local cluster)
        elif self.address == "local":
            ray.init(num_cpus=(self.workers or os.cpu_count() or 1) * self.threads, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        else:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        return max(1, self.workers or cpus // self.threads)

    def run(self, jobs: list, out_dir: Path, on_progress: Callable, on_result: Callable, stop=None) -> None:
        """As LocalEngine.run; once ``stop`` is set (SIGINT / SIGTERM) the actors are killed: the sources they
        scored get no result (the driver marks them interrupted; their rows never came back)."""
        ray = import_ray()
        n_workers = min(self._init(ray), len(jobs))
        blob, blob_sha = pack_model(self.model_dir)
        want = manifest_sha256(self.model_dir)
        blob_ref = ray.put(blob)
        progress = ray.remote(_Progress).options(num_cpus=0).remote()
        actor_cls = ray.remote(_ScoringActor).options(num_cpus=self.threads, max_restarts=0)

        def new_actor():
            return actor_cls.remote(blob_ref, blob_sha, want, self.threads, progress, self.trusted_keys)

        queue = list(jobs)
        attempts = {j.name: 0 for j in jobs}
        idle = [new_actor() for _ in range(n_workers)]
        running = {}   # ObjectRef -> (actor, job)

        def drain():
            delta, totals = ray.get(progress.take.remote())
            for name, total in totals.items():
                on_progress(name, 0, total)
            for name, n in delta.items():
                on_progress(name, n, None)

        try:
            while queue or running:
                if stop is not None and stop.is_set():
                    break
                while idle and queue:
                    actor, job = idle.pop(), queue.pop(0)
                    attempts[job.name] += 1
                    running[actor.score.remote(job, attempts[job.name])] = (actor, job)
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                drain()
                for ref in done:
                    actor, job = running.pop(ref)
                    try:
                        res = ray.get(ref)
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as e:
                        ray.kill(actor, no_restart=True)
                        idle.append(new_actor())
                        if attempts[job.name] < self.max_attempts:
                            on_progress(job.name, None, None)
                            queue.insert(0, job)
                        else:
                            on_result(job, {"status": "failed", "summary": None, "wall_s": None,
                                            "attempts": attempts[job.name],
                                            "error": f"the Ray worker died {attempts[job.name]} times while "
                                                     f"scoring this source ({type(e).__name__}: "
                                                     f"{str(e).strip().splitlines()[0][:300] if str(e).strip() else ''})"})
                        continue
                    except ray.exceptions.RayError as e:   # e.g. the actor could not load the model
                        idle.append(actor)
                        on_result(job, {"status": "failed", "summary": None, "wall_s": None,
                                        "attempts": attempts[job.name], "error": f"{type(e).__name__}: {e}"})
                        continue
                    rows = res.pop("rows")
                    if rows:
                        (out_dir / (job.results_file + ".partial")).write_bytes(rows)
                    idle.append(actor)
                    on_result(job, dict(res, attempts=attempts[job.name]))
            drain()
        finally:
            _close_actors(ray, idle)
            for actor in idle + [a for a, _ in running.values()]:
                ray.kill(actor, no_restart=True)
            ray.kill(progress, no_restart=True)
            if self._started:
                ray.shutdown()
