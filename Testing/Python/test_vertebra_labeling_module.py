"""The Vertebra Labeling module's scene library (VertebraLabelingLib) in a headless MRML scene.

The synthetic case is a spine of seven bright vertebral bodies on a dark background,
stored in a layout far from the canonical sagittal stack (array axes S, P, L; thick
lateral slices), so every geometry step is exercised. The label map is its exact truth.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "VertebraLabeling"))   # Slicer puts each module folder on sys.path

from spinetumor import labels as label_table  # noqa: E402
from spinetumor.volume import Volume  # noqa: E402

SPACING = (3.0, 0.9, 1.1)           # i (left-right), j (anterior-posterior), k (superior-inferior)
ORIGIN = (-20.0, -45.0, -110.0)      # LPS


def _synthetic_case(seed: int = 3):
    """(image, truth) Volumes: seven elliptic bodies, T11 at the top, values 1..7 = T11..L5."""
    rng = np.random.default_rng(seed)
    nk, nj, ni = 200, 100, 16
    k = np.arange(nk)[:, None, None] * SPACING[2]
    j = np.arange(nj)[None, :, None] * SPACING[1]
    i = np.arange(ni)[None, None, :] * SPACING[0]
    truth = np.zeros((nk, nj, ni), np.uint8)
    for index, lab in enumerate(label_table.VERTEBRAE):
        centre_s = 200.0 - 28.0 * (index + 0.8)             # LPS z grows superior: T11 highest
        inside = (((k - centre_s) / 11.0) ** 2 + ((j - 42.0 - 1.5 * index) / 16.0) ** 2 <= 1.0) \
            & (np.abs(i - 22.0) <= 17.0)
        truth[inside] = lab.value
    image = np.where(truth > 0, 160.0, 25.0) + rng.normal(0.0, 6.0, truth.shape)
    geometry = dict(spacing=SPACING, origin=ORIGIN, direction=np.eye(3))
    return Volume(image.astype(np.float32), **geometry), Volume(truth, **geometry)


def _levels_from_truth(truth: Volume) -> list[dict]:
    """Per-level results as the engine writes them, computed from the truth map."""
    from spinetumor.labeling.infer import LevelResult

    voxel_ml = float(np.prod(truth.spacing)) / 1000.0
    levels = []
    for lab in label_table.VERTEBRAE:
        mask = truth.array == lab.value
        if not mask.any():
            levels.append(LevelResult(lab.key, lab.value, False))
            continue
        centroid = truth.index_to_ras(np.argwhere(mask).mean(axis=0))
        levels.append(LevelResult(lab.key, lab.value, True, float(mask.sum()) * voxel_ml, tuple(centroid),
                                  0.9 - 0.01 * lab.value))
    return levels


@pytest.fixture
def lib():
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from VertebraLabelingLib import landmarks, scene

    return scene, landmarks


@pytest.fixture(scope="module")
def case():
    return _synthetic_case()


def _count(scene, class_name: str) -> int:
    return scene.GetNumberOfNodesByClass(class_name)


def test_show_labeling_segments_names_colors_terminology_and_exact_round_trip(mrml_scene, lib, case):
    import vtk
    from spinetumor import mrml

    scene_lib, _ = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    nodes = scene_lib.show_labeling(truth, _levels_from_truth(truth), scene=mrml_scene, input_volume_node=input_node)
    segmentation = nodes.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 7
    for index, lab in enumerate(label_table.VERTEBRAE):
        segment = segmentation.GetNthSegment(index)
        assert segmentation.GetNthSegmentID(index) == lab.key
        assert segment.GetName() == lab.name
        assert np.allclose(segment.GetColor(), lab.color_float, atol=1e-6)
        tag = vtk.reference("")
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag)
        assert str(tag) == label_table.terminology_entry(lab)
    assert nodes.segmentation.GetSegmentation().ContainsRepresentation("Closed surface")
    back = mrml.segmentation_to_labels(nodes.segmentation, input_node)
    assert back.same_geometry(truth)
    np.testing.assert_array_equal(back.array, truth.array)


def test_missing_level_has_no_segment_no_point_and_an_absent_row(mrml_scene, lib, case):
    scene_lib, _ = lib
    _, truth = case
    without_l5 = truth.with_array(np.where(truth.array == label_table.value("L5"), 0, truth.array).astype(np.uint8))
    nodes = scene_lib.show_labeling(without_l5, _levels_from_truth(without_l5), scene=mrml_scene)
    segmentation = nodes.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 6 and segmentation.GetSegment("L5") is None
    assert [nodes.levels.GetNthControlPointLabel(i) for i in range(nodes.levels.GetNumberOfControlPoints())] \
        == list(label_table.LEVEL_NAMES[:6])
    table = nodes.table.GetTable()
    assert table.GetNumberOfRows() == 7
    assert table.GetColumnByName("Level").GetValue(6) == "L5"
    assert table.GetColumnByName("Present").GetValue(6) == "no"
    assert np.isnan(table.GetColumnByName("Volume (mL)").GetValue(6))


def test_level_markups_at_centroids_and_table_rows(mrml_scene, lib, case):
    from spinetumor import mrml

    scene_lib, _ = lib
    _, truth = case
    nodes = scene_lib.show_labeling(truth, _levels_from_truth(truth), scene=mrml_scene)
    for index, lab in enumerate(label_table.VERTEBRAE):
        assert nodes.levels.GetNthControlPointLabel(index) == lab.key
        position = np.zeros(3)
        nodes.levels.GetNthControlPointPosition(index, position)
        # expected centroid computed independently: index -> LPS by hand, then to RAS
        kji = np.argwhere(truth.array == lab.value).mean(axis=0)
        lps = np.array(ORIGIN) + kji[::-1] * np.array(SPACING)
        np.testing.assert_allclose(position, lps * [-1, -1, 1], atol=0.0051)   # the engine rounds to 0.01 mm
    table = nodes.table.GetTable()
    assert [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())] == list(mrml.LEVEL_TABLE_COLUMNS)
    assert table.GetNumberOfRows() == 7
    voxel_ml = np.prod(SPACING) / 1000.0
    for row, lab in enumerate(label_table.VERTEBRAE):
        assert table.GetColumnByName("Level").GetValue(row) == lab.key
        assert table.GetColumnByName("Present").GetValue(row) == "yes"
        expected_ml = (truth.array == lab.value).sum() * voxel_ml
        assert table.GetColumnByName("Volume (mL)").GetValue(row) == pytest.approx(expected_ml, abs=5e-4)  # rounded
        assert table.GetColumnByName("Confidence").GetValue(row) == pytest.approx(0.9 - 0.01 * lab.value)
        position = np.zeros(3)
        nodes.levels.GetNthControlPointPosition(row, position)
        for axis, column in enumerate(("Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)")):
            assert table.GetColumnByName(column).GetValue(row) == pytest.approx(position[axis], abs=1e-9)


def test_rerun_reuses_the_output_nodes(mrml_scene, lib, case):
    scene_lib, _ = lib
    _, truth = case
    levels = _levels_from_truth(truth)
    first = scene_lib.show_labeling(truth, levels, scene=mrml_scene)
    counts = {c: _count(mrml_scene, c) for c in ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsFiducialNode",
                                                  "vtkMRMLTableNode")}
    assert counts == {"vtkMRMLSegmentationNode": 1, "vtkMRMLMarkupsFiducialNode": 1, "vtkMRMLTableNode": 1}
    only_t11 = truth.with_array(np.where(truth.array == 1, 1, 0).astype(np.uint8))
    second = scene_lib.show_labeling(only_t11, _levels_from_truth(only_t11), scene=mrml_scene,
                                     segmentation_node=first.segmentation)
    assert {c: _count(mrml_scene, c) for c in counts} == counts
    assert (second.segmentation, second.levels, second.table) == (first.segmentation, first.levels, first.table)
    assert second.segmentation.GetSegmentation().GetNumberOfSegments() == 1
    assert second.levels.GetNumberOfControlPoints() == 1
    # a companion node deleted by the user is recreated, not looked up by name
    mrml_scene.RemoveNode(second.table)
    third = scene_lib.show_labeling(truth, levels, scene=mrml_scene, segmentation_node=first.segmentation)
    assert third.table is not None and third.table.GetTable().GetNumberOfRows() == 7
    assert _count(mrml_scene, "vtkMRMLTableNode") == 1


def test_segmentation_placed_in_the_inputs_study(mrml_scene, lib, case):
    import slicer
    from spinetumor import mrml

    scene_lib, _ = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient")
    study = hierarchy.CreateStudyItem(patient, "Study")
    hierarchy.CreateItem(study, input_node)
    nodes = scene_lib.show_labeling(truth, _levels_from_truth(truth), scene=mrml_scene, input_volume_node=input_node)
    for node in (nodes.segmentation, nodes.levels, nodes.table):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study


def test_non_vertebra_label_values_are_refused(mrml_scene, lib, case):
    scene_lib, _ = lib
    _, truth = case
    bad = truth.with_array(np.where(truth.array == 7, label_table.value("cord"), truth.array).astype(np.uint8))
    with pytest.raises(ValueError, match=r"label values \[15\] are not vertebral levels"):
        scene_lib.show_labeling(bad, _levels_from_truth(truth), scene=mrml_scene)
    assert _count(mrml_scene, "vtkMRMLSegmentationNode") == 0


def _write_cli_folder(folder: Path, truth: Volume, inferior_margin_mm: float = 60.0, partial: tuple = ()) -> None:
    """A folder as ``spinetumor label`` writes it: vertebrae.nii.gz and vertebrae.json
    (the levels in ``partial`` with a body volume of a found-in-part body)."""
    from dataclasses import replace

    from spinetumor.io import write_json, write_volume
    from spinetumor.labeling.infer import LabelingResult

    levels = {lv.name: replace(lv, volume_ml=1.0) if lv.name in partial else lv for lv in _levels_from_truth(truth)}
    result = LabelingResult(truth, levels, [n for n, lv in levels.items() if not lv.present],
                            inferior_margin_mm=inferior_margin_mm)
    write_volume(truth, folder / "vertebrae.nii.gz")
    write_json(result.to_dict(), folder / "vertebrae.json")


def test_write_input_then_import_cli_output(mrml_scene, lib, case, tmp_path):
    from spinetumor import mrml
    from spinetumor.io import read_volume

    scene_lib, _ = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    written = scene_lib.write_input(input_node, tmp_path)
    assert written == tmp_path / "input.nrrd"
    again = read_volume(written)
    assert again.same_geometry(image, tol=1e-6)
    np.testing.assert_array_equal(again.array, image.array)
    assert scene_lib.label_arguments(written, tmp_path, "cpu") == \
        ["label", str(written), "--out", str(tmp_path), "--device", "cpu"]

    _write_cli_folder(tmp_path, truth)
    nodes = scene_lib.import_output(tmp_path, scene=mrml_scene, input_volume_node=input_node)
    back = mrml.segmentation_to_labels(nodes.segmentation, input_node)
    np.testing.assert_array_equal(back.array, truth.array)
    assert nodes.table.GetTable().GetColumnByName("Present").GetValue(0) == "yes"
    assert nodes.levels.GetNumberOfControlPoints() == 7
    assert nodes.table.GetAttribute(scene_lib.CAUTION_ATTRIBUTE) == ""     # sacrum in view: nothing to check

    _write_cli_folder(tmp_path, truth, inferior_margin_mm=4.0)              # field of view ends above the sacrum
    again = scene_lib.import_output(tmp_path, scene=mrml_scene, input_volume_node=input_node,
                                    segmentation_node=nodes.segmentation)
    assert again.table is nodes.table
    assert again.table.GetAttribute(scene_lib.CAUTION_ATTRIBUTE).startswith(
        "The field of view ends 4 mm below the lowest labeled body")

    _write_cli_folder(tmp_path, truth, inferior_margin_mm=4.0, partial=("T11",))   # and a body found in part
    caution = scene_lib.import_output(tmp_path, scene=mrml_scene, input_volume_node=input_node,
                                      segmentation_node=nodes.segmentation).table.GetAttribute(scene_lib.CAUTION_ATTRIBUTE)
    assert caution.startswith("T11 was found only in part (under 5 ml") and " The field of view ends 4 mm" in caution


def test_import_refuses_incomplete_or_foreign_output(mrml_scene, lib, case, tmp_path):
    from spinetumor import mrml
    from spinetumor.io import InputError

    scene_lib, _ = lib
    image, truth = case
    with pytest.raises(InputError, match="vertebrae.nii.gz is missing"):
        scene_lib.import_output(tmp_path, scene=mrml_scene)
    _write_cli_folder(tmp_path, truth)
    other = mrml.volume_to_node(Volume(np.ones((4, 5, 6), np.float32)), "other", scene=mrml_scene)
    with pytest.raises(ValueError, match=r"grid \(200, 100, 16\) differs from the input other's \(4, 5, 6\)"):
        scene_lib.import_output(tmp_path, scene=mrml_scene, input_volume_node=other)
    assert _count(mrml_scene, "vtkMRMLSegmentationNode") == 0


def test_job_result_imported_only_on_success(mrml_scene, lib, case, tmp_path):
    from spinetumor.jobs import JobState

    scene_lib, _ = lib
    _, truth = case
    failed, cancelled, succeeded = (tmp_path / name for name in ("failed", "cancelled", "succeeded"))
    for folder in (failed, cancelled, succeeded):
        folder.mkdir()
        _write_cli_folder(folder, truth)
    with pytest.raises(RuntimeError, match="vertebra labeling failed: spinetumor label: error: no model"):
        scene_lib.import_job_result(JobState(finished=True, returncode=2, error="spinetumor label: error: no model"),
                                    failed, scene=mrml_scene)
    assert scene_lib.import_job_result(JobState(finished=True, returncode=-15, error="cancelled"), cancelled,
                                       scene=mrml_scene) is None
    assert _count(mrml_scene, "vtkMRMLSegmentationNode") == 0 and _count(mrml_scene, "vtkMRMLTableNode") == 0
    assert not failed.exists() and not cancelled.exists()      # work folders cleaned up either way
    nodes = scene_lib.import_job_result(JobState(finished=True, returncode=0), succeeded, scene=mrml_scene)
    assert nodes.segmentation.GetSegmentation().GetNumberOfSegments() == 7
    assert not succeeded.exists()


def test_in_process_labeling_wires_the_engine_result_into_the_scene(mrml_scene, lib, case):
    """label_volume_node hands the input's exact Volume to the labeler and shows what it returns."""
    from spinetumor import mrml
    from spinetumor.labeling.infer import LabelingResult
    from spinetumor.progress import Cancelled

    scene_lib, _ = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    seen = {}

    def labeler(volume, device=None, progress=None, cancel=None):
        seen.update(volume=volume, device=device)
        progress(0.5, "half")
        if cancel():
            raise Cancelled("cancelled by the user")
        return LabelingResult(truth, {lv.name: lv for lv in _levels_from_truth(truth)}, [], inferior_margin_mm=12.0)

    messages = []
    nodes = scene_lib.label_volume_node(input_node, device="cpu", progress=lambda f, m: messages.append((f, m)),
                                        cancel=lambda: False, label_function=labeler)
    assert seen["device"] == "cpu" and seen["volume"].same_geometry(image)
    np.testing.assert_array_equal(seen["volume"].array, image.array)
    assert messages == [(0.5, "half")]
    assert nodes.table.GetAttribute(scene_lib.CAUTION_ATTRIBUTE).startswith("The field of view ends 12 mm below")
    np.testing.assert_array_equal(mrml.segmentation_to_labels(nodes.segmentation, input_node).array, truth.array)
    with pytest.raises(Cancelled):
        scene_lib.label_volume_node(input_node, segmentation_node=nodes.segmentation, progress=lambda f, m: None,
                                    cancel=lambda: True, label_function=labeler)
    assert seen["device"] is None              # "auto" lets the engine choose
    assert nodes.segmentation.GetSegmentation().GetNumberOfSegments() == 7   # untouched by the cancelled run


# --- landmarks ------------------------------------------------------------------------------

def test_landmark_labels_parse_and_next_label_sequence(lib):
    _, lm = lib
    assert lm.parse_landmark_label("L3") == ("L3", "centroid")
    assert lm.parse_landmark_label(" t12_Corner ") == ("T12", "corner")
    assert lm.parse_landmark_label("L5 corner") == ("L5", "corner")
    with pytest.raises(ValueError, match="point 'S1': name it by level"):
        lm.parse_landmark_label("S1")
    assert lm.next_landmark_label([]) == "T11"
    assert lm.next_landmark_label(["T11"]) == "T11-corner"
    assert lm.next_landmark_label(["T11", "T11-corner"]) == "T11-corner"
    assert lm.next_landmark_label(["T11", "T11-corner", "T11-corner"]) == "T12"
    one_slice = [lm.landmark_label(level, role) for level in label_table.LEVEL_NAMES
                 for role in ("centroid", "corner", "corner")]
    assert lm.next_landmark_label(one_slice) == "T11"                    # next slice starts again
    assert lm.next_landmark_label([x for x in one_slice if x != "L2"]) == "L2"   # a deleted point is asked for
    assert lm.next_landmark_label(one_slice + ["T11", "Fiducial_1"]) == "T11-corner"


def test_masks_from_landmarks_match_the_truth(mrml_scene, lib, case):
    """Landmarks taken from the truth every 4 mm give masks with Dice > 0.8 for every level."""
    from spinetumor import mrml
    from spinetumor.labeling.landmarks import landmarks_from_labels
    from spinetumor.metrics import overlap

    _, lm = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    points = lm.landmarks_to_markups(landmarks_from_labels(truth), scene=mrml_scene)
    assert {points.GetNthControlPointLabel(i) for i in range(points.GetNumberOfControlPoints())} == \
        set(label_table.LEVEL_NAMES) | {n + "-corner" for n in label_table.LEVEL_NAMES}
    segmentation = lm.masks_from_markups(points, input_node)
    assert segmentation.GetName() == "T2 landmark masks"
    assert segmentation.GetSegmentation().GetNumberOfSegments() == 7
    result = mrml.segmentation_to_labels(segmentation, input_node)
    for lab in label_table.VERTEBRAE:
        dice = overlap(result.array == lab.value, truth.array == lab.value)["dice"]
        assert dice > 0.8, f"{lab.key}: Dice {dice:.3f}"
    # a second run from the same points refills the same node
    assert lm.masks_from_markups(points, input_node) is segmentation
    assert _count(mrml_scene, "vtkMRMLSegmentationNode") == 1


def test_landmark_errors_name_the_level(mrml_scene, lib, case):
    from spinetumor import mrml
    from spinetumor.labeling.landmarks import LandmarkError, landmarks_from_labels

    _, lm = lib
    image, truth = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    marks = [m for m in landmarks_from_labels(truth, slices=[7]) if not (m.level == "L2" and m.role == "corner")]
    points = lm.landmarks_to_markups(marks, scene=mrml_scene)
    with pytest.raises(LandmarkError, match=r"L2 on slice \d+: needs 1 centroid and 2 corners"):
        lm.masks_from_markups(points, input_node)
    points.SetNthControlPointLabel(0, "vertebra")
    with pytest.raises(ValueError, match="point 'vertebra': name it by level"):
        lm.masks_from_markups(points, input_node)
    with pytest.raises(ValueError, match="place landmark points first"):
        lm.masks_from_markups(mrml_scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode"), input_node)
    assert _count(mrml_scene, "vtkMRMLSegmentationNode") == 0


@pytest.fixture(scope="module")
def oblique_phantom():
    """A tumor-free phantom stored obliquely (5 degrees) in a random axis order, T10-S1 in view."""
    from spinetumor.phantom import generate

    return generate(5, tumor="none", fov="full", orientation="random", oblique_deg=5.0)


@pytest.mark.filterwarnings("ignore::UserWarning")     # the engine warns about elongated phantom boxes
def test_phantom_landmark_masks_and_result_round_trip(mrml_scene, lib, oblique_phantom):
    """On an oblique phantom: landmark masks reach Dice > 0.8 per level; the truth round-trips exactly."""
    from spinetumor import mrml
    from spinetumor.labeling.landmarks import landmarks_from_labels
    from spinetumor.metrics import overlap

    scene_lib, lm = lib
    image, truth = oblique_phantom.image, oblique_phantom.vertebrae
    assert not np.allclose(image.direction, np.round(image.direction))      # really oblique
    input_node = mrml.volume_to_node(image, "Phantom T2", scene=mrml_scene)
    points = lm.landmarks_to_markups(landmarks_from_labels(truth), scene=mrml_scene)
    result = mrml.segmentation_to_labels(lm.masks_from_markups(points, input_node), input_node)
    values = sorted(set(np.unique(truth.array).tolist()) - {0})
    assert values == [lab.value for lab in label_table.VERTEBRAE]
    for value in values:
        dice = overlap(result.array == value, truth.array == value)["dice"]
        assert dice > 0.8, f"{label_table.by_value(value).key}: Dice {dice:.3f}"

    nodes = scene_lib.show_labeling(truth, _levels_from_truth(truth), scene=mrml_scene, input_volume_node=input_node)
    back = mrml.segmentation_to_labels(nodes.segmentation, input_node)
    assert back.same_geometry(truth)
    np.testing.assert_array_equal(back.array, truth.array)


def test_background_label_job_contract(mrml_scene, lib, case, tmp_path):
    """The widget's exact job (``label`` + ``--progress json``) is accepted by the command line.

    With the shipped model the run must succeed and import; without it the command must fail
    on the missing model (exit 2), not on its arguments, and leave the scene untouched.
    """
    from spinetumor import mrml
    from spinetumor.jobs import BackgroundJob
    from spinetumor.labeling.model import DEFAULT_WEIGHTS

    scene_lib, _ = lib
    image, _ = case
    input_node = mrml.volume_to_node(image, "T2", scene=mrml_scene)
    arguments = scene_lib.label_arguments(scene_lib.write_input(input_node, tmp_path), tmp_path, "cpu")
    state = BackgroundJob([*arguments, "--progress", "json"]).start().wait(timeout=300)
    if DEFAULT_WEIGHTS.exists():
        assert state.returncode == 0, state.error
        assert 0.99 <= state.progress <= 1.0
        nodes = scene_lib.import_job_result(state, tmp_path, scene=mrml_scene, input_volume_node=input_node)
        assert mrml.segmentation_to_labels(nodes.segmentation, input_node).same_geometry(image)
    else:
        assert state.returncode == 2 and "unrecognized arguments" not in state.error, state.error
        assert "model weights not found" in state.error
        with pytest.raises(RuntimeError, match="vertebra labeling failed: .*model weights not found"):
            scene_lib.import_job_result(state, tmp_path, scene=mrml_scene, input_volume_node=input_node)
        assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0
