"""Geometry is sacred: the Volume type, canonical reorientation, resampling and file I/O keep it exactly."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from spinetumor import labels
from spinetumor.io import InputError, read_segmentation, read_volume, write_segmentation, write_volume
from spinetumor.volume import (
    CANONICAL_DIRECTION,
    Volume,
    from_canonical,
    resample,
    resample_like,
    to_canonical,
    volume_from_ras,
)

SAGITTAL_SCANS = [
    "sct_t2_cervical/t2.nii.gz",                           # PSR
    "tptbox_sample_mri/sub-mri_label-6_T2w.nii.gz",        # PIR
]


def oblique_volume(seed: int = 0, shape=(7, 11, 13), spacing=(0.7, 0.9, 4.0)) -> Volume:
    """A small oblique (20/-15/10 degrees), anisotropic volume with distinct voxel values."""
    direction = Rotation.from_euler("xyz", [20, -15, 10], degrees=True).as_matrix() @ np.array(
        [[1.0, 0, 0], [0, 0, 1], [0, -1, 0]])
    array = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(array, spacing, (12.5, -20.25, 33.0), direction)


def voxel_lps_by_inverse(volume: Volume, lps) -> np.ndarray:
    """(k, j, i) index of an LPS point, through the inverse of the volume's matrix."""
    ijk = (np.linalg.inv(volume.ijk_to_lps()) @ np.r_[lps, 1.0])[:3]
    return ijk[::-1]


def assert_same_physical_voxels(source: Volume, moved: Volume, samples=20, seed=0):
    """Every sampled voxel of ``moved`` holds the value of the ``source`` voxel at the same place."""
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        kji = [rng.integers(0, n) for n in moved.shape]
        original = voxel_lps_by_inverse(source, moved.index_to_lps(kji))
        nearest = np.round(original).astype(int)
        np.testing.assert_allclose(original, nearest, atol=1e-6)
        assert moved.array[tuple(kji)] == source.array[tuple(nearest)]


def test_ijk_to_ras_is_lps_flipped():
    vol = oblique_volume()
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ vol.ijk_to_lps()
    np.testing.assert_allclose(vol.ijk_to_ras(), expected)
    # column norms are the spacings, origin is the flipped LPS origin
    np.testing.assert_allclose(np.linalg.norm(vol.ijk_to_ras()[:3, :3], axis=0), vol.spacing)
    np.testing.assert_allclose(vol.ijk_to_ras()[:3, 3], [-12.5, 20.25, 33.0])
    back = volume_from_ras(vol.array, vol.ijk_to_ras())
    assert back.same_geometry(vol, tol=1e-12)


def test_index_to_ras_matches_matrix():
    vol = oblique_volume()
    kji = np.array([3, 5, 7])
    via_matrix = (vol.ijk_to_ras() @ np.r_[kji[::-1], 1.0])[:3]
    np.testing.assert_allclose(vol.index_to_ras(kji), via_matrix)


def test_canonical_round_trip_is_exact_on_oblique_anisotropic_volume():
    vol = oblique_volume()
    canon, reo = to_canonical(vol)
    assert sorted(canon.spacing) == sorted(vol.spacing)
    assert_same_physical_voxels(vol, canon)
    back = from_canonical(canon.array, vol)
    assert back.same_geometry(vol, tol=0)
    np.testing.assert_array_equal(back.array, vol.array)


@pytest.mark.parametrize("perm_flip", [
    ((0, 1, 2), (1, 1, 1)), ((2, 0, 1), (-1, 1, -1)), ((1, 2, 0), (1, -1, 1)), ((2, 1, 0), (-1, -1, -1)),
])
def test_every_axis_layout_becomes_the_same_canonical_stack(perm_flip):
    """A canonical volume stored in another axis order/flip comes back to identical canonical arrays."""
    perm, signs = perm_flip
    canon = Volume(np.random.default_rng(1).random((5, 6, 7)).astype(np.float32), (0.6, 0.8, 3.5),
                   (1.0, 2.0, 3.0), CANONICAL_DIRECTION)
    # build the same physical volume with permuted/flipped array axes
    array = np.transpose(canon.array, perm)
    start = [0, 0, 0]
    for axis, sign in enumerate(signs):
        if sign < 0:
            array = np.flip(array, axis)
            start[perm[axis]] = canon.shape[perm[axis]] - 1
    axis_dirs = canon.direction[:, ::-1].T        # rows = canonical array axes
    axis_spacing = np.asarray(canon.spacing)[::-1]
    dirs = [signs[a] * axis_dirs[perm[a]] for a in range(3)]
    spacing = [axis_spacing[perm[a]] for a in range(3)]
    other = Volume(np.ascontiguousarray(array), spacing[::-1], canon.index_to_lps(start),
                   np.stack(dirs[::-1], axis=1))
    again, _ = to_canonical(other)
    assert again.same_geometry(canon, tol=1e-9)
    np.testing.assert_array_equal(again.array, canon.array)


@pytest.mark.parametrize("relative", SAGITTAL_SCANS)
def test_real_oriented_scans_reorient_exactly(test_data, relative):
    vol = read_volume(test_data / relative)
    canon, _ = to_canonical(vol)
    np.testing.assert_allclose(canon.direction, CANONICAL_DIRECTION, atol=1e-5)
    assert_same_physical_voxels(vol, canon)
    np.testing.assert_array_equal(from_canonical(canon.array, vol).array, vol.array)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_write_read_keeps_geometry_and_values(tmp_path, suffix):
    vol = oblique_volume()
    path = write_volume(vol, tmp_path / f"v{suffix}")
    back = read_volume(path)
    assert back.same_geometry(vol, tol=1e-5)
    np.testing.assert_array_equal(back.array, vol.array)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]   # no temporary left behind


def test_outputs_get_the_users_default_permissions_not_private_ones(tmp_path):
    import os
    import stat

    previous = os.umask(0o027)
    try:
        path = write_volume(oblique_volume(), tmp_path / "v.nii.gz")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640   # 0666 less the umask; mkstemp alone gives 0600


@pytest.mark.parametrize("relative", SAGITTAL_SCANS)
def test_real_scan_file_round_trip(test_data, tmp_path, relative):
    vol = read_volume(test_data / relative)
    back = read_volume(write_volume(vol, tmp_path / "copy.nrrd"))
    assert back.same_geometry(vol, tol=1e-5)
    np.testing.assert_array_equal(back.array, vol.array)


def test_dicom_series_folder_is_read_with_geometry(tmp_path):
    vol = oblique_volume(shape=(6, 8, 9), spacing=(0.8, 0.8, 3.0))
    image = sitk.Cast(sitk.GetImageFromArray((vol.array % 1000).astype(np.int16)), sitk.sitkInt16)
    image.SetSpacing(vol.spacing)
    image.SetOrigin(vol.origin)
    image.SetDirection(tuple(vol.direction.ravel()))
    folder = tmp_path / "dicom"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for k in range(image.GetDepth()):
        sl = image[:, :, k]
        sl.SetMetaData("0008|0060", "MR")
        sl.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.1.42")
        sl.SetMetaData("0020|000d", "1.2.826.0.1.3680043.2.1125.1.41")
        sl.SetMetaData("0020|0037", "\\".join(f"{d:.10f}" for d in (direction[0], direction[3], direction[6],
                                                                     direction[1], direction[4], direction[7])))
        sl.SetMetaData("0020|0032", "\\".join(f"{p:.10f}" for p in image.TransformIndexToPhysicalPoint((0, 0, k))))
        sl.SetMetaData("0020|0013", str(k + 1))
        sl.SetMetaData("0018|0050", "3.0")
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    back = read_volume(folder)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-4)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-4)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-4)
    np.testing.assert_array_equal(back.array, (vol.array % 1000).astype(np.int16))


def test_resample_keeps_extent_and_labels(tmp_path):
    mask = np.zeros((10, 40, 40), np.uint8)
    mask[3:7, 10:30, 12:28] = labels.value("L3")
    mask[3:7, 30:35, 12:28] = labels.value("disc")
    vol = Volume(mask, (0.5, 0.5, 4.0), (1, 2, 3), CANONICAL_DIRECTION)
    fine = resample(vol, (0.5, 0.5, 1.0), label=True)
    assert fine.shape == (40, 40, 40)
    assert set(np.unique(fine.array)) == {0, labels.value("L3"), labels.value("disc")}
    back = resample_like(fine, vol, label=True)
    assert back.same_geometry(vol)
    assert (back.array == vol.array).mean() > 0.97
    image = resample(vol.with_array(mask.astype(np.float32)), (1.0, 1.0, 4.0))
    assert image.shape == (10, 20, 20) and image.array.dtype == np.float32


def test_segmentation_file_keeps_names_colors_codes_and_geometry(tmp_path):
    vol = oblique_volume()
    label_map = np.zeros(vol.shape, np.uint8)
    label_map[1:3, 2:6, 3:9] = labels.value("L1")
    label_map[4:6, 2:6, 3:9] = labels.value("cord")
    path = write_segmentation(vol.with_array(label_map), tmp_path / "x.seg.nrrd")
    back, segments = read_segmentation(path)
    assert back.same_geometry(vol, tol=1e-5)
    np.testing.assert_array_equal(back.array, label_map)
    assert [s["name"] for s in segments] == ["L1 vertebral body", "Spinal cord"]
    assert [s["label_value"] for s in segments] == [labels.value("L1"), labels.value("cord")]
    assert segments[0]["color"] == labels.by_key("L1").color_float
    assert "SCT^66794005^L1 vertebra" in segments[0]["tags"]
    header = path.read_bytes()[:4000].split(b"\n\n")[0].decode()
    assert "Segment0_Extent:=3 8 2 5 1 2" in header


def test_json_is_standard_with_numpy_values_and_nan(tmp_path):
    import json

    from spinetumor.io import write_json

    path = write_json({"a": np.float32(1.5), "b": [np.int64(2), float("nan")], "c": np.array([1.0, np.inf])},
                      tmp_path / "x.json")
    assert json.loads(path.read_text()) == {"a": 1.5, "b": [2, None], "c": [1.0, None]}


def test_inputs_are_never_modified(tmp_path, test_data):
    source = test_data / SAGITTAL_SCANS[0]
    before = source.read_bytes()
    vol = read_volume(source)
    canon, _ = to_canonical(vol)
    canon.array[...] = 0
    assert source.read_bytes() == before
    assert vol.array.any()


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.nii.gz", "no such file or folder"),
    (lambda p: (p / "text.nii.gz").write_text("hello") and p / "text.nii.gz", "not a readable image"),
    (lambda p: _write(p / "flat.nii.gz", sitk.Image(20, 30, sitk.sitkFloat32)), "3D volume is needed"),
    (lambda p: _write(p / "empty.nii.gz", sitk.Image(4, 4, 4, sitk.sitkFloat32)), "is empty"),
    (lambda p: _write(p / "nan.nrrd", sitk.GetImageFromArray(np.full((4, 4, 4), np.nan, np.float32))),
     "no finite values"),
    (lambda p: _write(p / "thin.nii.gz", sitk.GetImageFromArray(np.arange(16, dtype=np.float32).reshape(1, 4, 4))),
     "at least 2 voxels"),
    (lambda p: (p / "emptydir").mkdir() or p / "emptydir", "no DICOM series"),
])
def test_bad_input_gives_one_clear_line(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(InputError) as info:
        read_volume(path)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_some_nan_voxels_are_read_as_zero(tmp_path):
    array = np.arange(64, dtype=np.float32).reshape(4, 4, 4)
    array[0, 0, :2] = np.nan
    path = _write(tmp_path / "partial.nrrd", sitk.GetImageFromArray(array))
    vol = read_volume(path)
    assert np.isfinite(vol.array).all() and vol.array[0, 0, 0] == 0 and vol.array[3, 3, 3] == 63


def _write(path, image):
    sitk.WriteImage(image, str(path))
    return path


def test_crop_keeps_every_voxel_where_it_was_on_an_oblique_anisotropic_volume():
    source = oblique_volume()
    box = (slice(2, 6), slice(3, 11), slice(1, 12))
    crop = source.crop(box)
    assert crop.shape == (4, 8, 11)
    assert crop.spacing == source.spacing
    np.testing.assert_array_equal(crop.direction, source.direction)
    np.testing.assert_allclose(crop.origin, source.index_to_lps([2, 3, 1]))
    assert_same_physical_voxels(source, crop)
    assert source.crop((slice(None),) * 3).origin == source.origin
