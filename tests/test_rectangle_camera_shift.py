"""The shipped rectangle.pt under a camera moved 3-4 px (issue 12, twelfth pass): audit 21 found the tenth-pass
file over the false-alarm limit there (fixed shift (-3, -3) 16 %, with brightness +15 % 25 %, shift 4 px 24-26 %):
its latent bank held shifted copies on the 2-px grid only, weighed as strangers (w = 2). Released: the 2-px
grid's copies trusted, the 7 x 7 grid's outer ring (shifts at +-3 px) added at w = 2 (models/kinect-rgbd/README.md,
"Twelfth pass (issue 12): rectangle")."""
from pathlib import Path

import numpy as np

from edge_ad.models.checkpoint import read_checkpoint
from edge_ad.models.search import checkpoint_bank_augment, checkpoint_latent_bank, checkpoint_search_config

RECTANGLE = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / "rectangle.pt"
GRID2 = [f"shift:{dy},{dx}" for dy in (-2, 0, 2) for dx in (-2, 0, 2) if (dy, dx) != (0, 0)]
RING3 = [f"shift:{dy},{dx}" for dy in range(-3, 4) for dx in range(-3, 4) if max(abs(dy), abs(dx)) == 3]


def test_rectangle_bank_trusts_the_2px_grid_and_holds_the_3px_ring():
    """Latent bank: each train frame + 46 copies (the tenth pass's 22: mirror, the 2-px grid as is and mirrored,
    five light copies; then the 24 shifts at +-3 px); the 2-px grid's 8 copies and the two brightened ones count
    as original rows, the ring and the rest weigh w = 2; powers, shift-min, pixel memory and threshold rule kept."""
    ck = read_checkpoint(RECTANGLE)
    layout = checkpoint_bank_augment(RECTANGLE)
    assert len(layout) == 46 and layout[-24:] == RING3 and set(GRID2) <= set(layout[:22])
    assert len(checkpoint_latent_bank(RECTANGLE)) == 300 * 47
    cfg = checkpoint_search_config(RECTANGLE)
    assert set(cfg.bank_trusted_augment) == set(GRID2) | {"brightness:1.2", "mirror+brightness:1.2"}
    assert cfg.bank_augment_weight == 2.0 and cfg.score_shift_radius == 1 and cfg.pixel_shift_radius == 3
    assert (cfg.score_latent_power, cfg.score_pixel_power, cfg.score_fg_power) == (2.0, 2.0, 4.0)
    assert len(ck["scoring"]["pixel_memory_info"]["augment"]) == 6
    assert ck["scoring"]["threshold"]["target_fpr"] == 0.07 and ck["scoring"]["threshold"]["n_normal"] == 400


def test_rectangle_false_alarms_with_the_camera_moved_3_to_4_px(kinect_export, kinect_root):
    """The 100 val normals at the shipped threshold (the exported runtime, batch graphs), camera moved
    (-3, -3) with brightness +15 % and 4 px in a direction drawn per frame (as ``edge-ad eval --nuisance-set``
    draws it at place 3 of the twelfth pass's list, nuisance seed 0): the tenth-pass file flags 25 % and 24 % of
    them, the released one 17 % and 15 %. Bound 20 % for both: between the two (the target's 15 % is not met by the
    first: models/kinect-rgbd/README.md, twelfth pass), so that the old file fails."""
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
