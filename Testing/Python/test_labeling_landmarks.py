"""Masks from centroid + corner landmarks (paper IV.A): Dice on a synthetic scene, interpolation, checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spinetumor.labeling.landmarks import (Landmark, LandmarkError, LandmarkWarning, landmarks_from_labels,
                                           masks_from_landmarks)
from spinetumor.labels import LEVEL_NAMES, value
from spinetumor.volume import Volume, from_canonical, to_canonical

LPS_RAS = np.array([-1.0, -1.0, 1.0])


def box_scene(levels=("L1", "L2", "L3"), slices=16, tilt_rows=0):
    """A canonical sagittal stack of bright bodies (value 100) separated by dark discs, plus its truth.

    Bodies are 24 x 32 mm boxes, 8 mm apart, spanning slices 2..slices-3; the stack is then
    stored in an axial-like, permuted and flipped layout with 1 x 1 x 2 mm voxels so that the
    landmark code has to go through the geometry.
    """
    rows, cols = 130, 70
    canon = np.zeros((slices, rows, cols), np.float32)
    truth = np.zeros(canon.shape, np.uint8)
    canon[:] = 20.0
    for n, level in enumerate(levels):
        r0 = 10 + n * 32
        for s in range(2, slices - 2):
            shift = (s * tilt_rows) // slices
            canon[s, r0 + shift:r0 + shift + 24, 15:47] = 100.0
            truth[s, r0 + shift:r0 + shift + 24, 15:47] = value(level)
    # canonical geometry: columns (i=c posterior 1 mm, j=r inferior 1 mm, k=s right 2 mm)
    ref = Volume(canon, (1.0, 1.0, 2.0), (10.0, -20.0, 30.0),
                 np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
    # store it in another layout (array axes permuted and flipped) with the matching geometry
    perm_img = np.ascontiguousarray(np.flip(np.transpose(canon, (1, 0, 2)), axis=2))
    perm_lab = np.ascontiguousarray(np.flip(np.transpose(truth, (1, 0, 2)), axis=2))
    # new array axes (k', j', i') = (r, s, -c): find the geometry from index mapping
    m = ref.ijk_to_lps()
    # index (i', j', k') -> canonical (c = cols-1-i', s = j', r = k')
    to_canon = np.zeros((4, 4))
    to_canon[0, 0], to_canon[0, 3] = -1.0, cols - 1    # c from i'
    to_canon[2, 1] = 1.0                                # s (k) from j'
    to_canon[1, 2] = 1.0                                # r (j) from k'
    to_canon[3, 3] = 1.0
    new = m @ to_canon
    spacing = np.linalg.norm(new[:3, :3], axis=0)
    image = Volume(perm_img, tuple(spacing), tuple(new[:3, 3]), new[:3, :3] / spacing)
    labels = image.with_array(perm_lab)
    assert np.array_equal(to_canonical(image)[0].array, canon)
    return image, labels


def dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


def test_masks_from_landmarks_match_truth_on_box_scene():
    image, truth = box_scene()
    lms = landmarks_from_labels(truth, step_mm=6.0)
    assert {lm.level for lm in lms} == {"L1", "L2", "L3"}
    made = masks_from_landmarks(lms, image)
    assert made.same_geometry(image)
    for level in ("L1", "L2", "L3"):
        d = dice(made.array == value(level), truth.array == value(level))
        assert d > 0.93, (level, d)


def test_dark_pixels_inside_the_box_are_excluded():
    image, truth = box_scene(levels=("L2",))
    canon, _ = to_canonical(image)
    arr = canon.array.copy()
    arr[:, 10:34, 15:20] = 5.0          # a dark anterior rim inside the annotated box
    dark = from_canonical(arr, image)
    lms = landmarks_from_labels(truth, step_mm=4.0)
    made, _ = to_canonical(masks_from_landmarks(lms, dark))
    assert not made.array[:, 10:34, 15:20].any()
    assert made.array[4, 20, 30] == value("L2")


def test_slices_between_annotated_ones_are_interpolated():
    image, truth = box_scene(levels=("L3",), slices=12, tilt_rows=12)
    canon_truth, _ = to_canonical(truth)
    lms = landmarks_from_labels(truth, slices=[2, 9])
    assert len(lms) == 6                                 # one centroid + two corners on each slice
    made, _ = to_canonical(masks_from_landmarks(lms, image))
    filled = [s for s in range(12) if made.array[s].any()]
    assert filled == list(range(2, 10))
    # the body shifts by one row per slice; the interpolated centroid follows it
    for s in range(3, 9):
        rows = np.nonzero(made.array[s] == value("L3"))[0]
        true_rows = np.nonzero(canon_truth.array[s] == value("L3"))[0]
        assert abs(rows.mean() - true_rows.mean()) <= 1.0
    assert not made.array[:, :, :][[0, 1, 10, 11]].any()
    without = masks_from_landmarks(lms, image, interpolate=False)
    assert int((without.array > 0).sum()) < int((made.array > 0).sum()) / 3


def _landmarks_for(level, centre_ras, corner_offsets):
    c = np.asarray(centre_ras, float)
    return [Landmark(level, "centroid", tuple(c))] + [Landmark(level, "corner", tuple(c + np.asarray(o))) for o in corner_offsets]


def test_implausible_body_is_reported_with_its_level():
    image, truth = box_scene(levels=("L1", "L2"))
    lms = [lm for lm in landmarks_from_labels(truth, slices=[6]) if lm.level == "L1"]
    centroid = next(lm.ras for lm in lms if lm.role == "centroid")
    # L2: a 2 x 60 mm sliver (height-to-width far too small)
    huge = _landmarks_for("L2", np.asarray(centroid) + [0, 0, -32], [(0, -29, -1), (0, 29, 1)])
    with pytest.raises(LandmarkError, match=r"L2 \(slice 6\)"):
        masks_from_landmarks(lms + huge, image, strict=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        masks_from_landmarks(lms + huge, image)
    messages = [str(w.message) for w in caught if issubclass(w.category, LandmarkWarning)]
    assert len(messages) == 1 and "L2" in messages[0] and "L1" not in messages[0]


def test_unusable_landmarks_raise_clear_errors():
    image, truth = box_scene(levels=("L1",))
    lms = landmarks_from_labels(truth, slices=[5])
    with pytest.raises(LandmarkError, match=r"L1 on slice 5: needs 1 centroid and 2 corners"):
        masks_from_landmarks(lms[:2], image)
    with pytest.raises(LandmarkError, match="unknown level 'S1'"):
        masks_from_landmarks([("S1", "centroid", (0, 0, 0))], image)
    with pytest.raises(LandmarkError, match="outside the image"):
        masks_from_landmarks([("L1", "centroid", (900.0, 0.0, 0.0))], image)
    assert set(LEVEL_NAMES) >= {"T11", "L5"}
