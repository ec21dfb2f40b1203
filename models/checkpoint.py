"""Checkpoints that carry their config, and ``load_generator`` for every file users arrive with.

A project checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"format": "edge-ad-checkpoint", "version": 1,
     "config": GanConfig dict, "preprocess": PreprocessSpec dict,
     "generator": state_dict, "discriminator": state_dict | None,
     "train": {objective, epochs, data summary, losses, ...},
     "optimizers": {...} | None, "scoring": {...} | None}
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Optional

import torch

from edge_ad.runtime.preprocess import PreprocessSpec

from .dcgan import GanConfig, Generator

FORMAT = "edge-ad-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A model file that is corrupt, of an unknown layout, or does not match the architecture."""


def _first_line(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:limit]}" if text else type(e).__name__


def save_checkpoint(path: os.PathLike, generator: Generator, *, preprocess: PreprocessSpec,
                    discriminator: Optional[torch.nn.Module] = None, train: Optional[dict] = None,
                    optimizers: Optional[dict] = None, scoring: Optional[dict] = None) -> None:
    """Write a self-describing checkpoint atomically (tmp file + rename)."""
    ckpt = {
        "format": FORMAT, "version": VERSION,
        "config": generator.cfg.to_dict(),
        "preprocess": preprocess.to_dict(),
        "generator": {k: v.detach().cpu() for k, v in generator.state_dict().items()},
        "discriminator": ({k: v.detach().cpu() for k, v in discriminator.state_dict().items()}
                          if discriminator is not None else None),
        "train": train or {},
        "optimizers": optimizers,
        "scoring": scoring,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: os.PathLike) -> dict:
    """Load a project checkpoint dict with weights_only=True. Raises CheckpointError."""
    obj = _torch_load(path)
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise CheckpointError(f"{path} is not an edge-ad checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {obj.get('version')} is not supported "
                              f"(this edge-ad reads version {VERSION})")
    return obj


def _torch_load(path: os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a weights-only PyTorch file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot load {path} as a weights-only PyTorch file: "
                              f"{_first_line(e)}") from None


def config_from_state_dict(sd: dict) -> GanConfig:
    """Infer the architecture from the study's key layout: gen.0.0.weight is [z_dim, fg*16, 4, 4]."""
    try:
        w0, w4 = sd["gen.0.0.weight"], sd["gen.4.weight"]
    except KeyError as e:
        raise CheckpointError(f"not a study DCGAN generator state_dict: key {e.args[0]!r} missing "
                              f"(found {sorted(sd)[:6]}...)") from None
    if w0.ndim != 4 or w0.shape[1] % 16:
        raise CheckpointError(f"gen.0.0.weight has shape {tuple(w0.shape)}, expected [z_dim, fg*16, 4, 4]")
    return GanConfig(z_dim=int(w0.shape[0]), features_g=int(w0.shape[1]) // 16,
                     channels=int(w4.shape[1]))


def generator_from_state_dict(sd: dict, cfg: Optional[GanConfig] = None) -> Generator:
    """Build a Generator and load ``sd`` strictly, with a clear message on any mismatch."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    cfg = cfg or config_from_state_dict(sd)
    g = Generator(cfg)
    try:
        g.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match the generator architecture {cfg}: "
                              f"{_first_line(e, 400)}") from None
    return g


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/code/__torch__.py") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def load_generator(path: os.PathLike) -> Generator:
    """Load a generator in eval mode from a project checkpoint, the study's plain state_dict,
    or a TorchScript file of the study's generator. Raises CheckpointError naming the problem.

    The returned module has ``.cfg`` (GanConfig) and ``.preprocess`` (PreprocessSpec; the study's
    defaults for files that do not carry one) and ``.source_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if _is_torchscript(path):
        try:
            scripted = torch.jit.load(str(path), map_location="cpu")
        except Exception as e:
            raise CheckpointError(f"{path}: corrupt TorchScript file: {_first_line(e)}") from None
        sd = {k: v.detach().clone() for k, v in scripted.state_dict().items()}
        g, fmt, pre = generator_from_state_dict(sd), "torchscript", PreprocessSpec()
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            ckpt = read_checkpoint(path)
            g = generator_from_state_dict(ckpt["generator"], GanConfig.from_dict(ckpt["config"]))
            fmt, pre = "edge-ad", PreprocessSpec.from_dict(ckpt["preprocess"])
        elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            g, fmt, pre = generator_from_state_dict(obj), "study-state-dict", PreprocessSpec()
        elif isinstance(obj, dict) and isinstance(obj.get("gen"), dict):
            g, fmt, pre = generator_from_state_dict(obj["gen"]), "study-state-dict", PreprocessSpec()
        else:
            raise CheckpointError(f"{path}: unrecognised model file (neither an edge-ad checkpoint, "
                                  "a generator state_dict, nor TorchScript)")
    for name, t in g.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(f"{path}: parameter {name} contains NaN or inf")
    g.preprocess, g.source_format = pre, fmt
    return g.eval()
