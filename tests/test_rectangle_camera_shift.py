"""The shipped rectangle.pt under a camera moved 3-4 px (issue 12, twelfth and fifteenth passes): audit 21 found the
tenth-pass file over the false-alarm limit there (fixed shift (-3, -3) 16 %, with brightness +15 % 25 %, shift 4 px
24-26 %): its latent bank held shifted copies on the 2-px grid only, weighed as strangers (w = 2). The twelfth pass:
the 2-px grid's copies trusted, the 7 x 7 grid's outer ring (shifts at +-3 px) added at w = 2. The fifteenth pass's
candidate A2 (session 25; shipped in the sixteenth pass, session 26): 8 copies more, brightness 1.15 x the 2-px grid, trusted
(models/kinect-rgbd/HISTORY.md, "Fifteenth pass (issue 12): rectangle"). The eighteenth pass (session 30; audit 29 #11):
8 zoom copies more (+-5 % trusted, +-7 % at w = 2; the pixel memory +-5 % and +-7 %), the threshold at 6 %."""
from pathlib import Path

import numpy as np

from edge_ad.models.checkpoint import read_checkpoint
from edge_ad.models.search import checkpoint_bank_augment, checkpoint_latent_bank, checkpoint_search_config

RECTANGLE = Path(__file__).resolve().parents[1] / "models" / "kinect-rgbd" / "rectangle.pt"
GRID2 = [f"shift:{dy},{dx}" for dy in (-2, 0, 2) for dx in (-2, 0, 2) if (dy, dx) != (0, 0)]
RING3 = [f"shift:{dy},{dx}" for dy in range(-3, 4) for dx in range(-3, 4) if max(abs(dy), abs(dx)) == 3]
BRIGHT_GRID2 = [f"brightness:1.15+{t}" for t in GRID2]
ZOOM5 = ["scale:1.05", "scale:0.95", "mirror+scale:1.05", "mirror+scale:0.95"]
ZOOM7 = ["scale:1.07", "scale:0.93", "mirror+scale:1.07", "mirror+scale:0.93"]


def test_rectangle_bank_trusts_the_2px_grid_and_holds_the_3px_ring():
    """Latent bank: each train frame + 62 copies (the tenth pass's 22: mirror, the 2-px grid as is and mirrored,
    five light copies; the twelfth pass's 24 shifts at +-3 px; the fifteenth pass's 8 copies brightened 1.15 x on
    the 2-px grid; then the eighteenth pass's 8 zoom copies, +-5 % and +-7 %, as is and mirrored); the 2-px grid's 8
    copies, its 8 brightened copies, the two brightened ones and the four +-5 % zooms count as original rows, the
    ring, the +-7 % zooms and the rest weigh w = 2; powers, shift-min and threshold rule kept; the pixel memory
    holds the six light / mirror copies and four zooms; the threshold the eighteenth pass's (0.000189498 at 6 % of
    the 400 normals; the sixteenth pass's was 0.000212802 at 7 %)."""
    ck = read_checkpoint(RECTANGLE)
    layout = checkpoint_bank_augment(RECTANGLE)
    assert len(layout) == 62 and layout[-8:] == ZOOM5 + ZOOM7 and layout[-16:-8] == BRIGHT_GRID2
    assert layout[-40:-16] == RING3 and set(GRID2) <= set(layout[:22])
    assert len(checkpoint_latent_bank(RECTANGLE)) == 300 * 63 == 18900
    cfg = checkpoint_search_config(RECTANGLE)
    assert set(cfg.bank_trusted_augment) == (set(GRID2) | set(BRIGHT_GRID2) | set(ZOOM5)
                                             | {"brightness:1.2", "mirror+brightness:1.2"})
    assert cfg.bank_augment_weight == 2.0 and cfg.score_shift_radius == 1 and cfg.pixel_shift_radius == 3
    assert (cfg.score_latent_power, cfg.score_pixel_power, cfg.score_fg_power) == (2.0, 2.0, 4.0)
    pixel_copies = ck["scoring"]["pixel_memory_info"]["augment"]
    assert len(pixel_copies) == 10 and pixel_copies[-4:] == ["scale:1.05", "scale:0.95", "scale:1.07", "scale:0.93"]
    thr = ck["scoring"]["threshold"]
    assert thr["target_fpr"] == 0.06 and thr["n_normal"] == 400
    assert abs(thr["value"] - 0.000189498) <= 5e-10 and thr["search"] == ck["scoring"]["search"]


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


def test_rectangle_false_alarms_with_the_camera_10_percent_farther(kinect_export, kinect_root):
    """Audit 29 #11: the camera ~7 cm farther (zoom 0.9x at ~0.7 m) flagged 19 % of the 100 val normals with the
    sixteenth-pass file (its bank had no zoom copies), mirrored and 7 cm closer (mirror + 1.1x) 14 %. The eighteenth
    pass's zoom copies at +-5 % / +-7 % (not the test's own zooms) bring them to 12 % and 9 % at its threshold
    (HISTORY.md, "Eighteenth pass"); bounds 15 % (the issue's limit) and 12 %, which the sixteenth-pass file fails."""
    from edge_ad.models.evaluate import raw_groups
    from edge_ad.runtime import Scorer
    from edge_ad.runtime.nuisance import frame_rng, parse_nuisance

    s = Scorer.load(kinect_export, threads=1)
    normals = raw_groups(kinect_root, "rectangle", "val", None, None, 0, 0, 0)["rectangle"]
    rates = {}
    for text in ("scale:0.9", "mirror+scale:1.1"):       # both deterministic: no draw
        nu = parse_nuisance(text)
        frames = [nu(*f, frame_rng(0, i, 1)) for i, f in enumerate(normals)]
        scores = np.array([r.score for r in s.score_batch(frames, seeds=[0] * len(frames))])
        rates[text] = float((scores > s.threshold).mean())
    assert rates["scale:0.9"] <= 0.15 and rates["mirror+scale:1.1"] <= 0.12, \
        f"false alarms at the threshold {s.threshold:.4g}: {rates}"
