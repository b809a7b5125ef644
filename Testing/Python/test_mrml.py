"""The MRML bridge (spinetumor.mrml) in a headless Slicer scene, and the Slicer resources of the label table.

Geometry is checked against matrices computed independently from SimpleITK's own
geometry, on an oblique anisotropic volume and on two real scans in different
orientations (PSR and PIR); files go through Slicer's own storage nodes and back
through the engine's readers. Tests needing slicer-core skip without it (the
``mrml_scene`` fixture); the resource files are checked either way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spinetumor import labels
from spinetumor.io import read_segmentation, read_volume, write_segmentation
from spinetumor.volume import Volume, from_sitk

RESOURCES = Path(__file__).resolve().parents[2] / "spinetumor" / "resources"
FLIP = np.diag([-1.0, -1.0, 1.0])


def _rotation(ax_deg, ay_deg, az_deg) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx for angles in degrees."""
    ax, ay, az = np.radians([ax_deg, ay_deg, az_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _oblique_image():
    """A SimpleITK image rotated 20/-15/10 degrees, spacing 0.7 x 0.9 x 4.0 mm, non-zero origin."""
    import SimpleITK as sitk

    rng = np.random.default_rng(7)
    image = sitk.GetImageFromArray(rng.normal(100.0, 20.0, size=(9, 24, 20)).astype(np.float32))
    image.SetSpacing((0.7, 0.9, 4.0))
    image.SetOrigin((-12.5, 33.25, -101.0))
    image.SetDirection(tuple(_rotation(20, -15, 10).ravel()))
    return image


def _expected_ijk_to_ras(image) -> np.ndarray:
    """IJKToRAS written out from SimpleITK's LPS geometry, independently of spinetumor.volume."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = FLIP @ direction @ np.diag(image.GetSpacing())
    m[:3, 3] = FLIP @ np.array(image.GetOrigin())
    return m


def _node_ijk_to_ras(node) -> np.ndarray:
    import slicer.util
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def _assert_same_volume(a: Volume, b: Volume, tol=1e-12):
    assert a.shape == b.shape
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.spacing, b.spacing, rtol=0, atol=tol)
    np.testing.assert_allclose(a.origin, b.origin, rtol=0, atol=tol)
    np.testing.assert_allclose(a.direction, b.direction, rtol=0, atol=tol)


def _check_volume_geometry(image, mrml_scene, tmp_path):
    """Engine volume -> node -> engine volume and -> .nrrd by Slicer -> engine reader, all exact."""
    import slicer

    from spinetumor import mrml

    volume = from_sitk(image)
    node = mrml.volume_to_node(volume, "input", scene=mrml_scene)
    expected = _expected_ijk_to_ras(image)
    np.testing.assert_allclose(_node_ijk_to_ras(node), expected, rtol=0, atol=1e-12)

    _assert_same_volume(mrml.node_to_volume(node), volume)

    size = image.GetSize()
    for ijk in [(0, 0, 0), (size[0] - 1, 0, 0), (3, size[1] - 2, size[2] - 1), (size[0] // 2, size[1] // 3, 1)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(ijk))
        via_node = _node_ijk_to_ras(node) @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(via_node[:3], FLIP @ lps, rtol=0, atol=1e-9)
        np.testing.assert_allclose(volume.index_to_ras(ijk[::-1]), FLIP @ lps, rtol=0, atol=1e-9)
        assert volume.array[ijk[::-1]] == image.GetPixel(ijk)

    path = tmp_path / "saved_by_slicer.nrrd"
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    _assert_same_volume(read_volume(path, validate=False), volume, tol=1e-9)


def test_oblique_anisotropic_volume_geometry_is_exact(mrml_scene, tmp_path):
    _check_volume_geometry(_oblique_image(), mrml_scene, tmp_path)


@pytest.mark.parametrize("relative, orientation", [
    ("sct_t2_cervical/t2.nii.gz", "PSR"),
    ("tptbox_sample_mri/sub-mri_label-6_T2w.nii.gz", "PIR"),
])
def test_real_scan_geometry_is_exact(mrml_scene, tmp_path, test_data, relative, orientation):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(test_data / relative))
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == orientation
    _check_volume_geometry(image, mrml_scene, tmp_path)


def test_label_map_node_and_float_label_refused(mrml_scene):
    from spinetumor import mrml

    volume = from_sitk(_oblique_image())
    mask = volume.with_array((volume.array > 100).astype(np.int64))
    node = mrml.volume_to_node(mask, "mask", scene=mrml_scene, label=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    back = mrml.node_to_volume(node)
    assert back.array.dtype == np.int32  # Slicer has no 64-bit voxels; values kept
    np.testing.assert_array_equal(back.array, mask.array)
    with pytest.raises(ValueError, match="label map needs integer voxels"):
        mrml.volume_to_node(volume, "float", scene=mrml_scene, label=True)


def test_reused_volume_node_and_parent_transform(mrml_scene):
    import slicer

    from spinetumor import mrml

    volume = from_sitk(_oblique_image())
    node = mrml.volume_to_node(volume, "first", scene=mrml_scene)
    smaller = Volume(np.arange(24, dtype=np.int16).reshape(2, 3, 4), (2.0, 3.0, 4.0), (1.0, 2.0, 3.0))
    same = mrml.volume_to_node(smaller, "second", scene=mrml_scene, node=node)
    assert same is node and node.GetName() == "second"
    _assert_same_volume(mrml.node_to_volume(node), smaller)

    shift = mrml_scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = np.eye(4)
    matrix[:3, 3] = (10.0, -5.0, 2.5)
    shift.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(matrix))
    node.SetAndObserveTransformNodeID(shift.GetID())
    moved = mrml.node_to_volume(node)
    np.testing.assert_allclose(moved.ijk_to_ras(), matrix @ smaller.ijk_to_ras(), atol=1e-12)


def _label_volume() -> Volume:
    """An oblique label map with a vertebral body, the cord and an extradural tumor (int64, as numpy makes)."""
    volume = from_sitk(_oblique_image())
    lab = np.zeros(volume.shape, dtype=np.int64)
    lab[1:4, 3:10, 4:12] = labels.value("L3")
    lab[4:8, 12:20, 5:9] = labels.value("cord")
    lab[5:7, 18:23, 13:18] = labels.value("extradural")
    return volume.with_array(lab)


EXPECTED_KEYS = ["L3", "cord", "extradural"]


def _segment_ids(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def test_label_map_segmentation_round_trip(mrml_scene):
    import slicer

    from spinetumor import mrml

    label_map = _label_volume()
    node = mrml.labels_to_segmentation(label_map, "seg", scene=mrml_scene)
    segmentation = node.GetSegmentation()
    assert _segment_ids(node) == EXPECTED_KEYS
    assert segmentation.GetNumberOfLayers() == 1
    for key in EXPECTED_KEYS:
        lab = labels.by_key(key)
        segment = segmentation.GetSegment(key)
        assert segment.GetName() == lab.name
        np.testing.assert_allclose(segment.GetColor(), lab.color_float, atol=1e-6)
        assert segment.GetLabelValue() == lab.value
        assert segment.GetTerminology() == labels.terminology_entry(lab)
    tag = segmentation.GetSegment("extradural").GetTerminology()
    assert "SCT^108369006^Neoplasm" in tag and "SCT^281584009^Spinal epidural space" in tag

    reference = segmentation.GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    geometry = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(reference, geometry)
    np.testing.assert_allclose(_oriented_matrix(geometry), label_map.ijk_to_ras(), atol=1e-9)
    assert geometry.GetExtent() == (0, 19, 0, 23, 0, 8)

    back = mrml.segmentation_to_labels(node, label_map)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, label_map.array)
    assert back.same_geometry(label_map, tol=0)

    volume_node = mrml.volume_to_node(label_map, "reference", scene=mrml_scene, label=True)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, volume_node).array, label_map.array)


def _oriented_matrix(image) -> np.ndarray:
    import slicer.util
    import vtk

    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)


def test_closed_surfaces_cover_the_masks(mrml_scene):
    from spinetumor import mrml

    label_map = _label_volume()
    node = mrml.labels_to_segmentation(label_map, "seg", scene=mrml_scene)
    linear = label_map.ijk_to_ras()[:3, :3]
    voxel_extent = np.abs(linear).sum(axis=1)   # RAS size of one voxel's bounding box, per axis
    for key in EXPECTED_KEYS:
        surface = node.GetClosedSurfaceInternalRepresentation(key)
        assert surface is not None and surface.GetNumberOfPoints() > 20
        centers = label_map.index_to_ras(np.argwhere(label_map.array == labels.value(key)))
        surface_bounds = np.array(surface.GetBounds()).reshape(3, 2)
        mask_bounds = np.stack([centers.min(axis=0), centers.max(axis=0)], axis=1)
        assert np.all(np.abs(surface_bounds - mask_bounds) <= voxel_extent[:, None]), key


def test_reused_segmentation_node_keeps_no_stale_segments(mrml_scene):
    from spinetumor import mrml

    label_map = _label_volume()
    node = mrml.labels_to_segmentation(label_map, "seg", scene=mrml_scene)
    only_cord = label_map.with_array(np.where(label_map.array == labels.value("cord"), label_map.array, 0))
    again = mrml.labels_to_segmentation(only_cord, "seg 2", scene=mrml_scene, node=node, surfaces=False)
    assert again is node and node.GetName() == "seg 2"
    assert _segment_ids(node) == ["cord"]
    assert not node.GetSegmentation().ContainsRepresentation("Closed surface")
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, label_map).array, only_cord.array)


def test_segments_restricted_to_given_labels_and_unknown_values_refused(mrml_scene):
    from spinetumor import mrml

    label_map = _label_volume()
    node = mrml.labels_to_segmentation(label_map, "seg", scene=mrml_scene, labels=[labels.by_key("cord")],
                                       surfaces=False)
    assert _segment_ids(node) == ["cord"]
    expected = np.where(label_map.array == labels.value("cord"), label_map.array, 0)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, label_map).array, expected)

    unknown = label_map.array.copy()
    unknown[0, 0, 0] = 250
    with pytest.raises(ValueError, match=r"label values \[250\] are not in the label table"):
        mrml.labels_to_segmentation(label_map.with_array(unknown), "bad", scene=mrml_scene)

    node.GetSegmentation().AddEmptySegment("mystery", "Mystery")
    with pytest.raises(ValueError, match="'mystery'.*matches no label"):
        mrml.segmentation_to_labels(node, label_map)


def test_real_cord_mask_round_trip(mrml_scene, test_data):
    """The manual cord mask of the PSR cervical scan: segmentation and back on the scan's grid."""
    from spinetumor import mrml

    mask = read_volume(test_data / "sct_t2_cervical" / "t2_seg-manual.nii.gz", validate=False)
    cord = mask.with_array(np.where(mask.array > 0.5, labels.value("cord"), 0).astype(np.uint8))
    assert (cord.array > 0).sum() > 100
    scan_node = mrml.volume_to_node(read_volume(test_data / "sct_t2_cervical" / "t2.nii.gz"), "t2", scene=mrml_scene)
    node = mrml.labels_to_segmentation(cord, "cord", scene=mrml_scene)
    back = mrml.segmentation_to_labels(node, scan_node)
    np.testing.assert_array_equal(back.array, cord.array)
    assert back.same_geometry(cord, tol=1e-9)


def test_seg_nrrd_from_engine_loads_in_slicer(mrml_scene, tmp_path):
    import slicer

    from spinetumor import mrml

    label_map = _label_volume()
    path = write_segmentation(label_map, tmp_path / "engine.seg.nrrd")
    node = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "loaded")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1
    segmentation = node.GetSegmentation()
    assert _segment_ids(node) == EXPECTED_KEYS
    for key in EXPECTED_KEYS:
        lab = labels.by_key(key)
        segment = segmentation.GetSegment(key)
        assert segment.GetName() == lab.name
        np.testing.assert_allclose(segment.GetColor(), lab.color_float, atol=1e-6)
        assert segment.GetTerminology() == labels.terminology_entry(lab)
    layer = segmentation.GetSegment("L3").GetRepresentation(mrml.BINARY_LABELMAP)
    np.testing.assert_allclose(_oriented_matrix(layer), label_map.ijk_to_ras(), atol=1e-9)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(node, label_map).array, label_map.array)


def test_seg_nrrd_from_slicer_reads_in_engine(mrml_scene, tmp_path):
    import slicer

    from spinetumor import mrml

    label_map = _label_volume()
    node = mrml.labels_to_segmentation(label_map, "seg", scene=mrml_scene, surfaces=False)
    path = tmp_path / "slicer.seg.nrrd"
    storage = slicer.vtkMRMLSegmentationStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    volume, segments = read_segmentation(path)
    assert [s["id"] for s in segments] == EXPECTED_KEYS
    for segment in segments:
        lab = labels.by_key(segment["id"])
        assert segment["name"] == lab.name
        assert segment["label_value"] == lab.value
        np.testing.assert_allclose(segment["color"], lab.color_float, atol=1e-6)
        assert "TerminologyEntry:" + labels.terminology_entry(lab) in segment["tags"]
    assert volume.same_geometry(label_map, tol=1e-9)
    np.testing.assert_array_equal(volume.array, label_map.array)


RECORDS = [
    {"level": "L3", "volume_ml": 4.25, "compartment": "extradural", "levels": ["L2", "L3"]},
    {"level": "L4", "volume_ml": 1, "probability": 0.75},
    {"level": "L5", "compartment": None, "levels": []},
]


def test_records_table_round_trip(mrml_scene, tmp_path):
    import slicer
    import slicer.util

    from spinetumor import mrml

    node = mrml.records_to_table(RECORDS, "findings", scene=mrml_scene)
    table = node.GetTable()
    names = [table.GetColumn(i).GetName() for i in range(table.GetNumberOfColumns())]
    assert names == ["level", "volume_ml", "compartment", "levels", "probability"]
    assert table.GetNumberOfRows() == 3
    assert table.GetColumnByName("volume_ml").IsA("vtkDoubleArray")
    assert table.GetColumnByName("level").IsA("vtkStringArray")
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(node, "volume_ml"), [4.25, 1.0, np.nan])
    assert [table.GetValueByName(r, "levels").ToString() for r in range(3)] == ["L2, L3", "", ""]
    assert [table.GetValueByName(r, "compartment").ToString() for r in range(3)] == ["extradural", "", ""]

    path = tmp_path / "findings.tsv"
    storage = slicer.vtkMRMLTableStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    loaded = mrml_scene.AddNewNodeByClass("vtkMRMLTableNode", "loaded")
    assert storage.ReadData(loaded) == 1
    assert loaded.GetNumberOfRows() == 3
    np.testing.assert_array_equal(slicer.util.arrayFromTableColumn(loaded, "probability"), [np.nan, 0.75, np.nan])
    assert loaded.GetCellText(0, loaded.GetColumnIndex("levels")) == "L2, L3"

    again = mrml.records_to_table([{"n": 2}], "other", scene=mrml_scene, node=node)
    assert again is node and node.GetNumberOfColumns() == 1 and node.GetNumberOfRows() == 1


def test_level_name_markups_round_trip(mrml_scene, tmp_path):
    import slicer

    from spinetumor import mrml

    points = [("L1", np.array([1.5, -20.25, 30.0])), ("L2", np.array([2.0, -21.0, 0.125]))]
    node = mrml.points_to_markups(points, "levels", scene=mrml_scene)
    back = mrml.markups_to_points(node)
    assert [name for name, _ in back] == ["L1", "L2"]
    np.testing.assert_allclose(np.array([xyz for _, xyz in back]), np.array([xyz for _, xyz in points]), atol=1e-12)

    path = tmp_path / "levels.mrk.json"
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    loaded = mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "loaded")
    assert storage.ReadData(loaded) == 1
    reloaded = mrml.markups_to_points(loaded)
    assert [name for name, _ in reloaded] == ["L1", "L2"]
    np.testing.assert_allclose(np.array([xyz for _, xyz in reloaded]), np.array([xyz for _, xyz in points]),
                               atol=1e-6)

    mrml.points_to_markups([("S1", (0.0, 0.0, 0.0))], "levels", scene=mrml_scene, node=node)
    assert [name for name, _ in mrml.markups_to_points(node)] == ["S1"]


# --- Slicer resources of the label table ----------------------------------------------------

def test_committed_resources_match_the_label_table():
    for name, text in labels.resource_texts().items():
        assert (RESOURCES / name).read_text(encoding="utf-8") == text, \
            f"Resources/{name} is stale: run python -m spinetumor.labels"


def test_terminology_json_lists_every_label_code():
    context = json.loads((RESOURCES / "SpineTumor.term.json").read_text(encoding="utf-8"))
    assert context["SegmentationCategoryTypeContextName"] == labels.TERMINOLOGY_CONTEXT
    types = {(c["CodeValue"], t["CodeValue"]): t for c in context["SegmentationCodes"]["Category"] for t in c["Type"]}
    for lab in labels.LABELS:
        assert (lab.category[1], lab.type[1]) in types, lab.key
    assert types[("123037004", "2748008")]["3dSlicerLabel"] == "Spinal cord"
    assert len([t for t in types if t[1] == "108369006"]) == 1  # the four tumor labels share one type


def test_resources_load_in_slicer(mrml_scene):
    import slicer

    color_node = mrml_scene.AddNewNodeByClass("vtkMRMLColorTableNode", "SpineTumor")
    storage = slicer.vtkMRMLColorTableStorageNode()
    mrml_scene.AddNode(storage)
    storage.SetFileName(str(RESOURCES / "SpineTumor.ctbl"))
    assert storage.ReadData(color_node) == 1
    for lab in labels.LABELS:
        assert color_node.GetColorName(lab.value) == lab.name  # Slicer turns "_" back into spaces
        rgba = [0.0] * 4
        color_node.GetColor(lab.value, rgba)
        np.testing.assert_allclose(rgba[:3], np.array(lab.color) / 255.0, atol=1e-6)

    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    assert logic.LoadTerminologyFromFile(str(RESOURCES / "SpineTumor.term.json")) == labels.TERMINOLOGY_CONTEXT
    category = slicer.vtkSlicerTerminologyCategory()
    found = {}
    for c in range(logic.GetNumberOfCategoriesInTerminology(labels.TERMINOLOGY_CONTEXT)):
        logic.GetNthCategoryInTerminology(labels.TERMINOLOGY_CONTEXT, c, category)
        for t in range(logic.GetNumberOfTypesInTerminologyCategory(labels.TERMINOLOGY_CONTEXT, category)):
            term_type = slicer.vtkSlicerTerminologyType()
            logic.GetNthTypeInTerminologyCategory(labels.TERMINOLOGY_CONTEXT, category, t, term_type)
            found[(category.GetCodeValue(), term_type.GetCodeValue())] = term_type.GetRecommendedDisplayRGBValue()
    for lab in labels.LABELS:
        assert (lab.category[1], lab.type[1]) in found, lab.key
    assert found[("123037004", "12989004")] == labels.by_key("T11").color
    entry = slicer.vtkSlicerTerminologyEntry()
    assert logic.DeserializeTerminologyEntry(labels.terminology_entry(labels.by_key("syrinx")), entry)
    assert entry.GetTerminologyContextName() == labels.TERMINOLOGY_CONTEXT
    assert entry.GetTypeObject().GetCodeValue() == "367643001"
    assert entry.GetRegionObject().GetCodeValue() == "2748008"


#: SNOMED CT codes checked against public sources (see the label table's module docs).
VERIFIED_CODES = {
    "T10": "7610001", "T11": "12989004", "T12": "23215003", "L1": "66794005", "L2": "14293000",
    "L3": "36470004", "L4": "11994002", "L5": "49668003", "sacrum": "54735007", "disc": "360499006",
    "posterior_elements": "40265002", "canal": "61853006", "cord": "2748008", "cauda_equina": "7173007",
    "subcutaneous_fat": "71966008", "paraspinal_muscle": "44947003", "tumor": "108369006",
    "edema": "79654002", "syrinx": "367643001",
}


def test_snomed_codes_are_the_verified_ones():
    for key, code in VERIFIED_CODES.items():
        assert labels.by_key(key).type == ("SCT", code, labels.by_key(key).type[2]), key
    assert labels.MORPHOLOGICALLY_ALTERED[1] == "49755003"
    assert labels.by_key("intradural-extramedullary").region[1:] == ("35951006", "Subarachnoid space")
