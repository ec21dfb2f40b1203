"""The shipped rectangle.pt under a camera moved 3-4 px (issue 12, twelfth and fifteenth passes): audit 21 found the
tenth-pass file over the false-alarm limit there (fixed shift (-3, -3) 16 %, with brightness +15 % 25 %, shift 4 px
24-26 %): its latent bank held shifted copies on the 2-px grid only, weighed as strangers (w = 2). The twelfth pass:
the 2-px grid's copies trusted, the 7 x 7 grid's outer ring (shifts at +-3 px) added at w = 2. The fifteenth pass's
candidate A2 (session 25; shipped in the sixteenth pass, session 26): 8 copies more, brightness 1.15 x the 2-px grid, trusted
(models/kinect-rgbd/HISTORY.md, "Fifteenth pass (issue 12): rectangle")."""
from pathlib import Path

import numpy as np

from edge_ad.models.checkpoint import read_checkpoint
from edge_ad.models.search import checkpoint_bank_augment, checkpoint_latent_bank, checkpoint_search_config

RECTANGLE = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / "rectangle.pt"
GRID2 = [f"shift:{dy},{dx}" for dy in (-2, 0, 2) for dx in (-2, 0, 2) if (dy, dx) != (0, 0)]
RING3 = [f"shift:{dy},{dx}" for dy in range(-3, 4) for dx in range(-3, 4) if max(abs(dy), abs(dx)) == 3]
BRIGHT_GRID2 = [f"brightness:1.15+{t}" for t in GRID2]


def test_rectangle_bank_trusts_the_2px_grid_and_holds_the_3px_ring():
    """Latent bank: each train frame + 54 copies (the tenth pass's 22: mirror, the 2-px grid as is and mirrored,
    five light copies; the twelfth pass's 24 shifts at +-3 px; then the fifteenth pass's 8 copies brightened
    1.15 x on the 2-px grid); the 2-px grid's 8 copies, its 8 brightened copies and the two brightened ones count
    as original rows, the ring and the rest weigh w = 2; powers, shift-min, pixel memory and threshold rule kept,
    the threshold the fifteenth pass's (0.000212802; the twelfth pass's was 0.0002225)."""
    ck = read_checkpoint(RECTANGLE)
    layout = checkpoint_bank_augment(RECTANGLE)
    assert len(layout) == 54 and layout[-8:] == BRIGHT_GRID2 and layout[-32:-8] == RING3
    assert set(GRID2) <= set(layout[:22])
    assert len(checkpoint_latent_bank(RECTANGLE)) == 300 * 55 == 16500
    cfg = checkpoint_search_config(RECTANGLE)
    assert set(cfg.bank_trusted_augment) == set(GRID2) | set(BRIGHT_GRID2) | {"brightness:1.2", "mirror+brightness:1.2"}
    assert cfg.bank_augment_weight == 2.0 and cfg.score_shift_radius == 1 and cfg.pixel_shift_radius == 3
    assert (cfg.score_latent_power, cfg.score_pixel_power, cfg.score_fg_power) == (2.0, 2.0, 4.0)
    assert len(ck["scoring"]["pixel_memory_info"]["augment"]) == 6
    thr = ck["scoring"]["threshold"]
    assert thr["target_fpr"] == 0.07 and thr["n_normal"] == 400
    assert abs(thr["value"] - 0.000212802) <= 5e-10 and thr["search"] == ck["scoring"]["search"]


def test_rectangle_false_alarms_with_the_camera_moved_3_to_4_px(kinect_export, kinect_root):
    """The 100 val normals at the shipped threshold (the exported runtime, batch graphs), camera moved
    (-3, -3) with brightness +15 % and 4 px in a direction drawn per frame (as ``edge-ad eval --nuisance-set``
    draws it at place 3 of the twelfth pass's list, nuisance seed 0): the tenth-pass file flags 25 % and 24 % of
    them, the twelfth-pass one 17 % and 15 %, the fifteenth-pass one (A2, shipped) 15 % and 14 %. Bound 20 % for
    both: between the tenth and the twelfth pass (the target's 15 % is not met by the twelfth's first row:
    models/kinect-rgbd/HISTORY.md, twelfth pass), so that the tenth-pass file fails."""
    from edge_ad.models.evaluate import raw_groups
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.nuisance import frame_rng, parse_nuisance

    s = Scorer.load(kinect_export, threads=1)
    normals = raw_groups(kinect_root, "rectangle", "val", None, None, 0, 0, 0)["rectangle"]
    assert len(normals) == 100
    rates = {}
    for text, place in (("brightness:1.15+shift:-3,-3", 5), ("shift:4", 3)):
        nu = parse_nuisance(text)
        frames = [nu(*f, frame_rng(0, i, place)) for i, f in enumerate(normals)]
        scores = np.array([r.score for r in s.score_batch(frames, seeds=[0] * len(frames))])
        rates[text] = float((scores > s.threshold).mean())
    assert rates["brightness:1.15+shift:-3,-3"] <= 0.20 and rates["shift:4"] <= 0.20, \
        f"false alarms at the threshold {s.threshold:.4g}: {rates}"
