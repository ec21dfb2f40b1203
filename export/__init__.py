"""Workstation side of deployment: generator -> ONNX search graphs + manifest (``edge-ad export``)."""
from __future__ import annotations

__all__ = ["export_model", "ExportError", "check_parity"]


def __getattr__(name):  # lazy: importing edge_ad.export must not pull torch/onnx until needed
    if name in __all__:
        from . import exporter
        return getattr(exporter, name)
    raise AttributeError(name)
