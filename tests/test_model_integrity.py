"""Malformed, tampered and symlinked model directories are refused with one line (issue 16, items 10-11).

Each case was a traceback, a crash or a silent acceptance before: wrong-typed entries (TypeError,
KeyError, AttributeError), k = 0.5 and n_seed as text (TypeError deep in the search), n_seed 1e9
(std::bad_alloc), NaN / negative thresholds (accepted), garbage graphs with a recomputed sha256
(onnxruntime's InvalidProtobuf), a truncated weights.npz (BadZipFile), a .npy header declaring a
huge shape (MemoryError), symlinks (followed) and unlisted ONNX external data (loaded, scores changed)."""
from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edge_ad.runtime import Scorer
from edge_ad.runtime.config import make_z0
from edge_ad.runtime.manifest import ManifestError, load_manifest, sha256_file


@pytest.fixture(scope="module")
def model(export_tiny):
    """The tiny export (k = 1, 2 seeds): copied before every change."""
    return export_tiny(1, 2)


def copy_model(src: Path, dst: Path, edit=None, rehash=()) -> Path:
    """A copy of ``src`` at ``dst`` (made first when missing) with ``edit(manifest)`` applied and the
    sha256 of the files in ``rehash`` recomputed (a tampered directory with valid hashes)."""
    if not dst.exists():
        shutil.copytree(src, dst)
    man = json.loads((dst / "manifest.json").read_text())
    if edit is not None:
        edit(man)
    for f in rehash:
        man["files"][f] = sha256_file(dst / f)
    (dst / "manifest.json").write_text(json.dumps(man))
    return dst


def refused(path, needle: str, **load) -> str:
    """Scorer.load(path) raises ManifestError matching ``needle`` in one line; returns the message."""
    with pytest.raises(ManifestError, match=needle) as e:
        Scorer.load(path, **load)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 600, msg
    return msg


# ------------------------------------------------------------------------------ 10. malformed manifests
MALFORMED = {
    "files-list": (lambda m: m.update(files=sorted(m["files"])), r"'files' must be an object, got list"),
    "graphs-text": (lambda m: m.update(graphs="step.onnx"), r"'graphs' must be an object, got str"),
    "graph-entry-list": (lambda m: m["graphs"].update(step=["step.onnx"]), r"graphs\['step'\] must be an object"),
    "layout-list": (lambda m: m.update(layout=[m["layout"]]), r"'layout' must be an object, got list"),
    "state-dict": (lambda m: m["layout"].update(state={}), r"layout.state must be a non-empty list"),
    "search-n_seed-text": (lambda m: m["search"].update(n_seed="2"), r"search.n_seed must be int, got '2'"),
    "layout-n_seed-text": (lambda m: m["layout"].update(n_seed="2"), r"layout.n_seed must be an integer, got '2'"),
    "k-half": (lambda m: m["search"].update(k=0.5), r"search.k must be int, got 0.5"),
    "lr-text": (lambda m: m["search"].update(lr_z="fast"), r"search.lr_z must be float \(finite\), got 'fast'"),
    "n_seed-1e9": (lambda m: (m["layout"].update(n_seed=10 ** 9), m["search"].update(n_seed=10 ** 9)),
                   r"layout.n_seed must be in \[1, 64\], got 1000000000"),
    "k-huge": (lambda m: m["search"].update(k=10 ** 7), r"search.k must be in \[0, 1000\]"),
    "threshold-nan": (lambda m: m.update(threshold={"value": float("nan")}),
                      r"threshold.value must be a finite number > 0 \(scores are >= 0\), got nan"),
    "threshold-negative": (lambda m: m.update(threshold={"value": -0.5}), r"threshold.value must be .* got -0.5"),
    "threshold-text": (lambda m: m.update(threshold={"value": "0.1"}), r"threshold.value must be .* got '0.1'"),
    "threshold-rate-2": (lambda m: m.update(threshold={"value": 0.1, "target_fpr": 2.0}),     # audit 33 #3
                         r"threshold.target_fpr must be a false-alarm rate in \(0, 1\), got 2.0"),
    "hash-short": (lambda m: m["files"].update({"weights.npz": "abc"}), r"'files'\['weights.npz'\] must be a 64-digit"),
    "resolution-mismatch": (lambda m: m["preprocess"].update(resolution=32),
                            r"preprocess.resolution 32 differs from layout.resolution 64"),
    "mask-text": (lambda m: m["preprocess"].update(mask_rgb_background="yes"),
                  r"preprocess.mask_rgb_background must be bool"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_manifest_refused_with_one_line(model, tmp_path, case):
    edit, needle = MALFORMED[case]
    d = copy_model(model, tmp_path / "m", edit)
    msg = refused(d, needle, variant="step")
    assert "manifest.json" in msg


def test_a_manifest_with_a_duplicate_key_is_refused_and_not_signed(model, tmp_path):
    """Audit 33 #16: manifest.json was parsed with json.loads, whose last duplicate key wins: a second "threshold"
    appended to the file (value 1e-12: every frame flagged) loaded, was signed and verified "ok", while a reviewer
    (or any first-wins reader) reading the signed bytes sees the first. A key named twice in any object is now
    refused with one line naming it and the object (no valid export has one: json.dumps never writes one)."""
    from click.testing import CliRunner

    from edge_ad.cli import main
    from edge_ad.runtime.signing import generate_key_pair, sign_model
    priv = tmp_path / "k.key"
    generate_key_pair(priv, tmp_path / "k.pub")
    for case, edit, where in (
            ("top", lambda t: t[:t.rstrip().rindex("}")] + ', "created": "2000-01-01T00:00:00+00:00"}',
             "at the top level"),
            ("nested", lambda t: t.replace('"search": {', '"search": {"k": 7, ', 1), "in 'search'")):
        d = copy_model(model, tmp_path / case)
        text = (d / "manifest.json").read_text()
        (d / "manifest.json").write_text(edit(text))
        key = "created" if case == "top" else "k"
        msg = refused(d, rf"manifest\.json: duplicate key '{key}' {where}: ", variant="step")
        assert "a key named twice" in msg, msg
        with pytest.raises(ManifestError, match=f"duplicate key '{key}'"):
            sign_model(d, priv)
        assert not (d / "manifest.sig").exists()
        r = CliRunner().invoke(main, ["verify", str(d)])
        assert r.exit_code == 1 and f"duplicate key '{key}'" in r.output and "Traceback" not in r.output, r.output


def test_a_file_given_for_the_model_directory_is_named_as_a_file(model, tmp_path):
    """The commonest slip, the manifest or the training checkpoint given for the model: before, "model directory not
    found: PATH" for a file that is there. Now what it is and what to give instead; a missing path as before."""
    refused(model / "manifest.json", rf"manifest.json is the model's manifest, not its directory: give its folder, "
                                      rf"{model}$")
    pt = tmp_path / "rectangle.pt"
    pt.write_bytes(b"not read")
    refused(pt, r"rectangle.pt is a file, not an exported model directory; export a checkpoint first: edge-ad export "
                r".*rectangle.pt --out DIR, then --model DIR \(Python: Scorer.load\(DIR\)\)$")
    refused(model / "weights.npz", r"weights.npz is a file, not an exported model directory \(the folder `edge-ad "
                                   r"export CHECKPOINT --out DIR` writes")
    refused(tmp_path / "nowhere", r"model directory not found: .*nowhere$")


def test_garbage_graph_with_valid_hash_refused(model, tmp_path):
    """A .onnx that is not ONNX (sha256 recomputed) names the file; so does a valid protobuf that
    onnxruntime cannot load (an unknown operator), through load's onnxruntime error wrapper."""
    d = copy_model(model, tmp_path / "garbage")
    (d / "step.onnx").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    copy_model(model, d, rehash=["step.onnx"])
    refused(d, r"step.onnx is not a valid ONNX model", variant="step")

    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["y"], domain="no.such.domain")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(d / "step.onnx"))
    copy_model(model, d, rehash=["step.onnx"])
    refused(d, r"step.onnx does not match the manifest's graphs\['step'\]: input 'x' has shape \[1\]", variant="step")
    copy_model(model, d, edit=lambda m: m["graphs"]["step"].pop("inputs"))   # no inputs declared: onnxruntime's turn
    msg = refused(d, r"onnxruntime cannot load this model's graphs", variant="step")
    assert "step.onnx" in msg


def test_an_empty_graph_file_with_valid_hash_is_named_empty_not_another_exports(model, tmp_path):
    """Audit 31 #7: an empty .onnx (sha256 recomputed) is valid protobuf without a graph; the input check ran first
    and said "input 'x' has no such input ... (a graph of another export?)". Now it is named: no graph, 0 bytes
    (and a non-empty protobuf without a graph: no graph)."""
    d = copy_model(model, tmp_path / "empty")
    (d / "step.onnx").write_bytes(b"")
    copy_model(model, d, rehash=["step.onnx"])
    refused(d, r"step.onnx is not a valid ONNX model \(no graph; 0 bytes\)$", variant="step")
    (d / "step.onnx").write_bytes(bytes([0x08, 0x07]))          # ModelProto.ir_version = 7, nothing else
    copy_model(model, d, rehash=["step.onnx"])
    refused(d, r"step.onnx is not a valid ONNX model \(no graph\)$", variant="step")


def test_a_graph_of_another_export_is_refused_naming_its_input(model, export_tiny, tmp_path):
    """Review 26 #1: final.onnx of another export (another n_seed), re-hashed into this one, loaded and failed
    at the first frame with onnxruntime's "Got invalid dimensions for input: z"; its inputs are now compared with
    the manifest's entry at load (a free batch dimension is not compared: the exports' own graphs all load)."""
    from edge_ad.runtime.integrity import onnx_inputs
    other = export_tiny(1, 1)
    d = copy_model(model, tmp_path / "mixed")
    shutil.copy(other / "final.onnx", d / "final.onnx")
    copy_model(model, d, rehash=["final.onnx"])
    msg = refused(d, r"final\.onnx does not match the manifest's graphs\['final'\]: input 'z' has shape \[1, ")
    assert "the manifest says [2, " in msg and "another export" in msg
    man = json.loads((model / "manifest.json").read_text())
    for g in man["graphs"].values():                 # every declared input, as the export recorded it
        got = onnx_inputs((model / g["file"]).read_bytes())
        for vi in g.get("inputs") or []:
            if isinstance(vi, dict):
                assert [x or 0 for x in got[vi["name"]]] == vi["shape"], (g["file"], vi["name"])
    Scorer.load(model).close()


def test_truncated_weights_refused(model, tmp_path):
    d = copy_model(model, tmp_path / "trunc")
    data = (d / "weights.npz").read_bytes()
    (d / "weights.npz").write_bytes(data[:len(data) // 2])
    copy_model(model, d, rehash=["weights.npz"])
    refused(d, r"weights.npz is truncated or corrupt", variant="step")


def _fake_npy(shape, data: bytes = b"\0" * 64, descr: str = "<f4") -> bytes:
    """.npy bytes whose header declares ``shape`` but which hold only ``data``."""
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue() + data


def test_npy_header_declaring_a_huge_shape_refused_before_allocating(model, tmp_path):
    d = copy_model(model, tmp_path / "huge")
    with zipfile.ZipFile(model / "weights.npz") as src, zipfile.ZipFile(d / "weights.npz", "w") as dst:
        names = src.namelist()
        for n in names:
            dst.writestr(n, _fake_npy((10 ** 6, 10 ** 6)) if n == names[0] else src.read(n))
    copy_model(model, d, rehash=["weights.npz"])
    name = names[0][:-4]
    refused(d, rf"weights.npz\[{name}\] holds float32 \(1000000, 1000000\), expected float32", variant="step")

    # a header matching a (huge) expected shape, with the data missing: refused before allocating 4 TB
    from edge_ad.runtime.model_arrays import load_npy
    (d / "big.npy").write_bytes(_fake_npy((10 ** 6, 10 ** 6)))
    with pytest.raises(ManifestError, match=r"big.npy is truncated: its header declares 4000000000000 data bytes"):
        load_npy(d, "big.npy", (10 ** 6, 10 ** 6), np.float32)


def test_load_npy_with_its_sha256_parses_the_bytes_it_hashed_and_hashes_the_whole_file(tmp_path):
    """Audit 27 #1: load_npy(..., sha256=) (the bank and pixel memory, after the model was verified): the array
    is the file's, the digest is of every byte of the file (bytes after the array too, as the manifest's), and a
    file whose bytes differ is refused naming it, even where the array read would be the same."""
    import hashlib

    from edge_ad.runtime.model_arrays import load_npy
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", a)
    data = (tmp_path / "a.npy").read_bytes() + b"tail"             # bytes after the array: hashed by the manifest
    (tmp_path / "a.npy").write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    np.testing.assert_array_equal(load_npy(tmp_path, "a.npy", (3, 4), np.float32, sha256=digest), a)
    (tmp_path / "a.npy").write_bytes(data[:-4] + b"TAIL")         # the same array, another file
    with pytest.raises(ManifestError, match=r"a.npy has been modified since the model was verified \(sha256 "):
        load_npy(tmp_path, "a.npy", (3, 4), np.float32, sha256=digest)
    np.testing.assert_array_equal(load_npy(tmp_path, "a.npy", (3, 4), np.float32), a)    # no digest: not compared


# ------------------------------------------------------------------------------ 11. links, external data
def floats_external(model, location: str):
    """``model`` with its float initializers (the BatchNorm constants) marked for external data in
    ``location``: onnx.save then writes them there (onnxruntime needs the int64 shape constants inline)."""
    from onnx import TensorProto
    from onnx.external_data_helper import set_external_data
    for t in model.graph.initializer:
        if t.data_type == TensorProto.FLOAT and t.HasField("raw_data"):
            set_external_data(t, location)
    return model


def test_symlinked_files_refused(model, tmp_path):
    """No model file is read through a symlink: one leaving the directory (same bytes, so the sha256
    matches), one inside it, a linked manifest. The model directory's own path may be a link."""
    outside = tmp_path / "elsewhere.npz"
    shutil.copy(model / "weights.npz", outside)
    d = copy_model(model, tmp_path / "link-out")
    (d / "weights.npz").unlink()
    (d / "weights.npz").symlink_to(outside)
    refused(d, r"weights.npz is a symbolic link", variant="step")

    d = copy_model(model, tmp_path / "link-in")
    (d / "real").mkdir()
    (d / "weights.npz").rename(d / "real" / "weights.npz")
    (d / "weights.npz").symlink_to(Path("real") / "weights.npz")
    refused(d, r"weights.npz is a symbolic link", variant="step")

    d = copy_model(model, tmp_path / "link-manifest")
    (d / "manifest.json").rename(tmp_path / "manifest.json")
    (d / "manifest.json").symlink_to(tmp_path / "manifest.json")
    refused(d, r"manifest.json is a symbolic link", variant="step")

    d = copy_model(model, tmp_path / "link-dir-entry", lambda m: m["files"].update(
        {"sub/w.npz": m["files"]["weights.npz"]}) or m["layout"].update(weights="sub/w.npz"))
    (tmp_path / "realsub").mkdir()
    shutil.copy(model / "weights.npz", tmp_path / "realsub" / "w.npz")
    (d / "sub").symlink_to(tmp_path / "realsub")
    refused(d, r"sub is a symbolic link", variant="step")

    (tmp_path / "current").symlink_to(model)
    assert Scorer.load(tmp_path / "current", variant="step").n_seed == 2


def test_onnx_external_data_must_be_hashed(model, tmp_path, val_frames):
    """A graph whose tensors live in an external-data file: refused while that file has no sha256
    entry; with one, it loads and scores as the original, and a corrupted data file is refused
    (before: it loaded and the score changed)."""
    onnx = pytest.importorskip("onnx")
    (rgb, depth), = val_frames(1)
    z0 = make_z0(2, 100, 0)
    want = Scorer.load(model, variant="step").score(rgb, depth, z0=z0)
    d = copy_model(model, tmp_path / "ext")
    onnx.save(floats_external(onnx.load(str(d / "final.onnx")), "final.onnx.data"), str(d / "final.onnx"))
    assert (d / "final.onnx.data").stat().st_size > 0
    copy_model(model, d, rehash=["final.onnx"])
    refused(d, r"final.onnx reads external data from final.onnx.data, which has no sha256 entry", variant="step")

    copy_model(model, d, lambda m: m["files"].update({"final.onnx.data": sha256_file(d / "final.onnx.data")}))
    got = Scorer.load(d, variant="step").score(rgb, depth, z0=z0)
    assert got.score == want.score
    data = bytearray((d / "final.onnx.data").read_bytes())
    data[:] = bytes(b ^ 0x55 for b in data)
    (d / "final.onnx.data").write_bytes(bytes(data))
    refused(d, r"final.onnx.data has been modified or corrupted", variant="step")


def test_manifest_file_names_stay_inside_the_directory(model, tmp_path):
    """The manifest's file names stay inside the directory: '..', absolute paths and '.' parts refused."""
    for name in ("../weights.npz", "/etc/passwd", "./weights.npz", "a//b"):
        d = copy_model(model, tmp_path / f"name{len(os.listdir(tmp_path))}",
                       lambda m: m["files"].update({name: "0" * 64}))
        with pytest.raises(ManifestError, match="points outside the model directory"):
            load_manifest(d)


def test_export_hashes_external_data(tiny_generator, tmp_path, monkeypatch):
    """An exporter that writes a graph with external data (as onnx.save does past 2 GB) lists the data
    file in the manifest's sha256 list, so the export loads."""
    onnx = pytest.importorskip("onnx")
    from edge_ad.export import exporter
    from edge_ad.runtime.config import SearchConfig
    save = onnx.save

    def save_external(model, path, *a, **kw):
        if str(path).endswith("final.onnx"):
            model = floats_external(model, "final.onnx.data")
        return save(model, path, *a, **kw)
    monkeypatch.setattr(exporter.onnx, "save", save_external)
    man = exporter.export_model(tiny_generator, tmp_path / "m", search=SearchConfig(k=1, n_seed=2), parity=False,
                                log=lambda *a: None)
    assert man["files"]["final.onnx.data"] == sha256_file(tmp_path / "m" / "final.onnx.data")
    assert Scorer.load(tmp_path / "m", variant="step").mode == "step"
