"""Checkpoints that carry their config, and ``load_generator`` for every file users arrive with.

A project checkpoint is a plain dict (loadable with ``torch.load(weights_only=True)``)::

    {"format": "edge-ad-checkpoint", "version": 1,
     "config": GanConfig dict, "preprocess": PreprocessSpec dict,
     "generator": state_dict, "discriminator": state_dict | None,
     "train": {objective, epochs, data summary, losses, ...},
     "optimizers": {...} | None, "scoring": {...} | None,
     "integrity": {"sha256": content digest of everything above}}   # files written since session 18

``content_sha256`` digests every tensor (dtype, shape, bytes) and value of the checkpoint; ``read_checkpoint``
recomputes it and refuses a file whose content changed (a flipped or zeroed byte inside a weight tensor
loads without complaint in PyTorch). Files without the field (older releases) load as before.

``CheckpointScoring`` reads a model file's ``scoring`` section once (search configuration, izi encoder,
latent bank, calibrated threshold) and ``resolve_scoring`` turns it into the (SearchConfig, PreprocessSpec)
that ``edge-ad eval`` and ``edge-ad export`` score with: one set of rules for both commands.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from edge_ad.runtime.config import SearchConfig, search_differences
from edge_ad.runtime.latent_memory import rows_per_frame_of
from edge_ad.runtime.manifest import threshold_rate_problem
from edge_ad.runtime.preprocess import PreprocessSpec, plain_spec

from .checkpoint_errors import CheckpointError, first_line
from .dcgan import GanConfig, Generator
from .torchscript_weights import is_torchscript, torchscript_state_dict

FORMAT = "edge-ad-checkpoint"
VERSION = 1


INTEGRITY = "integrity"


def _digest(h, obj: Any) -> None:
    """Feed ``obj`` (nested dicts, lists, tuples, tensors, arrays, plain values) into hash h, canonically:
    dict keys sorted, each tensor as its dtype, shape and bytes."""
    if isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            h.update(json.dumps(str(k)).encode())
            _digest(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[" if isinstance(obj, list) else b"(")
        for v in obj:
            _digest(h, v)
        h.update(b"]")
    elif isinstance(obj, (torch.Tensor, np.ndarray)):
        a = obj.detach().cpu().contiguous().numpy() if isinstance(obj, torch.Tensor) else np.ascontiguousarray(obj)
        h.update(f"T{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    else:
        h.update(json.dumps(obj, sort_keys=True, default=repr).encode())


def content_sha256(ckpt: dict) -> str:
    """sha256 (hex) of a checkpoint dict's content, its ``integrity`` field left out."""
    h = hashlib.sha256()
    _digest(h, {k: v for k, v in ckpt.items() if k != INTEGRITY})
    return h.hexdigest()


def with_integrity(ckpt: dict) -> dict:
    """``ckpt`` plus its ``integrity`` field (the content digest ``read_checkpoint`` checks)."""
    out = {k: v for k, v in ckpt.items() if k != INTEGRITY}
    out[INTEGRITY] = {"sha256": content_sha256(out)}
    return out


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
    buf = io.BytesIO()
    torch.save(with_integrity(ckpt), buf)        # in memory first: torch turns a failed write into a RuntimeError
    data = buf.getbuffer()                       # ("basic_ios::clear: iostream error") naming no file, no cause
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:                         # a full disk: one line naming the file (edge_ad/cli.py), no tmp left
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free
        kept = f"; {path} is as it was before" if path.exists() else ""
        raise OSError(e.errno, f"{e.strerror or e} ({len(data) / 1e6:.1f} MB to write, {free / 1e6:.1f} MB free "
                               f"in {path.parent}){kept}", str(path)) from None


def read_checkpoint(path: os.PathLike) -> dict:
    """Load a project checkpoint dict with weights_only=True. Raises CheckpointError."""
    return _checked(_torch_load(path), path)


def _checked(obj: Any, path: os.PathLike) -> dict:
    """``obj`` (a loaded file) if it is a project checkpoint of this version; else CheckpointError."""
    if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
        raise CheckpointError(f"{path} is not an edge-ad checkpoint")
    if obj.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {obj.get('version')} is not supported "
                              f"(this edge-ad reads version {VERSION})")
    if INTEGRITY in obj:
        want = obj[INTEGRITY].get("sha256") if isinstance(obj[INTEGRITY], dict) else None
        got = content_sha256(obj)
        if got != want:
            raise CheckpointError(f"{path} has been modified or corrupted: its content sha256 is {got}, "
                                  f"the file records {want}")
    return obj


def _own_config_and_preprocess(ck: dict, path: os.PathLike) -> tuple[GanConfig, PreprocessSpec]:
    """A project checkpoint's generator config and preprocessing (``ck["config"]``, ``ck["preprocess"]``), read
    once for every reader (load_generator, CheckpointScoring.read) and checked against each other: the frames are
    preprocessed to the generator's resolution. CheckpointError naming the file and the field otherwise."""
    try:
        cfg = GanConfig.from_dict(ck["config"])
    except ValueError as e:             # GanConfig's own check, naming the field (config.resolution)
        raise CheckpointError(f"{path}: {e}") from None
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: invalid config section: {first_line(e)}") from None
    try:
        spec = PreprocessSpec.from_dict(ck["preprocess"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: invalid preprocess section: {first_line(e)}") from None
    if spec.resolution != cfg.resolution:
        raise CheckpointError(f"{path}: preprocess.resolution {spec.resolution} differs from config.resolution "
                              f"{cfg.resolution} (the generator's): its frames would not fit the model")
    return cfg, spec


def _not_a_torch_file(path: Path) -> Optional[str]:
    """What is wrong with ``path`` as a torch.save file, from its first bytes and (a zip) its directory, in
    words (torch says "KeyError: 101" for a text file, or miniz's "failed finding central directory" for a
    file cut short); None when it looks like one (a zip archive or a pickle, torch's legacy format)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path):
                return None
        except (zipfile.BadZipFile, OSError):
            return (f"its zip archive has no readable directory: the file ({size:,} bytes) was cut short or "
                    "corrupted (while it was written or copied?)")
    if head[:1] == b"\x80":                 # a pickle's PROTO opcode: torch's legacy (non-zip) format
        return None
    return f"it is neither a zip archive nor a pickle (it starts with {head!r}): not a file torch.save wrote"


def _torch_load(path: os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes), not a weights-only PyTorch file")
    why = _not_a_torch_file(path)
    if why is not None:
        raise CheckpointError(f"cannot load {path} as a weights-only PyTorch file: {why}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" not in str(e).lower():
            raise CheckpointError(f"cannot load {path} as a weights-only PyTorch file: {first_line(e)}") from None
        # torch's own text goes on to suggest weights_only=False: running the file's code. Not for model files.
        raise CheckpointError(f"cannot load {path}: it holds Python objects other than tensors and plain "
                              "containers (a pickled program, not an edge-ad checkpoint, a generator state_dict "
                              "or TorchScript); edge-ad loads model files weights-only and never runs code "
                              "from them") from None
    except Exception as e:
        raise CheckpointError(f"cannot load {path} as a weights-only PyTorch file: "
                              f"{first_line(e)}") from None


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


def _state_dict_problems(sd: dict, want: dict, most: int = 3) -> str:
    """The keys of ``sd`` missing from / unexpected by the module state ``want`` and the shapes that differ (at most
    ``most`` of each), in words; '' when they match."""
    def listed(keys):
        return ", ".join(keys[:most]) + (f" (+{len(keys) - most} more)" if len(keys) > most else "")
    missing = [k for k in want if k not in sd]
    unexpected = [k for k in sd if k not in want]
    shapes = [f"{k} has shape {tuple(sd[k].shape)}, the generator needs {tuple(want[k].shape)}"
              for k in want if k in sd and tuple(getattr(sd[k], "shape", ())) != tuple(want[k].shape)]
    parts = ([f"missing {listed(missing)}"] if missing else []) + \
        ([f"unexpected {listed(unexpected)}"] if unexpected else []) + shapes[:most]
    return "; ".join(parts)


def generator_from_state_dict(sd: dict, cfg: Optional[GanConfig] = None) -> Generator:
    """Build a Generator and load ``sd`` strictly, with a clear message on any mismatch."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    cfg = cfg or config_from_state_dict(sd)
    g = Generator(cfg)
    problems = _state_dict_problems(sd, g.state_dict())     # torch's message has them after its first line only
    if problems:
        raise CheckpointError(f"weights do not match the generator (z_dim {cfg.z_dim}, width {cfg.features_g}, "
                              f"{cfg.channels} channels, {cfg.resolution} px): {problems}")
    try:
        g.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"weights do not match the generator architecture {cfg}: "
                              f"{first_line(e, 400)}") from None
    return g


def load_generator(path: os.PathLike) -> Generator:
    """Load a generator in eval mode from a project checkpoint, the study's plain state_dict,
    or a TorchScript file of the study's generator (its weights read as data: models/torchscript_weights.py).
    No code from the file runs. Raises CheckpointError naming the problem.

    The returned module has ``.cfg`` (GanConfig) and ``.preprocess`` (PreprocessSpec; the study's
    defaults for files that do not carry one) and ``.source_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file not found: {path}")
    if is_torchscript(path):           # its weights read as data: the archive's code is never compiled or run
        g, fmt, pre = generator_from_state_dict(torchscript_state_dict(path)), "torchscript", PreprocessSpec()
    else:
        obj = _torch_load(path)
        if isinstance(obj, dict) and obj.get("format") == FORMAT:
            ckpt = _checked(obj, path)          # (the file is read once)
            cfg, pre = _own_config_and_preprocess(ckpt, path)
            g, fmt = generator_from_state_dict(ckpt["generator"], cfg), "edge-ad"
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


SCORINGS = ("checkpoint", "reference")


def latent_bank_array(bank) -> np.ndarray:
    """A latent bank (a tensor or an array) as (N, z_dim) float32. ValueError ("must be ...") unless it is
    finite, 2-D and non-empty: the one check of a bank from a checkpoint or given to the exporter."""
    bank = np.asarray(bank.numpy() if hasattr(bank, "numpy") else bank, dtype=np.float32)
    if bank.ndim != 2 or len(bank) == 0 or not np.isfinite(bank).all():
        raise ValueError(f"must be a finite non-empty (N, z_dim) array, got shape {bank.shape}")
    return bank


@dataclasses.dataclass(frozen=True)
class CheckpointScoring:
    """A model file's ``scoring`` section (models/kinect-rgbd/make_release.py writes it), read once.

    ``section`` is the stored dict (None for study files and checkpoints without one), ``preprocess``
    the file's own preprocessing (PreprocessSpec() for study files, as ``load_generator``), ``train_class``
    the class it was trained on if recorded, ``train_data`` its training data's summary (``train["data"]``:
    source, n_frames, split for a split dataset, ...) if recorded. ``sealed``: True when the file's content digest
    was checked on reading, False for a project checkpoint without one (written before checkpoints carried it, or
    the record was removed: its content cannot be checked), None for other files. The methods raise
    CheckpointError (one line, naming the file) for an invalid section."""

    section: Optional[dict] = None
    preprocess: PreprocessSpec = dataclasses.field(default_factory=PreprocessSpec)
    train_class: Optional[str] = None
    path: Optional[str] = None
    train_data: Optional[dict] = None
    sealed: Optional[bool] = None

    @classmethod
    def read(cls, path: os.PathLike) -> "CheckpointScoring":
        """The scoring section of the model file ``path`` (one ``torch.load(weights_only=True)``); empty for
        a study state_dict or TorchScript file. Raises CheckpointError for an unreadable file."""
        path = Path(path)
        if path.is_file() and is_torchscript(path):
            return cls(path=str(path))
        obj = _torch_load(path)
        if not (isinstance(obj, dict) and obj.get("format") == FORMAT):
            return cls(path=str(path))
        ck = _checked(obj, path)
        spec = _own_config_and_preprocess(ck, path)[1]
        train = ck.get("train") if isinstance(ck.get("train"), dict) else {}
        return cls(section=ck.get("scoring"), preprocess=spec, train_class=_train_class(train or None),
                   path=str(path), train_data=train.get("data") if isinstance(train.get("data"), dict) else None,
                   sealed=INTEGRITY in ck)

    @classmethod
    def of(cls, scoring) -> "CheckpointScoring":
        """``scoring`` itself if it is a CheckpointScoring, else one wrapping a bare section dict (or None)."""
        return scoring if isinstance(scoring, CheckpointScoring) else cls(section=scoring)

    def _error(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.path + ': ' if self.path else ''}{what}")

    def _dict(self) -> dict:
        if self.section is None:
            return {}
        if not isinstance(self.section, dict):
            raise self._error(f"the checkpoint's scoring section must be a dict, got {type(self.section).__name__}")
        return self.section

    def get(self, key: str):
        """The section's raw entry ``key`` (None when absent)."""
        return self._dict().get(key)

    def search_config(self) -> Optional[SearchConfig]:
        """The named scoring configuration: ``scoring["search"]`` (make_release.py's layout), else SearchConfig
        fields at the top level of the section (older checkpoints), else None. A bare "name" is not a
        configuration."""
        sc = self._dict()
        try:
            if "search" in sc:
                if not isinstance(sc["search"], dict):
                    raise ValueError(f"scoring['search'] must be a dict, got {type(sc['search']).__name__}")
                return SearchConfig.from_dict(sc["search"])
            base = {k: v for k, v in sc.items() if k in SearchConfig.__dataclass_fields__}
            return SearchConfig.from_dict(base) if set(base) - {"name"} else None
        except (TypeError, ValueError) as e:
            raise self._error(f"the checkpoint's scoring configuration is invalid: {e}") from None

    def encoder(self):
        """The izi encoder the section carries (models.encoder.Encoder, eval mode), or None."""
        d = self.get("encoder")
        if not d:
            return None
        from .encoder import encoder_from_dict
        try:
            return encoder_from_dict(d)
        except ValueError as e:
            raise self._error(f"scoring['encoder']: {e}") from None

    def latent_bank(self) -> Optional[np.ndarray]:
        """The latent bank (N, z_dim) float32 the section carries, or None."""
        bank = self.get("latent_bank")
        if bank is None:
            return None
        try:
            return latent_bank_array(bank)
        except ValueError as e:
            raise self._error(f"scoring['latent_bank'] {e}") from None

    def bank_augment(self) -> list:
        """The augmentation texts the latent bank was built with (``scoring["latent_bank_info"]["augment"]``,
        runtime/latent_bank.py; [] when it records none): the bank's layout, the manifest's
        latent_bank["augment"]."""
        info = self.get("latent_bank_info") or {}
        augment = info.get("augment") if isinstance(info, dict) else None
        try:
            rows_per_frame_of(augment)
        except ValueError as e:
            raise self._error(f"scoring['latent_bank_info']: {e}") from None
        return list(augment or [])

    def bank_rows_per_frame(self) -> int:
        """Rows per normal frame of the latent bank: 1 + len(bank_augment())."""
        return 1 + len(self.bank_augment())

    def pixel_frames(self) -> Optional[np.ndarray]:
        """The pixel memory's frames the section carries (``scoring["pixel_memory"]``: uint8 (N, R, R, 4), the
        normal frames as runtime.latent_bank.unaligned_uint8 gives them), or None. Checked: uint8, 4
        channels, square, N >= 1, at most runtime.pixel_memory.MAX_PIXEL_FRAMES frames."""
        from edge_ad.runtime.pixel_memory import MAX_PIXEL_FRAMES
        frames = self.get("pixel_memory")
        if frames is None:
            return None
        frames = frames.numpy() if hasattr(frames, "numpy") else np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 4 or frames.shape[1] != frames.shape[2] \
                or not 1 <= len(frames) <= MAX_PIXEL_FRAMES:
            raise self._error(f"scoring['pixel_memory'] must be uint8 frames (N, R, R, 4), 1 <= N <= {MAX_PIXEL_FRAMES}, "
                              f"got {frames.dtype} {frames.shape}")
        return frames

    def pixel_augment(self) -> list:
        """The augmentation texts of the pixel memory (``scoring["pixel_memory_info"]["augment"]``; [] when it
        records none), each a valid nuisance text."""
        from edge_ad.runtime.pixel_memory import check_pixel_augment
        info = self.get("pixel_memory_info") or {}
        if not isinstance(info, dict):
            raise self._error(f"scoring['pixel_memory_info'] must be a dict, got {type(info).__name__}")
        try:
            return check_pixel_augment(info.get("augment"))
        except ValueError as e:
            raise self._error(f"scoring['pixel_memory_info']: {e}") from None

    def pixel_memory(self, spec: PreprocessSpec):
        """The runtime.pixel_memory.PixelMemory of the section's pixel memory under the preprocessing ``spec``
        (the one the frames are scored with; its resolution must be the frames'), or None when it carries none."""
        from edge_ad.runtime.pixel_memory import PixelMemory
        frames = self.pixel_frames()
        if frames is None:
            return None
        try:
            return PixelMemory(frames, spec, self.pixel_augment())
        except ValueError as e:
            raise self._error(f"scoring['pixel_memory']: {e}") from None

    def silhouette_rows(self, z_dim: int) -> Optional[tuple]:
        """The silhouette lever's paired rows the section carries (runtime/silhouette.py; make_release.py
        --silhouette-weight): (``scoring["silhouette_bank"]`` (2 N, z_dim) float32, E of each opened training frame
        and of its mirror; ``scoring["silhouette_pixels"]`` (N, R, R, 4) uint8, the opened frames, or None), or
        None when it carries none. Checked (runtime.silhouette.check_silhouette_bank)."""
        from edge_ad.runtime.silhouette import check_silhouette_bank
        rows = self.get("silhouette_bank")
        if rows is None:
            return None
        pixels = self.get("silhouette_pixels")
        try:
            rows = check_silhouette_bank(latent_bank_array(rows), z_dim)
        except ValueError as e:
            raise self._error(f"scoring['silhouette_bank']: {e}") from None
        if pixels is not None:
            pixels = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
            if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[3] != 4 or 2 * len(pixels) != len(rows):
                raise self._error(f"scoring['silhouette_pixels'] must be uint8 frames (N = {len(rows) // 2}, R, R, 4), "
                                  f"the opened frames of the paired rows, got {pixels.dtype} {pixels.shape}")
        return rows, pixels

    def threshold(self, cfg: Optional[SearchConfig] = None, spec: Optional[PreprocessSpec] = None,
                  log: Optional[Callable] = None) -> Optional[dict]:
        """The calibrated threshold the section carries (``scoring["threshold"]``: value, target_fpr, ...) if
        it applies: None when there is none, when ``cfg`` differs from the configuration it was calibrated
        with, or when ``spec`` is not the checkpoint's own preprocessing (a threshold only means something
        for its own score); ``log`` says why a stored one is not kept. CheckpointError for a stored
        threshold without a finite value > 0."""
        thr = self.get("threshold")
        if thr is None:
            return None
        if not isinstance(thr, dict) or isinstance(thr.get("value"), bool) \
                or not isinstance(thr.get("value"), (int, float)) or not np.isfinite(thr["value"]) \
                or thr["value"] <= 0:
            raise self._error(f"scoring['threshold'] must be a dict with a finite 'value' > 0, got {thr!r:.200}")
        if threshold_rate_problem(thr):
            raise self._error(f"scoring['threshold']['target_fpr'] {threshold_rate_problem(thr)}")
        calibrated = thr.get("search")
        diff = search_differences(calibrated, cfg) if cfg is not None and isinstance(calibrated, dict) else []
        if diff:
            if log:
                log(f"note: the checkpoint's threshold was calibrated for its own scoring configuration; this "
                    f"one differs in {diff}, so the model gets no threshold (calibrate one: edge-ad eval / "
                    "edge-ad calibrate)")
            return None
        if spec is not None and spec != self.preprocess:
            if log:
                log("note: the checkpoint's threshold was calibrated with its own preprocessing; this one "
                    "preprocesses otherwise, so the model gets no threshold")
            return None
        return thr


def _train_class(train) -> Optional[str]:
    """The class a checkpoint's ``train`` section says it was trained on, if any."""
    if not isinstance(train, dict):
        return None
    data = train.get("data") if isinstance(train.get("data"), dict) else {}
    cls = train.get("class") or train.get("normal_class") or data.get("cls") or data.get("class")
    return cls if isinstance(cls, str) else None


def resolve_scoring(source, scoring: str = "checkpoint", overrides: Optional[dict] = None
                    ) -> tuple[SearchConfig, PreprocessSpec]:
    """The (search configuration, preprocessing) a model file is scored with, the one rule of ``edge-ad eval``
    and ``edge-ad export``. ``source``: a path or a CheckpointScoring. scoring "checkpoint": the file's named
    configuration (else the reference SearchConfig()) on its own preprocessing; "reference": SearchConfig()
    on ``plain_spec`` of its preprocessing. ``overrides`` (SearchConfig fields, None: keep) apply on top
    and rename the configuration (``SearchConfig.overridden``). Raises CheckpointError for an invalid
    scoring section and ValueError for invalid overrides."""
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    ck = source if isinstance(source, CheckpointScoring) else CheckpointScoring.read(source)
    if scoring == "checkpoint":
        cfg, spec = ck.search_config() or SearchConfig(), ck.preprocess
    else:
        cfg, spec = SearchConfig(), plain_spec(ck.preprocess)
    if overrides and any(v is not None for v in overrides.values()):
        cfg = cfg.overridden(**overrides)
    return cfg, spec
