"""Spinal canal (thecal sac) and cord masks: Dice against truth on phantoms and real scans, geometry, cancel.

Thresholds are the values measured by ``benchmarks/canal_cord.py`` (docs/benchmarks.md,
"Spinal canal and cord") minus a margin of about 0.08; the phantom's thecal-sac Dice is
limited by its epidural fat, drawn nearly as bright as CSF around the whole sac.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor import labels
from spinetumor.io import read_volume
from spinetumor.metrics import overlap
from spinetumor.progress import Cancelled
from spinetumor.segmentation.canal import CanalResult, segment_canal_and_cord
from spinetumor.volume import Volume


def _sac_truth(anatomy: np.ndarray) -> np.ndarray:
    """The whole dural sac of a phantom: CSF, cord and cauda equina labels."""
    return np.isin(anatomy, [labels.value(k) for k in ("canal", "cord", "cauda_equina")])


@pytest.fixture(scope="module")
def cervical(test_data):
    """The SCT cervical scan (PSR orientation) and its manual cord mask."""
    folder = test_data / "sct_t2_cervical"
    return read_volume(folder / "t2.nii.gz"), read_volume(folder / "t2_seg-manual.nii.gz")


@pytest.mark.parametrize("seed", [0, 2])
def test_phantom_dice(seed):
    phantom = pytest.importorskip("spinetumor.phantom")
    case = phantom.generate(seed, tumor="none")
    result = segment_canal_and_cord(case.image)
    truth = case.anatomy.array
    sac = overlap(result.canal.array, _sac_truth(truth))["dice"]
    cord = overlap(result.cord.array, truth == labels.value("cord"))["dice"]
    assert sac >= 0.6, f"thecal sac Dice {sac:.3f}"
    assert cord >= 0.8, f"cord Dice {cord:.3f}"
    assert result.canal.same_geometry(case.image)


def test_tptbox_sac_dice(test_data):
    """TPTBox: label 61 (canal) excludes the cord voxels (60), so the sac is 60 | 61."""
    folder = test_data / "tptbox_sample_mri"
    image = read_volume(folder / "sub-mri_label-6_T2w.nii.gz")
    subreg = read_volume(folder / "sub-mri_seg-subreg_label-6_msk.nii.gz").array
    assert not np.any((subreg == 60) & (subreg == 61))
    result = segment_canal_and_cord(image)
    dice = overlap(result.canal.array, np.isin(subreg, [60, 61]))["dice"]
    assert dice >= 0.55, f"TPTBox sac Dice {dice:.3f}"


def test_cervical_cord_dice_and_inclusion(cervical):
    image, cord_truth = cervical
    result = segment_canal_and_cord(image)
    assert isinstance(result, CanalResult)
    dice = overlap(result.cord.array, cord_truth.array > 0)["dice"]
    assert dice >= 0.78, f"SCT cervical cord Dice {dice:.3f}"
    # the cord lies inside the sac, and both are 0/1 uint8 on the input grid
    assert not np.any(result.cord.array.astype(bool) & ~result.canal.array.astype(bool))
    for mask in (result.canal, result.cord):
        assert mask.array.dtype == np.uint8 and set(np.unique(mask.array)) <= {0, 1}
        assert mask.same_geometry(image)
    # the centerline runs superior -> inferior (RAS S decreasing) along the canal
    s_coord = result.centerline_ras[:, 2]
    assert len(s_coord) > 40 and s_coord[0] > s_coord[-1]
    assert np.all(np.diff(s_coord) < 0)


def test_oblique_input_keeps_geometry(cervical):
    image, _ = cervical
    angle = np.deg2rad(7.0)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    oblique = Volume(image.array, (1.0, 1.1, 0.9), (3.0, -7.0, 11.0), rot @ image.direction)
    result = segment_canal_and_cord(oblique)
    for mask in (result.canal, result.cord):
        assert mask.shape == oblique.shape
        assert mask.spacing == oblique.spacing and mask.origin == oblique.origin
        np.testing.assert_array_equal(mask.direction, oblique.direction)
    # same voxels as the straight scan: the method works on the exact canonical permutation
    straight = segment_canal_and_cord(image)
    assert overlap(result.canal.array, straight.canal.array)["dice"] > 0.9


def test_cancel_and_progress(cervical):
    image, _ = cervical
    with pytest.raises(Cancelled):
        segment_canal_and_cord(image, cancel=lambda: True)
    seen = []
    segment_canal_and_cord(image, progress=lambda f, m: seen.append(f))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def test_no_canal_raises():
    blank = Volume(np.zeros((20, 40, 40), dtype=np.int16))
    with pytest.raises(ValueError, match="no spinal canal found"):
        segment_canal_and_cord(blank)


def test_vertebrae_on_other_grid_rejected(cervical):
    image, cord_truth = cervical
    other = Volume(cord_truth.array, (2.0, 2.0, 2.0), cord_truth.origin, cord_truth.direction)
    with pytest.raises(ValueError, match="vertebrae label map must be on the volume's grid"):
        segment_canal_and_cord(image, vertebrae=other)


def _tube_scene(length=200, dark_runs=((0, 40), (90, 190)), sac_radius=7):
    """A bright sac tube (``sac_radius`` mm, 1 mm grid, rows = superior->inferior) with dark
    7 mm-wide cords filling the row ranges ``dark_runs``: ``(lo, hi)`` on the tube's axis,
    ``(lo, hi, shift)`` moved ``shift`` mm along the columns."""
    half = sac_radius + 5
    s, c = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    sac = np.repeat(((s ** 2 + c ** 2) <= sac_radius ** 2)[:, None, :], length, axis=1)
    image = np.where(sac, 1.0, 0.2).astype(np.float32)
    for lo, hi, *shift in dark_runs:
        core = (s ** 2 + (c - (shift[0] if shift else 0)) ** 2) <= 12
        image[:, lo:hi][np.repeat(core[:, None, :], hi - lo, axis=1)] = 0.3
    return image, sac


def _cord_rows(dark_runs, latest_start=None, **scene):
    """Rows of the cord found in a :func:`_tube_scene`."""
    from spinetumor.segmentation.canal import segment_cord

    image, sac = _tube_scene(dark_runs=dark_runs, **scene)
    cord = segment_cord(image, sac, np.ones(image.shape[1], np.float32), np.ones(3), latest_start)
    return np.flatnonzero(cord.any(axis=(0, 2)))


def test_cord_starts_near_the_top_not_at_clumped_roots():
    # the long dark blob at rows 90-189 (roots clumped in the lower sac) is not the cord
    rows = _cord_rows(((0, 40), (90, 190)))
    assert rows.min() <= 2 and 35 <= rows.max() <= 42, (rows.min(), rows.max())
    # with vertebra labels the limit is the L2 body's centre: a blob starting above it is the cord
    rows = _cord_rows(((90, 190),), latest_start=95)
    assert rows.min() >= 88 and rows.max() >= 185, (rows.min(), rows.max())
    # both may start high enough: the cord is the one coming from the top, not the longer one,
    # and 50 mm of bright sac is too long a gap to be one cord
    rows = _cord_rows(((0, 40), (90, 190)), latest_start=95)
    assert rows.min() <= 2 and 35 <= rows.max() <= 42, (rows.min(), rows.max())


def test_cord_is_followed_across_an_intramedullary_tumor():
    """A bright 20 mm gap (a tumor in the cord) splits the dark cord: the longer piece below
    it is joined to the piece above, and the gap is filled with a cord-sized cross-section."""
    rows = _cord_rows(((0, 50), (70, 170)), latest_start=95)
    assert rows.min() <= 2 and rows.max() >= 165 and np.array_equal(rows, np.arange(rows.min(), rows.max() + 1))
    from spinetumor.segmentation.canal import segment_cord

    image, sac = _tube_scene(dark_runs=((0, 50), (70, 170)))
    cord = segment_cord(image, sac, np.ones(image.shape[1], np.float32), np.ones(3), 95)
    area_gap, area_cord = cord[:, 60].sum(), cord[:, 30].sum()
    assert 0.7 * area_cord <= area_gap <= 1.3 * area_cord, (area_gap, area_cord)
    # the piece below must start above the limit: below it, it is the cauda equina
    rows = _cord_rows(((0, 50), (70, 170)), latest_start=60)
    assert rows.max() <= 52, rows.max()


def test_cord_is_not_joined_to_a_blob_beside_its_axis():
    rows = _cord_rows(((0, 50), (70, 170, 6)), latest_start=95, sac_radius=11)
    assert rows.min() <= 2 and 45 <= rows.max() <= 52, (rows.min(), rows.max())


def test_no_cord_when_the_only_dark_blob_starts_low():
    assert _cord_rows(((90, 190),), latest_start=60).size == 0


def test_lateral_prior_follows_the_bodies_row_by_row():
    """The search weight peaks at the bodies' left-right centre of each row (a scoliotic shift
    from slice 8 to 12 is followed), is held beyond the labeled rows and falls off by LATERAL_SD_MM."""
    from spinetumor.segmentation.canal import LATERAL_SD_MM, _vertebra_prior

    vert = np.zeros((21, 100, 30), np.uint8)
    for r in range(20, 81):
        centre = 8 + round(4 * (r - 20) / 60)
        vert[centre - 3:centre + 4, r, 5:15] = 1
    spacing_s = 2.0
    _, s_weight = _vertebra_prior(vert, vert.shape, np.ones(3, int), spacing_s)
    peak = s_weight.argmax(axis=0)
    assert peak[20] == 8 and peak[80] == 12 and peak[50] == 10
    assert peak[0] == 8 and peak[99] == 12                      # held beyond the labeled rows
    sd_slices = LATERAL_SD_MM / spacing_s
    assert s_weight[8, 20] == pytest.approx(1.0)
    assert s_weight[8 + int(sd_slices), 20] == pytest.approx(np.exp(-0.5), rel=1e-5)


def test_bright_structure_beside_the_spine_stays_out_of_the_sac_on_thick_slices():
    """On 5 mm sagittal slices a fluid-bright tube 20 mm beside the spine (a facet effusion or a
    root-sleeve cyst), brighter than the CSF, must not pull the sac sideways when the vertebrae are known."""
    phantom = pytest.importorskip("spinetumor.phantom")
    from spinetumor.volume import from_canonical, to_canonical

    case = phantom.generate(0, tumor="none", slice_thickness=5.0, in_plane=1.0, orientation="canonical",
                            oblique_deg=0.0)
    array = to_canonical(case.image)[0].array.astype(np.float32)
    sac = _sac_truth(to_canonical(case.anatomy)[0].array)
    bodies = np.flatnonzero((to_canonical(case.vertebrae)[0].array > 0).any(axis=(1, 2)))
    midline = int(round(bodies.mean()))
    top = int(np.flatnonzero(sac.any(axis=(0, 2)))[0])
    column = int(np.flatnonzero(sac[midline, top + 20]).mean())
    lateral = midline + 4                                          # 20 mm to the side
    array[lateral, top:top + 60, column - 5:column + 6] = 1.3 * np.percentile(array[sac], 90)
    image = from_canonical(array, case.image)
    found = to_canonical(segment_canal_and_cord(image, case.vertebrae).canal)[0].array
    assert not found[lateral].any()
    assert overlap(found, sac)["dice"] >= 0.6
