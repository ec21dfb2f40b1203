"""The exporter's errors: one class for every refused or failed export (``edge-ad export`` prints it)."""
from __future__ import annotations


class ExportError(RuntimeError):
    """The export could not be produced or failed its parity check."""


class ParityFailed(ExportError):
    """The export was written but failed its parity check (raised inside the staging directory)."""
