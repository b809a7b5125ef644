"""The Tumor Augmentation module's scene library (TumorAugmentationLib) in a headless MRML scene.

Targets and sources are phantoms put into the scene the way a user would have them: the
image as a volume node and the label map as a segmentation with label-table segments
(vertebrae, canal, cord, ...), as Vertebra Labeling and the segmentation modules make them.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "TumorAugmentation"))   # Slicer puts each module folder on sys.path

from spinetumor import labels as label_table  # noqa: E402
from spinetumor import phantom  # noqa: E402


@pytest.fixture
def lib():
    pytest.importorskip("slicer", reason="slicer-core is not installed")
    from TumorAugmentationLib import scene

    return scene


@pytest.fixture(scope="module")
def free_case():
    return phantom.generate(5, tumor="none", fov="full")


@pytest.fixture(scope="module")
def tumor_case():
    return phantom.generate(2, tumor="intradural-extramedullary")   # what source_from_phantom(2, ...) draws


def _target_nodes(scene, case, name="free5"):
    """(volume node, segmentation node with the anatomy segments) of a phantom case."""
    from spinetumor import mrml

    volume = mrml.volume_to_node(case.image, name, scene=scene)
    segmentation = mrml.labels_to_segmentation(case.anatomy, f"{name} labels", scene=scene, surfaces=False)
    return volume, segmentation


def _source_nodes(scene, case):
    """Source volume + segmentation holding the anatomy and the tumor again as a user-named segment."""
    import slicer
    from spinetumor import mrml

    volume, segmentation = _target_nodes(scene, case, "source2")
    tumor = case.tumor.with_array((case.tumor.array == 1).astype(np.uint8))
    image = mrml._oriented_image(tumor, tumor.array)
    segment_id = segmentation.GetSegmentation().AddEmptySegment("Segment_1", "my tumor")
    slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
        image, segmentation, segment_id, slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    return volume, segmentation, segment_id, tumor


def _ijk_to_ras(node) -> np.ndarray:
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _count(scene) -> int:
    return scene.GetNumberOfNodes()


def test_gui_choices_match_the_engine(lib):
    import TumorAugmentationLib as package
    from spinetumor.augmentation.inpaint import FILL_METHODS

    assert package.TUMOR_TYPES == label_table.TUMOR_TYPE_NAMES
    assert package.FILLS[1:] == FILL_METHODS and package.FILLS[0] == "default"


@pytest.mark.parametrize("mode", ["3d", "2d"])
def test_preview_on_a_phantom_target_keeps_its_geometry_and_the_compartment(mrml_scene, lib, free_case, mode):
    import vtk
    from spinetumor import mrml
    from spinetumor.augmentation.compartments import check_compartment, compartments_from_anatomy
    from spinetumor.volume import to_canonical

    target, labels = _target_nodes(mrml_scene, free_case)
    before = mrml.node_to_volume(target)
    labels_mtime = labels.GetMTime()
    source = lib.TumorSource("phantom", "intradural-extramedullary", phantom_seed=2)
    params = lib.AugmentParameters(per_slice=3, mode=mode, seed=4)
    nodes = lib.preview(source, target, params)

    # a new volume with exactly the target's grid; the target itself unchanged
    assert nodes.volume is not target and nodes.volume.GetID() != target.GetID()
    shown = mrml.node_to_volume(nodes.volume)
    assert shown.shape == before.shape
    np.testing.assert_array_equal(_ijk_to_ras(nodes.volume), _ijk_to_ras(target))
    np.testing.assert_array_equal(mrml.node_to_volume(target).array, before.array)
    assert labels.GetMTime() == labels_mtime
    changed = shown.array != before.array.astype(np.float32)
    assert changed.any()

    # one segment, named, colored and coded for the type, lying in its compartment
    segmentation = nodes.segmentation.GetSegmentation()
    lab = label_table.by_key("intradural-extramedullary")
    assert segmentation.GetNumberOfSegments() == 1 and segmentation.GetNthSegmentID(0) == lab.key
    segment = segmentation.GetNthSegment(0)
    assert segment.GetName() == lab.name
    assert np.allclose(segment.GetColor(), lab.color_float, atol=1e-6)
    tag = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag) and str(tag) == label_table.terminology_entry(lab)
    mask = mrml.segmentation_to_labels(nodes.segmentation, target)
    assert mask.same_geometry(before)
    np.testing.assert_array_equal(mask.array > 0, nodes.result.mask.array > 0)
    tumor = to_canonical(mask)[0].array > 0
    comp = compartments_from_anatomy(to_canonical(free_case.anatomy)[0].array)
    spacing = np.asarray(to_canonical(before)[0].spacing[::-1])
    assert tumor.any()
    if mode == "3d":
        assert check_compartment(tumor, comp, lab.key, spacing)
    else:
        assert nodes.result.slices and sorted(np.nonzero(tumor.any(axis=(1, 2)))[0].tolist()) == nodes.result.slices
        for k in nodes.result.slices:
            assert check_compartment(tumor[k], comp.slice(k), lab.key, spacing[1:])
    # voxels change only near the tumor (the blend feathers its edge): the rest is untouched
    assert _distance_mm(mask.array > 0, before.spacing)[changed].max() <= 5.0

    # a second preview refills the same nodes instead of adding new ones
    count = _count(mrml_scene)
    again = lib.preview(source, target, params, volume_node=nodes.volume, segmentation_node=nodes.segmentation)
    assert again.volume is nodes.volume and again.segmentation is nodes.segmentation
    assert _count(mrml_scene) == count


def _distance_mm(mask: np.ndarray, spacing_ijk) -> np.ndarray:
    """Distance (mm) of every voxel to the mask."""
    from scipy import ndimage

    return ndimage.distance_transform_edt(~mask, sampling=tuple(spacing_ijk)[::-1])


def test_preview_without_vertebra_labels_says_so_and_adds_nothing(mrml_scene, lib, free_case):
    from spinetumor import mrml

    target = mrml.volume_to_node(free_case.image, "unlabeled", scene=mrml_scene)
    count = _count(mrml_scene)
    with pytest.raises(ValueError, match="unlabeled: no segmentation with vertebra labels .* run Vertebra Labeling"):
        lib.preview(lib.TumorSource("phantom", "extradural", phantom_seed=2), target)
    assert _count(mrml_scene) == count


def test_source_from_a_segment_equals_the_engines_extraction(mrml_scene, lib, tumor_case, tmp_path):
    from spinetumor.augmentation.dataset import source_from_phantom
    from spinetumor.io import read_volume

    volume, segmentation, segment_id, tumor = _source_nodes(mrml_scene, tumor_case)
    assert lib.guess_tumor_type(segmentation, segment_id) is None
    assert lib.guess_tumor_type(segmentation, "canal") is None
    source = lib.TumorSource("segment", "intradural-extramedullary", volume, segmentation, segment_id)
    image, mask, anatomy = lib.source_volumes(source)
    assert mask.same_geometry(tumor_case.image)
    np.testing.assert_array_equal(mask.array, tumor.array)
    assert anatomy is not None and (anatomy.array == label_table.value("cord")).any()

    # the patch is the engine's own for that phantom (same image, mask and sac/cord)
    patch = lib.source_patch(source)
    engine = source_from_phantom(2, "intradural-extramedullary")
    np.testing.assert_array_equal(patch.mask, engine.mask)
    # (outside the mask the patch repeats its nearest tumor value; ties there depend on float spacing)
    np.testing.assert_allclose(patch.image[patch.mask], engine.image[engine.mask], rtol=1e-6)
    assert patch.tumor_type == engine.tumor_type and patch.side_sac == engine.side_sac
    assert patch.reference == pytest.approx(engine.reference)

    # saved as a folder and read back: same grid, same voxels, the type remembered
    folder = lib.write_source_folder(source, tmp_path / "library" / "idem")
    files = lib.read_source_folder(folder)
    assert files["tumor_type"] == "intradural-extramedullary" and files["canal"] and files["cord"]
    saved = read_volume(files["tumor"], validate=False)
    assert saved.same_geometry(tumor_case.image) and np.array_equal(saved.array, tumor.array)
    from_folder = lib.source_patch(lib.TumorSource("folder", "intradural-extramedullary", folder=folder))
    np.testing.assert_array_equal(from_folder.mask, engine.mask)


def test_source_checks_name_what_is_missing(mrml_scene, lib, tmp_path):
    with pytest.raises(ValueError, match="select the source volume and the tumor segment"):
        lib.TumorSource("segment", "extradural").check()
    with pytest.raises(ValueError, match="unknown tumor type 'tumour'"):
        lib.TumorSource("phantom", "tumour").check()
    from spinetumor.io import InputError

    with pytest.raises(InputError, match="not a tumor source folder \\(image.nrrd is missing\\)"):
        lib.read_source_folder(tmp_path)


def test_job_folder_and_arguments_parse_and_write_the_scene_exactly(mrml_scene, lib, free_case, tumor_case, tmp_path):
    from spinetumor.augmentation.dataset import find_targets
    from spinetumor.cli import build_parser
    from spinetumor.io import read_volume

    target, _ = _target_nodes(mrml_scene, free_case, "free 5/a")
    volume, segmentation, segment_id, _ = _source_nodes(mrml_scene, tumor_case)
    source = lib.TumorSource("segment", "intradural-extramedullary", volume, segmentation, segment_id)
    params = lib.AugmentParameters(per_slice=2, mode="3d", rotations=1, fill="biharmonic", seed=9)
    count = _count(mrml_scene)
    work, arguments = lib.prepare_job(source, tmp_path / "out", params, [target], work_folder=tmp_path / "work")
    assert _count(mrml_scene) == count
    args = build_parser().parse_args(arguments)
    assert (args.per_slice, args.mode, args.rotations, args.fill, args.seed) == (2, "3d", 1, "biharmonic", 9)
    assert args.source_type == "intradural-extramedullary" and args.out == str(tmp_path / "out")
    assert Path(args.source_image).parent == work / "source" and args.source_canal and args.source_cord
    specs = find_targets(args.targets)
    assert [s.name for s in specs] == ["free_5_a"]
    image = read_volume(specs[0].image)
    assert image.same_geometry(free_case.image, tol=1e-6)
    np.testing.assert_array_equal(image.array, free_case.image.array)
    np.testing.assert_array_equal(read_volume(specs[0].vertebrae, validate=False).array, free_case.vertebrae.array)
    assert specs[0].anatomy is not None

    # a phantom source and a target folder need nothing written but the arguments
    _, phantom_args = lib.prepare_job(lib.TumorSource("phantom", "extradural", phantom_seed=3), tmp_path / "o2",
                                      lib.AugmentParameters(), target_folder=tmp_path / "targets",
                                      work_folder=tmp_path / "w2")
    parsed = build_parser().parse_args(phantom_args)
    assert parsed.phantom_source == [3] and parsed.targets == [str(tmp_path / "targets")] and parsed.fill is None
    with pytest.raises(ValueError, match="choose an output folder"):
        lib.prepare_job(lib.TumorSource("phantom", "extradural"), "", lib.AugmentParameters(), [target])
    with pytest.raises(ValueError, match="check at least one target volume"):
        lib.prepare_job(lib.TumorSource("phantom", "extradural"), tmp_path / "o3", lib.AugmentParameters(), [],
                        work_folder=tmp_path / "w3")
    assert not (tmp_path / "w3").exists()          # a failed preparation leaves no work folder


def test_background_run_writes_the_dataset_and_cancel_changes_nothing(mrml_scene, lib, free_case, tmp_path):
    from spinetumor.jobs import BackgroundJob, JobState

    target, _ = _target_nodes(mrml_scene, free_case)
    source = lib.TumorSource("phantom", "intradural-extramedullary", phantom_seed=2)
    params = lib.AugmentParameters(per_slice=1, mode="3d", seed=1)
    out = tmp_path / "dataset"
    count = _count(mrml_scene)
    work, arguments = lib.prepare_job(source, out, params, [target], work_folder=tmp_path / "work")
    state = BackgroundJob([*arguments, "--progress", "json"]).start().wait(timeout=300)
    summary = lib.finish_run(state, work, out)
    assert state.returncode == 0, state.error
    assert summary["written"] == summary["samples"] == 1 and summary["targets"] == ["free5"]
    assert "1 samples (1 written" in lib.summary_text(summary)
    rows = list(csv.DictReader(open(out / "manifest.csv", newline="")))
    assert rows[0]["tumor_type"] == "intradural-extramedullary" and rows[0]["mode"] == "3d"
    assert not work.exists() and _count(mrml_scene) == count

    cancelled = tmp_path / "cancelled"
    cancelled.mkdir()
    assert lib.finish_run(JobState(finished=True, returncode=-15, error="cancelled"), cancelled, out) is None
    assert not cancelled.exists() and _count(mrml_scene) == count
    failed = tmp_path / "failed"
    failed.mkdir()
    with pytest.raises(RuntimeError, match="tumor augmentation failed: spinetumor augment: error: boom"):
        lib.finish_run(JobState(finished=True, returncode=2, error="spinetumor augment: error: boom"), failed, out)
    assert not failed.exists()
