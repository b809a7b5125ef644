"""The synthetic spine phantom: determinism, geometry, compartment rules, truth, CLI, speed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from spinetumor import labels
from spinetumor.phantom import ALL_LEVELS, TUMOR_CHOICES, generate
from spinetumor.volume import to_canonical

INTRADURAL = [labels.value(k) for k in ("canal", "cord", "cauda_equina", "intramedullary",
                                        "intradural-extramedullary", "edema", "syrinx")]
CORD_SET = [labels.value(k) for k in ("cord", "intramedullary", "edema", "syrinx")]


@pytest.fixture(scope="module")
def cases():
    """A few cases covering every tumor type and several output layouts."""
    out = {}
    for seed, tumor in ((3, "none"), (11, "intramedullary"), (5, "intradural-extramedullary"),
                        (13, "extradural"), (4, "several")):
        out[tumor] = generate(seed, tumor)
    return out


def _in_plane_neighbours(label_canon: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Labels of the 4 in-plane (same sagittal slice) neighbours of every voxel in ``mask``."""
    s, r, c = np.nonzero(mask)
    shape = label_canon.shape
    out = []
    for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < shape[1]) & (cc >= 0) & (cc < shape[2])
        out.append(label_canon[s[ok], rr[ok], cc[ok]])
    return np.concatenate(out)


def test_same_seed_same_case_and_different_seeds_differ():
    a, b, c = generate(7, "random"), generate(7, "random"), generate(8, "random")
    for name in ("image", "vertebrae", "anatomy", "tumor"):
        assert np.array_equal(getattr(a, name).array, getattr(b, name).array)
        assert getattr(a, name).same_geometry(getattr(b, name), tol=0)
    assert a.truth == b.truth
    assert a.image.shape != c.image.shape or not np.array_equal(a.image.array, c.image.array)
    assert a.truth != c.truth


def test_maps_share_the_image_geometry_and_types(cases):
    for case in cases.values():
        assert case.image.array.dtype == np.float32
        for vol in (case.vertebrae, case.anatomy, case.tumor):
            assert vol.array.dtype == np.uint8
            assert vol.same_geometry(case.image, tol=0)
        assert np.isfinite(case.image.array).all() and case.image.array.min() >= 0
        g = case.truth["geometry"]
        assert g["size_ijk"] == list(case.image.shape[::-1])
        assert np.allclose(g["direction_lps"], case.image.direction, atol=1e-8)
        assert 3.0 <= g["slice_thickness_mm"] <= 5.0 and 0.5 <= g["in_plane_mm"] <= 1.0


def test_vertebrae_map_is_the_t11_to_l5_part_of_anatomy(cases):
    for case in cases.values():
        vert, anat = case.vertebrae.array, case.anatomy.array
        body = np.isin(anat, [v.value for v in labels.VERTEBRAE])
        assert np.array_equal(vert[body], anat[body])
        assert not vert[~body].any()
        assert set(np.unique(vert)) <= set(range(8))


def test_every_anatomy_label_is_from_the_table(cases):
    known = {0} | {lab.value for lab in labels.LABELS}
    seen = set()
    for case in cases.values():
        values = set(np.unique(case.anatomy.array).tolist())
        assert values <= known
        seen |= values
    for key in ("T10", "sacrum", "disc", "posterior_elements", "canal", "cord", "cauda_equina",
                "epidural_fat", "subcutaneous_fat", "paraspinal_muscle", "L3"):
        assert labels.value(key) in seen, key


def test_canonical_layout_is_a_sagittal_stack(cases):
    """Whatever layout was written, reorienting gives slices along left-right, thick ones."""
    for case in cases.values():
        canon, _ = to_canonical(case.image)
        g = case.truth["geometry"]
        assert canon.shape[0] == g["slices"]
        assert canon.spacing[2] == pytest.approx(g["slice_thickness_mm"], abs=1e-5)
        assert canon.spacing[0] == pytest.approx(g["in_plane_mm"], abs=1e-5)


def test_levels_ordered_superior_to_inferior_in_ras(cases):
    for case in cases.values():
        anat = case.anatomy
        present = []
        for name in ("T10",) + labels.LEVEL_NAMES:
            kji = np.argwhere(anat.array == labels.value(name))
            if len(kji):
                present.append((name, anat.index_to_ras(kji).mean(0)))
        assert len(present) >= 5
        sup = [c[2] for _, c in present]
        assert all(a > b + 10 for a, b in zip(sup[:-1], sup[1:])), present
        sacrum = anat.index_to_ras(np.argwhere(anat.array == labels.value("sacrum"))).mean(0)
        assert sacrum[2] < sup[-1]
        assert {"L1", "L2", "L3", "L4", "L5"} <= set(case.truth["levels_present"])
        order = [ALL_LEVELS.index(n) for n in case.truth["levels_present"]]
        assert order == sorted(order)


def test_cord_lies_inside_the_sac(cases):
    for case in cases.values():
        lab, _ = to_canonical(case.anatomy)
        cord = lab.array == labels.value("cord")
        assert cord.sum() > 100
        assert np.isin(_in_plane_neighbours(lab.array, cord), INTRADURAL).all()
        assert case.truth["conus_level"] in ("T12", "L1", "L2")


def test_no_tumor_case_has_an_empty_tumor_map(cases):
    case = cases["none"]
    assert case.truth["tumors"] == []
    assert not case.tumor.array.any()
    assert not np.isin(case.anatomy.array, [t.value for t in labels.TUMOR_TYPES]).any()


def test_tumors_lie_in_their_compartments(cases):
    types_seen = set()
    for case in cases.values():
        lab, _ = to_canonical(case.anatomy)
        tum, _ = to_canonical(case.tumor)
        for entry in case.truth["tumors"]:
            mask = tum.array == entry["id"]
            types_seen.add(entry["type"])
            assert mask.any()
            assert (lab.array[mask] == labels.value(entry["type"])).all()
            around = _in_plane_neighbours(lab.array, mask)
            around = around[~np.isin(around, [labels.value(entry["type"])])]
            if entry["type"] == "intramedullary":
                assert np.isin(around, CORD_SET).all()
            elif entry["type"] == "intradural-extramedullary":
                assert np.isin(around, INTRADURAL).all()
                assert not (lab.array[mask] == labels.value("cord")).any()
            else:
                assert not np.isin(around, INTRADURAL).any()
    assert types_seen == set(labels.TUMOR_TYPE_NAMES)


def test_tumor_truth_matches_the_maps(cases):
    for case in cases.values():
        voxel_ml = float(np.prod(case.tumor.spacing)) / 1000
        ids = sorted(set(np.unique(case.tumor.array).tolist()) - {0})
        assert ids == [t["id"] for t in case.truth["tumors"]]
        for entry in case.truth["tumors"]:
            kji = np.argwhere(case.tumor.array == entry["id"])
            assert entry["volume_ml"] == pytest.approx(len(kji) * voxel_ml, rel=1e-5)
            assert 0.15 <= entry["volume_ml"] <= 12
            assert np.allclose(entry["centroid_ras"], case.tumor.index_to_ras(kji).mean(0), atol=1e-2)
            idx = [ALL_LEVELS.index(n) for n in entry["levels"]]
            assert idx == sorted(idx) and idx == list(range(idx[0], idx[-1] + 1))
            assert entry["epicenter_level"] in entry["levels"]


def test_extradural_body_tumor_is_assigned_its_vertebra():
    case = generate(13, "extradural")
    entry = case.truth["tumors"][0]
    assert entry["origin"] == "vertebral body"
    tum = case.tumor.array == entry["id"]
    overlap = case.vertebrae.array[tum]  # tumor voxels replace the body; look beside them instead
    assert not overlap.any()
    from scipy.ndimage import binary_dilation

    ring = binary_dilation(tum, iterations=2) & ~tum
    names = [labels.by_value(v).key for v in np.unique(case.vertebrae.array[ring]) if v]
    assert entry["epicenter_level"] in names


def test_unknown_tumor_choice_is_refused():
    with pytest.raises(ValueError, match="tumor must be one of"):
        generate(0, "glioma")
    assert TUMOR_CHOICES[-1] == "random"


def test_cli_writes_the_five_files(tmp_path):
    from spinetumor.cli import main
    from spinetumor.io import read_volume

    assert main(["phantom", "--out", str(tmp_path), "--seed", "5", "--tumor", "extradural"]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["anatomy.nii.gz", "image.nii.gz", "truth.json", "tumor.nii.gz", "vertebrae.nii.gz"]
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["seed"] == 5 and truth["tumors"][0]["type"] == "extradural"
    image = read_volume(tmp_path / "image.nii.gz")
    tumor = read_volume(tmp_path / "tumor.nii.gz", validate=False)
    assert tumor.same_geometry(image, tol=1e-4)
    assert np.allclose(truth["geometry"]["spacing"], image.spacing, atol=1e-5)
    expected = generate(5, "extradural")
    assert np.array_equal(tumor.array, expected.tumor.array)


def test_cli_rejects_an_unknown_tumor(tmp_path, capsys):
    from spinetumor.cli import main

    assert main(["phantom", "--out", str(tmp_path), "--tumor", "glioma"]) == 2
    assert "--tumor must be one of" in capsys.readouterr().err


def test_generation_is_fast():
    """Default cases take about 1 s on the 2-core development machine; the bound is generous."""
    times = []
    for seed in (20, 21, 22):
        start = time.perf_counter()
        generate(seed, "random")
        times.append(time.perf_counter() - start)
    assert np.median(times) < 4.0, times
