"""The shipped sphere.pt under a mirrored pose with a second nuisance and under zoom (issue 12, eleventh and
twelfth passes): the rows audit 20 found over the false-alarm limit (the ninth-pass file: mirror + scale 1.03x
0.966 / 19 %, mirror + brightness +30 % 21 %, scale 1.04x 24 %) and the one the eleventh pass left open (mirror +
brightness +35 % 0.973 / 18 %) meet the targets at the shipped threshold, as measured at release
(models/kinect-rgbd/HISTORY.md, "Twelfth pass: sphere": 11 / 8 / 6 / 12 %). Since session 34 the shipped file carries
the silhouette lever (w_e 2): every row is measured as it scores, the lever on (its one stated cost: the 10 % zoom
test, which also holds the file with the lever off to the floors of before)."""
import numpy as np

from conftest import SPHERE, checkpoint_raw_scorer
from edge_ad.models.checkpoint import read_checkpoint
from edge_ad.models.evaluate import nuisance_suite, raw_groups
from edge_ad.models.search import checkpoint_bank_augment, checkpoint_latent_bank, checkpoint_search_config
from edge_ad.runtime.nuisance import parse_nuisance

ZOOM = ["mirror+scale:1.04", "mirror+scale:0.96", "scale:1.04", "scale:0.96"]
ZOOM7 = ["scale:1.07", "scale:0.93", "mirror+scale:1.07", "mirror+scale:0.93"]     # thirteenth pass (session 29)


SPURS = ["depth-edge-spurs:0.1", "depth-edge-spurs:0.2", "mirror+depth-edge-spurs:0.1", "mirror+depth-edge-spurs:0.2"]
RAMPS = [f"light-ramp:0.15,{d}" for d in (0, 90, 180, 270)]
SHADOWS = [f"shadow:0.2,{d}" for d in (0, 90, 180, 270)]
SHADOWS35 = [f"shadow:0.35,{d}" for d in (0, 90, 180, 270)]
# fourteenth pass (session 31, audit 31 #1-#4): ragged silhouettes, light from one side, a shadow over half the
# object, a camera's sharpening; every one of these copies counts as an original row (trusted)
LOCAL = [*SPURS, *RAMPS, *SHADOWS, "sharpen:0.7", "depth-edge-spurs:0.5", "mirror+depth-edge-spurs:0.5", *SHADOWS35]
# fifteenth pass (session 32): half shadows along the diagonals too (the fourteenth pass's diagonal row: 27 %)
DIAGONAL_SHADOWS = [f"shadow:0.25,{d}" for d in (45, 135, 225, 315)]


def _sphere_rows(kinect_root, texts, lever_off: bool = False) -> dict:
    """``nuisance_suite``'s conditions (clean, then each nuisance text) for the shipped sphere.pt on val, at its
    threshold, scored on the torch path as the shipped file scores (generator, encoder, latent bank: the checkpoint's
    own; since session 34 with the silhouette lever, w_e 2: each perturbed raw frame's versions, the dil version also
    against the paired rows, the least weighted score, as ``edge-ad eval`` scores it). ``lever_off``: the same file
    with the lever off (w_e 0, as ``edge-ad eval --silhouette-weight 0``: the model as released before session 34)."""
    assert checkpoint_search_config(SPHERE).silhouette_versions_weight == 2.0      # the file these rows measure
    G, score_raw = checkpoint_raw_scorer(SPHERE, lever_off=lever_off)
    thr = read_checkpoint(SPHERE)["scoring"]["threshold"]["value"]
    raw = raw_groups(kinect_root, "sphere", "val", None, None, 0, 0, 0)
    suite = {(n := parse_nuisance(t)).name: n for t in texts}
    if lever_off:
        return nuisance_suite(lambda X: score_raw(X)[0], raw, "sphere", suite, G.preprocess, thr)["conditions"]
    return nuisance_suite(score_raw, raw, "sphere", suite, G.preprocess, thr, score_raw=True)["conditions"]


def test_the_sphere_bank_holds_zoomed_mirrored_relit_and_locally_lit_copies():
    """The bank: each train frame, mirrored, zoomed +-4 % as it is and mirrored, mirrored under a mild tone
    curve and mirrored and brightened by 30 % (twelfth pass), zoomed +-7 % as it is and mirrored (thirteenth pass),
    these at weight 1.2; since the fourteenth pass also under edge spurs, light ramps, half shadows and sharpening,
    since the fifteenth under half shadows along the diagonals, all trusted; the threshold read at 2 % of the 400
    normals (was 4 %). The fourteenth-pass file (31 rows per train frame) fails this."""
    ck = read_checkpoint(SPHERE)
    assert checkpoint_bank_augment(SPHERE) == ["mirror", *ZOOM, "mirror+gamma:0.9", "mirror+brightness:1.3", *ZOOM7,
                                               *LOCAL, *DIAGONAL_SHADOWS]
    assert len(checkpoint_latent_bank(SPHERE)) == 300 * 35
    cfg = checkpoint_search_config(SPHERE)
    assert cfg.bank_augment_weight == 1.2 and sorted(cfg.bank_trusted_augment) == sorted(LOCAL + DIAGONAL_SHADOWS)
    assert ck["scoring"]["threshold"]["target_fpr"] == 0.02 and ck["scoring"]["threshold"]["n_normal"] == 400


def test_the_sphere_meets_the_targets_mirrored_and_zoomed(kinect_root):
    """val at the shipped threshold: clean, three of audit 20's rows and the eleventh pass's open row (no noise:
    the same numbers in any list)."""
    res = _sphere_rows(kinect_root, ("mirror+scale:1.03", "mirror+brightness:1.3", "scale:1.04",
                                     "mirror+brightness:1.35"))
    assert len(res) == 5 and all(len(r["scores"]["sphere"]) == 100 for r in res.values())
    clean = res.pop("clean")
    assert clean["auroc"] >= 0.97 and clean["false_alarm_rate"] <= 0.10 and clean["anomalies_flagged"] >= 0.90, clean
    for name, r in res.items():
        assert r["auroc"] >= 0.95 and r["false_alarm_rate"] <= 0.15, (name, r["auroc"], r["false_alarm_rate"])
    # the score still tells the classes apart under the zoom: most anomalies flagged
    assert min(r["anomalies_flagged"] for r in res.values()) >= 0.90
    assert np.isfinite(res["scale 1.04x"]["scores"]["sphere"]).all()


def test_the_sphere_tolerates_a_10_percent_zoom(kinect_root):
    """Audit 29 #11: the camera 7 cm closer or farther (zoom 1.1x / 0.9x at ~0.7 m) gave the twelfth-pass sphere 26 %
    false alarms at 1.1x, 20 % mirrored, and 0.963 / 87.5 % flagged at 0.9x. The thirteenth pass's bank copies at
    +-7 % (not the test's own zooms) bring, at the shipped threshold (HISTORY.md "Thirteenth pass: sphere"): mirror +
    1.1x 20 -> 15 %, 0.9x AUROC 0.963 -> 0.974 (9 -> 6 %), brightness +20 % + 0.9x 11 -> 6 %; the twelfth-pass file
    fails the first two bounds below.
    The shipped file has carried the silhouette lever since session 34 (w_e 2), at a stated cost on a shrunk object:
    the dil version of a 0.9x frame, 1 model px wider, finds an anomaly nearer to the normal frames (and the paired
    rows), so fewer are flagged (HISTORY.md "Sixteenth pass: sphere"; measured on these rows: 0.9x 0.971 / 6 % / 88 %
    flagged with w_e 0 -> 0.969 / 3 % / 80.5 % with the lever; brightness +20 % + 0.9x 0.969 / 9 % / 88 % -> 0.966 /
    5 % / 80.5 %). Both are scored on the same frames: the file with the lever off (w_e 0) keeps the floors of
    before exactly (the bank's zoom copies still guarded), and the shipped file with the lever is held at the issue's
    targets with that cost bounded (0.9x rows: AUROC >= 0.96, false alarms <= 8 %, flagged >= 78 %)."""
    texts = ("mirror+scale:1.1", "scale:0.9", "brightness:1.2+scale:0.9")
    names = ("mirror + scale 1.1x", "scale 0.9x", "brightness +20% + scale 0.9x")
    off = _sphere_rows(kinect_root, texts, lever_off=True)
    mirrored, shrunk, lit = (off[n] for n in names)
    assert mirrored["false_alarm_rate"] <= 0.15 and mirrored["auroc"] >= 0.95, mirrored["false_alarm_rate"]
    assert shrunk["auroc"] >= 0.97 and shrunk["false_alarm_rate"] <= 0.08, (shrunk["auroc"], shrunk["false_alarm_rate"])
    assert lit["false_alarm_rate"] <= 0.10 and lit["anomalies_flagged"] >= 0.88, lit["false_alarm_rate"]
    on = _sphere_rows(kinect_root, texts)                                           # the shipped file, the lever on
    mirrored, shrunk, lit = (on[n] for n in names)
    assert mirrored["false_alarm_rate"] <= 0.15 and mirrored["auroc"] >= 0.95, mirrored["false_alarm_rate"]
    for name, r in (("scale 0.9x", shrunk), ("brightness +20% + scale 0.9x", lit)):
        assert r["auroc"] >= 0.96 and r["false_alarm_rate"] <= 0.08 and r["anomalies_flagged"] >= 0.78, \
            (name, r["auroc"], r["false_alarm_rate"], r["anomalies_flagged"])
    for n in names:    # plumbing, true by construction (min(S_id, ...) <= S_id at one threshold): both scorings ran
        assert on[n]["false_alarm_rate"] <= off[n]["false_alarm_rate"], n


def test_the_sphere_tolerates_light_from_one_side_a_half_shadow_and_sharpening(kinect_root):
    """Audit 31 #2-#4: the thirteenth-pass sphere read its shading, so light from one side (a +-20 % ramp top to
    bottom), a 30 % shadow over the left half and a camera's unsharp mask (amount 1) gave 24 / 48 / 23 % false alarms
    (val, at its threshold). The fourteenth pass's trusted copies (ramps of 15 %, shadows of 20 and 35 %, sharpening
    0.7: not the test's own rows) bring 6 / 17 / 10 % (HISTORY.md "Fourteenth pass: sphere"); the thirteenth-pass
    file fails every bound below. Deterministic rows: the same numbers in any list."""
    res = _sphere_rows(kinect_root, ("light-ramp:0.2,270", "shadow:0.3,0", "sharpen:1"))
    ramp, shade, sharp = res["light ramp 20% 270 deg"], res["shadow 30% 0 deg"], res["sharpen 1"]
    assert ramp["auroc"] >= 0.97 and ramp["false_alarm_rate"] <= 0.12, (ramp["auroc"], ramp["false_alarm_rate"])
    assert shade["auroc"] >= 0.95 and shade["false_alarm_rate"] <= 0.20, (shade["auroc"], shade["false_alarm_rate"])
    assert sharp["false_alarm_rate"] <= 0.15, sharp["false_alarm_rate"]
    assert min(r["anomalies_flagged"] for r in (ramp, shade, sharp)) >= 0.90


def test_the_sphere_tolerates_a_half_shadow_from_a_direction_between_its_copies(kinect_root):
    """A person or an arm between lamp and object casts a shadow from any direction. The fourteenth-pass sphere's
    shadow copies lay along the axes only: a 25 % shadow at 120 deg (between the fifteenth pass's copies at 90 and
    135 deg, so held out for both files) gave 0.941 / 20 % false alarms; the fifteenth pass's diagonal copies
    (shadow 25 % at 45 / 135 / 225 / 315 deg) bring 0.970 / 11 % / 94.5 % (val, at the shipped threshold; HISTORY.md
    "Fifteenth pass: sphere"). Deterministic row: the same numbers in any list."""
    res = _sphere_rows(kinect_root, ("shadow:0.25,120",))
    shade = res["shadow 25% 120 deg"]
    assert shade["auroc"] >= 0.95 and shade["false_alarm_rate"] <= 0.15, (shade["auroc"], shade["false_alarm_rate"])
    assert shade["anomalies_flagged"] >= 0.90, shade["anomalies_flagged"]
