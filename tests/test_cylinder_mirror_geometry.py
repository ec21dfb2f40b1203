"""The shipped cylinder.pt under a mirrored pose that is also rolled or zoomed (issue 12, eleventh pass): audit 20
found the ninth-pass file's only AUROC misses there (mirror + roll 3 deg 0.923 / 41 % false alarms, mirror + zoom
1.03x 0.931 / 29 %, 0.97x 0.933 / 26 %): its memories held mirrored copies and zoomed / rolled copies but no
mirrored zoom or roll. Released: 0.987 / 5 %, 0.983 / 5 %, 0.984 / 4 % (models/kinect-rgbd/HISTORY.md,
"Eleventh pass ... cylinder"). Twelfth pass: zoom copies at +-5 % in both memories (zoom 1.05x alone was the open
row: 0.961 / 16 % false alarms; "Twelfth pass ... cylinder"). Thirteenth pass: mirrored zoom copies at +-5 % too
(mirror + zoom 1.05x was the open row: 0.960 / 20 %; "Thirteenth pass ... cylinder"). Seventeenth pass: the pixel
distance's own shift search at 4 px instead of 3 (a 4-px camera shift was the open row: 0.926 / 44 %; "Seventeenth
pass ... cylinder"). Eighteenth pass (session 32): zoom copies at +-7 % and +-9 % (as is and mirrored) and roll
copies at +-5 deg in both memories (zoom 1.1x was the open row: 0.932 / 31 %; "Eighteenth pass ... cylinder")."""
from pathlib import Path

import pytest

from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint
from edge_ad.models.evaluate import nuisance_suite, raw_groups
from edge_ad.models.search import (checkpoint_bank_augment, checkpoint_encoder, checkpoint_latent_bank,
                                   checkpoint_search_config, score_batch)
from edge_ad.runtime.nuisance import parse_nuisance

CYLINDER = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / "cylinder.pt"
MIRRORED_GEOMETRY = ["mirror+scale:1.03", "mirror+scale:0.97", "mirror+rotate:3", "mirror+rotate:-3"]
ZOOM5 = ["scale:1.05", "scale:0.95"]   # the twelfth pass's copies, after the eleventh pass's
MIRROR_ZOOM5 = ["mirror+scale:1.05", "mirror+scale:0.95"]   # the thirteenth pass's, after those
ZOOM7_ROLL5_ZOOM9 = ["scale:1.07", "scale:0.93", "mirror+scale:1.07", "mirror+scale:0.93", "rotate:5", "rotate:-5",
                     "scale:1.09", "scale:0.91", "mirror+scale:1.09", "mirror+scale:0.91"]   # the eighteenth pass's


def test_both_cylinder_memories_hold_mirrored_zoom_and_roll_copies():
    """Latent bank: each train frame + 72 copies (the mirror, the 5 x 5 2-px shift grid as is and mirrored, zoom
    +-3 %, roll 3 deg, blur, the four mirrored zoom / roll copies, zoom +-5 % and mirrored zoom +-5 %, and the
    eighteenth pass's zoom +-7 % / +-9 % as is and mirrored and roll +-5 deg, all trusted as the unmirrored zoom /
    roll copies); pixel memory: the 300 train frames + the same 24 geometry copies each (7500 rows); the threshold
    read at 8 % of the 400 normals. The seventeenth-pass file (62 / 14 copies, no 7 % / 9 % zoom) fails this."""
    ck = read_checkpoint(CYLINDER)
    layout = checkpoint_bank_augment(CYLINDER)
    new = MIRRORED_GEOMETRY + ZOOM5 + MIRROR_ZOOM5 + ZOOM7_ROLL5_ZOOM9
    assert len(layout) == 72 and layout[-18:] == new, layout[-18:]
    assert len(checkpoint_latent_bank(CYLINDER)) == 300 * 73
    cfg = checkpoint_search_config(CYLINDER)
    assert set(new) <= set(cfg.bank_trusted_augment)
    assert cfg.score_shift_radius == 2 and cfg.uses_pixel_memory
    assert cfg.pixel_shift_radius == 4                     # the seventeenth pass's (the thirteenth's: 3)
    pixel_augment = ck["scoring"]["pixel_memory_info"]["augment"]
    assert pixel_augment[-18:] == new and len(pixel_augment) == 24
    assert ck["scoring"]["threshold"]["target_fpr"] == 0.08 and ck["scoring"]["threshold"]["n_normal"] == 400


@pytest.mark.slow   # the torch path on real frames: minutes at load (still run in CI)
def test_the_cylinder_meets_the_targets_mirrored_and_rolled(kinect_root):
    """val at the shipped threshold under mirror + roll 3 deg, the ninth pass's worst row (0.923 / 41 % on the
    100 normals, 200 anomalies): the targets. To keep CI short, all 100 normals (the false-alarm rate is the
    old file's failure) and the first 50 anomalies of each class: released 0.998 / 5 % / 98 %, clean 0.996 / 6 %
    / 99 %; the ninth-pass file 0.975 / 41 % on these frames."""
    G, E, cfg = load_generator(CYLINDER), checkpoint_encoder(CYLINDER), checkpoint_search_config(CYLINDER)
    bank, layout = checkpoint_latent_bank(CYLINDER), checkpoint_bank_augment(CYLINDER)
    pixels = CheckpointScoring.read(CYLINDER).pixel_memory(G.preprocess)
    thr = read_checkpoint(CYLINDER)["scoring"]["threshold"]["value"]
    raw = {g: frames if g == "cylinder" else frames[:50]
           for g, frames in raw_groups(kinect_root, "cylinder", "val", None, None, 0, 0, 0).items()}
    suite = {(n := parse_nuisance("mirror+rotate:3")).name: n}
    res = nuisance_suite(lambda X: score_batch(G, X, cfg, batch_frames=64, encoder=E, latent_bank=bank,
                                               bank_rows_per_frame=layout, pixel_memory=pixels),
                         raw, "cylinder", suite, G.preprocess, thr)
    clean, r = res["conditions"]["clean"], res["conditions"]["mirror + rotate +3 deg"]
    assert clean["auroc"] >= 0.97 and clean["false_alarm_rate"] <= 0.10 and clean["anomalies_flagged"] >= 0.90, clean
    assert len(r["scores"]["cylinder"]) == 100 and len(r["scores"]["rectangle"]) == len(r["scores"]["sphere"]) == 50
    assert r["auroc"] >= 0.95 and r["false_alarm_rate"] <= 0.15, (r["auroc"], r["false_alarm_rate"])
    assert r["anomalies_flagged"] >= 0.90, r["anomalies_flagged"]


def _zoomed(kinect_root, text, k, normals=slice(None), anomalies=25):
    """(AUROC, threshold_rates) at the shipped threshold under `text` (a deterministic zoom / mirror) of the val
    normals[normals] (the false-alarm rate is what the old files fail) and the first `anomalies` of each other
    class (no clean pass: test_quality_kinect asserts clean on the whole split), as `edge-ad eval` draws
    condition k."""
    from edge_ad.models.evaluate import detection_metrics, threshold_rates
    from edge_ad.runtime.nuisance import frame_rng
    from edge_ad.runtime.preprocess import frame_to_uint8, normalize_uint8
    import numpy as np

    G, E, cfg = load_generator(CYLINDER), checkpoint_encoder(CYLINDER), checkpoint_search_config(CYLINDER)
    bank, layout = checkpoint_latent_bank(CYLINDER), checkpoint_bank_augment(CYLINDER)
    pixels = CheckpointScoring.read(CYLINDER).pixel_memory(G.preprocess)
    thr = read_checkpoint(CYLINDER)["scoring"]["threshold"]["value"]
    nuis = parse_nuisance(text)
    s = {}
    for g, (name, frames) in enumerate(raw_groups(kinect_root, "cylinder", "val", None, None, 0, 0, 0).items()):
        keep = range(len(frames))[normals if name == "cylinder" else slice(anomalies)]      # the frames' val indices
        u8 = np.stack([frame_to_uint8(*nuis(*frames[i], frame_rng(0, 100000 * g + i, k)), G.preprocess)
                       for i in keep])                                                        # (N, R, R, 4)
        s[name] = np.asarray(score_batch(G, normalize_uint8(u8, G.preprocess), cfg, batch_frames=64, encoder=E,
                                         latent_bank=bank, bank_rows_per_frame=layout, pixel_memory=pixels))
    normal = s.pop("cylinder")
    anomalous = np.concatenate(list(s.values()))
    assert len(normal) == len(range(100)[normals]) and len(anomalous) == 2 * anomalies
    return detection_metrics(normal, anomalous)["auroc"], threshold_rates(normal, anomalous, thr)


@pytest.mark.slow   # the torch path on real frames: minutes at load (still run in CI)
def test_the_cylinder_meets_the_targets_zoomed_1_05(kinect_root):
    """val at the shipped threshold under zoom 1.05x, the eleventh pass's open row (0.961 / 16 % on the 100
    normals, 200 anomalies): the targets, on all 100 normals and the first 25 anomalies per class (150 frames):
    twelfth pass 0.986 / 7 % / 96 %; the eleventh-pass file 0.964 / 16 % / 96 % on these frames (per-frame scores
    of both runs: models/kinect-rgbd/HISTORY.md, "Twelfth pass ... cylinder"). The AUROC bound 0.975 (stricter
    than the target's 0.95) is what fails the eleventh-pass file (0.964 vs 0.986): its 16 % against the 15 %
    false-alarm bound is one frame of 100. Cost: ~2 min at load (150 frames on the torch path; review 22 #17)."""
    auroc, rates = _zoomed(kinect_root, "scale:1.05", 1)
    assert auroc >= 0.975 and rates["false_alarm_rate"] <= 0.15, (auroc, rates)
    assert rates["anomalies_flagged"] >= 0.90, rates


@pytest.mark.slow   # the torch path on real frames: minutes at load (still run in CI)
def test_the_cylinder_meets_the_targets_mirrored_and_zoomed_1_05(kinect_root):
    """val at the shipped threshold under mirror + zoom 1.05x, the twelfth pass's open row (0.960 / 20 % on the
    100 normals, 200 anomalies): the targets. To keep CI short, the second half of the normals (val 50-99, where
    16 of the old file's 20 false alarms are) and the first 10 anomalies per class (70 frames): released 0.999 /
    8 % / 100 %; the twelfth-pass file 0.956 / 32 % / 100 % on these frames (per-frame scores of both:
    models/kinect-rgbd/HISTORY.md, "Thirteenth pass ... cylinder"): it fails both bounds. Cost: 220 s at load ~7."""
    auroc, rates = _zoomed(kinect_root, "mirror+scale:1.05", 4, normals=slice(50, 100), anomalies=10)
    assert auroc >= 0.975 and rates["false_alarm_rate"] <= 0.15, (auroc, rates)
    assert rates["anomalies_flagged"] >= 0.90, rates


@pytest.mark.slow   # the torch path on real frames: minutes at load (still run in CI)
def test_the_cylinder_tolerates_a_4_px_camera_shift(kinect_root):
    """val at the shipped threshold with every frame moved 4 px in a random direction (session 27's open row:
    0.926 / 44 % false alarms with the thirteenth pass), all 100 normals and the first 10 anomalies per class:
    the seventeenth pass (pixel search radius 4) 0.994 / 15 % / 100 %; the same file with the thirteenth pass's
    radius 3 0.976 / 40 % (models/kinect-rgbd/HISTORY.md, "Seventeenth pass ... cylinder"). The bounds (0.985,
    20 %) are what radius 3 fails by a margin; the target's 15 % is met at the limit (15 of 100). ~1 min idle."""
    auroc, rates = _zoomed(kinect_root, "shift:4", 1, anomalies=10)
    assert auroc >= 0.985 and rates["false_alarm_rate"] <= 0.20, (auroc, rates)
    assert rates["anomalies_flagged"] >= 0.90, rates


@pytest.mark.slow   # the torch path on real frames: minutes at load (still run in CI)
def test_the_cylinder_meets_the_targets_zoomed_1_1(kinect_root):
    """val at the shipped threshold under zoom 1.1x (the camera ~7 cm closer; audit 30 #4: the seventeenth pass
    0.932 / 31 % on the 100 normals, 200 anomalies), all 100 normals and the first 25 anomalies per class: the
    eighteenth pass (copies at +-7 % and +-9 %) 0.979 / 15 % / 98 %; the seventeenth-pass file 0.936 / 31 % / 98 % on
    these frames (session 32). The bounds (AUROC 0.95, false alarms 20 %) are what the seventeenth pass fails by a
    margin; the target's 15 % is met at the limit (HISTORY.md, "Eighteenth pass ... cylinder"). ~2 min at load 5."""
    auroc, rates = _zoomed(kinect_root, "scale:1.1", 1)
    assert auroc >= 0.95 and rates["false_alarm_rate"] <= 0.20, (auroc, rates)
    assert rates["anomalies_flagged"] >= 0.90, rates
