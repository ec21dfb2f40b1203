"""The shipped cylinder.pt under a mirrored pose that is also rolled or zoomed (issue 12, eleventh pass): audit 20
found the ninth-pass file's only AUROC misses there (mirror + roll 3 deg 0.923 / 41 % false alarms, mirror + zoom
1.03x 0.931 / 29 %, 0.97x 0.933 / 26 %): its memories held mirrored copies and zoomed / rolled copies but no
mirrored zoom or roll. Released: 0.987 / 5 %, 0.983 / 5 %, 0.984 / 4 % (models/kinect-rgbd/README.md,
"Eleventh pass ... cylinder")."""
from pathlib import Path

from edge_ad.models.checkpoint import CheckpointScoring, load_generator, read_checkpoint
from edge_ad.models.evaluate import nuisance_suite, raw_groups
from edge_ad.models.search import (checkpoint_bank_augment, checkpoint_encoder, checkpoint_latent_bank,
                                   checkpoint_search_config, score_batch)
from edge_ad.runtime.nuisance import parse_nuisance

CYLINDER = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / "cylinder.pt"
MIRRORED_GEOMETRY = ["mirror+scale:1.03", "mirror+scale:0.97", "mirror+rotate:3", "mirror+rotate:-3"]


def test_both_cylinder_memories_hold_mirrored_zoom_and_roll_copies():
    """Latent bank: each train frame + 58 copies (the mirror, the 5 x 5 2-px shift grid as is and mirrored, zoom,
    roll, blur, and the four mirrored zoom / roll copies, trusted as the unmirrored ones); pixel memory: the 300
    train frames + 10 copies each; the threshold read at 8 % of the 400 normals."""
    ck = read_checkpoint(CYLINDER)
    layout = checkpoint_bank_augment(CYLINDER)
    assert len(layout) == 58 and layout[-4:] == MIRRORED_GEOMETRY
    assert len(checkpoint_latent_bank(CYLINDER)) == 300 * 59
    cfg = checkpoint_search_config(CYLINDER)
    assert set(MIRRORED_GEOMETRY) <= set(cfg.bank_trusted_augment)
    assert cfg.score_shift_radius == 2 and cfg.uses_pixel_memory
    pixel_augment = ck["scoring"]["pixel_memory_info"]["augment"]
    assert pixel_augment[-4:] == MIRRORED_GEOMETRY and len(pixel_augment) == 10
    assert ck["scoring"]["threshold"]["target_fpr"] == 0.08 and ck["scoring"]["threshold"]["n_normal"] == 400


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
