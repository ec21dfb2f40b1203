"""``manifest.json`` of an exported model directory: reading it and refusing anything tampered.

Torch-free. The exporter (``edge_ad.export.exporter``) writes it; ``Scorer.load`` reads it through
``load_manifest``, which checks the format version, the type and bounds of every entry the runtime
reads (``validate_manifest``), the sha256 of every file (runtime/integrity.py) and, given trusted
keys, the manifest's signature (runtime/signing.py).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Optional

from .latent_memory import original_rows, rows_per_frame_of

FORMAT = "edge-ad-model"
VERSION = 1
MANIFEST = "manifest.json"


class ManifestError(ValueError):
    """A model directory that is missing, tampered with, or of an unsupported format."""


class DuplicateKeyError(ValueError):
    """A JSON object names a key twice (``loads_unique``)."""


def loads_unique(text):
    """``json.loads`` refusing a key named twice in one object (json.loads keeps the last silently, so a reader
    of the file and the runtime could see two values): DuplicateKeyError "duplicate key 'k' at the top level"
    or "... in 'search'" (the object's key in its parent; "in an object with keys 'a', 'b'" deeper down)."""
    def unique(pairs):
        seen = {}
        for k, v in pairs:
            if k in seen:
                raise DuplicateKeyError(k, list(seen))
            seen[k] = v
        return seen
    try:
        return json.loads(text, object_pairs_hook=unique)
    except DuplicateKeyError as e:
        key, keys = e.args
        raise DuplicateKeyError(f"duplicate key {key!r} {_object_named(text, keys)}: a key named twice means two "
                                "things (json readers keep the last, people and some tools the first)") from None


def _object_named(text, keys: list) -> str:
    """Where the object whose first keys are ``keys`` sits in the JSON ``text`` (for DuplicateKeyError)."""
    try:
        top = json.loads(text)            # last-wins: the duplicate's object is still found by its other keys
    except ValueError:
        top = None
    if isinstance(top, dict) and set(keys) <= set(top) and (not keys or list(top)[:len(keys)] == keys):
        return "at the top level"
    for name, value in (top.items() if isinstance(top, dict) else ()):
        if isinstance(value, dict) and list(value)[:len(keys)] == keys:
            return f"in {name!r}"
    return f"in an object with keys {', '.join(map(repr, keys[:4]))}"


def sha256_stream(f, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of everything left in the binary file object ``f``, read in ``bufsize`` blocks."""
    h = hashlib.sha256()
    for block in iter(lambda: f.read(bufsize), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: os.PathLike, bufsize: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return sha256_stream(f, bufsize)


# Bounds on what a manifest may ask the runtime to allocate (a malformed or hostile manifest is
# refused with one line instead of a std::bad_alloc or a MemoryError deep inside a backend). The
# reference configuration uses n_seed 3, k 19, z_dim 100, resolution 64, 3.6 M weights per seed.
MAX_N_SEED = 64
MAX_K = 1000
MAX_Z_DIM = 4096
MAX_RESOLUTION = 1024
MAX_CHANNELS = 16
MAX_STATE_FLOATS = 1 << 28          # all weight copies together (n_seed x per-seed state): 1 GiB of float32
MAX_BANK_FLOATS = 1 << 27           # latent bank (N x z_dim): 512 MiB of float32
DTYPES = ("float32", "float16", "float64")
_HEX = set("0123456789abcdef")


def _bad(where, entry: str, problem: str) -> ManifestError:
    return ManifestError(f"{where}: {entry} {problem}")


def _int(v, where, entry: str, lo: int, hi: int) -> int:
    """v must be an int (not a bool, not text, not 0.5) in [lo, hi]."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(where, entry, f"must be an integer, got {v!r}")
    if not lo <= v <= hi:
        raise _bad(where, entry, f"must be in [{lo}, {hi}], got {v}")
    return v


def _dict(v, where, entry: str) -> dict:
    if not isinstance(v, dict):
        raise _bad(where, entry, f"must be an object, got {type(v).__name__}")
    return v


def _typed_fields(d: dict, cls, where, entry: str) -> None:
    """Each key of d that is a field of dataclass ``cls`` has its default's type: int (not bool),
    float (int or float, finite), bool, str, or a list/tuple. Ranges are the dataclass's own checks."""
    fields = cls.__dataclass_fields__
    for key, value in d.items():
        f = fields.get(key)
        if f is None:
            continue            # unknown keys: the dataclass's from_dict names them
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, (list, tuple)):
            ok = isinstance(value, (list, tuple))
        else:
            ok = True
        if not ok:
            raise _bad(where, f"{entry}.{key}", f"must be {type(default).__name__}"
                       f"{' (finite)' if isinstance(default, float) else ''}, got {value!r}")


def _shape(v, where, entry: str, ndim=None) -> tuple:
    if not isinstance(v, list) or not v or (ndim is not None and len(v) != ndim):
        raise _bad(where, entry, f"must be a list of {ndim or 'one or more'} dimensions, got {v!r}")
    return tuple(_int(d, where, f"{entry}[{i}]", 1, 1 << 31) for i, d in enumerate(v))


def threshold_rate_problem(threshold: dict):
    """Why a threshold's ``target_fpr`` (the false-alarm rate it was calibrated at; optional) is not a rate in
    (0, 1), e.g. "must be a false-alarm rate in (0, 1), got 2.0"; None when it is one or absent. The one check of
    a manifest's, a checkpoint's and an exported threshold's rate."""
    rate = threshold.get("target_fpr")
    if rate is None or (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 < rate < 1):
        return None
    return f"must be a false-alarm rate in (0, 1), got {rate!r}"


def validate_manifest(man: dict, where) -> None:
    """Schema check of a parsed manifest: the type and bounds of every entry the runtime reads, and
    that every file it points to has a sha256 entry. Raises ManifestError naming the entry."""
    files = _checked_files(man["files"], where)
    _check_graphs(man["graphs"], files, where)
    lay = _dict(man["layout"], where, "'layout'")
    n_seed, z_dim = _checked_layout(lay, files, where)
    _check_search(man["search"], n_seed, where)
    _check_preprocess(man["preprocess"], lay["resolution"], where)
    _check_model_card(man, lay, where)
    thr = man.get("threshold")
    if thr is not None:
        value = _dict(thr, where, "'threshold'").get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise _bad(where, "threshold.value", f"must be a finite number > 0 (scores are >= 0), got {value!r}")
        if threshold_rate_problem(thr):
            raise _bad(where, "threshold.target_fpr", threshold_rate_problem(thr))
        n_normal = thr.get("n_normal")
        if n_normal is not None and (isinstance(n_normal, bool) or not isinstance(n_normal, int) or n_normal < 1):
            raise _bad(where, "threshold.n_normal", f"must be a count of normal frames >= 1 (or null: not recorded), "
                       f"got {n_normal!r}")
    bank = man.get("latent_bank")
    if bank is not None:
        _check_latent_bank_entry(bank, files, z_dim, where)
    pixels = man.get("pixel_memory")
    if pixels is not None:
        _check_pixel_memory_entry(pixels, files, lay["resolution"], where)
    silhouette = man.get("silhouette")
    if silhouette is not None:
        _check_silhouette_entry(silhouette, files, z_dim, lay["resolution"], where)
    parity = man.get("parity")
    if parity is not None and not isinstance(parity, dict):
        raise _bad(where, "'parity'", f"must be an object or null, got {type(parity).__name__}")


def _check_model_card(man: dict, lay: dict, where) -> None:
    """The manifest's descriptive entries, which integrators read (the runtime reads the layout, the graphs
    and the arrays): ``model``'s z_dim / channels / resolution equal the layout's, ``latent_bank.dtype`` the
    bank file's float32, every ``variants`` key a variant of runtime/variants.py (or one it names as removed),
    ``targets`` a list of its TARGETS."""
    from .variants import REMOVED, TARGETS, VARIANTS
    model = _dict(man["model"], where, "'model'")
    for key in ("z_dim", "channels", "resolution"):
        if key in model and model[key] != lay[key]:
            raise _bad(where, f"model.{key}", f"{model[key]!r} differs from layout.{key} {lay[key]}")
    bank = man.get("latent_bank")
    if isinstance(bank, dict) and bank.get("dtype", "float32") != "float32":
        raise _bad(where, "latent_bank.dtype", f"must be 'float32' (the bank file's), got {bank.get('dtype')!r}")
    for name in _dict(man.get("variants", {}), where, "'variants'"):
        if name not in VARIANTS and name not in REMOVED:
            raise _bad(where, f"variants[{name!r}]", f"is not a search variant of this runtime "
                       f"({', '.join(VARIANTS)})")
    targets = man.get("targets", list(TARGETS))
    if not isinstance(targets, list) or not set(targets) <= set(TARGETS):
        raise _bad(where, "targets", f"must be a list of {', '.join(map(repr, TARGETS))}, got {targets!r}")


def _checked_files(files, where) -> dict:
    """The manifest's ``files`` ({file name: sha256 hex}): a non-empty object of safe names
    (integrity.check_name) and 64-digit lowercase hex digests."""
    from .integrity import check_name
    files = _dict(files, where, "'files'")
    if not files:
        raise _bad(where, "'files'", "is empty")
    for name, digest in files.items():
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise _bad(where, f"'files'[{name!r}]", "must be a 64-digit lowercase hex sha256")
        try:
            check_name(name)
        except ManifestError as e:
            raise ManifestError(f"{where}: {e}") from None
    return files


def _check_graphs(graphs, files: dict, where) -> None:
    """The manifest's ``graphs`` ({name: {file, k, n_seed, state, inputs, outputs, head}}): a non-empty
    object whose graph files (and host-head constants) are among the checksummed ``files``."""
    graphs = _dict(graphs, where, "'graphs'")
    if not graphs:
        raise _bad(where, "'graphs'", "is empty")
    for gname, g in graphs.items():
        _dict(g, where, f"graphs[{gname!r}]")
        if not isinstance(g.get("file"), str):
            raise _bad(where, f"graphs[{gname!r}].file", f"must be a file name, got {g.get('file')!r}")
        if g["file"] not in files:
            raise ManifestError(f"{where}: graph file {g['file']} has no sha256 entry")
        if "k" in g:
            _int(g["k"], where, f"graphs[{gname!r}].k", 0, MAX_K)
        if "n_seed" in g:
            _int(g["n_seed"], where, f"graphs[{gname!r}].n_seed", 1, MAX_N_SEED)
        for key in ("state", "inputs", "outputs"):
            if key in g and not isinstance(g[key], (list, dict)):
                raise _bad(where, f"graphs[{gname!r}].{key}", f"must be a list, got {type(g[key]).__name__}")
        head = g.get("head")
        if head is not None and (not isinstance(head, dict) or not isinstance(head.get("consts"), str)
                                 or head["consts"] not in files):
            raise _bad(where, f"graphs[{gname!r}].head.consts", f"{(head or {}).get('consts')!r} is not among the "
                       "manifest's checksummed files")


def _checked_layout(lay: dict, files: dict, where) -> tuple:
    """(n_seed, z_dim) of the manifest's ``layout`` after checking it: sizes in bounds, a known dtype, a
    checksummed weights file, and weight-copy ``state`` entries stacked for n_seed, MAX_STATE_FLOATS
    weights at most in all."""
    n_seed = _int(lay.get("n_seed"), where, "layout.n_seed", 1, MAX_N_SEED)
    z_dim = _int(lay.get("z_dim"), where, "layout.z_dim", 1, MAX_Z_DIM)
    _int(lay.get("channels"), where, "layout.channels", 1, MAX_CHANNELS)
    _int(lay.get("resolution"), where, "layout.resolution", 8, MAX_RESOLUTION)
    if lay.get("dtype", "float32") not in DTYPES:
        raise _bad(where, "layout.dtype", f"must be one of {DTYPES}, got {lay.get('dtype')!r}")
    if lay.get("weights") not in files:
        raise ManifestError(f"{where}: weights file has no sha256 entry")
    state = lay.get("state")
    if not isinstance(state, list) or not state:
        raise _bad(where, "layout.state", f"must be a non-empty list, got {type(state).__name__}")
    total = 0
    for i, st in enumerate(state):
        _dict(st, where, f"layout.state[{i}]")
        if not isinstance(st.get("name"), str) or not isinstance(st.get("param", ""), str):
            raise _bad(where, f"layout.state[{i}]", "needs a 'name' and a 'param' (text)")
        shape = _shape(st.get("shape"), where, f"layout.state[{i}].shape")   # (n_seed, *one copy's shape)
        if shape[0] != n_seed:
            raise _bad(where, f"layout.state[{i}].shape", f"{list(shape)} is not stacked for n_seed={n_seed}")
        n = 1
        for d in shape:
            n *= d
        total += n
    if total > MAX_STATE_FLOATS:
        raise _bad(where, "layout.state", f"holds {total} weights in all, more than this runtime allows "
                   f"({MAX_STATE_FLOATS})")
    return n_seed, z_dim


def _check_search(search, n_seed: int, where) -> None:
    """The manifest's ``search``: typed SearchConfig fields, n_seed and k in bounds, a valid configuration."""
    from .config import SearchConfig
    search = _dict(search, where, "'search'")
    _typed_fields(search, SearchConfig, where, "search")
    _int(search.get("n_seed", n_seed), where, "search.n_seed", 1, MAX_N_SEED)
    _int(search.get("k", 0), where, "search.k", 0, MAX_K)
    try:
        SearchConfig.from_dict(search)
    except (TypeError, ValueError) as e:
        raise _bad(where, "'search'", f"is not a valid search configuration ({e})") from None


def _check_preprocess(pre, resolution: int, where) -> None:
    """The manifest's ``preprocess``: typed PreprocessSpec fields, a valid preprocessing, at the layout's
    ``resolution``."""
    from .preprocess import PreprocessSpec
    pre = _dict(pre, where, "'preprocess'")
    _typed_fields(pre, PreprocessSpec, where, "preprocess")
    try:
        spec = PreprocessSpec.from_dict(pre)
    except (TypeError, ValueError) as e:
        raise _bad(where, "'preprocess'", f"is not a valid preprocessing ({e})") from None
    if spec.resolution != resolution:
        raise _bad(where, "preprocess.resolution", f"{spec.resolution} differs from layout.resolution "
                   f"{resolution}")


def _check_latent_bank_entry(bank, files: dict, z_dim: int, where) -> None:
    """The manifest's ``latent_bank`` ({file, shape, augment}): a checksummed file of shape (N, z_dim),
    MAX_BANK_FLOATS floats at most, whose N rows fit the augment list's frame-major layout."""
    _dict(bank, where, "'latent_bank'")
    if bank.get("file") not in files:
        raise _bad(where, "latent_bank.file", f"{bank.get('file')!r} is not among the manifest's checksummed files")
    rows, cols = _shape(bank.get("shape"), where, "latent_bank.shape", ndim=2)
    if cols != z_dim or rows * cols > MAX_BANK_FLOATS:
        raise _bad(where, "latent_bank.shape", f"must be [N, z_dim={z_dim}] with N * z_dim <= "
                   f"{MAX_BANK_FLOATS}, got {[rows, cols]}")
    try:   # frame-major rows: each normal frame, then its augmented copies (latent_memory.original_rows)
        original_rows(rows, rows_per_frame_of(bank.get("augment")))
    except ValueError as e:
        raise _bad(where, "latent_bank.augment", f"{e} (augment {bank.get('augment')!r})") from None


def _check_silhouette_entry(entry, files: dict, z_dim: int, resolution: int, where) -> None:
    """The manifest's "silhouette" entry (the silhouette lever's paired rows, runtime/silhouette.py): ``bank`` a
    checksummed file of shape ``bank_shape`` [2 N, z_dim] (N = ``n_frames``: the opened frame and its mirror per
    training frame), and where present ``pixels`` a checksummed file of ``pixels_shape`` [N, R, R, 4] uint8 frames
    with ``pixels_augment`` valid nuisance texts. Raises ManifestError naming the entry."""
    from .pixel_memory import MAX_PIXEL_FRAMES, check_pixel_augment
    _dict(entry, where, "'silhouette'")
    if entry.get("bank") not in files:
        raise _bad(where, "silhouette.bank", f"{entry.get('bank')!r} is not among the manifest's checksummed files")
    rows, cols = _shape(entry.get("bank_shape"), where, "silhouette.bank_shape", ndim=2)
    n = _int(entry.get("n_frames"), where, "silhouette.n_frames", 1, MAX_PIXEL_FRAMES)
    if cols != z_dim or rows != 2 * n or rows * cols > MAX_BANK_FLOATS:
        raise _bad(where, "silhouette.bank_shape", f"must be [2 * n_frames = {2 * n}, z_dim={z_dim}] (the opened frame "
                   f"and its mirror per training frame) with at most {MAX_BANK_FLOATS} floats, got {[rows, cols]}")
    if entry.get("pixels") is not None:
        if entry["pixels"] not in files:
            raise _bad(where, "silhouette.pixels", f"{entry['pixels']!r} is not among the manifest's checksummed files")
        shape = _shape(entry.get("pixels_shape"), where, "silhouette.pixels_shape", ndim=4)
        if shape != (n, resolution, resolution, 4):
            raise _bad(where, "silhouette.pixels_shape", f"must be [n_frames={n}, R, R, 4] at the model's resolution "
                       f"R = {resolution}, got {list(shape)}")
        try:
            check_pixel_augment(entry.get("pixels_augment"))
        except ValueError as e:
            raise _bad(where, "silhouette.pixels_augment", str(e)) from None


def _check_pixel_memory_entry(entry, files: dict, resolution: int, where) -> None:
    """The manifest's "pixel_memory" entry (runtime/pixel_memory.py): a checksummed file of uint8 frames
    (N, R, R, 4) at the model's resolution, N <= MAX_PIXEL_FRAMES, and augment a list of valid nuisance
    texts; the rows they expand into within MAX_PIXEL_BYTES. Raises ManifestError naming the entry."""
    from .pixel_memory import MAX_PIXEL_FRAMES, check_pixel_augment, check_pixel_memory_size
    _dict(entry, where, "'pixel_memory'")
    if entry.get("file") not in files:
        raise _bad(where, "pixel_memory.file", f"{entry.get('file')!r} is not among the manifest's checksummed files")
    shape = _shape(entry.get("shape"), where, "pixel_memory.shape", ndim=4)
    if shape[1:] != (resolution, resolution, 4) or shape[0] > MAX_PIXEL_FRAMES:
        raise _bad(where, "pixel_memory.shape", f"must be [N, R, R, 4] frames at the model's resolution R = "
                   f"{resolution}, N <= {MAX_PIXEL_FRAMES}, got {list(shape)}")
    if entry.get("dtype", "uint8") != "uint8":
        raise _bad(where, "pixel_memory.dtype", f"must be 'uint8' (frames as frame_to_uint8 gives them), got "
                   f"{entry.get('dtype')!r}")
    try:
        augment = check_pixel_augment(entry.get("augment"))
    except ValueError as e:
        raise _bad(where, "pixel_memory.augment", str(e)) from None
    try:
        check_pixel_memory_size(shape[0], resolution, len(augment))
    except ValueError as e:
        raise _bad(where, "pixel_memory.shape", str(e)) from None


def parity_note(man: dict) -> Optional[str]:
    """What to say about a model whose search was not shown to match the PyTorch reference: its manifest's
    "parity" is skipped (--no-parity: "passed" null) or failed, or passed with the silhouette lever off (a lever
    model exported before the lever's own parity row: its combined score was never compared); None when it passed
    (or predates the record)."""
    parity = man.get("parity")
    if isinstance(parity, dict) and parity.get("passed") is True and "silhouette" not in parity \
            and (man.get("search") or {}).get("silhouette_versions_weight", 0) > 0:
        return ("parity checked with the silhouette lever OFF: the graphs match the PyTorch reference, but the "
                "lever's combined score (the least over each frame's versions) was never compared with it; export "
                "the checkpoint again for that row")
    if not isinstance(parity, dict) or parity.get("passed") is True:
        return None
    if parity.get("passed") is None:
        return ("parity NOT checked (exported with --no-parity): this model's scores were never compared with the "
                "PyTorch reference")
    return f"parity check FAILED: {parity.get('summary') or 'see manifest.json parity'}"


def not_a_model_dir(path: Path) -> str:
    """Why ``path``, not a directory, is no model directory (``load_manifest``'s and the CLI's --model check's
    line): not found, or a file: the manifest itself (give its folder), a training checkpoint (export it
    first), any other file (a model is the folder ``edge-ad export`` writes)."""
    if not path.exists():
        return f"model directory not found: {path}"
    if path.name == MANIFEST:
        return f"{path} is the model's manifest, not its directory: give its folder, {path.parent}"
    if path.suffix in (".pt", ".pth", ".ckpt"):
        return (f"{path} is a file, not an exported model directory; export a checkpoint first: edge-ad export {path} "
                "--out DIR, then --model DIR (Python: Scorer.load(DIR))")
    return (f"{path} is a file, not an exported model directory (the folder `edge-ad export CHECKPOINT --out DIR` "
            "writes: manifest.json, the .onnx graphs, weights.npz)")


def load_manifest(model_dir: os.PathLike, verify: bool = True, trusted_keys=None) -> dict:
    """Read and validate ``model_dir/manifest.json``; with ``verify``, check every file's sha256 (no
    symlinks, ONNX external data listed too: runtime/integrity.py); with ``trusted_keys``, check the
    manifest's signature first (runtime/signing.py: the manifest holds every file's sha256).

    Raises ManifestError naming the problem (missing directory/manifest/file, malformed entry, hash
    mismatch, bad signature, unsupported version, failed export parity).
    """
    from . import integrity
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ManifestError(not_a_model_dir(model_dir))
    mpath = model_dir / MANIFEST
    if not os.path.lexists(mpath):
        raise ManifestError(f"{model_dir} is not an exported edge-ad model: {MANIFEST} missing "
                            "(create one with `edge-ad export CHECKPOINT --out DIR`)")
    raw = integrity.read_model_file(model_dir, MANIFEST)        # the bytes verified are the bytes parsed
    if trusted_keys is not None:
        from .signing import verify_manifest_signature
        verify_manifest_signature(model_dir, raw, trusted_keys)
    try:
        man = loads_unique(raw)
    except DuplicateKeyError as e:
        raise ManifestError(f"{mpath}: {e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{mpath}: not valid JSON ({e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise ManifestError(f"{mpath}: not an edge-ad model manifest (format {man.get('format') if isinstance(man, dict) else None!r})")
    if man.get("version") != VERSION:
        raise ManifestError(f"{mpath}: manifest version {man.get('version')!r} is not supported "
                            f"(this edge-ad reads version {VERSION}); re-export the model")
    for key in ("files", "graphs", "model", "search", "preprocess", "layout"):
        if key not in man:
            raise ManifestError(f"{mpath}: required entry {key!r} missing")
    validate_manifest(man, mpath)
    if not verify:
        return man
    integrity.verify_files(model_dir, man)
    parity = man.get("parity") or {}
    if parity.get("passed") is False:
        raise ManifestError(f"{model_dir}: this export failed its parity check against the PyTorch "
                            f"reference ({parity.get('summary', 'see manifest parity report')}); "
                            "it must not be used for scoring")
    return man
