"""`edge-ad verify` loads the model as `edge-ad run` does (audit 26 #1): it checked only the manifest's entries
and the sha256 list, so a directory whose files were replaced and re-hashed (another model's weights, a
misshapen or NaN latent bank, a float pixel memory) or whose settings Scorer.load refuses (preprocess std 0,
a trusted augmentation the bank lacks) verified "ok", exit 0, and then `edge-ad run` refused it. Each case
now exits 1 with Scorer.load's own line. A size mismatch names both files (the array's, and manifest.json with
the field that gives the size) and both sizes (audit 27 #8, left over)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edge_ad.cli import main
from edge_ad.runtime import Scorer
from edge_ad.runtime.manifest import ManifestError, sha256_file


def _replace(path, write):
    """Write a file with ``write(path)`` and re-hash it in manifest.json (a consistent sha256 list)."""
    def edit(d):
        write(d / path)
        man = json.loads((d / "manifest.json").read_text())
        man["files"][path] = sha256_file(d / path)
        (d / "manifest.json").write_text(json.dumps(man))
    return edit


def _manifest(change):
    def edit(d):
        man = json.loads((d / "manifest.json").read_text())
        change(man)
        (d / "manifest.json").write_text(json.dumps(man))
    return edit


def _bank_nan(p):
    b = np.load(p)
    b[3, 3] = np.nan
    np.save(p, b)


def _encoder_z4(p):
    """An encoder graph x (4, 64, 64) -> z (4,) (the channel means): the shipped input, another z_dim."""
    from onnx import TensorProto, helper, save
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])
    g = helper.make_graph([helper.make_node("ReduceMean", ["x", "axes"], ["z"], keepdims=0)], "e",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64, 64])],
                          [helper.make_tensor_value_info("z", TensorProto.FLOAT, [4])], [axes])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    save(model, p)


def _last_weight_nan(p):
    arrays = dict(np.load(p))
    name = sorted(arrays)[-1]
    arrays[name] = arrays[name].copy()
    arrays[name].flat[0] = np.nan
    np.savez(p, **arrays)


def _first_weight_misshapen(p):
    arrays = dict(np.load(p))
    arrays["W0.c0"] = np.zeros(3, np.float32)
    np.savez(p, **arrays)


CASES = {   # name: (edit(model_dir, tiny_export_dir), what Scorer.load's line says)
    "weights-of-another-model": (lambda d, tiny: _replace("weights.npz", lambda p: shutil.copy(tiny / "weights.npz", p))(d),
                                 r"/m: weights\.npz lacks \d+ of the \d+ arrays manifest\.json: layout\.state names: "
                                 r"\['W0\.c1', .* \.\.\.$"),
    "weights-member-misshapen": (lambda d, tiny: _replace("weights.npz", _first_weight_misshapen)(d),
                                 r"/m: weights\.npz\[W0\.c0\] holds float32 \(3,\), expected float32 \(\d+, \d+\) "
                                 r"\(manifest\.json: layout\.state\)$"),
    "weights-nan": (lambda d, tiny: _replace("weights.npz", _last_weight_nan)(d),      # audit 28 #8 (c): every
                    r"/m: weights\.npz\[\S+\] holds NaN or inf: a broken export; re-export the model$"),  # frame NaN
    "bank-wrong-z_dim": (lambda d, tiny: _replace("latent_bank.npy", lambda p: np.save(p, np.zeros((10, 50), np.float32)))(d),
                         r"latent_bank\.npy holds float32 \(10, 50\), expected float32 \(\d+, \d+\) "
                         r"\(manifest\.json: latent_bank\.shape\)$"),
    "bank-nan": (lambda d, tiny: _replace("latent_bank.npy", _bank_nan)(d), r"latent_bank\.npy must be a finite float32"),
    "pixel-memory-float32": (lambda d, tiny: _replace("pixel_memory.npy", lambda p: np.save(
        p, np.load(p).astype(np.float32)))(d), r"pixel_memory\.npy holds float32 \((\d+, ){3}4\), expected uint8 "
                                               r"\((\d+, ){3}4\) \(manifest\.json: pixel_memory\.shape\)$"),
    "encoder-of-another-z_dim": (lambda d, tiny: _replace("encoder.onnx", _encoder_z4)(d),
                                 r"/m: encoder\.onnx does not fit manifest\.json's layout \(channels, "
                                 r"resolution, z_dim\): encoder graph maps .* -> \{'z': \[4\]\}; expected x "
                                 r"\[4, 64, 64\] -> z \[\d+\]$"),
    "preprocess-std-0": (lambda d, tiny: _manifest(lambda m: m["preprocess"].update(std=0))(d), r"std"),
    "trusted-augment-not-in-bank": (lambda d, tiny: _manifest(
        lambda m: m["search"].update(bank_trusted_augment=["brightness:1.7"]))(d), r"brightness:1\.7"),
    # audit 33 #4: the model card's descriptive fields, read by integrators, not by the runtime, verified "ok"
    "model-resolution-32": (lambda d, tiny: _manifest(lambda m: m["model"].update(resolution=32))(d),
                            r"manifest\.json: model\.resolution 32 differs from layout\.resolution 64$"),
    "model-z_dim-99": (lambda d, tiny: _manifest(lambda m: m["model"].update(z_dim=99))(d),
                       r"manifest\.json: model\.z_dim 99 differs from layout\.z_dim 100$"),
    "model-channels-3": (lambda d, tiny: _manifest(lambda m: m["model"].update(channels=3))(d),
                         r"manifest\.json: model\.channels 3 differs from layout\.channels 4$"),
    "bank-dtype-float16": (lambda d, tiny: _manifest(lambda m: m["latent_bank"].update(dtype="float16"))(d),
                           r"manifest\.json: latent_bank\.dtype must be 'float32' \(the bank file's\), got 'float16'$"),
    "variant-unknown": (lambda d, tiny: _manifest(lambda m: m["variants"].update(turbo=m["variants"]["forward"]))(d),
                        r"manifest\.json: variants\['turbo'\] is not a search variant of this runtime "
                        r"\(forward, host-head, fused-adam, step, unrolled\)$"),
    "targets-tpu": (lambda d, tiny: _manifest(lambda m: m.update(targets=["cpu", "tpu"]))(d),
                    r"manifest\.json: targets must be a list of 'cpu', 'gpu', got \['cpu', 'tpu'\]$"),
    "threshold-n_normal-negative": (lambda d, tiny: _manifest(lambda m: m["threshold"].update(n_normal=-5))(d),
                                    r"manifest\.json: threshold\.n_normal must be a count of normal frames >= 1 "
                                    r"\(or null: not recorded\), got -5$"),
}


@pytest.fixture(scope="module")
def tiny(export_tiny):
    return export_tiny(0, 1)


def test_verify_accepts_the_shipped_export(kinect_export):
    res = CliRunner().invoke(main, ["verify", str(kinect_export)])
    assert res.exit_code == 0, res.output
    assert "loads as `edge-ad run` loads it" in res.output
    assert "range-checked but NOT authenticated" in res.output


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_refuses_what_scorer_load_refuses_with_its_line(case, kinect_export, tiny, tmp_path):
    edit, needle = CASES[case]
    d = tmp_path / "m"
    shutil.copytree(kinect_export, d)
    edit(d, tiny)
    with pytest.raises(ManifestError, match=needle) as e:
        Scorer.load(d, threads=1)
    res = CliRunner().invoke(main, ["verify", str(d)])
    assert res.exit_code == 1, res.output
    assert res.output.strip() == f"Error: {e.value}"         # the same one line


def test_preprocessing_needs_a_finite_mean_and_a_positive_std():
    """std 0 was refused only by the shift-fill check (radius > 0); at radius 0 such a model loaded and scored
    inf / NaN. Now the preprocessing itself is refused, whatever the search."""
    from edge_ad.runtime.preprocess import PreprocessSpec
    assert PreprocessSpec.from_dict({"mean": 0.4, "std": 0.6}).std == 0.6
    for bad in ({"std": 0}, {"std": -0.5}, {"std": float("nan")}, {"std": float("inf")}, {"mean": float("inf")},
                {"mean": float("nan")}):
        with pytest.raises(ValueError, match="finite mean and a finite std > 0"):
            PreprocessSpec.from_dict(bad)


def test_verify_and_run_say_when_parity_and_threshold_are_missing(tmp_path, export_tiny):
    """Audit 28 #13: an export made with --no-parity (never compared with the PyTorch reference) and without a
    threshold verified "ok" and ran without a word about either. verify and run's start now say both."""
    from edge_ad.commands import run as run_cmd
    d = export_tiny(0, 1)                              # parity=False, no threshold
    res = CliRunner().invoke(main, ["verify", str(d)])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[1:] == ["note: parity NOT checked (exported with --no-parity): this model's scores were never "
                         "compared with the PyTorch reference",
                         "note: no threshold: edge-ad run scores but flags no frame (set one with edge-ad eval "
                         "--calibrate-fpr and export --threshold-file, or edge-ad calibrate)"], res.output
    r = CliRunner().invoke(run_cmd.cmd, ["--model", str(d), "--source", "synth://?n=1", "-q",
                                         "--out", str(tmp_path / "r.jsonl")])
    assert r.exit_code == 0 and "note: parity NOT checked (exported with --no-parity)" in r.output, r.output
    man = json.loads((d / "manifest.json").read_text())
    assert man["parity"]["passed"] is None

