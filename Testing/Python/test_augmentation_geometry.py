"""Tumor augmentation geometry: small rotations and thick-slice reconstruction."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor.augmentation.rotate import draw_angles, rotate_slice, rotate_volume
from spinetumor.augmentation.thick_slices import reconstruct_thick_slices
from spinetumor.volume import Volume, canonical_reorientation, to_canonical


def _oblique_volume(array: np.ndarray) -> Volume:
    """A volume in a non-canonical (RPI) layout: i left->right with 4 mm slices, an offset origin."""
    direction = np.array([[-1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0]])
    return Volume(array, (4.0, 0.7, 0.8), (12.5, -40.0, 88.0), direction)


def test_rotation_then_back_is_identity_in_the_interior():
    rr, cc = np.mgrid[:120, :100].astype(float)
    image = np.exp(-((rr - 55) ** 2 / 600 + (cc - 48) ** 2 / 300)) * 100 + 0.2 * rr
    for angle in (3.0, -7.5, 10.0):
        there = rotate_slice(image, angle, (0.9, 0.6))
        back = rotate_slice(there, -angle, (0.9, 0.6))
        interior = (slice(30, 90), slice(25, 75))
        assert np.abs(back - image)[interior].max() < 0.5
        assert np.abs(there - image)[interior].max() > 2.0       # it did rotate


def test_rotation_maps_image_and_mask_consistently():
    rr, cc = np.mgrid[:101, :101]
    mask = ((rr - 50) ** 2 + (cc - 80) ** 2 <= 36).astype(np.uint8)   # a disc right of the centre
    image = np.where(mask > 0, 200.0, 20.0).astype(np.float32)
    angle = 30.0
    rot_mask = rotate_slice(mask, angle, label=True)
    rot_image = rotate_slice(image, angle, order=1)
    assert set(np.unique(rot_mask)) <= {0, 1}
    # counter-clockwise as displayed: the disc moves up (smaller rows) around the centre
    centre = np.argwhere(rot_mask).mean(axis=0)
    expected = np.array([50 - 30 * np.sin(np.radians(angle)), 50 + 30 * np.cos(np.radians(angle))])
    assert np.allclose(centre, expected, atol=0.6)
    assert abs(int(rot_mask.sum()) - int(mask.sum())) <= 6
    assert rot_image[rot_mask > 0].mean() > 180 and rot_image[rot_mask == 0].mean() < 25


def test_rotate_volume_keeps_the_grid_and_labels():
    rng = np.random.default_rng(0)
    labels = np.zeros((30, 40, 12), np.uint8)            # [k, j, i] in the oblique layout
    labels[10:20, 15:25, 3:9] = 5
    vol = _oblique_volume(labels)
    out = rotate_volume(vol, 6.0, label=True)
    assert out.same_geometry(vol)
    assert set(np.unique(out.array)) <= {0, 5}
    image = _oblique_volume(rng.normal(size=(30, 40, 12)).astype(np.float32))
    assert rotate_volume(image, -4.0).same_geometry(image)


def test_drawn_angles_alternate_within_the_paper_range():
    angles = draw_angles(np.random.default_rng(3), 6)
    assert all(1.0 <= abs(a) <= 10.0 for a in angles)
    assert all(a * b < 0 for a, b in zip(angles, angles[1:]))
    assert angles == draw_angles(np.random.default_rng(3), 6)


@pytest.mark.parametrize("method", ["linear", "cubic"])
def test_thick_slices_reproduce_a_ramp_and_keep_the_extent(method):
    vol = _oblique_volume(np.zeros((30, 40, 12), np.float32))
    axis = canonical_reorientation(vol).perm[0]
    assert axis == 2                                     # the left-right axis is i (4 mm slices)
    ramp = np.broadcast_to(np.arange(12, dtype=np.float32) * 4.0 + 7.0, (30, 40, 12)).copy()
    vol = vol.with_array(ramp)
    out = reconstruct_thick_slices(vol, 1.0, method)
    n = out.shape[2]
    assert n == 45                                       # 11 gaps of 4 mm -> 44 gaps of 1 mm
    assert np.isclose(out.spacing[0], 1.0) and out.spacing[1:] == vol.spacing[1:]   # i is the slice axis
    assert out.origin == vol.origin and np.array_equal(out.direction, vol.direction)
    first_last = lambda v: (v.index_to_lps([0, 0, 0]), v.index_to_lps([0, 0, v.shape[2] - 1]))   # noqa: E731
    for a, b in zip(first_last(vol), first_last(out)):
        assert np.allclose(a, b)
    expected = np.linspace(7.0, 7.0 + 44.0, n, dtype=np.float64)
    assert np.allclose(out.array[5, 7], expected, atol=1e-4)
    assert np.allclose(out.array[:, :, ::4], ramp, atol=1e-4)   # original slices unchanged


def test_thick_slices_uneven_extent_and_labels():
    labels = np.zeros((15, 20, 20), np.uint8)           # [k, j, i]: k runs left-right (canonical layout)
    labels[5:9] = 3
    vol = Volume(labels, (0.7, 0.7, 4.894), (1.0, 2.0, 3.0), np.array([[0, 0, -1.0], [1.0, 0, 0], [0, -1.0, 0]]))
    out = reconstruct_thick_slices(vol, 1.0, "nearest")
    canon_in, canon_out = to_canonical(vol)[0], to_canonical(out)[0]
    count = canon_out.shape[0]
    assert count == round(14 * 4.894) + 1
    assert np.isclose(canon_out.spacing[2] * (count - 1), 14 * 4.894)
    assert np.allclose(canon_out.index_to_lps([count - 1, 0, 0]), canon_in.index_to_lps([14, 0, 0]))
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 3}
    with pytest.raises(ValueError, match="unknown method"):
        reconstruct_thick_slices(vol, 1.0, "quintic")


def test_thick_acquisition_averages_slabs_on_the_slice_axis_and_centres_them():
    from spinetumor.augmentation.thick_slices import thick_acquisition

    theta = np.deg2rad(6.0)                              # oblique: turned about the anterior axis
    turn = np.array([[np.cos(theta), 0, np.sin(theta)], [0, 1, 0], [-np.sin(theta), 0, np.cos(theta)]])
    vol = _oblique_volume(np.zeros((30, 40, 14), np.float32))
    vol = Volume(vol.array, (1.0, 0.7, 0.8), vol.origin, turn @ vol.direction)
    ramp = np.broadcast_to(np.arange(14, dtype=np.float32), (30, 40, 14)).copy()    # value = slice index i
    mask = (ramp.astype(np.uint8) % 5).astype(np.uint8)
    thick, (thick_mask,) = thick_acquisition(vol.with_array(ramp), 3, [vol.with_array(mask)])
    assert thick.shape == (30, 40, 4)                    # 14 slices -> 4 slabs of 3, two left over
    assert thick.spacing == (3.0, 0.7, 0.8) and np.array_equal(thick.direction, vol.direction)
    np.testing.assert_allclose(thick.array[0, 0], [1.0, 4.0, 7.0, 10.0])         # means of 0-2, 3-5, 6-8, 9-11
    np.testing.assert_array_equal(thick_mask.array[3, 5], mask[3, 5, [1, 4, 7, 10]])
    for n in range(4):                                   # each thick slice sits at its slab's centre slice
        np.testing.assert_allclose(thick.index_to_lps([2, 9, n]), vol.index_to_lps([2, 9, 3 * n + 1]), atol=1e-9)
    same, (same_mask,) = thick_acquisition(vol.with_array(ramp), 1, [vol.with_array(mask)])
    assert same.same_geometry(vol) and np.array_equal(same.array, ramp) and np.array_equal(same_mask.array, mask)
    with pytest.raises(ValueError, match="do not fill one slab"):
        thick_acquisition(vol, 20)
