"""Tests of spinetumor.metrics against answers known analytically.

Grids are anisotropic (0.5 x 0.5 x 3 mm, the shape of a sagittal T2 stack) so that an
axis-order mistake between ``spacing`` (i, j, k) and the array (k, j, i) changes the
numbers by a factor of 6 and fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from spinetumor import labels, metrics
from spinetumor.volume import Volume

ANISO = (0.5, 0.5, 3.0)  # mm per (i, j, k); array axis 0 (k) is the 3 mm one


def box_mask(shape_kji, lo_kji, hi_kji) -> np.ndarray:
    """Boolean array with ones in the half-open index box [lo, hi)."""
    mask = np.zeros(shape_kji, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(lo_kji, hi_kji))] = True
    return mask


# --------------------------------------------------------------------------- overlap

def test_overlap_of_two_boxes_is_exact():
    # pred: 10x10x10 = 1000 voxels; truth: 10x10x20 = 2000; they share a 5x10x10 slab = 500.
    shape = (20, 20, 30)
    pred = box_mask(shape, (0, 0, 0), (10, 10, 10))
    truth = box_mask(shape, (5, 0, 0), (15, 10, 20))
    m = metrics.overlap(pred, truth)
    assert (m["tp"], m["fp"], m["fn"]) == (500, 500, 1500)
    assert m["tn"] == 12000 - 2500
    assert m["dice"] == pytest.approx(2 * 500 / 3000)
    assert m["iou"] == pytest.approx(500 / 2500)
    assert m["precision"] == pytest.approx(0.5)
    assert m["recall"] == pytest.approx(0.25)
    assert m["accuracy"] == pytest.approx(1 - 2000 / 12000)
    assert m["empty"] is None
    # Dice and IoU are linked by D = 2J / (1 + J) for any pair of sets.
    assert m["dice"] == pytest.approx(2 * m["iou"] / (1 + m["iou"]))


def test_empty_set_conventions():
    shape = (4, 5, 6)
    empty = np.zeros(shape, dtype=bool)
    some = box_mask(shape, (1, 1, 1), (3, 3, 3))

    both = metrics.overlap(empty, empty)
    assert both["empty"] == "both"
    assert (both["dice"], both["iou"], both["precision"], both["recall"]) == (1.0, 1.0, 1.0, 1.0)
    assert all(math.isnan(v) for v in metrics.surface_metrics(empty, empty, ANISO).values())

    missed = metrics.overlap(empty, some)
    assert missed["empty"] == "pred"
    assert (missed["dice"], missed["iou"], missed["precision"], missed["recall"]) == (0.0, 0.0, 0.0, 0.0)
    assert metrics.surface_metrics(empty, some, ANISO)["hd95_mm"] == math.inf

    spurious = metrics.overlap(some, empty)
    assert spurious["empty"] == "truth"
    assert (spurious["dice"], spurious["precision"], spurious["recall"]) == (0.0, 0.0, 0.0)
    assert metrics.surface_metrics(some, empty, ANISO)["assd_mm"] == math.inf


def test_overlap_rejects_different_shapes():
    with pytest.raises(ValueError, match=r"mask shapes differ: prediction \(2, 2, 2\), truth \(2, 2, 3\)"):
        metrics.overlap(np.ones((2, 2, 2)), np.ones((2, 2, 3)))


# --------------------------------------------------------------------------- surfaces

def test_surface_of_a_box_is_its_shell():
    shape = (8, 9, 10)
    mask = box_mask(shape, (2, 2, 2), (6, 7, 8))
    inner = box_mask(shape, (3, 3, 3), (5, 6, 7))
    np.testing.assert_array_equal(metrics.surface(mask), mask & ~inner)
    # A mask touching the array border is closed by the border.
    full = np.ones((3, 3, 3), dtype=bool)
    assert metrics.surface(full).sum() == 26


def test_identical_masks_have_zero_distances():
    mask = box_mask((10, 30, 30), (2, 5, 5), (7, 20, 25))
    m = metrics.surface_metrics(mask, mask.copy(), ANISO)
    assert m == {"hd95_mm": 0.0, "assd_mm": 0.0, "hd_mm": 0.0}


@pytest.mark.parametrize("n", [1, 2])
def test_shift_along_the_3mm_axis_gives_3n_mm(n):
    # A flat 20 (i) x 40 (j) x 6 (k) box; its k faces hold ~1/3 of the surface, all
    # exactly 3n mm from the shifted copy's surface, and nothing is farther.
    shape = (16, 50, 30)
    truth = box_mask(shape, (3, 5, 5), (9, 45, 25))
    pred = np.roll(truth, n, axis=0)
    m = metrics.surface_metrics(pred, truth, ANISO)
    assert m["hd95_mm"] == pytest.approx(3.0 * n)
    assert m["hd_mm"] == pytest.approx(3.0 * n)
    assert 0 < m["assd_mm"] < 3.0 * n


def test_shift_along_i_uses_the_i_spacing():
    # Same box moved 4 voxels along i (0.5 mm): 2 mm, not 12 mm (3 mm spacing) -- axis order check.
    shape = (16, 50, 30)
    truth = box_mask(shape, (3, 5, 5), (9, 45, 25))
    pred = np.roll(truth, 4, axis=2)
    m = metrics.surface_metrics(pred, truth, ANISO)
    assert m["hd95_mm"] == pytest.approx(2.0)
    assert m["hd_mm"] == pytest.approx(2.0)


def _distance_to_box(points_kji, lo, hi, sampling):
    """Analytic distance (mm) from lattice points to the closed index box [lo, hi]."""
    clamped = np.clip(points_kji, lo, hi)
    return np.linalg.norm((points_kji - clamped) * np.asarray(sampling), axis=1)


def test_concentric_cubes_on_an_anisotropic_grid():
    # Inner box half-size 5 mm in i, j (10 voxels) and 6 mm in k (2 voxels); the outer box is
    # 6 mm larger on every side: 12 voxels in i, j and 2 voxels in k.
    sampling = ANISO[::-1]
    center = np.array([6, 24, 24])
    inner_half, gap = np.array([2, 10, 10]), np.array([2, 12, 12])
    outer_half = inner_half + gap
    shape = (13, 49, 49)
    inner = box_mask(shape, center - inner_half, center + inner_half + 1)
    outer = box_mask(shape, center - outer_half, center + outer_half + 1)

    d_in, d_out = metrics.surface_distances(inner, outer, ANISO)
    # Every inner surface voxel is exactly 6 mm from the outer surface (straight out).
    np.testing.assert_allclose(d_in, 6.0)
    # Outer surface voxels: analytic distance to the inner box (its nearest point is an inner surface voxel).
    shell = np.argwhere(metrics.surface(outer))
    expected_out = _distance_to_box(shell, center - inner_half, center + inner_half, sampling)
    np.testing.assert_allclose(np.sort(d_out), np.sort(expected_out), atol=1e-9)
    assert expected_out.max() == pytest.approx(6.0 * math.sqrt(3))  # outer corner to inner corner

    m = metrics.surface_metrics(inner, outer, ANISO)
    assert m["hd_mm"] == pytest.approx(6.0 * math.sqrt(3))
    assert m["hd95_mm"] == pytest.approx(max(6.0, np.percentile(expected_out, 95)))
    assert m["assd_mm"] == pytest.approx((6.0 * d_in.size + expected_out.sum()) / (d_in.size + expected_out.size))
    assert 6.0 <= m["assd_mm"] < m["hd95_mm"] < m["hd_mm"]


def _ball(shape_kji, center_kji, radius_mm, sampling):
    grid = np.indices(shape_kji).reshape(3, -1).T
    d = np.linalg.norm((grid - np.asarray(center_kji)) * np.asarray(sampling), axis=1)
    return (d <= radius_mm).reshape(shape_kji)


def test_concentric_spheres_distance_is_the_radius_gap_within_a_voxel():
    sampling = ANISO[::-1]
    shape, center = (15, 81, 81), (7, 40, 40)
    small = _ball(shape, center, 9.0, sampling)
    large = _ball(shape, center, 18.0, sampling)
    m = metrics.surface_metrics(small, large, ANISO)
    # The true gap is 9 mm; voxelization moves each surface by less than one (3 mm) voxel.
    for key in ("hd95_mm", "assd_mm"):
        assert abs(m[key] - 9.0) < 3.0, (key, m[key])
    assert m["hd_mm"] < 9.0 + 3.0


def test_surface_distances_match_brute_force_nearest_neighbours():
    from scipy import ndimage
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(7)
    shape = (12, 40, 36)
    spacing = (0.7, 0.4, 2.5)
    sampling = np.asarray(spacing[::-1])

    def blob():
        noise = ndimage.gaussian_filter(rng.random(shape), 2.0)
        return noise > np.quantile(noise, 0.8)

    a, b = blob(), blob()
    d_ab, d_ba = metrics.surface_distances(a, b, spacing)
    pa = np.argwhere(metrics.surface(a)) * sampling
    pb = np.argwhere(metrics.surface(b)) * sampling
    np.testing.assert_allclose(d_ab, cKDTree(pb).query(pa)[0], atol=1e-9)
    np.testing.assert_allclose(d_ba, cKDTree(pa).query(pb)[0], atol=1e-9)


# --------------------------------------------------------------------------- identification

LEVELS = [labels.value(k) for k in ("L1", "L2", "L3", "L4", "L5")]
SPINE_SPACING = (1.0, 0.8, 3.0)  # i = anterior-posterior-ish, j = superior-inferior, k = left-right
# An oblique but orthonormal direction and an off-origin origin, so centroids go through the geometry.
_theta = math.radians(20)
SPINE_DIRECTION = np.array([[math.cos(_theta), 0.0, -math.sin(_theta)],
                            [0.0, 1.0, 0.0],
                            [math.sin(_theta), 0.0, math.cos(_theta)]])
SPINE_ORIGIN = (-12.0, 30.5, 7.25)


def spine(positions_j: dict[int, int], offsets_i: dict[int, int] | None = None) -> Volume:
    """A label map of 24 mm-tall vertebral boxes whose centres sit at rows ``positions_j`` (0.8 mm rows)."""
    offsets_i = offsets_i or {}
    array = np.zeros((9, 260, 100), dtype=np.uint8)
    for label, j in positions_j.items():
        i0 = 30 + offsets_i.get(label, 0)
        array[2:7, j - 15:j + 15, i0:i0 + 30] = label
    return Volume(array, SPINE_SPACING, SPINE_ORIGIN, SPINE_DIRECTION)


#: Centres 30 mm apart (37.5 rows of 0.8 mm -> 38 rows = 30.4 mm).
TRUE_ROWS = {label: 30 + 38 * n for n, label in enumerate(LEVELS)}


def test_centroids_are_physical_positions():
    vol = spine(TRUE_ROWS)
    got = metrics.centroids(vol)
    assert sorted(got) == LEVELS
    l3 = labels.value("L3")
    # Box of L3: k 2..6, j rows-15..rows+14, i 30..59 -> centre index (4, rows - 0.5, 44.5).
    expected = vol.index_to_lps(np.array([4.0, TRUE_ROWS[l3] - 0.5, 44.5]))
    np.testing.assert_allclose(got[l3], expected, atol=1e-9)
    # Neighbouring centroids are 38 rows * 0.8 mm apart along the j direction.
    l2 = labels.value("L2")
    assert np.linalg.norm(got[l3] - got[l2]) == pytest.approx(38 * 0.8)


def test_identification_of_a_correct_labeling_is_perfect():
    truth = spine(TRUE_ROWS)
    result = metrics.identification(truth.with_array(truth.array.copy()), truth)
    assert result["rate"] == 1.0
    assert (result["identified"], result["n_levels"]) == (5, 5)
    assert result["mean_distance_mm"] == pytest.approx(0.0)
    assert all(level["identified"] and level["distance_mm"] == pytest.approx(0.0)
               for level in result["levels"].values())


def test_swapped_neighbours_are_not_identified():
    l2, l3 = labels.value("L2"), labels.value("L3")
    rows = dict(TRUE_ROWS)
    rows[l2], rows[l3] = TRUE_ROWS[l3], TRUE_ROWS[l2]
    result = metrics.identification(spine(rows), spine(TRUE_ROWS))
    assert result["rate"] == pytest.approx(3 / 5)
    for label in (l2, l3):
        level = result["levels"][label]
        assert not level["identified"]
        assert level["distance_mm"] == pytest.approx(38 * 0.8)
    assert result["levels"][l2]["nearest_true_label"] == l3
    assert result["levels"][l3]["nearest_true_label"] == l2


def test_prediction_25mm_off_is_not_identified_but_15mm_off_is():
    l4 = labels.value("L4")
    truth = spine(TRUE_ROWS)
    # Shift L4's box along i (1 mm per voxel), perpendicular to the column of centroids.
    far = metrics.identification(spine(TRUE_ROWS, {l4: 25}), truth)
    assert far["levels"][l4]["distance_mm"] == pytest.approx(25.0)
    assert far["levels"][l4]["nearest_true_label"] == l4  # still closest to its own level ...
    assert not far["levels"][l4]["identified"]             # ... but beyond 20 mm
    assert far["rate"] == pytest.approx(4 / 5)
    near = metrics.identification(spine(TRUE_ROWS, {l4: 15}), truth)
    assert near["levels"][l4]["identified"] and near["rate"] == 1.0


def test_prediction_closer_to_a_neighbour_is_not_identified_even_within_20mm():
    l4, l5 = labels.value("L4"), labels.value("L5")
    rows = dict(TRUE_ROWS)
    rows[l4] = TRUE_ROWS[l4] + 23  # 18.4 mm toward L5, which is 12 mm away
    # Keep boxes from overlapping: drop L5 from the prediction (so this also tests a missing level).
    del rows[l5]
    result = metrics.identification(spine(rows), spine(TRUE_ROWS))
    assert result["levels"][l4]["distance_mm"] == pytest.approx(23 * 0.8)
    assert result["levels"][l4]["nearest_true_label"] == l5
    assert not result["levels"][l4]["identified"]
    assert result["levels"][l5] == {"distance_mm": math.inf, "identified": False, "nearest_true_label": None}
    assert result["rate"] == pytest.approx(3 / 5)


def test_missing_and_spurious_levels():
    l1, l3 = labels.value("L1"), labels.value("L3")
    rows = {k: v for k, v in TRUE_ROWS.items() if k != l3}
    pred = spine(rows).array.copy()
    pred[2:7, 0:10, 30:60] = labels.value("T12")  # a level the truth lacks
    result = metrics.identification(Volume(pred, SPINE_SPACING, SPINE_ORIGIN, SPINE_DIRECTION),
                                    spine(TRUE_ROWS))
    assert result["rate"] == pytest.approx(4 / 5)  # the denominator is the truth's 5 levels
    assert not result["levels"][l3]["identified"]
    assert result["levels"][l3]["distance_mm"] == math.inf
    assert result["levels"][l1]["identified"]
    assert result["spurious_levels"] == [labels.value("T12")]


def test_identification_threshold_is_inclusive_at_20mm():
    truth = {1: np.array([0.0, 0.0, 0.0]), 2: np.array([0.0, 0.0, 50.0])}
    at = metrics.identification_from_centroids({1: np.array([20.0, 0.0, 0.0])}, truth)
    beyond = metrics.identification_from_centroids({1: np.array([20.001, 0.0, 0.0])}, truth)
    assert at["levels"][1]["identified"] and not beyond["levels"][1]["identified"]
    assert at["rate"] == 0.5  # level 2 missing
    tie = metrics.identification_from_centroids({1: np.array([0.0, 0.0, 25.0])}, truth, max_distance_mm=30)
    assert not tie["levels"][1]["identified"]  # equidistant from levels 1 and 2: ambiguous


# --------------------------------------------------------------------------- label_metrics / summarize

def test_label_metrics_and_summary():
    truth = spine(TRUE_ROWS)
    l2, l3, l5 = labels.value("L2"), labels.value("L3"), labels.value("L5")
    pred_array = truth.array.copy()
    pred_array[pred_array == l5] = 0                     # L5 missed
    l2_voxels = np.argwhere(truth.array == l2)
    pred_array[truth.array == l2] = 0
    shifted = l2_voxels + np.array([1, 0, 0])            # L2 moved one 3 mm slice along k
    pred_array[tuple(shifted.T)] = l2
    pred = truth.with_array(pred_array)

    per_label = metrics.label_metrics(pred, truth)
    assert sorted(per_label) == LEVELS
    assert per_label[l3]["dice"] == 1.0 and per_label[l3]["hd95_mm"] == 0.0
    assert per_label[l3]["identified"] and per_label[l3]["centroid_distance_mm"] == pytest.approx(0.0)
    # L2: 5 slices shifted by 1 -> 4 of 5 overlap.
    assert per_label[l2]["dice"] == pytest.approx(0.8)
    assert per_label[l2]["iou"] == pytest.approx(4 / 6)
    assert per_label[l2]["hd95_mm"] == pytest.approx(3.0)
    assert per_label[l2]["centroid_distance_mm"] == pytest.approx(3.0)
    assert per_label[l2]["identified"]
    assert per_label[l5]["empty"] == "pred" and per_label[l5]["hd95_mm"] == math.inf
    assert not per_label[l5]["identified"]

    summary = metrics.summarize(per_label)
    assert summary["dice"] == pytest.approx((1 + 0.8 + 1 + 1 + 0) / 5)
    assert summary["hd95_mm"] == pytest.approx(3.0 / 4)  # finite values only; L5 counted as missed
    assert (summary["n_labels"], summary["n_missed"], summary["n_spurious"]) == (5, 1, 0)
    assert summary["identification_rate"] == pytest.approx(4 / 5)


def test_label_metrics_explicit_labels_and_both_empty():
    truth = spine(TRUE_ROWS)
    t12 = labels.value("T12")
    per_label = metrics.label_metrics(truth, truth, labels=[labels.value("L1"), t12])
    assert per_label[t12]["empty"] == "both" and per_label[t12]["dice"] == 1.0
    assert math.isnan(per_label[t12]["hd95_mm"])
    summary = metrics.summarize(per_label)
    assert summary["n_both_empty"] == 1 and summary["n_labels"] == 1
    assert summary["dice"] == 1.0 and summary["identification_rate"] == 1.0


def test_geometry_mismatch_is_a_clear_error():
    truth = spine(TRUE_ROWS)
    moved = Volume(truth.array, (1.0, 0.8, 2.5), SPINE_ORIGIN, SPINE_DIRECTION)
    with pytest.raises(ValueError, match=r"do not share geometry \(spacing \(1\.0, 0\.8, 2\.5\) vs "
                                         r"\(1\.0, 0\.8, 3\.0\)\); resample"):
        metrics.label_metrics(moved, truth)
    cropped = Volume(truth.array[:, :, :50], SPINE_SPACING, SPINE_ORIGIN, SPINE_DIRECTION)
    with pytest.raises(ValueError, match=r"shape \(9, 260, 50\) vs \(9, 260, 100\)"):
        metrics.label_metrics(cropped, truth)
    with pytest.raises(ValueError, match="do not share geometry"):
        metrics.identification(cropped, truth)


def test_real_case_identification_and_shift(shared_data):
    """A Chu case against itself: perfect; two neighbours swapped: 5/7; one 1 mm voxel shift: 1 mm."""
    from spinetumor.io import read_volume

    truth = read_volume(shared_data / "chu_lumbar_t2" / "chu_02_vertebrae.nii.gz")
    assert metrics.identification(truth.with_array(truth.array.copy()), truth)["rate"] == 1.0
    l3, l4 = labels.value("L3"), labels.value("L4")
    swapped = truth.array.copy()
    swapped[truth.array == l3], swapped[truth.array == l4] = l4, l3
    result = metrics.identification(truth.with_array(swapped), truth)
    assert result["rate"] == pytest.approx(5 / 7)
    assert not result["levels"][l3]["identified"] and not result["levels"][l4]["identified"]
    shifted = truth.with_array(np.roll(truth.array, 1, axis=0))
    m = metrics.label_metrics(shifted, truth, labels=[l3])[l3]
    assert m["hd95_mm"] == pytest.approx(truth.spacing[2])
    assert m["centroid_distance_mm"] == pytest.approx(truth.spacing[2])
