"""Tumor segmentation (FCM + random forest): accuracy on held-out phantoms, geometry, model safety, CLI, cancel.

Uses the shipped model (``spinetumor/models/tumor_rf.skops``) on phantoms drawn from the
benchmark's held-out seeds (``TEST_SEED_BASE``), which no training or validation used.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from spinetumor.metrics import overlap
from spinetumor.phantom import generate
from spinetumor.progress import Cancelled
from spinetumor.segmentation.train import TEST_SEED_BASE
from spinetumor.segmentation.tumor import DEFAULT_MODEL, TumorModelError, load_tumor_model, segment_tumor

#: The held-out phantom segmented below (benchmark test case 5, segmented without vertebra
#: labels as in the benchmark) and the Dice it must reach at the shipped model's own threshold
#: and minimum volume. ``benchmarks/segmentation.py --shipped-only`` measures 0.81 on this case
#: for the shipped forest (tumors drawn along the network's outline) and a mean of 0.70 over the
#: 18 held-out tumors (docs/benchmarks.md, "Tumor segmentation: shipped model"; the target,
#: 0.85, is not reached); the bound sits below the measured value so the test checks that the
#: pipeline still delineates this tumor, not the last digit.
HELD_OUT = (TEST_SEED_BASE + 5, "intradural-extramedullary")
MIN_DICE = 0.7


@pytest.fixture(scope="module")
def model():
    return load_tumor_model()


def test_shipped_model_manifest_records_its_provenance(model):
    manifest = model.manifest
    assert manifest["sha256"] and manifest["command"].startswith("spinetumor train segmentation")
    assert manifest["training"]["phantom_seeds"] and manifest["validation"]["phantom_seeds"]
    assert not set(manifest["training"]["phantom_seeds"]) & set(manifest["validation"]["phantom_seeds"])
    assert DEFAULT_MODEL.stat().st_size < 20 * 1024 * 1024
    assert list(model.features) == manifest["features"]


def test_held_out_phantom_tumor_is_segmented(model):
    seed, kind = HELD_OUT
    case = generate(seed, kind)
    result = segment_tumor(case.image, model=model)
    truth = case.tumor.array > 0
    assert truth.any()
    m = overlap(result.mask.array > 0, truth)
    assert m["dice"] >= MIN_DICE, m
    assert float(result.probability.array[truth].mean()) > float(result.probability.array[~truth].mean())


def test_tumor_free_phantom_gives_empty_mask(model):
    case = generate(TEST_SEED_BASE + 3, "none")
    result = segment_tumor(case.image, vertebrae=case.vertebrae, model=model)
    voxel_ml = float(np.prod(case.image.spacing)) / 1000.0
    assert float(result.mask.array.sum()) * voxel_ml < 0.1


def test_outputs_keep_the_oblique_input_geometry_and_cli_writes_them(model, tmp_path, capsys):
    from spinetumor.cli import main
    from spinetumor.io import read_volume, write_volume

    case = generate(TEST_SEED_BASE + 1, "intradural-extramedullary", orientation="random", oblique_deg=6.0)
    assert not np.allclose(case.image.direction, np.round(case.image.direction))
    image = write_volume(case.image, tmp_path / "image.nii.gz")
    out = tmp_path / "out"
    assert main(["segment", str(image), "--out", str(out), "--progress", "none"]) == 0
    reference = read_volume(image)
    for name, dtype in (("tumor.nii.gz", np.uint8), ("tumor_probability.nii.gz", np.float32),
                        ("canal.nii.gz", np.uint8), ("cord.nii.gz", np.uint8)):
        written = read_volume(out / name, validate=False)
        assert written.same_geometry(reference, tol=1e-4), name
        assert written.array.dtype == dtype, name
    tumor = read_volume(out / "tumor.nii.gz", validate=False).array
    assert set(np.unique(tumor)) <= {0, 1}
    from spinetumor.labeling.model import DEFAULT_WEIGHTS

    # without --vertebrae the labeling model runs when it is installed, otherwise none are used
    expected = "labeled" if DEFAULT_WEIGHTS.exists() else "none"
    assert json.loads((out / "tumor.json").read_text())["vertebrae"] == expected


def test_cli_bad_input_exits_2_with_one_line(tmp_path, capsys):
    from spinetumor.cli import main

    bad = tmp_path / "not_an_image.nii.gz"
    bad.write_text("hello")
    assert main(["segment", str(bad), "--out", str(tmp_path / "o"), "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spinetumor segment: error:")
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in capsys.readouterr().err


def _copy_network_beside(manifest: dict, folder) -> None:
    """Copy the tumor network a forest's manifest names (weights and manifest) into ``folder``."""
    name = manifest.get("tumor_net", {}).get("file")
    if name:
        for suffix in (".safetensors", ".json"):
            shutil.copy((DEFAULT_MODEL.parent / name).with_suffix(suffix), (folder / name).with_suffix(suffix))


def test_sha256_mismatch_is_refused(tmp_path):
    copy = tmp_path / "tumor_rf.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    _copy_network_beside(manifest, tmp_path)
    manifest["sha256"] = "0" * 64
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(TumorModelError, match="does not match the manifest"):
        load_tumor_model(copy)
    # the same file with its true checksum loads
    manifest["sha256"] = load_tumor_model().manifest["sha256"]
    copy.with_suffix(".json").write_text(json.dumps(manifest))
    assert load_tumor_model(copy).forest.n_features_in_ == len(manifest["features"])


def test_a_forest_refuses_another_network_than_its_own(tmp_path):
    from spinetumor.segmentation.tumor_net import DEFAULT_NET, export_tumor_net

    shutil.copy(DEFAULT_MODEL, tmp_path / "tumor_rf.skops")
    manifest = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    assert manifest["tumor_net"]["file"] == DEFAULT_NET.name
    manifest["sha256"] = load_tumor_model().manifest["sha256"]
    (tmp_path / "tumor_rf.json").write_text(json.dumps(manifest))
    with pytest.raises(TumorModelError, match="tumor network weights not found"):
        load_tumor_model(tmp_path / "tumor_rf.skops")
    from safetensors.torch import load_file

    state = {k: v + 1 if v.is_floating_point() else v for k, v in load_file(str(DEFAULT_NET)).items()}
    export_tumor_net(state, tmp_path / DEFAULT_NET.name, {})        # a valid network, but not this forest's
    with pytest.raises(TumorModelError, match="not the tumor network this forest was trained with"):
        load_tumor_model(tmp_path / "tumor_rf.skops")


def test_cli_refuses_an_altered_model(tmp_path, capsys):
    from spinetumor.cli import main
    from spinetumor.io import write_volume
    from spinetumor.volume import Volume

    copy = tmp_path / "m.skops"
    shutil.copy(DEFAULT_MODEL, copy)
    with open(copy, "ab") as handle:
        handle.write(b"tampered")
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), copy.with_suffix(".json"))
    noise = np.random.default_rng(0).random((12, 40, 40)).astype(np.float32)
    image = write_volume(Volume(noise, (1.0, 1.0, 4.0)), tmp_path / "image.nii.gz")
    assert main(["segment", str(image), "--out", str(tmp_path / "o"), "--model", str(copy),
                 "--progress", "none"]) == 2
    assert "does not match the manifest" in capsys.readouterr().err


def test_cancel_raises_cancelled(model):
    case = generate(TEST_SEED_BASE + 2, "extradural")
    with pytest.raises(Cancelled):
        segment_tumor(case.image, model=model, cancel=lambda: True)
    calls = {"n": 0}

    def later():  # let the canal step finish, cancel inside the tumor stages
        calls["n"] += 1
        return calls["n"] > 8

    with pytest.raises(Cancelled):
        segment_tumor(case.image, model=model, cancel=later)
    assert calls["n"] > 8


def test_features_are_scanner_independent():
    """Multiplying the image by a constant (another scanner's units) leaves the features unchanged."""
    from spinetumor.segmentation.features import axis_spacing, compute_features
    from spinetumor.segmentation.train import prepare_case

    prep = prepare_case(TEST_SEED_BASE + 4, "intramedullary", True)
    a = compute_features(prep.image, prep.spacing, prep.canal, prep.cord, prep.vertebrae, 3, denoiser="none")
    b = compute_features(prep.image * 37.5, prep.spacing, prep.canal, prep.cord, prep.vertebrae, 3, denoiser="none")
    assert a.values.shape == b.values.shape and a.values.shape[1] == len(a.names)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-3, atol=1e-3)
    assert abs(b.reference / a.reference - 37.5) < 1e-3 * 37.5
    assert axis_spacing is not None


def test_signed_distances_side_by_side_equal_one_at_a_time():
    from spinetumor.segmentation.features import signed_distance, signed_distances

    rng = np.random.default_rng(1)
    spacing = np.array([3.0, 0.8, 0.8])
    masks = {"a": rng.random((6, 30, 20)) > 0.97, "empty": np.zeros((6, 30, 20), bool), "none": None}
    found = signed_distances(masks, spacing)
    assert found["none"] is None
    np.testing.assert_array_equal(found["a"], signed_distance(masks["a"], spacing))
    np.testing.assert_array_equal(found["empty"], signed_distance(masks["empty"], spacing))


def test_thick_extra_adds_a_thick_acquisition_of_each_thin_sample_and_the_cli_needs_extra(tmp_path, capsys):
    from spinetumor.augmentation.dataset import TrainingCase
    from spinetumor.cli import main
    from spinetumor.segmentation.canal import segment_canal_and_cord
    from spinetumor.segmentation.train import augmented_cases

    thin = generate(5, "extradural", slice_thickness=1.0, in_plane=1.0, subslices=1, orientation="canonical")
    found = segment_canal_and_cord(thin.image, thin.vertebrae)
    case = TrainingCase("thin", "extradural", thin.image, thin.tumor, thin.vertebrae, found.canal, found.cord)
    as_is, thick = augmented_cases(None, cases=[case], thick=True)
    assert len(augmented_cases(None, cases=[case])) == 1                          # off: the samples only
    assert as_is.spacing[0] == 1.0 and thick.spacing[0] == 3.0                # the first copy: 3 mm slices
    assert thick.image.shape[0] == thin.image.shape[0] // 3
    centre = as_is.truth[1::3][:thick.image.shape[0]]                          # each slab's centre slice
    np.testing.assert_array_equal(thick.truth, centre)
    np.testing.assert_allclose(thick.image[4], as_is.image[12:15].mean(axis=0), rtol=1e-5)
    assert thick.canal.any() and thick.name == "thin as 3-slice slabs"
    code = main(["train", "segmentation", "--out", str(tmp_path / "rf"), "--thick-extra"])
    assert code == 2 and "--thick-extra needs --extra" in capsys.readouterr().err


def test_negatives_come_as_they_are_and_as_3_and_5_mm_acquisitions_and_the_cli_checks_them(tmp_path, capsys):
    from spinetumor.cli import main
    from spinetumor.io import write_volume
    from spinetumor.segmentation.train import negative_cases

    thin = generate(6, "none", slice_thickness=1.0, in_plane=1.0, subslices=1, orientation="canonical")
    write_volume(thin.image, tmp_path / "free_t2.nii.gz")
    write_volume(thin.vertebrae, tmp_path / "free_vertebrae.nii.gz")
    cases = negative_cases([tmp_path / "free_t2.nii.gz"])
    assert [c.name for c in cases] == ["free", "free as 3-slice slabs", "free as 5-slice slabs"]
    assert [float(c.spacing[0]) for c in cases] == [1.0, 3.0, 5.0]
    assert [c.image.shape[0] for c in cases] == [thin.image.shape[0] // k for k in (1, 3, 5)]
    assert all(c.kind == "none" and not c.truth.any() and c.canal.any() for c in cases)
    assert all(c.vertebrae is not None and c.vertebrae.any() for c in cases)

    write_volume(thin.image, tmp_path / "alone_t2.nii.gz")
    code = main(["train", "segmentation", "--out", str(tmp_path / "rf"), "--negatives",
                 str(tmp_path / "alone_t2.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no alone_vertebrae.nii.gz beside it" in err[0]
    code = main(["train", "segmentation", "--out", str(tmp_path / "rf"), "--negatives", str(tmp_path / "x.nii.gz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "NAME_t2.nii.gz" in err[0]


def test_feature_columns_take_the_rows_asked_for_in_the_order_of_the_names():
    from spinetumor.segmentation.features import FeatureStack

    values = np.arange(20, dtype=np.float32).reshape(5, 4)
    stack = FeatureStack(box=(), factor=(1, 1), roi=np.ones((1, 1, 5), bool), values=values,
                         names=("a", "b", "c", "d"), reference=1.0, slices_kept=np.array([0]))
    rows = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(stack.columns(["c", "a"], rows), [[2, 0], [10, 8], [18, 16]])
    np.testing.assert_array_equal(stack.columns(["d"], np.array([3, 1])), [[15], [7]])
    np.testing.assert_array_equal(stack.columns(["b", "d"]), values[:, [1, 3]])
