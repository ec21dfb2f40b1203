"""The weights of a TorchScript model file, read as data: ``torchscript_state_dict`` unpickles the archive's
data.pkl with a restricted unpickler (module objects become plain attribute dicts, tensors are rebuilt from
the archive's data/ records, any other global is refused), so no TorchScript code is compiled or run
(``torch.jit.load`` would compile the archive's code/ and call its ``__setstate__``).

models/checkpoint.py's ``load_generator`` calls it for a TorchScript file of the study's generator.
"""
from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .checkpoint_errors import CheckpointError, first_line


def is_torchscript(path: Path) -> bool:
    """True when ``path`` is a TorchScript archive (a zip with a code/ folder), False for any other file."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/code/__torch__.py") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


class _ScriptObject:
    """A module object of a TorchScript archive's data.pkl, as plain data: its pickled state (a dict of
    attributes: tensors, submodules, flags), never its class's code (``__setstate__`` is this one)."""

    def __setstate__(self, state):
        self.state = state


_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool}


# torch.jit._pickle's builders of typed lists and type tags (TorchScript attributes such as a conv's stride), as data
_LIST_BUILDERS = {**{f"build_{t}list": list for t in ("int", "double", "bool", "tensor")},
                  "restore_type_tag": lambda value, type_str: value}


@dataclasses.dataclass(frozen=True)
class _StorageKind:
    """A storage class a data.pkl names (torch.FloatStorage, ...): only its dtype, nothing to call."""
    dtype: torch.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
    """One data/ record of the archive: its bytes as an untyped storage and the dtype its record names."""
    dtype: torch.dtype
    untyped: Any


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_) -> torch.Tensor:
    """torch._utils._rebuild_tensor_v2 for the records read here: a view of ``storage`` (bounds checked by
    set_); requires_grad, hooks and metadata ignored (weights are loaded into a new module)."""
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage record")
    return torch.empty(0, dtype=storage.dtype).set_(storage.untyped, int(offset), tuple(size), tuple(stride))


class _TorchScriptTensors(pickle.Unpickler):
    """data.pkl of a TorchScript archive read as data: ``__torch__.*`` classes become _ScriptObject, tensors are
    rebuilt from the archive's data/ records; any other global is refused (UnpicklingError). No TorchScript
    code is compiled or run (torch.jit.load would compile the archive's code/ and call its __setstate__)."""

    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.zf, self.prefix = zf, prefix

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS:      # scripted modules' list attributes
            return _LIST_BUILDERS[name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageKind(_STORAGE_DTYPES[name])
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageKind) and isinstance(pid[4], int)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        kind, key, numel = pid[1], str(pid[2]), pid[4]
        raw = self.zf.read(f"{self.prefix}data/{key}")
        if len(raw) != numel * kind.dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {key} holds {len(raw)} bytes, its record says {numel} "
                                         f"x {kind.dtype}")
        flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return _Storage(kind.dtype, flat.untyped_storage())


def _module_tensors(obj: _ScriptObject, prefix: str = "") -> dict:
    """{dotted name: tensor} of every tensor attribute of a module object and of its submodules."""
    out = {}
    for k, v in (obj.state.items() if isinstance(getattr(obj, "state", None), dict) else ()):
        if isinstance(v, torch.Tensor):
            out[prefix + str(k)] = v
        elif isinstance(v, _ScriptObject):
            out.update(_module_tensors(v, f"{prefix}{k}."))
    return out


def torchscript_state_dict(path: Path) -> dict:
    """The parameters and buffers of a TorchScript archive's module, read from its data.pkl and data/ records
    without compiling or running any of its code (see _TorchScriptTensors). CheckpointError otherwise."""
    try:
        with zipfile.ZipFile(path) as zf:
            (pkl,) = [n for n in zf.namelist() if n.count("/") == 1 and n.endswith("/data.pkl")] or [None]
            if pkl is None:
                raise CheckpointError(f"{path}: TorchScript archive without data.pkl")
            root = _TorchScriptTensors(zf.read(pkl), zf, pkl[:-len("data.pkl")]).load()
    except CheckpointError:
        raise
    except Exception as e:     # a refused global, a missing or short record, a corrupt archive
        raise CheckpointError(f"{path}: cannot read the TorchScript file's weights as data ({first_line(e)}); "
                              "edge-ad never runs a model file's code") from None
    if not isinstance(root, _ScriptObject):
        raise CheckpointError(f"{path}: the TorchScript file's data.pkl holds no module")
    return _module_tensors(root)
