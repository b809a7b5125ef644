"""Tumor localization: levels and epicentre equal the phantom's truth, compartment rule, size, compromise."""

from __future__ import annotations

import numpy as np
import pytest

from spinetumor import labels, localization, phantom
from spinetumor.localization import ALL_LEVELS, compartment_rule, level_planes, localize_tumors
from spinetumor.volume import CANONICAL_DIRECTION, Volume


def _masks(anatomy: Volume, cut_tumor: bool = False):
    """Sac and cord masks of a phantom; with ``cut_tumor`` the tumors are left out of both."""
    arr = anatomy.array
    tumors = np.isin(arr, [t.value for t in labels.TUMOR_TYPES])
    sac = np.isin(arr, [labels.value(k) for k in ("canal", "cord", "cauda_equina", "intramedullary",
                                                   "intradural-extramedullary", "edema", "syrinx")])
    cord = np.isin(arr, [labels.value(k) for k in ("cord", "intramedullary", "edema", "syrinx")])
    if cut_tumor:
        sac, cord = sac & ~tumors, cord & ~tumors
    return anatomy.with_array(sac.astype(np.uint8)), anatomy.with_array(cord.astype(np.uint8))


@pytest.fixture(scope="module")
def cases():
    """One phantom per tumor type plus one with several tumors (the seeds of test_phantom)."""
    return {kind: phantom.generate(seed, kind) for seed, kind in
            ((11, "intramedullary"), (5, "intradural-extramedullary"), (13, "extradural"), (4, "several"))}


def test_phantom_truth_uses_the_same_level_functions():
    assert phantom._level_planes is localization.level_planes
    assert phantom._levels_of is localization.levels_of
    assert phantom._tumor_levels is localization.tumor_levels
    assert phantom.ALL_LEVELS == ALL_LEVELS == ("T10",) + labels.LEVEL_NAMES + ("S1",)


def test_levels_epicentre_volume_centroid_equal_truth_with_the_anatomy_map(cases):
    for case in cases.values():
        sac, cord = _masks(case.anatomy)
        found = {loc.id: loc for loc in localize_tumors(case.tumor, case.anatomy, sac, cord)}
        assert sorted(found) == [t["id"] for t in case.truth["tumors"]]
        for t in case.truth["tumors"]:
            loc = found[t["id"]]
            assert loc.levels == t["levels"]
            assert loc.epicenter_level == t["epicenter_level"]
            assert loc.voxels == t["voxels"]
            assert loc.volume_ml == pytest.approx(t["volume_ml"], abs=1e-6)
            assert np.allclose(loc.centroid_ras, t["centroid_ras"], atol=2e-3)


def test_levels_equal_truth_with_only_the_seven_labeled_bodies(cases):
    checked = 0
    for case in cases.values():
        found = {loc.id: loc for loc in localize_tumors(case.tumor, case.vertebrae)}
        for t in case.truth["tumors"]:
            if all(name in labels.LEVEL_NAMES for name in t["levels"]):
                assert found[t["id"]].levels == t["levels"]
                assert found[t["id"]].epicenter_level == t["epicenter_level"]
                checked += 1
    assert checked >= 4


def test_closing_plane_below_l5_lies_near_the_top_of_the_sacrum(cases):
    for case in cases.values():
        truth_planes = level_planes(case.anatomy)
        measured = level_planes(case.vertebrae)
        assert [p.index for p in measured][-2:] == [ALL_LEVELS.index("L5"), ALL_LEVELS.index("S1")]
        s1_truth = [p for p in truth_planes if p.index == ALL_LEVELS.index("S1")][0]
        gap = float((measured[-1].point - s1_truth.point) @ s1_truth.normal)
        assert abs(gap) < 6.0, gap      # one disc height's uncertainty, not a body's
        by_index = {p.index: p for p in measured}
        for a in truth_planes:                                # T12..L5 planes: identical
            if ALL_LEVELS.index("T12") <= a.index <= ALL_LEVELS.index("L5"):
                b = by_index[a.index]
                assert np.allclose(a.point, b.point) and np.allclose(a.normal, b.normal)


@pytest.mark.parametrize("cut_tumor", [False, True])
def test_compartment_rule_gives_the_true_type(cases, cut_tumor):
    kinds = set()
    for case in cases.values():
        sac, cord = _masks(case.anatomy, cut_tumor)
        found = {loc.id: loc for loc in localize_tumors(case.tumor, case.vertebrae, sac, cord)}
        for t in case.truth["tumors"]:
            assert found[t["id"]].compartment == t["type"], found[t["id"]].compartment_scores
            kinds.add(t["type"])
    assert kinds == set(labels.TUMOR_TYPE_NAMES)


def test_an_extradural_tumor_stays_extradural_when_the_sac_mask_grew_into_it():
    """A bright extradural tumor abutting the sac gets swallowed by a segmented sac: the
    tumor lies inside the sac mask, but its ring touches the sac on one side only."""
    sac = np.zeros((3, 40, 40), bool)
    sac[:, 5:35, 10:20] = True                          # the sac, a tube along the rows
    tumor = np.zeros_like(sac)
    tumor[1, 15:25, 20:26] = True                       # behind the sac, touching it
    grown = sac | tumor                                 # the segmenter took the tumor in
    kind, scores = compartment_rule(tumor, grown, np.zeros_like(sac))
    assert kind == "extradural" and scores["sac"] == pytest.approx(10 / 32)    # 10 of 32 ring pixels in the sac
    inside = np.zeros_like(sac)
    inside[1, 15:25, 12:17] = True                      # a tumor within the sac (intradural)
    assert compartment_rule(inside, sac, np.zeros_like(sac))[0] == "intradural-extramedullary"
    assert compartment_rule(inside, sac & ~inside, np.zeros_like(sac))[0] == "intradural-extramedullary"


def test_rule_abstains_without_a_sac_mask(cases):
    case = cases["extradural"]
    loc = localize_tumors(case.tumor, case.vertebrae)[0]
    assert loc.compartment is None and loc.canal_compromise_percent is None


def test_extents_and_centroid_are_consistent(cases):
    for case in cases.values():
        for loc in localize_tumors(case.tumor, case.vertebrae):
            e = loc.extent_mm
            assert set(e) == {"superior_inferior", "anterior_posterior", "left_right"}
            assert all(v > 1.0 for v in e.values())
            assert loc.volume_ml * 1000 <= e["superior_inferior"] * e["anterior_posterior"] * e["left_right"]
            # an ellipsoid fills pi/6 of its box; lobulated tumors on thick slices a little less
            assert loc.volume_ml * 1000 >= 0.2 * e["superior_inferior"] * e["anterior_posterior"] * e["left_right"]
            kji = np.argwhere(case.tumor.array == loc.id)
            ras = case.tumor.index_to_ras(kji)
            centroid = np.asarray(loc.centroid_ras)
            assert np.all(centroid >= ras.min(0)) and np.all(centroid <= ras.max(0))


def _synthetic_spine(spacing=(0.5, 0.5, 2.0)):
    """A canonical volume: seven 20 mm bodies with 8 mm discs straight down the RAS S-I axis."""
    sp_c, sp_r, sp_s = spacing
    shape = (20, int(260 / sp_r), int(60 / sp_c))               # s, r, c
    arr = np.zeros(shape, np.uint8)
    rows_mm = np.arange(shape[1]) * sp_r
    top = 10.0
    for lab in labels.VERTEBRAE:
        sel = (rows_mm >= top) & (rows_mm < top + 20)
        arr[4:16, sel, 10:50] = lab.value
        top += 28
    return Volume(arr, spacing, (0.0, 0.0, 0.0), CANONICAL_DIRECTION)


def test_extents_are_exact_for_a_box_and_discs_are_named():
    vert = _synthetic_spine()
    tumor = np.zeros(vert.shape, np.uint8)
    # rows of L2's lower end and the L2-L3 disc (L2 spans 94..114 mm, disc 114..122 mm)
    r0, r1 = int(105 / 0.5), int(117 / 0.5)                   # 12 mm
    tumor[6:9, r0:r1, 20:32] = 1                              # 3 slices x 2 mm = 6 mm, 12 cols x 0.5 = 6 mm
    locs = localize_tumors(vert.with_array(tumor), vert)
    assert len(locs) == 1
    loc = locs[0]
    assert loc.levels == ["L2"] and loc.epicenter_level == "L2" and loc.discs == ["L2-L3"]
    assert loc.extent_mm == pytest.approx({"superior_inferior": 12.0, "anterior_posterior": 6.0,
                                           "left_right": 6.0}, abs=1e-6)
    assert loc.volume_ml == pytest.approx(12 * 6 * 6 / 1000)
    # inside a body: no disc; below L5 (one disc height under it): S1
    body = np.zeros_like(tumor)
    body[8, int(70 / 0.5):int(80 / 0.5), 20:30] = 1           # L1 spans 66..86 mm
    below = np.zeros_like(tumor)
    below[8, int(250 / 0.5):int(255 / 0.5), 20:30] = 1        # L5 ends at 198 mm; + 8 mm disc -> S1 from 206
    assert localize_tumors(vert.with_array(body), vert)[0].levels == ["L1"]
    assert localize_tumors(vert.with_array(body), vert)[0].discs == []
    assert localize_tumors(vert.with_array(below), vert)[0].levels == ["S1"]


def test_a_tumor_grazing_the_next_bodys_superior_plane_does_not_span_that_level():
    """L3's slab starts at its top, 122 mm (rows of 0.5 mm); MIN_LEVEL_DEPTH_MM is 1 mm."""
    vert = _synthetic_spine()

    def levels(first_mm, last_mm):
        tumor = np.zeros(vert.shape, np.uint8)
        tumor[6:9, int(first_mm / 0.5):int(last_mm / 0.5) + 1, 20:32] = 1
        return localize_tumors(vert.with_array(tumor), vert)[0].levels

    assert localization.MIN_LEVEL_DEPTH_MM == 1.0
    assert levels(110.0, 122.5) == ["L2"]              # two rows on and past the plane: 0.5 mm deep
    assert levels(110.0, 123.0) == ["L2", "L3"]        # three rows: 1 mm into L3
    assert levels(110.0, 130.0) == ["L2", "L3"]
    # one row above the plane, three below, centroid in L3: L2 is only grazed
    assert levels(121.5, 123.0) == ["L3"]
    # a tumor lying in L3 only a voxel deep still has its own level (the epicentre's)
    assert levels(122.5, 122.5) == ["L3"]


def test_canal_compromise(cases):
    case = cases["extradural"]
    sac, cord = _masks(case.anatomy)
    loc = localize_tumors(case.tumor, case.vertebrae, sac, cord)[0]
    assert loc.compartment == "extradural" and loc.canal_compromise_percent > 0
    intradural = localize_tumors(cases["intradural-extramedullary"].tumor, None,
                                 *_masks(cases["intradural-extramedullary"].anatomy))[0]
    assert intradural.canal_compromise_percent > 10
    # a "tumor" in the anterior half of a vertebral body, far from the sac: nothing occupied
    body = (case.anatomy.array == labels.value("L3"))
    kji = np.argwhere(body)
    ras = case.anatomy.index_to_ras(kji)
    front = ras[:, 1] > np.percentile(ras[:, 1], 70)          # RAS y: anterior
    far = np.zeros(body.shape, np.uint8)
    far[tuple(kji[front].T)] = 1
    loc_far = localize_tumors(case.anatomy.with_array(far), case.vertebrae, sac, cord)[0]
    assert loc_far.canal_compromise_percent == 0.0
    # tumor-free: nothing to report
    assert localize_tumors(case.tumor.with_array(np.zeros_like(case.tumor.array)), case.vertebrae, sac, cord) == []
    assert loc_far.compartment == "extradural" and loc_far.epicenter_level == "L3"


def test_binary_mask_is_split_into_the_truth_tumors(cases):
    case = cases["several"]
    binary = case.tumor.with_array((case.tumor.array > 0).astype(np.uint8))
    found = localize_tumors(binary, case.anatomy)
    assert len(found) == len(case.truth["tumors"]) >= 2
    assert sorted(loc.volume_ml for loc in found) == pytest.approx(sorted(t["volume_ml"] for t in case.truth["tumors"]))
    assert sorted(tuple(loc.levels) for loc in found) == sorted(tuple(t["levels"]) for t in case.truth["tumors"])


def test_masks_on_another_grid_are_resampled(cases):
    from spinetumor.volume import resample

    case = cases["intramedullary"]
    coarse = resample(case.vertebrae, (1.5, 1.5, case.vertebrae.spacing[2] * 1.0), label=True)
    loc = localize_tumors(case.tumor, coarse)[0]
    t = case.truth["tumors"][0]
    assert loc.epicenter_level == t["epicenter_level"]
    assert loc.volume_ml == pytest.approx(t["volume_ml"])


def _tumor_beside_a_sac(rows_mm: tuple, cols: slice):
    """The synthetic spine with a sac behind the bodies (columns 60:80; increasing columns run
    posterior) and a tumor over ``rows_mm`` (superior, inferior; 0.5 mm rows) in ``cols``."""
    vert = _synthetic_spine()
    sac = np.zeros(vert.shape, np.uint8)
    sac[6:14, :, 60:80] = 1
    tumor = np.zeros(vert.shape, np.uint8)
    tumor[8:12, int(rows_mm[0] / 0.5):int(rows_mm[1] / 0.5), cols] = 1
    return vert.with_array(tumor), vert, vert.with_array(sac)


def test_a_tumor_centred_on_a_disc_in_front_of_the_sac_is_flagged_as_a_possible_disc_herniation():
    # L2 spans 94..114 mm, the L2-L3 disc 114..122 mm
    tumor, vert, sac = _tumor_beside_a_sac((115.0, 121.0), slice(52, 58))
    loc = localize_tumors(tumor, vert, sac)[0]
    assert loc.discs == ["L2-L3"] and loc.centre_disc == "L2-L3" and loc.in_front_of_sac is True
    assert localization.cautions(loc, "extradural") == [localization.DISC_CAUTION.format(disc="L2-L3")]
    assert "L2-L3 disc space in front of the dural sac" in localization.cautions(loc, "extradural")[0]
    assert loc.compartment == "extradural"                                   # outside the sac
    assert len(localization.cautions(loc, "intradural-extramedullary")) == 1  # the rule's extradural counts
    loc.compartment = "intradural-extramedullary"
    assert localization.cautions(loc, "intradural-extramedullary") == []      # neither says extradural


def test_no_disc_caution_behind_the_sac_in_a_body_or_without_a_sac():
    behind = localize_tumors(*_tumor_beside_a_sac((115.0, 121.0), slice(82, 88)))[0]
    assert behind.centre_disc == "L2-L3" and behind.in_front_of_sac is False
    in_body = localize_tumors(*_tumor_beside_a_sac((100.0, 110.0), slice(52, 58)))[0]
    assert in_body.centre_disc is None and in_body.in_front_of_sac is True
    tumor, vert, _ = _tumor_beside_a_sac((115.0, 121.0), slice(52, 58))
    no_sac = localize_tumors(tumor, vert)[0]
    assert no_sac.in_front_of_sac is None
    for loc in (behind, in_body, no_sac):
        assert localization.cautions(loc, "extradural") == []


def test_in_front_of_sac_uses_the_sac_at_the_tumors_height_only():
    axis = np.array([0.0, 0.0, -1.0])                        # inferior
    sac = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, -2.0], [0.0, 30.0, -50.0]])   # the far point lies 50 mm lower
    assert localization.in_front_of_sac(np.array([0.0, 5.0, 0.0]), sac, axis) is True
    assert localization.in_front_of_sac(np.array([0.0, -5.0, 0.0]), sac, axis) is False
    assert localization.in_front_of_sac(np.array([0.0, 5.0, 20.0]), sac, axis) is None


def _oblique_flipped(vol: Volume, degrees: float = 20.0) -> Volume:
    """``vol`` tilted by ``degrees`` about the left-right axis, its columns stored in reverse order."""
    t = np.radians(degrees)
    tilt = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(t), -np.sin(t)], [0.0, np.sin(t), np.cos(t)]])
    direction = tilt @ vol.direction
    origin = np.asarray(vol.origin) + (vol.shape[2] - 1) * vol.spacing[0] * direction[:, 0]
    direction[:, 0] *= -1
    return Volume(np.ascontiguousarray(vol.array[:, :, ::-1]), vol.spacing, tuple(origin), direction)


def test_the_disc_caution_does_not_depend_on_orientation_or_storage_order():
    for cols, in_front in ((slice(52, 58), True), (slice(82, 88), False)):
        volumes = _tumor_beside_a_sac((115.0, 121.0), cols)
        plain = localize_tumors(*volumes)[0]
        turned = localize_tumors(*(_oblique_flipped(v) for v in volumes))[0]
        assert (plain.centre_disc, plain.in_front_of_sac) == (turned.centre_disc, turned.in_front_of_sac) \
            == ("L2-L3", in_front)
        assert localization.cautions(turned, "extradural") == localization.cautions(plain, "extradural")


def test_a_finding_on_one_sagittal_slice_is_cautioned_whatever_the_storage_order():
    from spinetumor.volume import Reorientation, reorient

    tumor, vert, sac = _tumor_beside_a_sac((100.0, 110.0), slice(82, 88))  # behind the sac, in L2's part
    one = tumor.with_array(np.zeros_like(tumor.array))
    one.array[10, 200:220, 82:88] = 1                                      # sagittal slice 10 only
    for volumes, slices in (((tumor, vert, sac), 4), ((one, vert, sac), 1)):
        for view in (volumes, tuple(_oblique_flipped(v) for v in volumes)):
            loc = localize_tumors(*view)[0]
            assert loc.sagittal_slices == slices
            expected = [localization.ONE_SLICE_CAUTION] if slices == 1 else []
            assert localization.cautions(loc, "extradural") == expected
    # the same single slice stored with the left-right axis last in the array (another layout)
    other = localize_tumors(*(reorient(v, Reorientation((2, 1, 0), (True, False, False))) for v in (one, vert, sac)))[0]
    assert other.sagittal_slices == 1 and localization.cautions(other, "intramedullary") == [localization.ONE_SLICE_CAUTION]
