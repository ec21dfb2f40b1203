"""The files of an exported model directory: read only what the manifest lists, never through a symlink.

Policy (issue 16), checked by ``verify_files`` when ``Scorer.load`` / ``load_manifest(verify=True)``
reads a model:
  * every file the runtime reads is in the manifest's ``files`` list with its sha256: the graphs,
    weights.npz, head_consts.npy, latent_bank.npy, and the external-data files that an ONNX graph
    points to (``onnx_external_data``; onnxruntime would read them beside the graph);
  * no file is read through a symbolic link, inside or outside the directory: each listed file and
    every folder between it and the model directory must be a plain file / folder (``lstat``), and
    files are opened with O_NOFOLLOW. Only the model directory's own path may be a link (e.g.
    models/current -> models/v3): it is the directory the user named;
  * names are plain relative paths ("a.onnx", "sub/b.bin"): no absolute path, no "." or "..";
  * each graph declares the inputs its manifest entry lists, with their fixed sizes (``check_graph_inputs``).
The checks run before anything is parsed; a file swapped between the check and onnxruntime's own
read is outside this threat model (a signed manifest, runtime/signing.py, covers files at rest).
TensorRT engines (runtime/backends/engine_cache.py) are built locally from the verified graphs and carry their
own sha256 sidecars; they are not part of the exported model.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from .manifest import ManifestError, sha256_stream

_BUF = 1 << 20


def check_name(name) -> PurePosixPath:
    """A manifest file name as a plain relative path; ManifestError for anything else."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise ManifestError(f"file name {name!r} is not a plain relative path")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise ManifestError(f"file entry {name!r} points outside the model directory")
    return p


def _check_no_links(model_dir: Path, rel: PurePosixPath) -> Path:
    """model_dir / rel after checking that no component below model_dir is a symlink and the last
    one is a regular file."""
    path = Path(model_dir)
    for i, part in enumerate(rel.parts):
        path = path / part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise ManifestError(f"{model_dir}: file {rel} listed in the manifest is missing") from None
        if stat.S_ISLNK(st.st_mode):
            raise ManifestError(f"{model_dir}: {'/'.join(rel.parts[:i + 1])} is a symbolic link; model files "
                                "are never read through links (copy the file into the model directory)")
        last = i == len(rel.parts) - 1
        if last and not stat.S_ISREG(st.st_mode):
            raise ManifestError(f"{model_dir}: {rel} is not a regular file")
        if not last and not stat.S_ISDIR(st.st_mode):
            raise ManifestError(f"{model_dir}: {'/'.join(rel.parts[:i + 1])} is not a folder")
    return path


def open_model_file(model_dir: os.PathLike, name: str):
    """Open a file of the model directory for reading (binary), refusing links (see the module doc)."""
    path = _check_no_links(Path(model_dir), check_name(name))
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise ManifestError(f"{model_dir}: cannot open {name} ({e.strerror})") from None
    return os.fdopen(fd, "rb")


def read_model_file(model_dir: os.PathLike, name: str) -> bytes:
    """All bytes of a (small) model file, read as ``open_model_file`` does."""
    with open_model_file(model_dir, name) as f:
        return f.read()


def sha256_model_file(model_dir: os.PathLike, name: str) -> str:
    """Hex sha256 of a model file, read as ``open_model_file`` does."""
    with open_model_file(model_dir, name) as f:
        return sha256_stream(f, _BUF)


def verify_files(model_dir: os.PathLike, man: dict) -> None:
    """Check every listed file's sha256 (no links, plain names) and that each ONNX graph's
    external-data files are listed too. ``man`` has passed manifest.validate_manifest."""
    model_dir = Path(model_dir)
    files = man["files"]
    graphs = {g["file"] for g in man["graphs"].values()}
    for name, digest in files.items():
        if name in graphs:   # read once: the bytes hashed are the bytes scanned for external data
            data = read_model_file(model_dir, name)
            actual = hashlib.sha256(data).hexdigest()
        else:
            actual = sha256_model_file(model_dir, name)
        if actual != digest:
            raise ManifestError(f"{model_dir}: {name} has been modified or corrupted "
                                f"(sha256 {actual[:16]}..., manifest says {digest[:16]}...)")
        if name not in graphs:
            continue
        check_graph_inputs(model_dir, man, name, data)
        graph = check_name(name)
        for loc in onnx_external_data(data, f"{model_dir}: {name}"):
            ext = (graph.parent / check_name(loc)).as_posix()
            if ext not in files:
                raise ManifestError(f"{model_dir}: {name} reads external data from {loc}, which has no "
                                    "sha256 entry in the manifest (re-export, or add it to 'files')")


def _declared_inputs(entry: dict) -> list:
    """[(name, shape)] of a manifest graph entry's "inputs" (a list of {"name", "shape", ...} for the search
    graphs, {name: shape} for the batch graphs); entries in neither form are left out."""
    ins = entry.get("inputs")
    if isinstance(ins, dict):
        pairs = list(ins.items())
    elif isinstance(ins, list):
        pairs = [(d.get("name"), d.get("shape")) for d in ins if isinstance(d, dict)]
    else:
        return []
    return [(n, s) for n, s in pairs if isinstance(n, str) and isinstance(s, list)]


def check_graph_inputs(model_dir: os.PathLike, man: dict, name: str, data: bytes) -> None:
    """ManifestError when the graph file ``name`` (bytes ``data``) lacks an input its manifest entries declare
    or declares it with another rank or fixed size (a graph of another export, re-hashed into this one):
    onnxruntime would load it and fail at the first frame with its own line. Dimensions that are free on
    either side (a name such as "batch", 0, a symbolic one) are not compared."""
    found = None
    for gname, entry in man["graphs"].items():
        declared = _declared_inputs(entry) if entry.get("file") == name else []
        if declared and found is None:
            found = onnx_inputs(data, f"{model_dir}: {name}")
        for iname, shape in declared:
            got = found.get(iname, "missing")
            fixed = [(g, d) for g, d in zip(got, shape) if isinstance(g, int) and g > 0
                     and isinstance(d, int) and not isinstance(d, bool) and d > 0] if got != "missing" else []
            if got == "missing" or len(got) != len(shape) or any(g != d for g, d in fixed):
                shown = "no such input" if got == "missing" else f"shape {[g if g is not None else '?' for g in got]}"
                raise ManifestError(f"{model_dir}: {name} does not match the manifest's graphs[{gname!r}]: input "
                                    f"{iname!r} has {shown}, the manifest says {shape} (a graph of another export?)")


# -- ONNX external data ----------------------------------------------------------------------------
# A minimal reader of the protobuf wire format (the runtime has no onnx package): it follows the
# messages that can hold a TensorProto and collects TensorProto.external_data's "location" values.
# Field numbers from onnx/onnx.proto (ModelProto, GraphProto, NodeProto, AttributeProto, ...).
_TENSOR, _SPARSE, _GRAPH, _NODE, _ATTR, _FUNC, _TRAIN, _ENTRY = range(8)
_CHILDREN = {
    "model": {7: _GRAPH, 20: _TRAIN, 25: _FUNC},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _FUNC: {7: _NODE, 11: _ATTR},
    _TRAIN: {1: _GRAPH, 2: _GRAPH},
    _TENSOR: {13: _ENTRY},
}


class _WireError(ValueError):
    pass


def _varint(buf: memoryview, i: int, end: int) -> tuple:
    shift = value = 0
    while True:
        if i >= end or shift > 63:
            raise _WireError(f"bad varint at byte {i}")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _fields(buf: memoryview, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field) of one message."""
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise _WireError(f"field number 0 at byte {i}")
        if wire == 0:
            value, i = _varint(buf, i, end)
            yield field, wire, value
        elif wire == 1 or wire == 5:
            i += 8 if wire == 1 else 4
            if i > end:
                raise _WireError("truncated fixed-size field")
            yield field, wire, None
        elif wire == 2:
            n, i = _varint(buf, i, end)
            if i + n > end:
                raise _WireError(f"length {n} at byte {i} runs past the end")
            yield field, wire, (i, i + n)
            i += n
        else:
            raise _WireError(f"unsupported wire type {wire} at byte {i}")


def onnx_external_data(data: bytes, name: str = "graph") -> list:
    """The external-data locations (relative paths) an ONNX model's tensors point to, without
    duplicates. ManifestError when ``data`` is not an ONNX model (not protobuf,
    or no graph)."""
    buf = memoryview(data)
    found: list = []
    has_graph = False
    stack = [("model", 0, len(buf), 0)]
    try:
        while stack:
            kind, start, end, depth = stack.pop()
            if depth > 64:
                raise _WireError("messages nested too deeply")
            if kind == _ENTRY:
                key = value = None
                for f, w, v in _fields(buf, start, end):
                    if w == 2 and f in (1, 2):
                        text = bytes(buf[v[0]:v[1]]).decode("utf-8", "replace")
                        key, value = (text, value) if f == 1 else (key, text)
                if key == "location" and value is not None and value not in found:
                    found.append(value)
                continue
            children = _CHILDREN.get(kind, {})
            for f, w, v in _fields(buf, start, end):
                if kind == "model" and f == 7:
                    has_graph = w == 2
                if w == 2 and f in children:
                    stack.append((children[f], v[0], v[1], depth + 1))
    except _WireError as e:
        raise ManifestError(f"{name} is not a valid ONNX model (corrupt or truncated protobuf: {e})") from None
    if not has_graph:
        raise ManifestError(f"{name} is not a valid ONNX model (no graph)")
    return found


def onnx_inputs(data: bytes, name: str = "graph") -> dict:
    """{input name: shape} of an ONNX model's graph (GraphProto.input), read from the wire format as
    ``onnx_external_data`` is: each dimension its dim_value, or None when it is symbolic or unknown.
    ManifestError when ``data`` is not protobuf or has no graph (an empty file is valid protobuf: a model without
    one, whose missing inputs would read as "a graph of another export?")."""
    buf = memoryview(data)

    def spans(start: int, end: int, field: int) -> list:        # the length-delimited fields numbered ``field``
        return [v for f, w, v in _fields(buf, start, end) if f == field and w == 2]
    out: dict = {}
    try:
        graphs = spans(0, len(buf), 7)                             # ModelProto.graph
        if not graphs:
            raise ManifestError(f"{name} is not a valid ONNX model (no graph" + ("; 0 bytes)" if not data else ")"))
        for g in graphs:
            for vi in spans(*g, 11):                               # GraphProto.input: ValueInfoProto
                names = spans(*vi, 1)
                dims: list = []
                for tt in (t for ty in spans(*vi, 2) for t in spans(*ty, 1)):   # TypeProto.tensor_type
                    for shape in spans(*tt, 2):                    # TensorShapeProto
                        for dim in spans(*shape, 1):               # Dimension: dim_value (1) or dim_param (2)
                            values = [v for f, w, v in _fields(buf, *dim) if f == 1 and w == 0]
                            dims.append(values[-1] if values and values[-1] < 1 << 62 else None)
                if names:
                    out[bytes(buf[names[-1][0]:names[-1][1]]).decode("utf-8", "replace")] = dims
    except _WireError as e:
        raise ManifestError(f"{name} is not a valid ONNX model (corrupt or truncated protobuf: {e})") from None
    return out
