"""Ctrl-C, SIGTERM and SIGHUP as an orderly stop, shared by ``edge-ad run`` / the ROS node (``capture.run_capture``)
and ``edge-ad batch`` (``edge_ad/batch/driver.py``): the first signal asks the loop to stop after the frame (or
source) in hand, a second one stops at once (KeyboardInterrupt). SIGHUP is what a closed SSH session or terminal
sends: the run's end products (summary, contact sheet) are still written."""
from __future__ import annotations

import signal
import threading

# the signals that stop a loop in order (SIGHUP where the platform has it)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class StopOnSignals:
    """SIGINT/SIGTERM/SIGHUP set ``stop`` (first time; ``name`` says which) and raise KeyboardInterrupt (second time).
    Installed only from the main thread (the only one that may set handlers); the old handlers come back on exit."""

    def __init__(self, stop: threading.Event):
        self.stop, self.name, self._old = stop, None, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, _frame):
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name
        self.stop.set()

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class NoSignalHandling:
    """The caller keeps its own handlers (an embedding program, a thread other than the main one)."""
    name = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def stop_signals(stop: threading.Event, handle: bool):
    """The context for a loop that stops on ``stop``: ``StopOnSignals(stop)`` when ``handle``, else
    ``NoSignalHandling()``; its ``name`` says which signal stopped the loop (None: none)."""
    return StopOnSignals(stop) if handle else NoSignalHandling()
