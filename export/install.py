"""Where an export is written: the output directory's safety checks and the atomic install (pure Python:
no torch, no onnx, so calibrate and other torch-free callers can use it).

The export is built in a hidden sibling of ``out_dir`` (``.<name>.export-<hex>``, with its owner record beside
it: runtime/staging.py, which also removes the ones killed exports left) and moved into place
only when it is complete and its parity check passed (``build_and_install``); an earlier export in
``out_dir`` is swapped out in one step (Linux renameat2 RENAME_EXCHANGE; elsewhere two renames) and
deleted, so a model directory is always either the old working export or the new one. A failed parity
check leaves ``out_dir`` unchanged and keeps the failed export, with its report, in ``<out_dir>.failed``
(``keep_failed_export``). A non-empty ``out_dir`` that holds anything but an earlier export's files is
refused (``check_out_dir``): nothing of the user's is deleted.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Callable, Optional, TypeVar

from edge_ad.runtime.manifest import MANIFEST
from edge_ad.runtime.signing import SIGNATURE
from edge_ad.runtime.staging import make_stage, remove_stage

from .errors import ExportError, ParityFailed

T = TypeVar("T")

# what an earlier export may hold: replacing the directory deletes these and nothing else
EXPORT_SUFFIXES = (".onnx", ".onnx.data", ".npy", ".npz")
EXPORT_NAMES = {MANIFEST, MANIFEST + ".tmp", "engines"}


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``out_dir`` the export must not replace: a file, a non-empty directory holding
    anything but an earlier export's files (ExportError naming them), or a model ``edge-ad calibrate``
    wrote (its manifest's "calibration": the scene's bank and threshold, which only that scene's frames
    rebuild)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"--out {out_dir} is a file, not a directory")
    if not out_dir.is_dir():
        return
    names = {p.name for p in out_dir.iterdir()}
    if not names:
        return
    if MANIFEST not in names:
        raise ExportError(f"--out {out_dir} is not empty and holds no export ({MANIFEST}); choose a new or "
                          f"empty directory (it holds e.g. {', '.join(sorted(names)[:5])})")
    listed, earlier = set(), {}
    try:
        earlier = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
        listed = set(earlier.get("files", {}))
    except (OSError, ValueError, AttributeError, TypeError):
        pass   # a broken earlier export: its files are still recognised by their kind
    calibrated = earlier.get("calibration") if isinstance(earlier, dict) else None
    if calibrated is not None:
        said = calibrated if isinstance(calibrated, dict) else {}
        raise ExportError(f"--out {out_dir} holds a model calibrated by edge-ad calibrate on "
                          f"{said.get('source') or 'a scene'} ({said.get('date') or 'date not recorded'}); an "
                          "export never replaces it (its scene's bank and threshold are rebuilt only from that "
                          "scene's frames): choose another --out")
    other = sorted(n for n in names - listed - EXPORT_NAMES - {SIGNATURE}
                   if not n.endswith(EXPORT_SUFFIXES))
    if other:
        raise ExportError(f"--out {out_dir} holds files that are not part of its export: {', '.join(other[:5])}"
                          f"{' ...' if len(other) > 5 else ''}; replacing the export would delete them. Move "
                          "them away or choose another --out")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    AT_FDCWD, RENAME_EXCHANGE = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):   # this kernel or filesystem cannot
        return False
    raise OSError(err, os.strerror(err), str(b))


def _is_working_dir(d: Path) -> bool:
    try:
        return os.path.samefile(d, os.getcwd())
    except OSError:
        return False


def install_in_place(stage: Path, out_dir: Path) -> None:
    """install_export for the working directory itself (``--out .``): renaming a directory onto it would
    leave the shell that ran the export in a deleted directory, so its entries are replaced one by one.
    The earlier manifest goes first and the new one comes last: in between the directory holds no export
    (the runtime refuses it), never a mix of the two."""
    for name in (MANIFEST, SIGNATURE):
        if (out_dir / name).exists():
            os.unlink(out_dir / name)
    new = {p.name for p in stage.iterdir()}
    for p in out_dir.iterdir():         # the earlier export's other files (check_out_dir: nothing else)
        if p.name not in new:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else os.unlink(p)
    for p in sorted(stage.iterdir(), key=lambda p: (p.name == MANIFEST, p.name == SIGNATURE, p.name)):  # manifest last
        target = out_dir / p.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(p, target)
    stage.rmdir()


def install_export(stage: Path, out_dir: Path) -> None:
    """Move the finished export ``stage`` to ``out_dir``: a new or empty ``out_dir`` is renamed onto,
    an earlier export is swapped out in one step and then deleted (the working directory: install_in_place)."""
    if _is_working_dir(out_dir):
        install_in_place(stage, out_dir)
        return
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if _exchange(stage, out_dir):
            shutil.rmtree(stage)                      # now the earlier export
            return
        old = out_dir.with_name(f".{out_dir.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(out_dir, old)
        os.rename(stage, out_dir)
        shutil.rmtree(old)
        return
    if out_dir.is_dir():
        out_dir.rmdir()
    os.rename(stage, out_dir)


def keep_failed_export(stage: Path, out_dir: Path) -> Path:
    """Move a failed export ``stage`` to ``<out_dir>.failed`` and return where it went. An earlier failed
    export there is replaced; anything else there (a file, a directory holding other files: the user's)
    is kept, and the failure goes to ``<out_dir>.failed-2``, ``-3``, ... instead."""
    failed = out_dir.with_name(out_dir.name + ".failed")
    n = 1
    while True:
        if failed.is_dir() and not failed.is_symlink():
            try:
                check_out_dir(failed)   # only an earlier export's files (or nothing) in it
            except ExportError:
                pass
            else:
                shutil.rmtree(failed)
        if not os.path.lexists(failed):
            try:
                os.rename(stage, failed)
                return failed
            except FileExistsError:   # made meanwhile: try the next name
                pass
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise ExportError(f"could not keep the failed export in {failed}: {e}") from None
        n += 1
        failed = out_dir.with_name(f"{out_dir.name}.failed-{n}")


def build_and_install(out_dir: os.PathLike, build: Callable[[Path], T],
                      log: Optional[Callable[[str], None]] = None) -> T:
    """Run ``build(stage)`` in a new hidden sibling ``stage`` of ``out_dir`` and install the result in
    ``out_dir`` (install_export); returns what ``build`` returned. ``out_dir`` is checked first
    (check_out_dir); a symlink is followed (the directory it points to is replaced, the link kept). When
    ``build`` raises ParityFailed, ``out_dir`` is left unchanged, the failed export is kept
    (keep_failed_export) and ExportError says where; any other error removes the stage. Staging
    directories that killed exports or calibrates left in the parent are removed first (runtime/staging.py;
    one line each to ``log``)."""
    out_dir = Path(os.path.abspath(out_dir))   # "." and ".." have no name to put the staging dir beside
    if out_dir.is_symlink():
        out_dir = out_dir.resolve()    # replace the directory the link points to, keep the link
    check_out_dir(out_dir)
    earlier = _earlier_export(out_dir)           # said once the new one is in place
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = make_stage(out_dir, "export", log)      # with its owner record, after sweeping stale ones
    try:
        try:
            result = build(stage)
        except ParityFailed as e:
            failed = keep_failed_export(stage, out_dir)
            raise ExportError(f"export parity check FAILED: {e}; {out_dir} was not changed; the failed export "
                              f"and its report: {failed / MANIFEST}") from None
        except OSError as e:
            if e.filename is not None:
                raise
            # a write that names no file (numpy's savez through zipfile, onnx): say where, and what is left
            free = shutil.disk_usage(out_dir.parent).free / 1e6
            raise OSError(e.errno, f"{e.strerror or e} while the export was written beside it ({free:.1f} MB free "
                                   f"in {out_dir.parent}); {out_dir} was not changed", str(out_dir)) from None
        install_export(stage, out_dir)
    finally:
        remove_stage(stage)            # the stage is gone already unless something failed; then its record
    if earlier is not None and log is not None:
        log(replaced_text(out_dir, earlier, result if isinstance(result, dict) else {}))
    return result


def _earlier_export(out_dir: Path):
    """The manifest of the export ``out_dir`` holds (check_out_dir let it be replaced), or None."""
    try:
        man = json.loads((out_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return man if isinstance(man, dict) else None


def replaced_text(out_dir: Path, old: dict, new: dict) -> str:
    """The line an export says after replacing the earlier export ``old`` (manifest) in ``out_dir`` with ``new``:
    what the earlier one was (class, checkpoint file and sha256, configuration, date), and a note when it came
    from another checkpoint or class."""
    def what(m: dict) -> str:
        src = m.get("source") if isinstance(m.get("source"), dict) else {}
        sha = src.get("sha256")
        return (f"class {m.get('train_class') or 'not recorded'}, from {src.get('file') or 'an unnamed checkpoint'}"
                f"{f' (sha256 {sha[:12]}...)' if isinstance(sha, str) else ''}, configuration "
                f"{(m.get('search') or {}).get('name') if isinstance(m.get('search'), dict) else None!r}, made "
                f"{m.get('created') or 'at a time not recorded'}")
    line = f"replaced the earlier export in {out_dir} ({what(old)})"
    old_src, new_src = (m.get("source") if isinstance(m.get("source"), dict) else {} for m in (old, new))
    if new and (old_src.get("sha256") != new_src.get("sha256") or old.get("train_class") != new.get("train_class")):
        line += (f"; note: it was a model of another checkpoint (class {old.get('train_class') or 'not recorded'}, "
                 f"{old_src.get('file')}); it is now class {new.get('train_class') or 'not recorded'}, "
                 f"{new_src.get('file')}")
    return line
