"""Scene work of the Vertebra Labeling module: results into nodes, nodes into job inputs.

A labeling result is shown as three nodes that travel together:

* the output segmentation: one named, colored, terminology-coded segment per level found
  (T11..L5, values 1..7 of :data:`spinetumor.labels.VERTEBRAE`), closed surfaces built,
  placed beside the input volume in the subject hierarchy (DICOM SEG export needs it);
* a point list with the level names at the vertebral body centroids;
* a table with one row per level: level, present, volume, centroid R/A/S, confidence; its
  :data:`CAUTION_ATTRIBUTE` holds the engine's cautions (``LabelingResult.cautions``): bodies
  found only in part, a field of view ending above the sacrum so that the level names may be
  one off; "" when there is nothing to check.

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
#: Table node attribute holding the cautions about the labels and level names ("" when there are none).
CAUTION_ATTRIBUTE = "VertebraLabeling.caution"
#: Files of the background job's work folder (the ``label`` command writes the outputs).
INPUT_FILE = "input.nrrd"
LABELS_FILE = "vertebrae.nii.gz"
RESULT_FILE = "vertebrae.json"


@dataclass
class LabelingNodes:
    """The nodes that show one labeling result."""

    segmentation: object
    levels: object
    table: object


# --- nodes ----------------------------------------------------------------------------------

def show_labeling(labels, levels, scene=None, segmentation_node=None, input_volume_node=None,
                  name: str | None = None, caution: str | None = None) -> LabelingNodes:
    """Show a labeling result: segmentation, level names at the centroids, results table.

    ``labels`` is the label Volume (or label map node) in the input geometry, values
    1..7 = T11..L5; ``levels`` the per-level results (see :func:`spinetumor.mrml.level_list`).
    ``segmentation_node`` is reused when given, with its companion point list and
    table, so re-runs replace their content instead of adding nodes. ``caution``: the
    engine's notes on the labels and level names, kept on the table (:data:`CAUTION_ATTRIBUTE`).
    Returns the nodes.
    """
    from spinetumor import mrml
    from spinetumor.labels import VERTEBRAE
    from spinetumor.volume import Volume

    scene = mrml.scene_of(scene, segmentation_node, input_volume_node)
    if name is None:
        name = segmentation_node.GetName() if segmentation_node is not None else SEGMENTATION_NAME
    volume = labels if isinstance(labels, Volume) else mrml.node_to_volume(labels)
    values = set(np.unique(volume.array).tolist()) - {0}
    known = {lab.value for lab in VERTEBRAE}
    if values - known:
        raise ValueError(f"label values {sorted(values - known)} are not vertebral levels (1..7 = T11..L5)")
    found = [lab for lab in VERTEBRAE if lab.value in values]
    records, points_found = mrml.level_records(levels), mrml.centroid_points(levels)   # refuse bad levels first
    segmentation_node = mrml.output_segmentation(scene, segmentation_node, name)
    mrml.labels_to_segmentation(volume, segmentation_node.GetName(), scene=scene, node=segmentation_node,
                                labels=found, surfaces=True)
    mrml.place_beside(segmentation_node, input_volume_node)

    base = segmentation_node.GetName()
    points = mrml.companion_points(segmentation_node, LEVELS_ROLE, points_found, f"{base} levels", input_volume_node)
    table = mrml.companion_table(segmentation_node, TABLE_ROLE, records, f"{base} levels table", input_volume_node)
    table.SetAttribute(CAUTION_ATTRIBUTE, caution or "")
    return LabelingNodes(segmentation_node, points, table)


# --- the background job ---------------------------------------------------------------------

def write_input(volume_node, folder) -> Path:
    """Write the input volume node (geometry exact, parent transforms applied) for the job."""
    from spinetumor import mrml

    return mrml.write_volume_node(volume_node, Path(folder) / INPUT_FILE)


def label_arguments(input_path, out_dir, device: str = "auto") -> list[str]:
    """Arguments of the ``spinetumor label`` command the widget runs in the background."""
    return ["label", str(input_path), "--out", str(out_dir), "--device", str(device)]


def read_output(folder):
    """``(label Volume, per-level list, caution or None)`` from a ``spinetumor label`` output folder."""
    from spinetumor import mrml
    from spinetumor.io import InputError, read_volume

    folder = Path(folder)
    for required in (LABELS_FILE, RESULT_FILE):
        if not (folder / required).is_file():
            raise InputError(f"{folder}: the labeling output {required} is missing")
    labels = read_volume(folder / LABELS_FILE, validate=False)
    result = json.loads((folder / RESULT_FILE).read_text(encoding="utf-8"))
    if "levels" not in result:
        raise InputError(f"{folder / RESULT_FILE}: has no 'levels' list")
    return labels, mrml.level_list(result["levels"]), " ".join(result.get("cautions") or []) or None


def import_output(folder, scene=None, segmentation_node=None, input_volume_node=None) -> LabelingNodes:
    """Import a ``spinetumor label`` output folder into the scene (see :func:`show_labeling`)."""
    from spinetumor import mrml

    labels, levels, caution = read_output(folder)
    if input_volume_node is not None:
        mrml.check_same_grid(labels, input_volume_node, "the labeling output")
    return show_labeling(labels, levels, scene=scene, segmentation_node=segmentation_node,
                         input_volume_node=input_volume_node, caution=caution)


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
                         scene=input_volume_node.GetScene(), caution=" ".join(result.cautions()) or None)
