"""The new model directory calibration writes (never the original, which is never touched): the manifest is copied
with the preprocessing, the threshold, the grown memories' entries and a "calibration" record (source, frames
read / used / unreadable / unscorable / sensor faults by fault / skipped as labelled anomalous / duplicates, the
selection (spread over the source's length or every K-th: the frames selected and the ids used), date, target
rate, the source and the original model as given and resolved, its manifest's sha256, the key that signed it
when checked, and the original's own calibration record when it had one) updated, and the sha256 of every file
recomputed. The directory is written under a temporary name, verified as ``Scorer.load`` would, and renamed when
complete. A signature of the original does not cover the new manifest: the new directory is unsigned unless
signed with ``sign_key``."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Optional

from ..manifest import MANIFEST, load_manifest, sha256_file
from ..staging import make_stage, remove_stage
from .errors import CalibrationError
from .memories import SceneMemories


def check_out_dir(model_dir: Path, out_dir: Path) -> None:
    """CalibrationError unless ``out_dir`` can be the new directory: not the model directory ``model_dir``,
    not inside it, and new or empty (calibrated models are never overwritten)."""
    model, out = model_dir.resolve(), out_dir.resolve()
    if out == model:
        raise CalibrationError(f"--out {out_dir} is the model directory itself; calibration writes a NEW directory "
                               "and never changes the original")
    if model in out.parents:
        raise CalibrationError(f"--out {out_dir} is inside the model directory {model_dir}; calibration never "
                               "changes the original: choose a directory outside it")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise CalibrationError(f"--out {out_dir} already exists and is not empty; choose a new directory "
                               "(calibrated models are never overwritten)")


def signer_key_id(model_dir: Path):
    """The id of the key that signed ``model_dir`` (its manifest.sig's "key_id"; read once Scorer.load has
    verified the signature against the trusted keys)."""
    from ..signing import SIGNATURE
    return json.loads((model_dir / SIGNATURE).read_text()).get("key_id")


def provenance(model_dir: Path, signed_by, manifest: dict, source) -> dict:
    """The calibration record's fields on where it came from: the original model's directory as given
    ("from_model") and resolved ("from_model_resolved": a relative path names nothing once the model is copied
    elsewhere), its manifest's sha256, the key that signed it (``signed_by``; None when no signature was checked),
    the ``source`` resolved when it is a local path ("source_resolved": ``resolved_source``), and the calibration
    record the original already carried ("previous", nested: a model calibrated again still names the exported
    model it began from; absent for a first calibration)."""
    out = {"from_model": str(model_dir), "from_model_resolved": str(Path(model_dir).resolve()),
           "from_manifest_sha256": sha256_file(model_dir / MANIFEST), "from_signed_by": signed_by,
           "source_resolved": resolved_source(source)}
    if isinstance(manifest.get("calibration"), dict):
        out["previous"] = manifest["calibration"]
    return out


def resolved_source(source) -> Optional[str]:
    """``source`` with its local path made absolute: a path, or a folder:// / rosbag:// URI's path (its query
    kept); None for a camera or synth:// (no path) and for no source ("": frames passed as a list)."""
    text = str(source or "")
    for scheme in ("folder://", "rosbag://"):
        if text.startswith(scheme):
            path, sep, query = text[len(scheme):].partition("?")
            return f"{scheme}{Path(path).resolve()}{sep}{query}"
    if not text or "://" in text:
        return None
    return str(Path(text).resolve())


def calibrated_manifest(manifest: dict, spec, threshold: dict, memory_entries: dict, record: dict) -> dict:
    """A copy of the model's ``manifest`` with the scene's preprocessing ``spec``, the ``threshold`` entry,
    the grown memories' entries (``SceneMemories.manifest_entries``) and the "calibration" ``record``; its
    "files" are still the original's (``write_model_dir`` updates them)."""
    new = json.loads(json.dumps(manifest))   # manifest.sig (signing.py), not in "files", is not copied: the new
                                             # directory is unsigned or re-signed
    new["preprocess"] = spec.to_dict()
    new["threshold"] = threshold
    new.update(memory_entries)
    new["calibration"] = record
    return new


def write_model_dir(model_dir: Path, out_dir: Path, manifest: dict, new: dict, memories: SceneMemories,
                    sign_key=None, log=None) -> None:
    """Write ``out_dir``: the files of ``model_dir`` (as its ``manifest`` lists them) copied, the grown
    ``memories`` saved over theirs, the ``new`` manifest with every file's sha256 (``new["files"]`` updated),
    verified as Scorer.load would and signed with ``sign_key`` (a loaded private key) when given; under a
    temporary name (``.OUT.calibrating-PID`` with its owner record: runtime/staging.py, which first removes
    the staging directories killed runs left in the parent, one line each to ``log``), renamed when complete
    (removed on any error)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_stage(out_dir, "calibrating", log)
    try:
        for name in manifest["files"]:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_dir / name, tmp / name)
        written = memories.save(tmp)
        new["files"] = {**manifest["files"], **written}          # copies of verified files; only the memories changed
        (tmp / MANIFEST).write_text(json.dumps(new, indent=1) + "\n")
        load_manifest(tmp, verify=True)
        if sign_key is not None:
            from ..signing import sign_model
            sign_model(tmp, sign_key)                 # manifest.sig of the new manifest
        install(tmp, out_dir)
    finally:
        remove_stage(tmp)                             # renamed away unless something failed; then its record


def install(tmp: Path, out_dir: Path) -> None:
    """Rename the finished directory ``tmp`` to ``out_dir`` (new, or empty: removed first). CalibrationError
    when another run wrote ``out_dir`` meanwhile (two calibrates into one new --out: the later one is refused,
    the first's model is kept)."""
    try:
        try:
            out_dir.rmdir()                   # empty (check_out_dir), unless another run filled it since
        except FileNotFoundError:
            pass
        os.replace(tmp, out_dir)
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise CalibrationError(f"--out {out_dir} was written by another run while this one calibrated; "
                                   "calibrated models are never overwritten: choose a new directory") from None
        raise
