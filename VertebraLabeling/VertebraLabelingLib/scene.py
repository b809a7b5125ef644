"""Scene work of the Vertebra Labeling module: results into nodes, nodes into job inputs.

A labeling result is shown as three nodes that travel together:

* the output segmentation: one named, colored, terminology-coded segment per level found
  (T11..L5, values 1..7 of :data:`spinetumor.labels.VERTEBRAE`), closed surfaces built,
  placed beside the input volume in the subject hierarchy (DICOM SEG export needs it);
* a point list with the level names at the vertebral body centroids;
* a table with one row per level: level, present, volume, centroid R/A/S, confidence.

The point list and the table hang off the segmentation as node references
(:data:`LEVELS_ROLE`, :data:`TABLE_ROLE`), so a second run on the same output
segmentation refills the same three nodes instead of piling up copies.

The Slicer widget runs inference in a background process (``spinetumor label``):
:func:`write_input` puts the input node into a work folder, :func:`label_arguments`
builds the command, and :func:`import_job_result` imports the folder only when the job
succeeded, so the scene stays as it was after Cancel or an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Default name of a new output segmentation.
SEGMENTATION_NAME = "Vertebrae"
#: Node reference roles from the output segmentation to its companion nodes.
LEVELS_ROLE = "VertebraLabeling.levels"
TABLE_ROLE = "VertebraLabeling.table"
#: Files of the background job's work folder (the ``label`` command writes the outputs).
INPUT_FILE = "input.nrrd"
LABELS_FILE = "vertebrae.nii.gz"
RESULT_FILE = "vertebrae.json"
#: Column names of the results table, in order.
TABLE_COLUMNS = ("Level", "Present", "Volume (mL)", "Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)",
                 "Confidence")


@dataclass
class LabelingNodes:
    """The nodes that show one labeling result."""

    segmentation: object
    levels: object
    table: object


# --- level records --------------------------------------------------------------------------

def _level_dict(level) -> dict:
    """A level as a dict: a ``LevelResult`` (engine) or a dict read from ``vertebrae.json``."""
    return level.to_dict() if hasattr(level, "to_dict") else dict(level)


def level_list(levels) -> list[dict]:
    """The per-level results as dicts in T11..L5 order, whatever form they come in.

    Accepts the engine's ``LabelingResult.levels`` (name -> ``LevelResult``), a list of
    dicts (``vertebrae.json``'s ``levels``) or a name -> dict mapping. Levels the result
    does not mention are listed as absent, so the table always has the seven rows.
    """
    from spinetumor.labels import LEVEL_NAMES, by_key

    items = levels.values() if isinstance(levels, dict) else levels
    by_name = {}
    for level in items:
        entry = _level_dict(level)
        name = entry.get("name")
        if name not in LEVEL_NAMES:
            raise ValueError(f"unknown vertebral level {name!r}; expected one of {', '.join(LEVEL_NAMES)}")
        by_name[name] = entry
    return [by_name.get(name, {"name": name, "value": by_key(name).value, "present": False})
            for name in LEVEL_NAMES]


def level_records(levels) -> list[dict]:
    """One table row per level (T11..L5): level, present, volume, centroid R/A/S, confidence.

    Missing numbers stay None, which the table shows as empty (NaN) cells.
    """
    rows = []
    for entry in level_list(levels):
        present = bool(entry.get("present"))
        centroid = entry.get("centroid_ras") if present else None
        r, a, s = (None, None, None) if centroid is None else (float(c) for c in centroid)
        confidence = entry.get("confidence") if present else None
        rows.append(dict(zip(TABLE_COLUMNS, (
            entry["name"], "yes" if present else "no",
            float(entry.get("volume_ml") or 0.0) if present else None,
            r, a, s, None if confidence is None else float(confidence)))))
    return rows


def centroid_points(levels) -> list[tuple[str, np.ndarray]]:
    """``(level name, centroid RAS)`` of every level found, superior to inferior."""
    return [(entry["name"], np.asarray(entry["centroid_ras"], dtype=float))
            for entry in level_list(levels) if entry.get("present") and entry.get("centroid_ras") is not None]


# --- nodes ----------------------------------------------------------------------------------

def _scene_of(scene, *nodes):
    """The scene to work in: the given one, else the first node's, else ``slicer.mrmlScene``."""
    if scene is not None:
        return scene
    for node in nodes:
        if node is not None and node.GetScene() is not None:
            return node.GetScene()
    import slicer

    return slicer.mrmlScene


def output_segmentation(scene=None, node=None, name: str = SEGMENTATION_NAME):
    """The segmentation node to write into: ``node`` when given (reused), else a new one."""
    if node is not None:
        if not node.IsA("vtkMRMLSegmentationNode"):
            raise TypeError(f"{node.GetClassName()} given where a segmentation node is needed")
        return node
    from spinetumor import mrml

    scene = _scene_of(scene)
    return scene.AddNewNodeByClass("vtkMRMLSegmentationNode", mrml.unique_name(scene, name))


def companion_node(segmentation_node, role: str, class_name: str, name: str):
    """The node referenced from the segmentation under ``role``, created (and referenced) if missing.

    A referenced node of another class (or one deleted meanwhile) is replaced, never reused.
    """
    node = segmentation_node.GetNodeReference(role)
    if node is None or not node.IsA(class_name):
        node = segmentation_node.GetScene().AddNewNodeByClass(class_name, name)
        segmentation_node.SetNodeReferenceID(role, node.GetID())
    return node


def show_labeling(labels, levels, scene=None, segmentation_node=None, input_volume_node=None,
                  name: str | None = None) -> LabelingNodes:
    """Show a labeling result: segmentation, level names at the centroids, results table.

    ``labels`` is the label Volume (or label map node) in the input geometry, values
    1..7 = T11..L5; ``levels`` the per-level results (see :func:`level_list`).
    ``segmentation_node`` is reused when given, with its companion point list and
    table, so re-runs replace their content instead of adding nodes. Returns the nodes.
    """
    from spinetumor import mrml
    from spinetumor.labels import VERTEBRAE
    from spinetumor.volume import Volume

    scene = _scene_of(scene, segmentation_node, input_volume_node)
    if name is None:
        name = segmentation_node.GetName() if segmentation_node is not None else SEGMENTATION_NAME
    volume = labels if isinstance(labels, Volume) else mrml.node_to_volume(labels)
    values = set(np.unique(volume.array).tolist()) - {0}
    known = {lab.value for lab in VERTEBRAE}
    if values - known:
        raise ValueError(f"label values {sorted(values - known)} are not vertebral levels (1..7 = T11..L5)")
    found = [lab for lab in VERTEBRAE if lab.value in values]
    records, points_found = level_records(levels), centroid_points(levels)   # refuse bad levels before any node
    segmentation_node = output_segmentation(scene, segmentation_node, name)
    mrml.labels_to_segmentation(volume, segmentation_node.GetName(), scene=scene, node=segmentation_node,
                                labels=found, surfaces=True)
    mrml.place_beside(segmentation_node, input_volume_node)

    base = segmentation_node.GetName()
    points = companion_node(segmentation_node, LEVELS_ROLE, "vtkMRMLMarkupsFiducialNode", f"{base} levels")
    mrml.points_to_markups(points_found, points.GetName(), scene=scene, node=points)
    points.SetLocked(True)
    mrml.place_beside(points, input_volume_node)

    table = companion_node(segmentation_node, TABLE_ROLE, "vtkMRMLTableNode", f"{base} levels table")
    mrml.records_to_table(records, table.GetName(), scene=scene, node=table)
    mrml.place_beside(table, input_volume_node)
    return LabelingNodes(segmentation_node, points, table)


# --- the background job ---------------------------------------------------------------------

def write_input(volume_node, folder) -> Path:
    """Write the input volume node (geometry exact, parent transforms applied) for the job."""
    from spinetumor import mrml
    from spinetumor.io import write_volume

    return write_volume(mrml.node_to_volume(volume_node), Path(folder) / INPUT_FILE)


def label_arguments(input_path, out_dir, device: str = "auto") -> list[str]:
    """Arguments of the ``spinetumor label`` command the widget runs in the background."""
    return ["label", str(input_path), "--out", str(out_dir), "--device", str(device)]


def read_output(folder):
    """``(label Volume, per-level list)`` from a ``spinetumor label`` output folder."""
    from spinetumor.io import InputError, read_volume

    folder = Path(folder)
    for required in (LABELS_FILE, RESULT_FILE):
        if not (folder / required).is_file():
            raise InputError(f"{folder}: the labeling output {required} is missing")
    labels = read_volume(folder / LABELS_FILE, validate=False)
    result = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    if "levels" not in result:
        raise InputError(f"{folder / RESULT_FILE}: has no 'levels' list")
    return labels, level_list(result["levels"])


def import_output(folder, scene=None, segmentation_node=None, input_volume_node=None) -> LabelingNodes:
    """Import a ``spinetumor label`` output folder into the scene (see :func:`show_labeling`)."""
    labels, levels = read_output(folder)
    if input_volume_node is not None:
        _check_same_grid(labels, input_volume_node)
    return show_labeling(labels, levels, scene=scene, segmentation_node=segmentation_node,
                         input_volume_node=input_volume_node)


def _check_same_grid(labels, input_volume_node) -> None:
    """Refuse a label map whose grid is not the input's (a stale or foreign output folder)."""
    from spinetumor import mrml

    reference = mrml.node_to_volume(input_volume_node)
    if not labels.same_geometry(reference, tol=1e-3):
        raise ValueError(f"the labeling output's grid {labels.shape} differs from the input "
                         f"{input_volume_node.GetName()}'s {reference.shape}")


def import_job_result(state, folder, scene=None, segmentation_node=None, input_volume_node=None,
                      keep_folder: bool = False):
    """Finish a background run: import its outputs on success, else leave the scene untouched.

    ``state`` is the :class:`spinetumor.jobs.JobState` of the finished job. Returns the
    :class:`LabelingNodes` on success and None after Cancel; raises RuntimeError with
    the job's last error line when it failed. The work folder is removed afterwards
    unless ``keep_folder``.
    """
    from spinetumor.slicer_support import finish_job

    return finish_job(state, folder, lambda: import_output(folder, scene=scene, segmentation_node=segmentation_node,
                                                           input_volume_node=input_volume_node),
                      "vertebra labeling", keep_folder)


# --- in-process labeling (Python console, batch) --------------------------------------------

def label_volume_node(input_volume_node, segmentation_node=None, device: str = "auto", progress=None,
                      cancel=None, label_function=None) -> LabelingNodes:
    """Label T11..L5 of a volume node in this process and show the result (blocks until done).

    ``label_function(volume, device=, progress=, cancel=)`` defaults to
    :func:`spinetumor.labeling.infer.label_vertebrae`; it returns the engine's
    ``LabelingResult``. Nothing is added to the scene when it raises (e.g. on cancel).
    """
    from spinetumor import mrml

    if input_volume_node is None:
        raise ValueError("no input volume selected")
    if label_function is None:
        from spinetumor.labeling.infer import label_vertebrae as label_function
    volume = mrml.node_to_volume(input_volume_node)
    result = label_function(volume, device=None if device == "auto" else device, progress=progress,
                            cancel=cancel)
    return show_labeling(result.labels, result.levels, segmentation_node=segmentation_node,
                         input_volume_node=input_volume_node,
                         scene=input_volume_node.GetScene())
