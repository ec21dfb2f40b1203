"""models/kinect-rgbd/silhouette_levers.py: its term-by-term rebuild of a frame's score is the score edge-ad eval
gives (so its decomposition and lever rows are about the shipped scores), and each lever row takes the terms of
the versions it names."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, load_kinect_script


@pytest.fixture(scope="module")
def sl():
    return load_kinect_script("silhouette_levers")


def test_terms_rebuild_the_score_eval_gives(sl, kinect_root):
    """rectangle.pt: the latent bank, the pixel memory and the 1-px shift-min all in play."""
    from edge_ad.models.checkpoint import CheckpointScoring
    from edge_ad.models.search import score_batch
    from edge_ad.runtime.preprocess import frame_to_uint8, normalize_uint8
    from edge_ad.runtime.sources.folder import read_pair
    path = REPO / "models" / "kinect-rgbd" / "rectangle.pt"
    m = sl.Model(path, kinect_root, "rectangle")
    ids = json.loads((kinect_root / "splits.json").read_text())
    frames = [read_pair(kinect_root / c, str(ids[c]["val"][0])) for c in ("rectangle", "sphere")]
    X = normalize_uint8(np.stack([frame_to_uint8(*f, m.spec) for f in frames]), m.spec)      # (2, 4, R, R)
    rebuilt = np.exp(sum(m.log_terms(m.terms(X, paired=False)).values()).min(1))           # (2,)
    st = CheckpointScoring.read(path)
    want = score_batch(m.G, X, m.cfg, encoder=st.encoder(), latent_bank=st.latent_bank(),
                       bank_rows_per_frame=st.bank_augment(), pixel_memory=m.pixels)
    np.testing.assert_allclose(rebuilt, want, rtol=1e-4)
    # the paired (dil version's) distances only ever add rows: never farther than the file's memories
    paired = m.terms(X, paired=True)
    plain = m.terms(X, paired=False)
    assert (paired["d_lat"] <= plain["d_lat"]).all() and (paired["d_pix"] <= plain["d_pix"]).all()


def test_lever_rows_take_the_versions_they_name(sl):
    z = np.zeros((2, 1))
    lt = {"id": {"L": z + 1, "d_lat": z + 5, "d_pix": z + 1, "fg": z},
          "ero": {"L": z + 9, "d_lat": z + 0, "d_pix": z + 9, "fg": z},
          "dil": {"L": z + 2, "d_lat": z + 3, "d_pix": z + 0, "fg": z + 1}}
    rows = sl.levers(lt)
    np.testing.assert_allclose(rows["shipped"], 7)                    # the frame as given
    np.testing.assert_allclose(rows["paired d_lat"], 1 + 0 + 1)        # ero's latent, the rest of id
    np.testing.assert_allclose(rows["paired d_lat + d_pix"], 1 + 0 + 0)
    np.testing.assert_allclose(rows["paired full min"], 6)            # dil's own score: 2 + 3 + 0 + 1
    np.testing.assert_allclose(rows["paired full min over id, dil"], 6)
    np.testing.assert_allclose(rows["paired full min, ero x 2"], 6)        # ero's 18 + log 2 stays above
    lt["ero"]["L"] = z - 9                                            # ero's own score 0: 0 + log 2 wins
    np.testing.assert_allclose(sl.levers(lt, ero_weight=2.0)["paired full min, ero x 2"], np.log(2.0))


def test_opened_drops_one_pixel_lines_and_keeps_a_blob(sl):
    depth = np.zeros((12, 12), np.uint8)
    depth[2:7, 2:7] = 50                                              # a 5 x 5 blob
    depth[9, :] = 80                                                  # a 1-px line
    rgb = np.repeat(depth[..., None], 3, -1)
    _, d = sl.opened(rgb, depth)
    assert (d[2:7, 2:7] > 0).all() and (d[9] == 0).all()
