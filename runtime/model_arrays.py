"""Reading a model's NumPy files (weights.npz, head_consts.npy, latent_bank.npy) safely.

Each array's .npy header (dtype, shape) is checked against what the manifest says BEFORE anything
is allocated: a header declaring a huge shape, a wrong dtype, a truncated file or a truncated zip
archive is refused with one line naming the file (ManifestError), never a MemoryError or a
traceback. No pickles; files are opened as runtime/integrity.py requires (no symlinks).
"""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from typing import Optional, Sequence

import numpy as np

from .integrity import open_model_file
from .manifest import ManifestError

_FORMAT = np.lib.format


def _read_checked(f, where: str, shape: tuple, dtype, size: int, said_by: str) -> np.ndarray:
    """One .npy stream of ``size`` bytes (header + data) -> array, refused unless its header says
    ``dtype`` ``shape`` and the stream holds that many data bytes (checked before allocating). ``said_by``:
    the file and field that gave ``shape`` (named in the refusal beside ``where``, the array's file)."""
    version = _FORMAT.read_magic(f)
    if version == (1, 0):
        got_shape, fortran, got_dtype = _FORMAT.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        got_shape, fortran, got_dtype = _FORMAT.read_array_header_2_0(f)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    want = np.dtype(dtype)
    if got_dtype != want or tuple(got_shape) != tuple(shape):
        raise ManifestError(f"{where} holds {got_dtype} {tuple(got_shape)}, expected {want} {tuple(shape)} "
                            f"({said_by})")
    if got_dtype.hasobject:
        raise ManifestError(f"{where} holds Python objects")
    n = want.itemsize
    for d in shape:
        n *= int(d)
    if n > size - f.tell():
        raise ManifestError(f"{where} is truncated: its header declares {n} data bytes, the file holds "
                            f"{max(size - f.tell(), 0)}")
    arr = np.empty(shape[::-1] if fortran else shape, dtype=want)
    view = memoryview(arr.reshape(-1)).cast("B") if arr.nbytes else memoryview(bytearray())
    got = 0
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise ManifestError(f"{where} is truncated ({got} of {n} data bytes)")
        got += k
    return arr.T if fortran else arr


class _Hashing:
    """A binary file read through, hashing (sha256) every byte it hands out."""

    def __init__(self, f):
        self.f, self.h = f, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(n)
        self.h.update(data)
        return data

    def readinto(self, view) -> int:
        k = self.f.readinto(view)
        if k:
            self.h.update(view[:k])
        return k

    def tell(self) -> int:
        return self.f.tell()


def load_npy(model_dir: os.PathLike, name: str, shape: Sequence[int], dtype=np.float32,
             sha256: Optional[str] = None, said_by: str = "manifest.json") -> np.ndarray:
    """``model_dir/name`` (.npy) as an array of exactly ``shape`` and ``dtype``; ManifestError otherwise,
    naming the file, both shapes and ``said_by`` (where ``shape`` comes from, e.g. "manifest.json: latent_bank.shape").
    ``sha256`` (the manifest's hex digest of the file): the array is parsed from the very bytes hashed, one
    read, and refused (ManifestError naming the file) unless the whole file has that digest: a file changed
    after the model was verified (e.g. while calibrate read a scene) is never used."""
    where = f"{model_dir}: {name}"
    try:
        with open_model_file(model_dir, name) as f:
            src = f if sha256 is None else _Hashing(f)
            arr = _read_checked(src, where, tuple(shape), dtype, os.fstat(f.fileno()).st_size, said_by)
            if sha256 is not None:
                while src.read(1 << 20):             # the bytes after the array count too
                    pass
                actual = src.h.hexdigest()
                if actual != sha256:
                    raise ManifestError(f"{model_dir}: {name} has been modified since the model was verified "
                                        f"(sha256 {actual[:16]}..., manifest says {sha256[:16]}...)")
            return arr
    except (OSError, ValueError, EOFError) as e:
        if isinstance(e, ManifestError):
            raise
        raise ManifestError(f"{where} is not a readable .npy file ({e})") from None


def load_npz(model_dir: os.PathLike, name: str, shapes: dict, dtype=np.float32,
             said_by: str = "manifest.json") -> dict:
    """The arrays ``shapes`` names ({array name: shape}) from ``model_dir/name`` (.npz), each checked
    against its shape and ``dtype`` before it is read; other members are not read. ManifestError for a
    missing member, a mismatch (naming the member, both shapes and ``said_by``, where the shapes come
    from), or a truncated/corrupt archive."""
    where = f"{model_dir}: {name}"
    try:
        with open_model_file(model_dir, name) as f, zipfile.ZipFile(f) as zf:
            members = set(zf.namelist())
            missing = sorted(n for n in shapes if f"{n}.npy" not in members)
            if missing:
                raise ManifestError(f"{where} lacks {len(missing)} of the {len(shapes)} arrays {said_by} names: "
                                    f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
            out = {}
            for n, shape in shapes.items():
                info = zf.getinfo(f"{n}.npy")
                with zf.open(info) as member:
                    out[n] = _read_checked(member, f"{where}[{n}]", tuple(shape), dtype, info.file_size, said_by)
            return out
    except ManifestError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise ManifestError(f"{where} is truncated or corrupt ({e})") from None
