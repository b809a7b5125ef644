"""Post-processing of the tumor probability (tumor.py steps 4-5) on small synthetic arrays with
known answers: components, the volume and distance filters, and the redraw of found tumors
along the network's outline; the validation grid (``score_grid``) counts exactly what
``postprocess`` returns."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor.segmentation import train, tumor
from spinetumor.segmentation.tumor import postprocess, redraw_along_network

SPACING = np.array([4.0, 1.0, 1.0])


def _box(mask, s, r, c):
    mask[s[0]:s[1], r[0]:r[1], c[0]:c[1]] = True
    return mask


def test_redraw_keeps_the_network_extent_of_found_tumors_only_and_never_drops_one():
    shape = (5, 40, 40)
    found = np.zeros(shape, bool)
    _box(found, (1, 3), (5, 15), (5, 15))          # found tumor A, larger than the network's outline
    _box(found, (1, 2), (30, 33), (30, 33))        # found tumor B, the network sees nothing there
    outline = np.zeros(shape, bool)
    _box(outline, (1, 4), (7, 13), (7, 17))        # network region around A: smaller in rows, longer in columns
    _box(outline, (1, 3), (20, 26), (2, 8))        # network region C, no found tumor in it
    expected = np.zeros(shape, bool)
    _box(expected, (1, 4), (7, 13), (7, 17))       # A with the network's outline, C left out
    _box(expected, (1, 2), (30, 33), (30, 33))     # B keeps the forest's outline
    assert np.array_equal(redraw_along_network(found, outline), expected)


def test_postprocess_filters_then_redraws():
    shape = (4, 40, 40)
    prob = np.zeros(shape, np.float32)
    prob[1:3, 5:15, 5:15] = 0.9                    # 200 voxels x 4 mm^3 = 800 mm^3, at the sac
    prob[1, 30:32, 30:32] = 0.9                    # 4 voxels = 16 mm^3: under the minimum volume
    dist = np.zeros(shape, np.float32)             # everything touches the sac
    outline = np.zeros(shape, bool)
    _box(outline, (1, 3), (6, 14), (6, 14))
    _box(outline, (1, 2), (29, 33), (29, 33))      # around the small component, which is dropped first
    plain = postprocess(prob, 0.5, 100.0, SPACING, dist)
    assert plain.sum() == 200 and not plain[1, 31, 31]
    redrawn = postprocess(prob, 0.5, 100.0, SPACING, dist, outline=outline)
    assert np.array_equal(redrawn, _box(np.zeros(shape, bool), (1, 3), (6, 14), (6, 14)))


def test_far_components_are_dropped_before_the_redraw():
    shape = (3, 30, 30)
    prob = np.zeros(shape, np.float32)
    prob[1, 5:15, 5:15] = 0.9
    dist = np.full(shape, 20.0, np.float32)        # 20 mm from the sac, no vertebral body
    outline = prob > 0.5
    assert not postprocess(prob, 0.5, 0.0, SPACING, dist, outline=outline).any()


class _Stack:
    slices_kept = np.arange(6)


@pytest.mark.parametrize("with_outline", [False, True])
def test_score_grid_counts_what_postprocess_returns(monkeypatch, with_outline):
    rng = np.random.default_rng(3)
    shape = (6, 48, 48)
    from scipy import ndimage

    prob = ndimage.gaussian_filter(rng.random(shape).astype(np.float32), (0, 3, 3))
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    dist = np.linspace(-5, 15, shape[2], dtype=np.float32)[None, None, :].repeat(shape[1], 1).repeat(shape[0], 0)
    truth = np.zeros(shape, bool)
    truth[2:4, 10:30, 10:30] = True
    outline = (prob > 0.55) if with_outline else None
    box = (slice(0, shape[0]), slice(0, shape[1]), slice(0, shape[2]))
    monkeypatch.setattr(tumor, "segment_canonical", lambda *a, **k: (box, prob, dist, _Stack()))
    monkeypatch.setattr(tumor, "network_outline", lambda *a, **k: outline)
    prep = train.PreparedCase(seed=0, kind="extradural", image=np.zeros(shape, np.float32), spacing=SPACING,
                              canal=np.zeros(shape, bool), cord=np.zeros(shape, bool), vertebrae=None, truth=truth)
    thresholds, volumes = (0.5, 0.7), (0.0, 400.0)
    scores = train.score_grid(None, prep, thresholds, volumes)
    assert scores["pred"].max() > 0
    for i, t in enumerate(thresholds):
        for j, v in enumerate(volumes):
            mask = postprocess(prob, t, v, SPACING, dist, outline=outline)
            assert scores["pred"][i, j] == mask.sum()
            assert scores["tp"][i, j] == (mask & truth).sum()


def test_redrawn_crumbs_under_the_minimum_volume_go():
    shape = (3, 40, 40)
    found = np.zeros(shape, bool)
    _box(found, (1, 2), (5, 25), (5, 10))          # one found tumor bridging two network pieces
    outline = np.zeros(shape, bool)
    _box(outline, (1, 2), (4, 14), (4, 11))        # 70 voxels
    _box(outline, (1, 2), (22, 24), (6, 8))        # 4 voxels, linked to the tumor only by the forest's mask
    expected = _box(np.zeros(shape, bool), (1, 2), (4, 14), (4, 11))
    assert np.array_equal(redraw_along_network(found, outline, min_voxels=10), expected)
    assert redraw_along_network(found, outline).sum() == 74
    # with every network piece under the minimum the tumor keeps the forest's outline
    assert np.array_equal(redraw_along_network(found, outline, min_voxels=100), found)
    # postprocess applies the minimum volume to the redrawn pieces: 10 voxels of 4 mm^3
    prob = found.astype(np.float32)
    dist = np.zeros(shape, np.float32)
    assert np.array_equal(postprocess(prob, 0.5, 40.0, SPACING, dist, outline=outline), expected)


def test_minimum_volume_in_voxels():
    from spinetumor.segmentation.tumor import min_voxels_of

    assert min_voxels_of(40.0, SPACING) == 10
    assert min_voxels_of(41.0, SPACING) == 11
    assert min_voxels_of(0.0, SPACING) == 0


def test_cli_net_outline_needs_a_network(tmp_path, capsys):
    from spinetumor.cli import main

    assert main(["train", "segmentation", "--out", str(tmp_path / "rf"), "--cases", "4", "--net-outline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--net-outline needs --net" in err[0]
    assert not (tmp_path / "rf").exists()


def test_the_shipped_forest_draws_along_the_network_outline_as_its_command_says():
    """The shipped manifest's command reproduces it: --net-outline and net_boundary go together."""
    import json

    from spinetumor.segmentation.tumor import DEFAULT_MODEL, NET_BOUNDARY, load_tumor_model

    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert "--net-outline" in manifest["command"].split()
    assert load_tumor_model().net_boundary == NET_BOUNDARY


def _scores(dice_table, clean_table):
    """score_grid-like entries reproducing a mean Dice table (one tumor case, truth 1000 voxels)
    and a clean-rate table (tumor-free cases empty where clean_table is 1, marked where 0)."""
    dice = np.asarray(dice_table, float)
    tp = np.round(dice * 1000).astype(np.int64)    # Dice = 2 tp / (pred + truth) with pred = tp
    tumor = {"tp": tp, "pred": tp, "truth": np.full(dice.shape, 2000) - tp}
    free = {"tp": np.zeros(dice.shape, np.int64), "pred": (np.asarray(clean_table) == 0).astype(np.int64),
            "truth": np.zeros(dice.shape, np.int64)}
    return [tumor, free], ["extradural", "none"]


def test_postprocessing_choice_breaks_ties_towards_caution():
    thresholds, volumes = (0.4, 0.6, 0.8), (0.0, 100.0)
    # best 0.65 at the lowest threshold; 0.645 (a tie) at 0.8 / 0 mm3; 0.62 at 0.8 / 100 mm3 (no tie)
    scores, kinds = _scores([[0.65, 0.65], [0.60, 0.60], [0.645, 0.62]], [[1, 1], [1, 1], [1, 1]])
    choice = train.choose_postprocessing(scores, kinds, thresholds, volumes)
    assert (choice["threshold"], choice["min_volume_mm3"]) == (0.8, 0.0)
    assert choice["validation_dice"] == pytest.approx(0.645, abs=1e-3)
    # the best setting wins when nothing else is within DICE_TIE
    scores, kinds = _scores([[0.70, 0.65], [0.60, 0.60], [0.645, 0.62]], [[1, 1], [1, 1], [1, 1]])
    choice = train.choose_postprocessing(scores, kinds, thresholds, volumes)
    assert (choice["threshold"], choice["min_volume_mm3"]) == (0.4, 0.0)
    # a setting that marks the tumor-free case is not eligible, however good its Dice
    scores, kinds = _scores([[0.90, 0.65], [0.60, 0.60], [0.645, 0.62]], [[0, 1], [1, 1], [1, 1]])
    choice = train.choose_postprocessing(scores, kinds, thresholds, volumes)
    assert (choice["threshold"], choice["min_volume_mm3"]) == (0.8, 0.0)


def test_forest_probability_split_over_threads_is_bitwise_one_call(monkeypatch):
    from sklearn.ensemble import RandomForestClassifier

    from spinetumor.segmentation import tumor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 5)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.5, 3000) > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=8, random_state=0).fit(x, y)
    monkeypatch.setattr(tumor, "PARALLEL_MIN_ROWS", 100)
    one_call = forest.predict_proba(x)[:, 1]
    for threads in (1, 2, 3):
        np.testing.assert_array_equal(tumor.tumor_probability(forest, x, 1, threads=threads), one_call)
