"""A per-frame watchdog: each scoring call runs on a worker thread while the caller waits.

A scoring call that never returns (a native library stuck in a loop) cannot be interrupted, and
a signal handler only runs once the main thread is back in Python. So the capture loop never calls
the scorer itself: ``ScoreWorker.call`` hands the call to one long-lived daemon thread and waits in
short slices, so SIGINT/SIGTERM are handled at once and the loop decides:

* ``timeout_s``: a call running longer raises ``FrameTimeout`` (the run ends as fatal, naming the
  frame: a stuck native call can only be cleared by restarting the process);
* ``stop`` set (a signal): the call gets ``grace_s`` more seconds to finish, then ``Abandoned`` is
  raised and the caller writes its summary and exits, leaving the stuck daemon thread behind.

Calls run one at a time on the same thread, so a scorer that is not thread-safe is still only
used from one thread.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional


class FrameTimeout(RuntimeError):
    """The scoring call of a frame did not return within the per-frame timeout."""


class Abandoned(RuntimeError):
    """A stop was requested and the scoring call in flight did not finish within the grace period."""


class ScoreWorker:
    """Runs calls on one daemon thread; ``call(fn)`` returns its result or raises its exception."""

    def __init__(self, timeout_s: Optional[float] = None, grace_s: float = 5.0, poll_s: float = 0.05):
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"per-frame timeout must be > 0 s, got {timeout_s}")
        self.timeout_s, self.grace_s, self.poll_s = timeout_s, float(grace_s), float(poll_s)
        self._job = None
        self._jobs = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self.stuck = False   # True once a call was abandoned (the thread may never come back)

    def _loop(self):
        while True:
            with self._jobs:
                self._jobs.wait_for(lambda: self._job is not None)
                job, self._job = self._job, None
            if job is _STOP:
                return
            fn, box, done = job
            try:
                box["result"] = fn()
            except BaseException as e:  # handed to the waiting caller
                box["error"] = e
            done.set()

    def call(self, fn: Callable, stop: Optional[threading.Event] = None):
        """Run ``fn()`` on the worker; wait for it, handling ``stop`` and the timeout (see module doc)."""
        if self.stuck:
            raise Abandoned("the worker thread is still stuck in an earlier call")
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="edge-ad-score")
            self._thread.start()
        box, done = {}, threading.Event()
        with self._jobs:
            self._job = (fn, box, done)
            self._jobs.notify()
        t0 = time.monotonic()
        try:
            return self._wait(box, done, t0, stop)
        except KeyboardInterrupt:   # a second signal while the call runs: it is left behind
            self.stuck = not done.is_set()
            raise

    def _wait(self, box: dict, done: threading.Event, t0: float, stop: Optional[threading.Event]):
        stop_seen = None
        while not done.wait(self.poll_s):
            now = time.monotonic()
            if stop is not None and stop.is_set():
                stop_seen = stop_seen if stop_seen is not None else now
                if now - stop_seen >= self.grace_s:
                    self.stuck = True
                    raise Abandoned(f"scoring did not finish within {self.grace_s:g} s of the stop request "
                                    f"(running for {now - t0:.1f} s)")
            if self.timeout_s is not None and now - t0 >= self.timeout_s:
                self.stuck = True
                raise FrameTimeout(f"scoring did not return within the per-frame timeout of "
                                   f"{self.timeout_s:g} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def close(self) -> None:
        """Let the worker thread end (a stuck one is left alone: it is a daemon)."""
        if self._thread is not None and not self.stuck:
            with self._jobs:
                self._job = _STOP
                self._jobs.notify()
            self._thread.join(timeout=1.0)
        self._thread = None


_STOP = object()
