"""The scene's camera shift: the (dy, dx), up to ``max_shift`` (3; off by default for models with search steps, k > 0:
``default_max_shift``) model pixels, under which the model as exported fits
the scene's frames best (lowest mean log score: ``scene_camera_shift``; its latent factor measured
against the bank without its shifted copies, ``shift_search_memory``: copies made so that the
score tolerates a moved camera would let a shift pay for itself), stored as preprocess
scene_shift so every later frame is moved back the same way (measured on kinect-rgbd:
a (2, -2) or (-1, 3) camera shift of 50 rectangle frames is found exactly by the rectangle
model without a shift-min (the ninth pass), unshifted frames keep (0, 0)); taken only when the frames can tell (``choose_camera_shift``: it lowers
the geometric-mean score > 1.2x, in units of the score's latent power, and the frames one by one prefer it to no shift), else
(0, 0) and the record says none was identified; the shifts the frames cannot tell from it are
recorded. Each candidate is scored where it is (``camera_shift_fits``, ``Scorer.score_as_is``:
without the shift-min's copies and without the pixel distance's own shift search), so a
shift-tolerant model tells shifts apart as one without those tolerances. Until session 26 the
search scored with them, and the shipped cylinder (shift-min R = 2, pixel search R_p = 3) scored
most frames alike under neighbouring shifts: scene C of models/kinect-rgbd/new_scene.py (moved by
(2, -2)), 50 random frames, best fit (-2, 1) at 1.14x, none taken, 14 % false alarms on the rest;
scored where they are: (-2, 2) exactly (120x), 8 % (models/kinect-rgbd/HISTORY.md, "Fourteenth pass
(issue 12): cylinder"). (Rectangle without a shift-min, 50 frames: (2, -2) and (-1, 3) found
exactly, no other shift as good.)
Models with an align step ("centroid" or "component") keep (0, 0).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from ..binomial import binomial_tail
from ..latent_memory import LatentMemory, unshifted_rows
from ..preprocess import MAX_SCENE_SHIFT, aligned_uint8, move_uint8, normalize_uint8, shift_offsets
from .errors import CalibrationError

DEFAULT_MAX_SHIFT = 3        # model pixels searched for the scene's camera shift (0: keep the model's);
                             # models with search steps (k > 0) default to 0 (``default_max_shift``)
MIN_SHIFT_GAIN = np.log(1.2)  # a camera shift is taken when it lowers the scene's geometric-mean score > 1.2x,
                             # in units of the score's latent power (``shift_score_power``)
SHIFT_TIE_ALPHA = 0.05       # the frames' one-sided sign test at this level says a shift fits worse than the best
SIGN_TEST_MIN_FRAMES = int(np.floor(np.log(SHIFT_TIE_ALPHA) / np.log(0.5))) + 1   # 5: 0.5^5 < 0.05 <= 0.5^4, so it
                             # cannot say so with fewer frames that differ


def scene_camera_shift(scorer, u8: list, spec, radius: int, progress: Optional[Callable] = None) -> tuple:
    """The scene's camera shift to undo: the (dy, dx), |dy|, |dx| <= radius, that moves the scene's frames
    (``read_scene``'s u8, (R, R, 4) before align) to where the model, as exported, fits them best: the
    lowest mean log score over the frames (seed 0, ``camera_shift_fits``), taken only when the frames can
    tell (``choose_camera_shift``): it beats (0, 0) by more than MIN_SHIFT_GAIN, mean log score / the score's
    latent power (``shift_score_power``) (measured on kinect-rgbd, 20-50 frames, models of powers 1: a real
    2-3 px camera shift gains 0.25-1.1, unmoved frames 0 for a model without shift-min and 0.10-0.12 for one
    with R = 1, whose window the search could move until it scored frames where they are (session 26:
    ``camera_shift_fits``); the shipped rectangle, powers 2, R = 1, as searched now, on val frames
    (tests/test_calibrate.py): unmoved 0 (20 frames), moved by (2, -2) 2.98 (20 frames; 2.77 on 24 without its
    shift-min), the exact undo alone as good) and (0, 0) is not as good frame by frame. A model with an align
    step ("centroid" or "component") undoes shifts itself: (0, 0), nothing scored.
    The latent factor is measured against the bank without its shifted copies (``shift_search_memory``).
    Returns ((dy, dx), record): record {"radius", "mean_log_score_unshifted", "mean_log_score_best"} (None
    scores when nothing was searched) and, after a search, ``choose_camera_shift``'s fields ("identified",
    "best_fit", "as_good", "said", ...) and "latent_memory" (the bank rows searched: ``shift_search_memory``).
    ``progress(done, total, stage)``: with a pixel memory first stage
    "pixel tables" (each frame's pixel distances at every offset, ``Scorer.shifted_pixel_distances``),
    done = 0 before the first frame and after each of the total frames; then stage "shifts", done = 0
    before the first candidate shift and after each of the total candidates."""
    if spec.align != "none" or radius == 0:
        return (0, 0), {"radius": radius, "mean_log_score_unshifted": None, "mean_log_score_best": None}
    memory, memory_record = shift_search_memory(scorer)
    best, record = choose_camera_shift(camera_shift_fits(scorer, u8, spec, radius, progress, memory),
                                       shift_score_power(scorer.config))
    return best, {"radius": radius, **record, "latent_memory": memory_record}


def shift_search_memory(scorer) -> tuple:
    """(memory, record): the latent memory the camera-shift search measures d_lat against, the model's bank
    without its shifted copies (``latent_memory.unshifted_rows``: the frames and their copies under texts
    without a shift, each row weighed as the model weighs it, ``LatentMemory.subset``), and what it used.
    The shifted copies are there so that the score tolerates a moved camera, which is what the search must
    not tolerate: with them, a shift can pay for itself by reaching a copy that also fits the scene's light
    (measured: rectangle candidate A2's brightness:1.15+shift copies, the only copies at that light level,
    drew unmoved frames brightened by the scene's colour gain 1.12-1.17 to shifts of 1-2 px, 7.6-17.5x).
    memory None (score with the model's own): no latent factor, or no shifted copies to leave out. record:
    {"rows", "of", "left_out" [the texts whose copies were left out]}; None without a latent factor."""
    base = scorer.latent_memory
    if base is None:
        return None, None
    augment = list((scorer.manifest.get("latent_bank") or {}).get("augment") or [])
    keep = unshifted_rows(base.shape[0], augment)                                      # (N,) bool
    left_out = [t for t, k in zip(augment, keep[1:1 + len(augment)]) if not k]
    record = {"rows": int(keep.sum()), "of": int(base.shape[0]), "left_out": left_out}
    return (base.subset(keep) if left_out else None), record


def shift_score_power(cfg) -> float:
    """The unit of the camera-shift gain: the score's latent power (score_latent_power; 0, no latent memory: 1).
    log score grows with the powers (the shipped rectangle's latent and pixel powers went 1 -> 2 in the tenth
    pass, doubling a shift's gain), so ``choose_camera_shift`` divides mean log-score differences by it and
    MIN_SHIFT_GAIN keeps its power-1 meaning."""
    power = float(getattr(cfg, "score_latent_power", 0) or 0)
    return power if power > 0 else 1.0


def choose_camera_shift(logs: dict, power: float = 1.0) -> tuple:
    """((dy, dx), record) from ``camera_shift_fits``' {(dy, dx): (n,) log scores of the n frames moved so}.
    ``power`` (``shift_score_power``): mean log-score differences (the gain, the as_good rule) are divided
    by it, so MIN_SHIFT_GAIN is per unit of the score's latent power (the shipped rectangle, power 2: 1.2x per
    unit = 1.44x of its score); the log gives the score's own ratio and, for power != 1, the per-unit one.
    The best fit b: the lowest mean log score ((0, 0) first among equal means). Frame by frame, a one-sided
    sign test over the frames where a candidate c and b differ (c better in k, worse in w): P(X <= k | k + w,
    1/2) < SHIFT_TIE_ALPHA says c fits worse. With a shift-tolerant model (the shipped cylinder: shift-min
    R = 2, pixel search R_p = 3) most frames score exactly the same under neighbouring shifts, and a mean
    driven by a few frames tells nothing. b is taken only when it lowers the mean log score by more than
    MIN_SHIFT_GAIN AND the sign test says (0, 0) fits worse; else (0, 0), nothing undone ("identified"
    False: the frames cannot tell a camera shift, the model tolerates it). "as_good": b and every c the
    frames cannot tell from it: within MIN_SHIFT_GAIN of its mean and not worse by the sign test.
    record: {"mean_log_score_unshifted", "mean_log_score_best" (of the shift returned), "best_fit" [dy, dx],
    "gain" (mean log score of (0, 0) minus b's, / power), "gain_raw" (the same, not divided), "score_power", "frames", "unshifted_vs_best"
    {"better", "worse", "sign_p"}, "as_good" [[dy, dx], ...] (the candidates that fit as well as b, b first), "identified",
    "said" (what the log says: "none ..." with why, or the shift and the others as good)}."""
    if not power > 0:
        raise ValueError(f"the score power must be > 0, got {power}")
    offsets = list(logs)
    L = np.stack([np.asarray(logs[o], float) for o in offsets])              # (S, n)
    n = L.shape[1]
    bad = np.argwhere(~np.isfinite(L))
    if len(bad):                        # a NaN mean would pick (0, 0) by position and say "fits best unmoved"
        s, i = bad[0]
        raise CalibrationError(f"the camera-shift search scored frame {i} (of the scene's {n} usable frames, 0 first) "
                               f"moved by {tuple(int(v) for v in offsets[s])} as {L[s, i]} (log score; "
                               f"{len(bad)} such scores): not a finite score, the shift cannot be chosen")
    mean = L.mean(1)
    unit = mean / power                                                      # (S,) in power-1 units
    b = min(range(len(offsets)), key=lambda i: (mean[i], offsets[i] != (0, 0)))

    def versus_best(i) -> tuple:            # (frames where i is better than b, worse, one-sided sign p)
        better, worse = int((L[i] < L[b]).sum()), int((L[i] > L[b]).sum())
        return better, worse, binomial_tail(worse, better + worse, 0.5) if better + worse else 1.0
    as_good = [offsets[b]] + [o for i, o in enumerate(offsets) if i != b and unit[i] - unit[b] <= MIN_SHIFT_GAIN
                              and versus_best(i)[2] >= SHIFT_TIE_ALPHA]
    z = offsets.index((0, 0))
    gain, gain_raw = float(unit[z] - unit[b]), float(mean[z] - mean[b])
    # the score's own ratio (0, 0) / b, and per unit of latent power if != 1
    ratio = f"{np.exp(gain_raw):.2f}x" + (f" ({np.exp(gain):.2f}x per unit of latent power {power:g})" if power != 1 else "")
    better, worse, p = versus_best(z)
    best = tuple(int(v) for v in offsets[b])
    others = [list(map(int, o)) for o in as_good[1:]]
    if best == (0, 0):
        identified, said = False, "none: the frames fit best unmoved"
    elif gain <= MIN_SHIFT_GAIN:
        identified, said = False, (
                f"none identified: the best fit {best} lowers the scene's geometric-mean score only "
                f"{ratio} (a shift is taken above {np.exp(MIN_SHIFT_GAIN):.2f}x"
                f"{' per unit' if power != 1 else ''}): the model tolerates the scene's camera position, the frames "
                "cannot tell a shift")
    elif p >= SHIFT_TIE_ALPHA:
        few = (f", and it needs >= {SIGN_TEST_MIN_FRAMES} frames that differ to tell, here {better + worse}"
               if better + worse < SIGN_TEST_MIN_FRAMES else "")
        identified, said = False, (
                f"none identified: unmoved, the frames fit as well as under the best fit {best} (better "
                f"in {better}, worse in {worse}, the same in {n - better - worse} of {n} frames; sign test p = "
                f"{p:.2g} >= {SHIFT_TIE_ALPHA:g}{few}): the model tolerates the scene's camera position")
    else:
        identified, said = True, (
                f"the frames fit best moved by {best} ({ratio} lower geometric-mean score than unmoved, "
                f"which is worse in {worse} of {n} frames)")
        if others:
            many = len(others) > 1
            said += (f"; {len(others)} other shift{'s' if many else ''} fit{'' if many else 's'} as well (the frames "
                     "cannot tell them apart, the model tolerates the difference): "
                     + ", ".join(str(tuple(o)) for o in others))
    chosen = best if identified else (0, 0)
    return chosen, {"mean_log_score_unshifted": float(mean[z]),
                    "mean_log_score_best": float(mean[offsets.index(chosen)]), "best_fit": list(best), "gain": gain,
                    "gain_raw": gain_raw, "score_power": float(power), "frames": int(n),
                    "unshifted_vs_best": {"better": better, "worse": worse, "sign_p": p},
                    "as_good": [list(best)] + others, "identified": identified, "said": said}


def camera_shift_fits(scorer, u8: list, spec, radius: int, progress: Optional[Callable] = None,
                      memory: Optional[LatentMemory] = None) -> dict:
    """{(dy, dx): (n,) the log score (seed 0) of each of the scene's n frames u8 moved by (dy, dx)} for every
    candidate of shift_offsets(radius), (0, 0) first: what ``scene_camera_shift`` chooses from (its ``progress``).
    Each moved frame is scored where it is (``Scorer.score_as_is``): without the shift-min's copies and with
    the pixel distance of the moved frame as it is, without its own shift search. Both tolerances let a frame
    a pixel or two off fit as well as where it belongs, so with them every candidate near the scene's shift
    scores alike (measured, the shipped cylinder, R = 2, R_p = 3, on scene C of models/kinect-rgbd/new_scene.py,
    moved by (2, -2), 50 random frames: the best fit (-2, 1) at 1.14x, not taken, 14 % false alarms on the rest;
    scored where they are: (-2, 2) exactly at 120x, 8 %; unmoved scenes keep (0, 0)); the model's own score
    keeps both for the frames it scores after calibration. One copy per candidate: (2 radius + 1)^2 scorings
    per frame whatever the shift-min's R (the shipped cylinder's 50-frame calibration 150 s instead of ~11 min).
    ``memory``: the latent memory d_lat is measured against (``shift_search_memory``; None: the model's)."""
    offsets, fits = shift_offsets(radius), {}
    cfg = scorer.config
    tables = None
    if cfg.uses_pixel_memory:
        # the pixel factor: each frame's d_pix at every candidate offset, measured once per frame in one batch
        # (Scorer.shifted_pixel_distances; the same copies as the moved frames where the frame's outer radius px
        # are background, as in kinect-rgbd: moving twice equals moving once)
        tables = []
        if progress is not None:
            progress(0, len(u8), "pixel tables")
        for a in u8:
            x = normalize_uint8(aligned_uint8(a, spec), spec)                                 # (4, R, R)
            tables.append(dict(zip(offsets, scorer.shifted_pixel_distances(x, offsets))))
            if progress is not None:
                progress(len(tables), len(u8), "pixel tables")

    def pixel_at(i, dy, dx):
        return None if tables is None else tables[i][(dy, dx)]

    def logs(dy, dx) -> np.ndarray:
        X = [normalize_uint8(aligned_uint8(move_uint8(a, dy, dx), spec), spec) for a in u8]      # (4, R, R) each
        return np.array([np.log(max(scorer.score_as_is(x, seed=0, pixel_distance=pixel_at(i, dy, dx),
                                                       memory=memory).score, 1e-30)) for i, x in enumerate(X)])   # (n,)
    if progress is not None:
        progress(0, len(offsets), "shifts")                                           # the search starts
    for k, off in enumerate(offsets):                                                 # (0, 0) first
        fits[off] = logs(*off)
        if progress is not None:
            progress(k + 1, len(offsets), "shifts")
    return fits


def default_max_shift(cfg) -> int:
    """The camera-shift search radius when none is given: DEFAULT_MAX_SHIFT for a model without search
    steps (k = 0: each candidate shift of a frame is one encoder and one generator pass, the shift-min's
    copies left out (``camera_shift_fits``); with them, until session 26, the shipped cylinder (R = 2) scored
    25 per candidate: ~11-14 min per 50-frame scene at load 6-9, now 150 s at load ~9 with the scene's
    scoring), 0 (no
    search) for one with k > 0, where scoring (2r + 1)^2 shifted copies of every frame with k steps each
    dominates (an export --scoring reference, k = 19: ~15 s per shift for 20 frames on one CPU core, ~2 h
    for 200 frames). Either way the CLI prints the time left, measured on the first shift."""
    return 0 if cfg.k > 0 else DEFAULT_MAX_SHIFT


def search_radius(max_shift: Optional[int], cfg, log: Optional[Callable] = None) -> int:
    """The camera-shift search radius: ``max_shift``, or None: ``default_max_shift`` of the scoring
    configuration ``cfg`` (off for k > 0, said through ``log(message)``); CalibrationError outside
    [0, MAX_SCENE_SHIFT]."""
    if max_shift is None:       # said before the scene is read
        max_shift = default_max_shift(cfg)
        if max_shift == 0 and log is not None:
            log(f"camera-shift search off: the model searches k = {cfg.k} steps per frame, which would make the "
                f"search score every frame {(2 * DEFAULT_MAX_SHIFT + 1) ** 2} times; --max-shift N asks for it")
    if not 0 <= max_shift <= MAX_SCENE_SHIFT:
        raise CalibrationError(f"the camera-shift search radius must be in [0, {MAX_SCENE_SHIFT}] px, got {max_shift}")
    return max_shift


def undo_camera_shift(scorer, scene: dict, spec, radius: int, progress: Optional[Callable] = None) -> tuple:
    """(spec, record): the scene's camera shift (``scene_camera_shift`` of ``scene["u8"]``, (R, R, 4) uint8
    each, within ``radius``) added to the model's preprocess scene_shift, so every later frame is moved back
    the same way; the scene's frames (and, with the silhouette lever, their versions: scene["versions"]) are moved
    by it in place. The search scores the frames as they are (the lever's id version). record: ``scene_camera_shift``'s plus
    "model_scene_shift" (the model's, kept when none is found) and "scene_shift" (the model's + this scene's).
    CalibrationError when the total is beyond MAX_SCENE_SHIFT."""
    (dy, dx), shift_fit = scene_camera_shift(scorer, scene["u8"], spec, radius, progress)
    total = (int(spec.scene_shift[0]) + dy, int(spec.scene_shift[1]) + dx)
    if max(abs(v) for v in total) > MAX_SCENE_SHIFT:
        raise CalibrationError(f"the scene's camera shift {total} px is beyond +-{MAX_SCENE_SHIFT} px: "
                               "not a camera that moved a little; re-export or retrain for this view")
    shift_fit["model_scene_shift"] = [int(v) for v in spec.scene_shift]   # the model's, kept when none found
    shift_fit["scene_shift"] = list(total)                                  # the model's + this scene's
    scene["u8"] = [move_uint8(a, dy, dx) for a in scene["u8"]]
    if "versions" in scene:         # the silhouette lever's versions, made on the raw frames: moved as the frames
        scene["versions"] = [{v: move_uint8(a, dy, dx) for v, a in f.items()} for f in scene["versions"]]
    return dataclasses.replace(spec, scene_shift=total), shift_fit
