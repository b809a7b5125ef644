"""The Spine Tumor Segmentation module's scene library (SpineTumorSegmentationLib) in a headless MRML scene.

No trained model is needed: the pipeline output folder is written by the engine's own
``spinetumor.pipeline.write_analysis`` from an Analysis made of a phantom's ground truth
(vertebrae T11..L5, canal, cord, one intradural-extramedullary tumor at L3, a report with that
tumor located by the engine's localization), and the expected values are computed from the
phantom's truth independently of the code under test.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "SpineTumorSegmentation"))   # Slicer puts each module folder on sys.path

from spinetumor import labels as label_table  # noqa: E402
from spinetumor import phantom  # noqa: E402

TUMOR_TYPE = "intradural-extramedullary"


@pytest.fixture
def lib():
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from SpineTumorSegmentationLib import scene

    return scene


@pytest.fixture(scope="module")
def case():
    return phantom.generate(2, tumor=TUMOR_TYPE, fov="full")   # T11..L5 in view, one tumor at L3


@pytest.fixture(scope="module")
def analysis(case):
    from SpineTumorSegmentationLib.truth import analysis_from_truth

    return analysis_from_truth(case, "phantom2.nii.gz")


@pytest.fixture(scope="module")
def output_folder(analysis, tmp_path_factory):
    """A ``spinetumor run`` output folder, as the pipeline writes it (read-only for the tests)."""
    from spinetumor.pipeline import write_analysis

    folder = tmp_path_factory.mktemp("analysis")
    write_analysis(analysis, folder)
    return folder


def _copy(folder: Path, tmp_path: Path, name: str = "run") -> Path:
    target = tmp_path / name
    shutil.copytree(folder, target)
    return target


def _input(scene, case):
    from spinetumor import mrml

    return mrml.volume_to_node(case.image, "T2", scene=scene)


def _points(node) -> list[tuple[str, np.ndarray]]:
    from spinetumor import mrml

    return mrml.markups_to_points(node)


def _segment_ids(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


def _node_count(scene) -> int:
    return scene.GetNumberOfNodes()


def test_gui_choices_match_the_engine():
    from spinetumor.device import CHOICES
    from spinetumor.segmentation.denoise import METHODS

    from SpineTumorSegmentationLib import DENOISERS, DEVICES

    assert DENOISERS[0] == "model" and tuple(DENOISERS[1:]) == tuple(METHODS)
    assert set(DEVICES) <= set(CHOICES)


def test_truth_analysis_reports_the_phantom_tumor(case, analysis):
    """The hand-made analysis is what the tests expect: one tumor, of the true type, at the true place."""
    (tumor,) = analysis.report["tumors"]
    truth = case.truth["tumors"][0]
    assert tumor["id"] == 1 and tumor["type"] == TUMOR_TYPE == truth["type"]
    assert tumor["type_probabilities"][TUMOR_TYPE] == 1.0 and tumor["rule_type"] == TUMOR_TYPE
    assert tumor["levels"] == truth["levels"] == ["L3"]
    np.testing.assert_allclose(tumor["centroid_ras"], truth["centroid_ras"], atol=0.01)
    assert [v["level"] for v in analysis.report["vertebrae"] if v["present"]] == list(label_table.LEVEL_NAMES)


def test_import_analysis_segments_named_colored_coded_and_exact(mrml_scene, lib, case, analysis, output_folder):
    import vtk
    from spinetumor import mrml

    input_node = _input(mrml_scene, case)
    nodes = lib.import_analysis_output(output_folder, scene=mrml_scene, input_volume_node=input_node)
    expected = [*label_table.LEVEL_NAMES, "canal", "cord", TUMOR_TYPE]
    assert _segment_ids(nodes.segmentation) == expected
    segmentation = nodes.segmentation.GetSegmentation()
    for key in expected:
        lab, segment = label_table.by_key(key), segmentation.GetSegment(key)
        assert segment.GetName() == lab.name
        assert np.allclose(segment.GetColor(), lab.color_float, atol=1e-6)
        tag = vtk.reference("")
        assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag)
        assert str(tag) == label_table.terminology_entry(lab)
    assert segmentation.GetSegment(TUMOR_TYPE).GetName() == "Intradural-extramedullary tumor"
    assert segmentation.ContainsRepresentation("Closed surface")
    assert nodes.segmentation.GetDisplayNode().GetSegmentOpacity3D("canal") == pytest.approx(lib.CANAL_OPACITY_3D)

    # voxel for voxel: tumor over cord over canal over the bodies, computed here from the truth
    expected_map = np.asarray(case.vertebrae.array).astype(np.uint8).copy()
    canal, cord = (np.asarray(m.array) > 0 for m in (analysis.canal, analysis.cord))
    expected_map[canal] = label_table.value("canal")
    expected_map[cord] = label_table.value("cord")
    expected_map[np.asarray(case.tumor.array) == 1] = label_table.value(TUMOR_TYPE)
    back = mrml.segmentation_to_labels(nodes.segmentation, input_node)
    assert back.same_geometry(case.image)
    np.testing.assert_array_equal(back.array, expected_map)

    probability = mrml.node_to_volume(nodes.probability)
    assert probability.same_geometry(case.image, tol=1e-6)
    np.testing.assert_array_equal(probability.array, (np.asarray(case.tumor.array) > 0).astype(np.float32))


def test_table_rows_equal_the_report(mrml_scene, lib, case, output_folder):
    report = json.loads((output_folder / "report.json").read_text())
    nodes = lib.import_analysis_output(output_folder, scene=mrml_scene, input_volume_node=_input(mrml_scene, case))
    table = nodes.table.GetTable()
    assert [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())] == list(lib.TABLE_COLUMNS)
    assert table.GetNumberOfRows() == len(report["tumors"]) == 1
    t = report["tumors"][0]
    cell = {name: table.GetColumnByName(name).GetValue(0) for name in lib.TABLE_COLUMNS}
    assert cell["ID"] == t["id"] == 1
    assert cell["Type"] == t["type"] == TUMOR_TYPE
    assert cell["Probability"] == pytest.approx(t["type_probabilities"][t["type"]])
    assert cell["Rule type"] == t["rule_type"] and cell["Agreement"] == "yes"
    assert cell["Levels"] == ", ".join(t["levels"]) == "L3"
    assert cell["Disc levels"] == ", ".join(t["disc_levels"])
    assert cell["Epicentre"] == t["epicenter_level"] == "L3"
    assert cell["Volume (mL)"] == pytest.approx(t["volume_ml"])
    assert cell["Canal compromise (%)"] == pytest.approx(t["canal_compromise_percent"])
    assert cell["Cautions"] == "; ".join(t["cautions"])
    assert nodes.report["tumors"] == report["tumors"]


def test_a_disagreeing_rule_and_no_tumor_show_in_the_table(mrml_scene, lib, analysis):
    """Agreement reads "no" when the rule disagrees; a report without tumors still has the header."""
    import copy

    disagree = copy.deepcopy(analysis.report)
    disagree["tumors"][0].update(rule_type="extradural", types_agree=False)
    row = lib.tumor_records(disagree)[0]
    assert row["Rule type"] == "extradural" and row["Agreement"] == "no"
    empty = copy.deepcopy(analysis)
    empty.report = {**analysis.report, "tumors": []}
    empty.tumor_instances = analysis.tumor_instances.with_array(np.zeros(analysis.tumor_instances.shape, np.uint16))
    nodes = lib.show_analysis(empty, scene=mrml_scene)
    assert nodes.table.GetNumberOfRows() == 0 and nodes.table.GetNumberOfColumns() == len(lib.TABLE_COLUMNS)
    assert nodes.tumors.GetNumberOfControlPoints() == 0
    assert lib.summary_text(empty.report) == "No tumor found."
    assert lib.summary_text(analysis.report) == "1 tumor(s): 1: intradural-extramedullary at L3, " \
        f"{analysis.report['tumors'][0]['volume_ml']:.2f} mL."
    flagged = copy.deepcopy(analysis.report)
    flagged["tumors"][0]["cautions"] = ["it is centred on the L3-L4 disc space in front of the dural sac"]
    assert lib.summary_text(flagged).endswith(" mL. Check tumor 1 against the axial images (see the table's Cautions).")
    no_sacrum = {**analysis.report, "sacrum_in_view": False}
    assert lib.summary_text(no_sacrum).endswith(" mL. Check the level names: the sacrum is not in view "
                                                "(see the report's notes).")
    assert lib.summary_text({**empty.report, "sacrum_in_view": False}).startswith("No tumor found. Check the level")
    partial = {**empty.report, "sacrum_in_view": False, "partial_levels": ["T11", "T12"]}
    assert lib.summary_text(partial) == ("No tumor found. Check the labels of T11, T12: found only in part (see the "
                                         "report's notes). Check the level names: the sacrum is not in view (see the "
                                         "report's notes).")


def test_level_and_tumor_labels_at_the_centroids_beside_the_input(mrml_scene, lib, case, output_folder):
    import slicer

    input_node = _input(mrml_scene, case)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(mrml_scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient"), "Study")
    hierarchy.CreateItem(study, input_node)
    nodes = lib.import_analysis_output(output_folder, scene=mrml_scene, input_volume_node=input_node)
    for node in (nodes.segmentation, nodes.probability, nodes.levels, nodes.tumors, nodes.table):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study, node.GetName()
    levels = _points(nodes.levels)
    assert [label for label, _ in levels] == list(label_table.LEVEL_NAMES)
    for (label, position), lab in zip(levels, label_table.VERTEBRAE):
        kji = np.argwhere(np.asarray(case.vertebrae.array) == lab.value).mean(axis=0)
        np.testing.assert_allclose(position, case.vertebrae.index_to_ras(kji), atol=1e-3)
    ((label, position),) = _points(nodes.tumors)
    assert label == "1: Intradural-extramedullary tumor"
    np.testing.assert_allclose(position, case.truth["tumors"][0]["centroid_ras"], atol=0.01)
    assert nodes.levels.GetLocked() and nodes.tumors.GetLocked()


def test_rerun_reuses_the_nodes_and_a_segmentation_drops_the_analysis_companions(mrml_scene, lib, case, analysis,
                                                                                   output_folder, tmp_path):
    input_node = _input(mrml_scene, case)
    first = lib.import_analysis_output(output_folder, scene=mrml_scene, input_volume_node=input_node)
    count = _node_count(mrml_scene)
    second = lib.import_analysis_output(output_folder, scene=mrml_scene, segmentation_node=first.segmentation,
                                        input_volume_node=input_node)
    assert _node_count(mrml_scene) == count
    for role in ("segmentation", "probability", "levels", "tumors", "table"):
        assert getattr(second, role) is getattr(first, role), role
    assert lib.stored_report(second.segmentation)["tumors"] == analysis.report["tumors"]

    segment_folder = _write_segment_folder(tmp_path / "segment", analysis)
    third = lib.import_segment_output(segment_folder, scene=mrml_scene, segmentation_node=first.segmentation,
                                      input_volume_node=input_node)
    assert third.segmentation is first.segmentation and third.probability is first.probability
    assert _segment_ids(third.segmentation) == ["canal", "cord", "tumor"]
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 0
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 0
    assert lib.stored_report(third.segmentation) is None and third.report is None


def _write_segment_folder(folder: Path, analysis) -> Path:
    """A folder as ``spinetumor segment`` writes it, from the truth."""
    from spinetumor.io import write_volume

    binary = analysis.tumor_instances.with_array((np.asarray(analysis.tumor_instances.array) > 0).astype(np.uint8))
    for volume, name in ((binary, "tumor.nii.gz"), (analysis.tumor_probability, "tumor_probability.nii.gz"),
                         (analysis.canal, "canal.nii.gz"), (analysis.cord, "cord.nii.gz")):
        write_volume(volume, folder / name)
    return folder


def test_import_segment_output_tumor_canal_cord(mrml_scene, lib, case, analysis, tmp_path):
    from spinetumor import mrml

    input_node = _input(mrml_scene, case)
    nodes = lib.import_segment_output(_write_segment_folder(tmp_path, analysis), scene=mrml_scene,
                                      input_volume_node=input_node)
    segmentation = nodes.segmentation.GetSegmentation()
    assert [segmentation.GetSegment(k).GetName() for k in ("canal", "cord", "tumor")] == \
        ["Thecal sac (CSF)", "Spinal cord", "Tumor"]
    assert nodes.levels is None and nodes.table is None
    expected = np.zeros(case.image.shape, np.uint8)
    expected[np.asarray(analysis.canal.array) > 0] = label_table.value("canal")
    expected[np.asarray(analysis.cord.array) > 0] = label_table.value("cord")
    expected[np.asarray(case.tumor.array) > 0] = label_table.value("tumor")
    np.testing.assert_array_equal(mrml.segmentation_to_labels(nodes.segmentation, input_node).array, expected)
    assert segmentation.ContainsRepresentation("Closed surface")


def test_bad_or_missing_output_leaves_the_scene_unchanged(mrml_scene, lib, case, output_folder, tmp_path):
    from spinetumor import mrml
    from spinetumor.io import InputError
    from spinetumor.volume import Volume

    input_node = _input(mrml_scene, case)
    other = mrml.volume_to_node(Volume(np.ones((4, 5, 6), np.float32)), "other", scene=mrml_scene)
    count = _node_count(mrml_scene)
    with pytest.raises(InputError, match="the analysis output vertebrae.nii.gz, tumor.nii.gz, "
                                         "tumor_probability.nii.gz, canal.nii.gz, cord.nii.gz is missing"):
        lib.import_analysis_output(tmp_path, scene=mrml_scene)
    no_report = _copy(output_folder, tmp_path, "no_report")
    (no_report / "report.json").unlink()
    with pytest.raises(InputError, match="the analysis output report.json is missing"):
        lib.import_analysis_output(no_report, scene=mrml_scene)
    broken = _copy(output_folder, tmp_path, "broken")
    (broken / "report.json").write_text("{not json")
    with pytest.raises(InputError, match="report.json: not valid JSON"):
        lib.import_analysis_output(broken, scene=mrml_scene)
    report = json.loads((output_folder / "report.json").read_text())
    wrong_type = _copy(output_folder, tmp_path, "wrong_type")
    report["tumors"][0]["type"] = "meningioma"
    (wrong_type / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match="tumor 1: unknown type 'meningioma'"):
        lib.import_analysis_output(wrong_type, scene=mrml_scene)
    wrong_id = _copy(output_folder, tmp_path, "wrong_id")
    report["tumors"][0].update(type=TUMOR_TYPE, id=2)
    (wrong_id / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"the tumor map holds instances \[1\] but the report lists \[2\]"):
        lib.import_analysis_output(wrong_id, scene=mrml_scene)
    with pytest.raises(ValueError, match=r"the result's grid \(499, 20, 354\) differs from the input other's"):
        lib.import_analysis_output(output_folder, scene=mrml_scene, input_volume_node=other)
    with pytest.raises(InputError, match="the tumor segmentation output tumor.nii.gz, .* is missing"):
        lib.import_segment_output(tmp_path, scene=mrml_scene, input_volume_node=input_node)
    assert _node_count(mrml_scene) == count
    assert mrml_scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_job_result_imported_only_on_success_and_the_report_saved(mrml_scene, lib, case, output_folder, tmp_path):
    from spinetumor.jobs import JobState

    input_node = _input(mrml_scene, case)
    count = _node_count(mrml_scene)
    failed, cancelled, succeeded = (_copy(output_folder, tmp_path, n) for n in ("failed", "cancelled", "succeeded"))
    with pytest.raises(RuntimeError, match="spine tumor analysis failed: spinetumor run: error: no model"):
        lib.import_job_result(JobState(finished=True, returncode=2, error="spinetumor run: error: no model"),
                              failed, "analyze", scene=mrml_scene, input_volume_node=input_node)
    assert lib.import_job_result(JobState(finished=True, returncode=-15, error="cancelled"), cancelled, "analyze",
                                 scene=mrml_scene, input_volume_node=input_node) is None
    assert _node_count(mrml_scene) == count
    assert not failed.exists() and not cancelled.exists()          # work folders cleaned up either way
    nodes = lib.import_job_result(JobState(finished=True, returncode=0), succeeded, "analyze", scene=mrml_scene,
                                  input_volume_node=input_node)
    assert not succeeded.exists()
    assert nodes.table.GetNumberOfRows() == 1

    saved = lib.save_report(nodes.segmentation, tmp_path / "saved")
    expected = ["report.html", "report.json", "report.csv",
                *sorted(p.name for p in output_folder.glob("*.png"))]
    assert [p.name for p in saved] == expected
    assert "overview.png" in expected and "tumor1.png" in expected
    for path in saved:
        assert path.read_bytes() == (output_folder / path.name).read_bytes()

    # the kept folder gone (a reopened scene): the stored report is written again, without pictures
    shutil.rmtree(nodes.segmentation.GetAttribute(lib.REPORT_FOLDER_ATTRIBUTE))
    rewritten = lib.save_report(nodes.segmentation, tmp_path / "rewritten")
    assert sorted(p.name for p in rewritten) == ["report.csv", "report.html", "report.json"]
    assert json.loads((tmp_path / "rewritten" / "report.json").read_text())["tumors"] == \
        json.loads((output_folder / "report.json").read_text())["tumors"]
    assert (tmp_path / "rewritten" / "report.csv").read_text() == (output_folder / "report.csv").read_text()


def test_save_report_needs_an_analysis(mrml_scene, lib):
    node = mrml_scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "plain")
    with pytest.raises(ValueError, match="plain: has no analysis report; run Analyze first"):
        lib.save_report(node, "/nonexistent")


def test_prepare_jobs_write_the_inputs_and_the_commands_parse(mrml_scene, lib, case):
    from spinetumor import mrml
    from spinetumor.cli import build_parser
    from spinetumor.io import read_volume

    input_node = _input(mrml_scene, case)
    with_anatomy = np.where(np.asarray(case.anatomy.array) == label_table.value("cord"), label_table.value("cord"),
                            case.vertebrae.array).astype(np.uint8)
    vertebrae_node = mrml.labels_to_segmentation(case.vertebrae.with_array(with_anatomy), "Vertebrae",
                                                 scene=mrml_scene, surfaces=False)
    folder, arguments = lib.prepare_segment_job(input_node, vertebrae_node, clusters=3, denoiser="gaussian",
                                                threshold=0.4)
    try:
        assert arguments == ["segment", str(folder / "input.nrrd"), "--out", str(folder),
                             "--vertebrae", str(folder / "vertebrae.nrrd"),
                             "--clusters", "3", "--denoiser", "gaussian", "--threshold", "0.4"]
        written = read_volume(folder / "input.nrrd")
        assert written.same_geometry(case.image, tol=1e-6)
        np.testing.assert_array_equal(written.array, case.image.array)
        vertebrae = read_volume(folder / "vertebrae.nrrd", validate=False)
        np.testing.assert_array_equal(vertebrae.array, case.vertebrae.array)     # the cord segment left out
    finally:
        shutil.rmtree(folder)
    folder, arguments = lib.prepare_segment_job(input_node, threshold=0.4)
    shutil.rmtree(folder)
    assert arguments == ["segment", str(folder / "input.nrrd"), "--out", str(folder), "--threshold", "0.4"]
    parsed = build_parser().parse_args(arguments)
    assert parsed.threshold == 0.4 and parsed.vertebrae is None
    folder, arguments = lib.prepare_analyze_job(input_node, "cpu")
    shutil.rmtree(folder)
    assert arguments == ["run", str(folder / "input.nrrd"), "--out", str(folder), "--device", "cpu"]
    assert build_parser().parse_args(arguments).device == "cpu"

    with pytest.raises(ValueError, match="no input volume selected"):
        lib.prepare_analyze_job(None)
    with pytest.raises(ValueError, match="would overwrite the vertebrae"):
        lib.prepare_segment_job(input_node, vertebrae_node, vertebrae_node)
    anatomy_only = mrml.labels_to_segmentation(case.anatomy, "Anatomy", scene=mrml_scene,
                                               labels=[label_table.by_key("canal")], surfaces=False)
    with pytest.raises(ValueError, match="Anatomy: has no vertebral body segments"):
        lib.prepare_segment_job(input_node, anatomy_only)


def test_in_process_runs_wire_the_engine_into_the_scene(mrml_scene, lib, case, analysis):
    """segment/analyze_volume_node hand the input's exact Volume to the engine and show what it returns."""
    from spinetumor import mrml
    from spinetumor.progress import Cancelled

    input_node = _input(mrml_scene, case)
    seen = {}

    def segmenter(volume, vertebrae=None, progress=None, cancel=None, **options):
        seen.update(volume=volume, vertebrae=vertebrae, options=options)
        progress(0.5, "half")
        if cancel():
            raise Cancelled("cancelled by the user")
        binary = analysis.tumor_instances.with_array((np.asarray(analysis.tumor_instances.array) > 0).astype(np.uint8))
        return types.SimpleNamespace(mask=binary, probability=analysis.tumor_probability, canal=analysis.canal,
                                     cord=analysis.cord)

    messages = []
    nodes = lib.segment_volume_node(input_node, clusters=4, threshold=0.3, progress=lambda f, m: messages.append(m),
                                    cancel=lambda: False, segment_function=segmenter)
    assert seen["volume"].same_geometry(case.image) and seen["vertebrae"] is None
    np.testing.assert_array_equal(seen["volume"].array, case.image.array)
    assert seen["options"] == {"clusters": 4, "threshold": 0.3} and messages == ["half"]
    assert _segment_ids(nodes.segmentation) == ["canal", "cord", "tumor"]
    count = _node_count(mrml_scene)
    with pytest.raises(Cancelled):
        lib.segment_volume_node(input_node, progress=lambda f, m: None, cancel=lambda: True,
                                segment_function=segmenter)
    assert _node_count(mrml_scene) == count

    def analyzer(volume, name, device=None, progress=None, cancel=None):
        seen.update(volume=volume, name=name, device=device)
        if cancel():
            raise Cancelled("cancelled by the user")
        return analysis

    with pytest.raises(Cancelled):
        lib.analyze_volume_node(input_node, nodes.segmentation, cancel=lambda: True, analyze_function=analyzer)
    assert _node_count(mrml_scene) == count and seen["device"] is None and seen["name"] == "T2"
    result = lib.analyze_volume_node(input_node, nodes.segmentation, device="cpu", cancel=lambda: False,
                                     analyze_function=analyzer)
    assert seen["device"] == "cpu" and result.segmentation is nodes.segmentation
    assert result.report["tumors"] == analysis.report["tumors"]
    assert _segment_ids(result.segmentation)[-1] == TUMOR_TYPE
    folder = Path(result.segmentation.GetAttribute(lib.REPORT_FOLDER_ATTRIBUTE))
    assert {"report.html", "report.json", "report.csv", "overview.png"} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.nii.gz"))                     # only the report is kept
    np.testing.assert_array_equal(mrml.segment_to_mask(result.segmentation, TUMOR_TYPE, input_node).array,
                                  (np.asarray(case.tumor.array) > 0).astype(np.uint8))
    shutil.rmtree(folder)
