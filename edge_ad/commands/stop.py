"""SIGTERM for the commands that build a new directory under a hidden temporary name (export's
``.OUT.export-HEX``, calibrate's ``.OUT.calibrating-PID``): Python's default SIGTERM ends the process without
unwinding, so their clean-up (``finally`` / ``except BaseException``) never ran and every stopped export
(``timeout``, systemd, a cluster's preemption) left tens of MB behind, hidden. (SIGKILL cannot be unwound: the
next export or calibrate into the same parent removes what a killed one left, runtime/staging.py.)"""
from __future__ import annotations

import signal

EXIT_SIGTERM = 128 + signal.SIGTERM     # what a shell reports for a process ended by SIGTERM
# SIGHUP (a closed SSH session or terminal) unwinds the same way, where the platform has it
UNWOUND = (signal.SIGTERM,) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
EXIT_CODES = tuple(128 + int(s) for s in UNWOUND)     # 143, 129: the statuses SystemExit carries then


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def unwind_on_sigterm() -> None:
    """From now on SIGTERM (and SIGHUP) raises SystemExit(143 / 129) in the main thread, so the command's clean-up
    runs (its temporary directory removed, ``--out`` left as it was) before the process ends with the status a
    shell reports for that signal. Only from the main thread (signal handlers can be set nowhere else)."""
    for sig in UNWOUND:
        signal.signal(sig, _stop)
