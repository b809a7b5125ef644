"""Tumor augmentation engine: extraction and fill, CSF path, compartments, gliding (phantoms only)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spinetumor import labels, phantom
from spinetumor.augmentation import inpaint
from spinetumor.augmentation.compartments import Compartments, check_compartment, compartments_from_anatomy
from spinetumor.augmentation.csf_path import centerline, csf_path, level_rows
from spinetumor.augmentation.extract import extract_tumor
from spinetumor.augmentation.glide import glide, prepare_target
from spinetumor.volume import from_canonical, to_canonical

TYPES = labels.TUMOR_TYPE_NAMES


@pytest.fixture(scope="module")
def free_case():
    """A tumor-free phantom in the canonical orientation (the gliding target)."""
    return phantom.generate(11, tumor="none", orientation="canonical", oblique_deg=0.0, fov="full")


@pytest.fixture(scope="module")
def target(free_case):
    return prepare_target(free_case.image, free_case.vertebrae, free_case.anatomy, name="free11")


@pytest.fixture(scope="module")
def patches():
    """One extracted tumor of each compartment (phantom seed 2, random orientation)."""
    out = {}
    for kind in TYPES:
        case = phantom.generate(2, tumor=kind)
        mask = case.tumor.with_array((case.tumor.array == 1).astype(np.uint8))
        out[kind] = extract_tumor(case.image, mask, kind, case.anatomy, source=f"p2-{kind}")
    return out


def _blob_case(free_case):
    """The free phantom with a bright synthetic tumor (3x CSF) in the dural sac, and its mask."""
    canon = to_canonical(free_case.image)[0]
    anat = to_canonical(free_case.anatomy)[0].array
    sac = compartments_from_anatomy(anat).sac
    s, r, c = np.argwhere(sac).mean(axis=0).round().astype(int)
    rows = np.nonzero(sac[s].any(axis=1))[0]
    r = int(rows[len(rows) // 2])
    c = int(np.argwhere(sac[s, r]).mean().round())
    ss, rr, cc = np.ogrid[:anat.shape[0], :anat.shape[1], :anat.shape[2]]
    mask = (((rr - r) / 9.0) ** 2 + ((cc - c) / 4.0) ** 2 <= 1) & (np.abs(ss - s) <= 1)
    image = canon.array.astype(np.float32).copy()
    image[mask] = 3 * np.median(canon.array[sac])
    return canon, image, mask


@pytest.mark.parametrize("method", inpaint.FILL_METHODS)
def test_extraction_removes_the_tumor_and_leaves_a_smooth_seam(free_case, method):
    canon, image, mask = _blob_case(free_case)
    truth = canon.array.astype(np.float32)
    with_tumor = from_canonical(image, free_case.image)
    ex = extract_tumor(with_tumor, from_canonical(mask.astype(np.uint8), free_case.image),
                       "intradural-extramedullary", free_case.anatomy, fill=method)
    filled = to_canonical(ex.filled)[0].array
    hole = to_canonical(ex.hole)[0].array > 0
    assert ex.filled.same_geometry(free_case.image)
    assert hole.sum() > mask.sum()                         # grown by the partial-volume rim
    assert np.array_equal(filled[~hole], image[~hole])     # nothing outside the hole changes
    # no tumor intensity left: the fill stays in the range of the tissue it replaces
    tumor_level = image[mask].mean()
    assert filled[hole].max() < 0.6 * tumor_level
    assert abs(filled[hole].mean() - truth[hole].mean()) < 0.15 * truth[hole].mean()
    seam = inpaint.seam_metrics(filled, hole, truth)
    assert seam["seam_ratio"] < 1.5
    assert seam["rmse_rel"] < 1.5
    # the patch holds the tumor, with the source's spacing
    assert ex.patch.mask.sum() == mask.sum()
    assert np.allclose(ex.patch.spacing, canon.spacing[::-1])
    assert np.allclose(ex.patch.image[ex.patch.mask], tumor_level)


def test_fills_reproduce_a_smooth_surface():
    yy, xx = np.mgrid[:40, :40].astype(float)
    image = 100 + 0.8 * yy - 0.5 * xx
    hole = ((yy - 20) ** 2 + (xx - 18) ** 2) <= 36
    for method in inpaint.FILL_METHODS:
        filled = inpaint.fill_hole_2d(image, hole, method)
        assert np.abs(filled - image)[hole].max() < 0.3, method


def test_csf_path_is_superior_to_inferior_in_1mm_steps(free_case, target):
    path = target.path
    steps = np.linalg.norm(np.diff(path.points_mm, axis=0), axis=1)
    assert np.allclose(steps, 1.0, atol=0.02)
    assert np.allclose(np.diff(path.arc_mm), 1.0)
    assert np.all(np.diff(path.points_mm[:, 1]) > 0)       # rows increase: superior -> inferior
    assert np.allclose(np.linalg.norm(path.tangent, axis=1), 1.0)
    assert (path.start_level, path.end_level) == ("T11", "L5")
    spans = level_rows(target.vertebrae)
    rows = path.points_mm[:, 1] / path.spacing[1]
    assert abs(rows[0] - spans["T11"][0]) <= 1.0 / path.spacing[1] + 1e-6
    assert abs(rows[-1] - spans["L5"][1]) <= 1.0 / path.spacing[1] + 1e-6
    assert path.levels[0] == "T11" and path.levels[-1] == "L5"
    # the path stays inside the sac
    idx = np.round(path.points_index).astype(int)
    assert target.comp.sac[idx[:, 0], idx[:, 1], idx[:, 2]].mean() > 0.95


def test_csf_path_curvature_of_a_circular_canal():
    """A tube bent along a circle of radius 120 mm has curvature 1/120 per mm."""
    spacing = np.array([1.0, 0.5, 0.5])
    shape = (12, 400, 300)
    _, rr, cc = np.ogrid[:shape[0], :shape[1], :shape[2]]
    y, z = rr * spacing[1], cc * spacing[2]
    radius = 120.0
    dist = np.hypot(y - 100.0, z - (30.0 + radius))        # centre posterior: the tube bulges anteriorly
    sac = np.broadcast_to((np.abs(dist - radius) <= 4.0) & (y >= 20) & (y <= 180), shape).copy()
    sac[:3] = sac[-3:] = False
    path = centerline(sac, spacing)
    middle = slice(len(path) // 4, 3 * len(path) // 4)
    kappa = path.curvature[middle]
    assert np.all(kappa > 0)                               # its tangent turns posteriorly going down
    assert abs(np.mean(kappa) * radius - 1) < 0.05
    assert np.allclose(kappa, 1 / radius, rtol=0.25)       # row-centroid quantisation
    assert len(csf_path(sac, spacing, None)) == len(path)  # no labels: the whole sac


def test_check_compartment_rules():
    sac = np.zeros((40, 40), bool)
    sac[10:30, 15:25] = True
    cord = np.zeros_like(sac)
    cord[12:28, 18:22] = True
    comp = Compartments(sac, cord)
    m = np.zeros_like(sac)
    m[15:18, 19:21] = True
    assert check_compartment(m, comp, "intramedullary")
    assert not check_compartment(m, comp, "intradural-extramedullary")
    m2 = np.zeros_like(sac)
    m2[15:18, 16:18] = True
    assert check_compartment(m2, comp, "intradural-extramedullary")
    assert not check_compartment(m2, comp, "intramedullary")
    m3 = np.zeros_like(sac)
    m3[15:18, 26:29] = True                                # 1 pixel gap to the sac
    assert check_compartment(m3, comp, "extradural", spacing=(1.0, 1.0))
    assert not check_compartment(m3, comp, "extradural", spacing=(4.0, 4.0))   # 4 mm gap: too far
    assert not check_compartment(m3 | m2, comp, "extradural")
    assert not check_compartment(np.zeros_like(sac), comp, "extradural")
    with pytest.raises(ValueError, match="unknown tumor type"):
        check_compartment(m, comp, "meningioma")


@pytest.mark.parametrize("kind", TYPES)
def test_gliding_keeps_every_sample_in_its_compartment(free_case, target, patches, kind):
    patch = patches[kind].patch
    comp = compartments_from_anatomy(to_canonical(free_case.anatomy)[0].array)
    samples = list(glide(target, patch, per_slice=8, mode="2d", seed=1))
    kept = [s for s in samples if s.ok]
    assert len(kept) >= 6
    assert len(kept) >= 0.6 * len(samples)
    positions = sorted({s.placement.arc_mm for s in kept})
    assert len(positions) >= 4 and positions[-1] - positions[0] > 25      # spread along the path (cord: T11-L1)
    for s in kept:
        k = s.slice_index
        assert check_compartment(s.mask, comp.slice(k), kind, target.spacing[1:])
        changed = np.abs(s.image - target.image[k]) > 1e-3
        near = ndimage.binary_dilation(s.mask > 0, iterations=4)
        assert not (changed & ~near).any()                 # only the tumor and its feathered rim change
        assert np.array_equal(s.vertebrae, target.vertebrae[k])
    # sized per slice: the largest cross-sections near the tumor's centre slice
    first = kept[0].placement.index
    same = [s for s in kept if s.placement.index == first]
    if len(same) >= 3:
        sizes = {s.slice_index: int(s.mask.sum()) for s in same}
        centre_k = round(same[0].placement.centre_mm[0] / target.spacing[0])
        assert max(sizes, key=sizes.get) in (centre_k - 1, centre_k, centre_k + 1)


def test_gliding_3d_inserts_one_coherent_object(free_case, target, patches):
    patch = patches["intradural-extramedullary"].patch
    comp = compartments_from_anatomy(to_canonical(free_case.anatomy)[0].array)
    samples = list(glide(target, patch, per_slice=3, mode="3d", seed=0))
    assert samples and all(s.slice_index is None for s in samples)
    for s in (x for x in samples if x.ok):
        assert s.image.shape == target.image.shape
        assert check_compartment(s.mask, comp, "intradural-extramedullary", target.spacing)
        _, n = ndimage.label(s.mask > 0, structure=np.ones((3, 3, 3)))
        assert n == 1
        volume = s.mask.sum() * np.prod(target.spacing)
        assert 0.3 < volume / patches["intradural-extramedullary"].patch.info["volume_mm3"] < 1.6


def _edge_patch(spacing_mm: float):
    """A patch holding a sharp-edged disc (value 300 in a 100 background) at ``spacing_mm`` in-plane."""
    from spinetumor.augmentation.extract import TumorPatch, boundary_gradient

    n = 40
    rr, cc = np.mgrid[:n, :n]
    mask = (rr - n / 2) ** 2 + (cc - n / 2) ** 2 <= (6 / spacing_mm) ** 2
    image = np.where(mask, 300.0, 100.0).astype(np.float32)
    sp = np.array([3.0, spacing_mm, spacing_mm])
    gradient = boundary_gradient(image, mask, sp[1:]) / 200.0
    return TumorPatch(image[None], mask[None], sp, "extradural", np.zeros(3), 0.0, 1.0, 0.0, 0.0, 200.0,
                      gradient, edge_image=image, edge_mask=mask, surround=100.0)


def test_boundary_gradient_is_compared_at_the_target_pixel_size():
    patch = _edge_patch(0.5)
    assert patch.boundary_gradient_at([0.5, 0.5]) == patch.boundary_gradient
    coarse = patch.boundary_gradient_at([1.0, 1.0])
    # the same physical edge one pixel wide at twice the pixel size: about half the gradient per mm
    assert 0.35 < coarse / patch.boundary_gradient < 0.65
    same_at_1mm = _edge_patch(1.0)
    assert coarse == pytest.approx(same_at_1mm.boundary_gradient, rel=0.25)


def test_inserted_tumor_keeps_its_step_against_new_surroundings():
    from spinetumor.augmentation.glide import match_contrast

    patch = _edge_patch(1.0)
    base = np.full((40, 40), 60.0, np.float32)        # darker surroundings in the target
    tumor = np.full((40, 40), 300.0, np.float32)
    values = match_contrast(tumor, base, patch.edge_mask, patch, gain=0.5)
    # source step 300 - 100 = 200 in source units, x 0.5 in target units, on top of the target's 60
    assert values[patch.edge_mask] == pytest.approx(60.0 + 0.5 * 200.0)
    old_style = _edge_patch(1.0)
    old_style.surround = float("nan")                 # a patch without a known surround: CSF-ratio scaling
    assert match_contrast(tumor, base, patch.edge_mask, old_style, gain=0.5)[20, 20] == pytest.approx(150.0)
