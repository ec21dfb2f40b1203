"""``edge-ad eval``'s nearest-neighbour baselines (audit 16 #3): the issues' definitions on plain
preprocessing always, the same variants on the model's preprocessing where it differs, each labelled
with its preprocessing, and the nuisance table's baseline column the header's plain fg^1 row."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import copy_kinect_layout

torch = pytest.importorskip("torch")

CLASSES = ("rectangle", "cylinder", "sphere")


def _expected_auroc(data, spec, fg_power, n_val) -> float:
    """NN MSE / fg^p AUROC overall of rectangle vs the other two, recomputed from the library."""
    from edge_ad.models.baselines import nearest_neighbour_scores
    from edge_ad.models.data import load_kinect, to_tensor
    from edge_ad.models.evaluate import detection_metrics
    train = to_tensor(load_kinect(data, "rectangle", "train", spec)[1], spec).numpy()
    s = {c: nearest_neighbour_scores(train, to_tensor(load_kinect(data, c, "val", spec)[1][:n_val], spec).numpy(),
                                     fg_power=fg_power) for c in CLASSES}
    return detection_metrics(s["rectangle"], np.r_[s["cylinder"], s["sphere"]])["auroc"]


def test_eval_reports_plain_and_model_preprocessing_baselines_with_their_labels(tmp_path, kinect_root,
                                                                                tiny_generator):
    """A model with colour_norm gray: the old header printed 'nearest-neighbour MSE' computed on the
    model's colour_norm next to a nuisance-table baseline on plain preprocessing, neither saying so."""
    from edge_ad.cli import main
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec, plain_spec
    data = copy_kinect_layout(kinect_root, tmp_path / "kin", {"val": (4, "val"), "train": (5, "train")})
    from edge_ad.models.search import checkpoint_search_config
    from edge_ad.runtime.config import SearchConfig
    spec = PreprocessSpec(colour_norm="gray", colour_reference=(0.3, 0.5, 0.7))
    ck = tmp_path / "g.pt"
    # a floor other than the default 0.01 (review 16 #6: the script divided by max(fg, 0.01) whatever the
    # model's), high enough to change the fg^0.5 ranking of these frames
    save_checkpoint(ck, tiny_generator, preprocess=spec,
                    scoring={"search": SearchConfig(k=0, n_seed=1, score_fg_power=0.5, fg_floor=0.3).to_dict()})
    r = CliRunner().invoke(main, ["eval", "--model", str(ck), "--data", str(data), "--class", "rectangle", "--k", "0",
                                  "--n-seed", "1", "--fg-power", "0.5", "--nuisance-set", "shift:1",
                                  "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    plain, model = "(plain preprocessing)", "(model preprocessing: colour_norm gray)"
    names = [f"nearest-neighbour MSE {plain}", f"nearest-neighbour MSE per foreground pixel {plain}",
             f"nearest-neighbour MSE/fg^0.5 {plain}", f"nearest-neighbour MSE {model}",
             f"nearest-neighbour MSE per foreground pixel {model}", f"nearest-neighbour MSE/fg^0.5 {model}",
             f"foreground area {plain}"]
    assert sorted(rep["baselines"]) == sorted(names)
    defs = rep["baseline_definitions"]
    assert sorted(defs) == sorted(names)
    for n in names:
        assert defs[n]["preprocessing"] == ("model" if model in n else "plain") and defs[n]["train_frames"] == 5
        assert f"baseline {n}" in r.output
    assert defs[f"nearest-neighbour MSE {model}"]["levers"] == "colour_norm gray"
    assert defs[f"nearest-neighbour MSE per foreground pixel {plain}"]["fg_power"] == 1.0
    # one floor rule (baselines.baseline_fg_floor): the fg^1 at 0.01, the model's power at its floor
    assert "max(foreground share, 0.01) ** 1" in defs[f"nearest-neighbour MSE per foreground pixel {plain}"]["score"]
    assert "max(foreground share, 0.3) ** 0.5" in defs[f"nearest-neighbour MSE/fg^0.5 {plain}"]["score"]
    # each value computed on the preprocessing its label names
    for p, label in ((0.0, "nearest-neighbour MSE"), (1.0, "nearest-neighbour MSE per foreground pixel")):
        assert rep["baselines"][f"{label} {plain}"]["overall"] == pytest.approx(
            _expected_auroc(data, plain_spec(spec), p, 4))
        assert rep["baselines"][f"{label} {model}"]["overall"] == pytest.approx(_expected_auroc(data, spec, p, 4))
    # the nuisance table's column is the header's plain fg^1 baseline, and says so
    nu = rep["nuisance"]
    assert nu["baseline"].startswith(f"nearest-neighbour MSE per foreground pixel {plain}")
    assert nu["conditions"]["clean"]["baseline_auroc"] == pytest.approx(
        rep["baselines"][f"nearest-neighbour MSE per foreground pixel {plain}"]["overall"])
    assert "NN baseline column: nearest-neighbour MSE per foreground pixel (plain preprocessing)" in r.output
    # models/kinect-rgbd/nn_baselines.py (HISTORY.md's table of every variant) reads the same numbers, its
    # preprocessing and floor (0.3) taken from the checkpoint as main() takes them (review 16b #5)
    from conftest import load_kinect_script
    from edge_ad.runtime.nuisance import parse_nuisance
    assert checkpoint_search_config(ck).fg_floor == 0.3
    table = load_kinect_script("nn_baselines").nn_variants(data, "rectangle", ck,
                                                           suite={"shift 1 px": parse_nuisance("shift:1")})
    assert sorted(table) == sorted((w, p) for w in ("plain", "model: colour_norm gray") for p in (0.0, 0.5, 1.0))
    for (w, p), row in table.items():
        name = {0.0: "nearest-neighbour MSE", 0.5: "nearest-neighbour MSE/fg^0.5",
                1.0: "nearest-neighbour MSE per foreground pixel"}[p] + (f" {plain}" if w == "plain" else f" {model}")
        assert row["clean"] == pytest.approx(rep["baselines"][name]["overall"]), name
    assert table["plain", 1.0]["mean"] == pytest.approx(nu["mean"]["baseline_auroc"])


def test_eval_on_plain_preprocessing_reports_the_plain_baselines_only(tmp_path, kinect_root, tiny_generator):
    """A model preprocessing as plain (here a colour_reference without colour_norm, as the shipped
    rectangle; or --scoring reference): no model-preprocessing rows, which would repeat the plain ones."""
    from edge_ad.cli import main
    from edge_ad.models import save_checkpoint
    from edge_ad.runtime.preprocess import PreprocessSpec
    data = copy_kinect_layout(kinect_root, tmp_path / "kin", {"val": (3, "val"), "train": (3, "train")})
    ck = tmp_path / "g.pt"
    save_checkpoint(ck, tiny_generator, preprocess=PreprocessSpec(colour_reference=(0.3, 0.5, 0.7)))
    r = CliRunner().invoke(main, ["eval", "--model", str(ck), "--data", str(data), "--class", "rectangle", "--k", "0",
                                  "--n-seed", "1", "--out", str(tmp_path / "ev")])
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert sorted(rep["baselines"]) == sorted(f"{n} (plain preprocessing)" for n in (
        "nearest-neighbour MSE", "nearest-neighbour MSE per foreground pixel", "foreground area"))
    assert {d["preprocessing"] for d in rep["baseline_definitions"].values()} == {"plain"}
