"""Scene work of the Spine Tumor Segmentation module: results into nodes, nodes into job inputs.

Two kinds of result land in one output segmentation node:

* a tumor segmentation (``spinetumor segment``): the segments tumor, thecal sac (canal) and
  cord, closed surfaces built, plus the tumor probability as a volume;
* a whole analysis (``spinetumor run``): the vertebral bodies T11..L5, canal, cord and one
  segment per tumor type found (named and colored by the type), the probability volume, the
  level names at the vertebral body centroids and the tumor types at the tumor centroids
  (two point lists), and a table with one row per tumor of the report. The report itself is
  kept on the segmentation (JSON attribute) with the folder holding its files, for "Save report".

Companion nodes hang off the segmentation as node references (the ``*_ROLE`` names), so a
re-run on the same output refills the same nodes; a tumor segmentation removes the analysis
companions of an earlier analysis, which would no longer describe the segments.

The Slicer widget runs both in a background process: :func:`prepare_segment_job` /
:func:`prepare_analyze_job` write the input into a work folder and build the command, and
:func:`import_job_result` imports the folder only when the job succeeded, so the scene stays
as it was after Cancel or an error. :func:`segment_volume_node` and
:func:`analyze_volume_node` do the same work in this process (Python console, batch).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Default name of a new output segmentation.
SEGMENTATION_NAME = "Spine tumor"
#: Node reference roles from the output segmentation to its companion nodes.
PROBABILITY_ROLE = "SpineTumorSegmentation.probability"
LEVELS_ROLE = "SpineTumorSegmentation.levels"
TUMORS_ROLE = "SpineTumorSegmentation.tumors"
TABLE_ROLE = "SpineTumorSegmentation.table"
#: The companions only an analysis has.
ANALYSIS_ROLES = (LEVELS_ROLE, TUMORS_ROLE, TABLE_ROLE)
#: Attributes of the output segmentation: the analysis report (JSON) and the folder of its files.
REPORT_ATTRIBUTE = "SpineTumorSegmentation.report"
REPORT_FOLDER_ATTRIBUTE = "SpineTumorSegmentation.reportFolder"
#: Files of a job's work folder: the inputs we write, the outputs the commands write.
INPUT_FILE = "input.nrrd"
VERTEBRAE_INPUT_FILE = "vertebrae.nrrd"
SEGMENT_FILES = {"tumor": "tumor.nii.gz", "probability": "tumor_probability.nii.gz", "canal": "canal.nii.gz",
                 "cord": "cord.nii.gz"}
ANALYSIS_FILES = {"vertebrae": "vertebrae.nii.gz", **SEGMENT_FILES}
REPORT_JSON = "report.json"
#: The report files "Save report" copies (with the pictures, ``*.png``).
REPORT_FILES = ("report.html", REPORT_JSON, "report.csv")
#: Column names of the results table (one row per tumor), in order.
TABLE_COLUMNS = ("ID", "Type", "Probability", "Rule type", "Agreement", "Levels", "Disc levels", "Epicentre",
                 "Volume (mL)", "Canal compromise (%)", "Cautions")
#: 3D opacity of the canal segment, so the cord and tumors inside it stay visible.
CANAL_OPACITY_3D = 0.3


@dataclass
class ResultNodes:
    """The nodes that show one result; the analysis-only ones are None after a tumor segmentation."""

    segmentation: object
    probability: object
    levels: object = None
    tumors: object = None
    table: object = None
    report: dict | None = None


# --- report contents ------------------------------------------------------------------------

def report_tumors(report) -> list[dict]:
    """The report's tumor entries, checked: a list of dicts with a known type and an id."""
    from spinetumor.labels import TUMOR_TYPE_NAMES

    if not isinstance(report, dict) or not isinstance(report.get("tumors"), list):
        raise ValueError("the report has no 'tumors' list")
    for tumor in report["tumors"]:
        if tumor.get("type") not in TUMOR_TYPE_NAMES:
            raise ValueError(f"tumor {tumor.get('id')!r}: unknown type {tumor.get('type')!r}; "
                             f"expected one of {', '.join(TUMOR_TYPE_NAMES)}")
        if not isinstance(tumor.get("id"), int) or tumor["id"] < 1:
            raise ValueError(f"tumor id {tumor.get('id')!r} is not a positive integer")
    return report["tumors"]


def tumor_records(report) -> list[dict]:
    """One results-table row per tumor: id, type, its probability, rule type and agreement,
    levels, disc levels, epicentre, volume (mL), canal compromise (%), cautions ("; "-joined)."""
    rows = []
    for t in report_tumors(report):
        rows.append(dict(zip(TABLE_COLUMNS, (
            t["id"], t["type"], float(t["type_probabilities"][t["type"]]), t.get("rule_type") or "",
            "yes" if t.get("types_agree", True) else "no", list(t["levels"]), list(t["disc_levels"]),
            t.get("epicenter_level") or "", float(t["volume_ml"]), float(t.get("canal_compromise_percent") or 0.0),
            "; ".join(t.get("cautions", []))))))
    return rows


def tumor_label(tumor: dict) -> str:
    """The label shown at a tumor's centroid: its id and type, e.g. ``"1: Extradural tumor"``."""
    from spinetumor.labels import by_key

    return f"{tumor['id']}: {by_key(tumor['type']).name}"


def tumor_points(report) -> list[tuple[str, np.ndarray]]:
    """``(label, centroid RAS)`` of every tumor of the report."""
    return [(tumor_label(t), np.asarray(t["centroid_ras"], dtype=float))
            for t in report_tumors(report) if t.get("centroid_ras") is not None]


#: Added to the status line when the report says the sacrum is not in view.
CHECK_LEVELS = " Check the level names: the sacrum is not in view (see the report's notes)."
#: Added to the status line when the report lists bodies found only in part ({levels}).
CHECK_PARTIAL = " Check the labels of {levels}: found only in part (see the report's notes)."
#: Added to the status line for the tumors whose report entry carries a caution ({ids}).
CHECK_CAUTIONS = " Check tumor {ids} against the axial images (see the table's Cautions)."


def summary_text(report) -> str:
    """One line for the status label: how many tumors, their types and levels, and cautions
    when a tumor carries one (``tumors[].cautions``, e.g. it may be a disc), when vertebral
    bodies were found only in part (``partial_levels``) or the level names may be off
    (``sacrum_in_view`` false)."""
    from spinetumor.report import level_span

    tumors = report_tumors(report)
    partial = report.get("partial_levels") or []
    caution = (CHECK_PARTIAL.format(levels=", ".join(partial)) if partial else "") + (
        CHECK_LEVELS if report.get("sacrum_in_view") is False else "")
    if not tumors:
        return "No tumor found." + caution
    flagged = [str(t["id"]) for t in tumors if t.get("cautions")]
    if flagged:
        caution = CHECK_CAUTIONS.format(ids=", ".join(flagged)) + caution
    return f"{len(tumors)} tumor(s): " + "; ".join(
        f"{t['id']}: {t['type']} at {level_span(t['levels'])}, {t['volume_ml']:.2f} mL" for t in tumors) + "." + caution


def stored_report(segmentation_node) -> dict | None:
    """The analysis report kept on an output segmentation, or None (no analysis yet)."""
    text = segmentation_node.GetAttribute(REPORT_ATTRIBUTE) if segmentation_node is not None else None
    return json.loads(text) if text else None


# --- showing results ------------------------------------------------------------------------

def _fill_segmentation(scene, segmentation_node, labels, input_volume_node, name: str):
    """Put a combined label map into the output segmentation (named, colored, coded, 3D), beside the input."""
    from spinetumor import mrml

    if input_volume_node is not None:
        mrml.check_same_grid(labels, input_volume_node, "the result")
    node = mrml.output_segmentation(scene, segmentation_node, name)
    mrml.labels_to_segmentation(labels, node.GetName(), scene=scene, node=node, surfaces=True)
    if node.GetSegmentation().GetSegment("canal") is not None:      # segment IDs are the label keys
        node.GetDisplayNode().SetSegmentOpacity3D("canal", CANAL_OPACITY_3D)
    mrml.place_beside(node, input_volume_node)
    return node


def _show_probability(segmentation_node, probability, input_volume_node):
    """The tumor probability (0..1) in the segmentation's probability volume, shown on a 0..1 window."""
    from spinetumor import mrml

    node = mrml.companion_node(segmentation_node, PROBABILITY_ROLE, "vtkMRMLScalarVolumeNode",
                               f"{segmentation_node.GetName()} tumor probability")
    mrml.volume_to_node(probability.with_array(np.asarray(probability.array, dtype=np.float32)), node.GetName(),
                        node=node)
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(False)
    display.SetWindowLevelMinMax(0.0, 1.0)
    mrml.place_beside(node, input_volume_node)
    return node


def segmentation_labels(tumor, canal, cord):
    """The combined label map of a tumor segmentation: tumor over cord over canal."""
    from spinetumor.labels import value

    out = np.zeros(tumor.shape, np.uint8)
    out[np.asarray(canal.array) > 0] = value("canal")
    out[np.asarray(cord.array) > 0] = value("cord")
    out[np.asarray(tumor.array) > 0] = value("tumor")
    return tumor.with_array(out)


def show_segmentation(tumor, canal, cord, probability, scene=None, segmentation_node=None, input_volume_node=None,
                      name: str | None = None) -> ResultNodes:
    """Show a tumor segmentation (Volumes on the input's grid): tumor, canal and cord segments and the
    probability volume. ``segmentation_node`` is reused when given; an earlier analysis's level and
    tumor points, table and report are removed from it, as they would no longer match."""
    from spinetumor import mrml

    for other, what in ((canal, "canal"), (cord, "cord"), (probability, "probability")):
        if not other.same_geometry(tumor, tol=1e-3):
            raise ValueError(f"the {what} map is not on the tumor mask's grid")
    scene = mrml.scene_of(scene, segmentation_node, input_volume_node)
    labels = segmentation_labels(tumor, canal, cord)
    node = _fill_segmentation(scene, segmentation_node, labels, input_volume_node,
                              name or (segmentation_node.GetName() if segmentation_node else SEGMENTATION_NAME))
    mrml.remove_companions(node, ANALYSIS_ROLES)
    node.RemoveAttribute(REPORT_ATTRIBUTE)
    node.RemoveAttribute(REPORT_FOLDER_ATTRIBUTE)
    return ResultNodes(node, _show_probability(node, probability, input_volume_node))


def show_analysis(analysis, scene=None, segmentation_node=None, input_volume_node=None, name: str | None = None,
                  report_folder=None) -> ResultNodes:
    """Show a whole analysis (a :class:`spinetumor.pipeline.Analysis`): segments, probability volume,
    level names at the vertebral centroids, tumor types at the tumor centroids, the results table.

    The report is checked before any node is touched, so a bad report leaves the scene as it
    was. ``report_folder`` (the folder holding report.html/.json/.csv and the pictures) is
    remembered for :func:`save_report`.
    """
    from spinetumor import mrml
    from spinetumor.labels import by_key
    from spinetumor.pipeline import combined_labels

    report = analysis.report
    records, tumor_pts = tumor_records(report), tumor_points(report)
    level_pts = mrml.centroid_points(report.get("vertebrae") or [])
    ids = set(np.unique(analysis.tumor_instances.array).tolist()) - {0}
    listed = {t["id"] for t in report["tumors"]}
    if ids != listed:
        raise ValueError(f"the tumor map holds instances {sorted(ids)} but the report lists {sorted(listed)}")
    scene = mrml.scene_of(scene, segmentation_node, input_volume_node)
    node = _fill_segmentation(scene, segmentation_node, combined_labels(analysis), input_volume_node,
                              name or (segmentation_node.GetName() if segmentation_node else SEGMENTATION_NAME))
    base = node.GetName()
    nodes = ResultNodes(
        node, _show_probability(node, analysis.tumor_probability, input_volume_node),
        mrml.companion_points(node, LEVELS_ROLE, level_pts, f"{base} levels", input_volume_node),
        mrml.companion_points(node, TUMORS_ROLE, tumor_pts, f"{base} tumors", input_volume_node),
        mrml.companion_table(node, TABLE_ROLE, records, f"{base} tumors table", input_volume_node, TABLE_COLUMNS),
        report)
    nodes.tumors.GetDisplayNode().SetSelectedColor(*by_key("tumor").color_float)
    node.SetAttribute(REPORT_ATTRIBUTE, json.dumps(report, default=str))
    node.SetAttribute(REPORT_FOLDER_ATTRIBUTE, str(report_folder) if report_folder else "")
    return nodes


# --- output folders -------------------------------------------------------------------------

def _read_volumes(folder, files: dict, what: str) -> dict:
    """The named volumes of an output folder, all required and on one grid."""
    from spinetumor.io import InputError, read_volume

    folder = Path(folder)
    missing = [name for name in files.values() if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder}: the {what} output {', '.join(missing)} is missing")
    volumes = {key: read_volume(folder / name, validate=False) for key, name in files.items()}
    first_key, first = next(iter(volumes.items()))
    for key, volume in volumes.items():
        if not volume.same_geometry(first, tol=1e-3):
            raise InputError(f"{folder}: {files[key]} is not on the grid of {files[first_key]}")
    return volumes


def read_segment_output(folder) -> dict:
    """tumor, probability, canal and cord Volumes of a ``spinetumor segment`` output folder."""
    return _read_volumes(folder, SEGMENT_FILES, "tumor segmentation")


def read_analysis(folder):
    """The :class:`spinetumor.pipeline.Analysis` a ``spinetumor run`` output folder holds.

    The masks' grid stands for the image's (the Analysis only needs its geometry here).
    """
    from spinetumor.io import InputError
    from spinetumor.pipeline import Analysis

    volumes = _read_volumes(folder, ANALYSIS_FILES, "analysis")
    path = Path(folder) / REPORT_JSON
    if not path.is_file():
        raise InputError(f"{folder}: the analysis output {REPORT_JSON} is missing")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise InputError(f"{path}: not valid JSON ({error})") from None
    tumors = volumes["tumor"]
    return Analysis(tumors, volumes["vertebrae"], volumes["canal"], volumes["cord"], tumors, volumes["probability"],
                    report)


def import_segment_output(folder, scene=None, segmentation_node=None, input_volume_node=None) -> ResultNodes:
    """Import a ``spinetumor segment`` output folder (see :func:`show_segmentation`)."""
    v = read_segment_output(folder)
    return show_segmentation(v["tumor"], v["canal"], v["cord"], v["probability"], scene=scene,
                             segmentation_node=segmentation_node, input_volume_node=input_volume_node)


def _report_files(folder) -> list[Path]:
    """The report files of a folder: report.html/.json/.csv and the pictures, those present."""
    folder = Path(folder)
    return [folder / name for name in REPORT_FILES if (folder / name).is_file()] + sorted(folder.glob("*.png"))


def _copy_files(paths, destination) -> list[Path]:
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(path, destination / path.name)) for path in paths]


def keep_report(folder) -> Path:
    """Copy a run's report files out of its work folder into a folder of their own (for Save report)."""
    from spinetumor.slicer_support import new_work_folder

    kept = new_work_folder("report")
    _copy_files(_report_files(folder), kept)
    return kept


def _show_with_report(analysis, folder, **where) -> ResultNodes:
    """:func:`show_analysis` with the report files of ``folder`` kept (dropped again if showing fails)."""
    kept = keep_report(folder)
    try:
        return show_analysis(analysis, report_folder=kept, **where)
    except Exception:
        shutil.rmtree(kept, ignore_errors=True)
        raise


def import_analysis_output(folder, scene=None, segmentation_node=None, input_volume_node=None) -> ResultNodes:
    """Import a ``spinetumor run`` output folder (see :func:`show_analysis`); its report files are kept."""
    return _show_with_report(read_analysis(folder), folder, scene=scene, segmentation_node=segmentation_node,
                             input_volume_node=input_volume_node)


def save_report(segmentation_node, destination) -> list[Path]:
    """Copy the analysis report (report.html/.json/.csv and pictures) into ``destination``.

    When the report's folder is gone (a scene saved and reopened), the report kept on the
    segmentation is written again, without the pictures. Returns the files written.
    """
    from spinetumor.report import write_reports

    report = stored_report(segmentation_node)
    if report is None:
        raise ValueError(f"{segmentation_node.GetName() if segmentation_node else 'the segmentation'}: "
                         "has no analysis report; run Analyze first")
    source = segmentation_node.GetAttribute(REPORT_FOLDER_ATTRIBUTE)
    if source and (Path(source) / REPORT_JSON).is_file():
        return _copy_files(_report_files(source), destination)
    return write_reports(report, Path(destination))


# --- the background jobs --------------------------------------------------------------------

def segment_options(clusters: int = 0, denoiser: str = "model", threshold: float = 0.0) -> dict:
    """The segmentation options that differ from the model's: 0 clusters, denoiser "model" and
    threshold 0 mean "as the model was trained" and are left out."""
    options = {}
    if clusters:
        options["clusters"] = int(clusters)
    if denoiser and denoiser != "model":
        options["denoiser"] = str(denoiser)
    if threshold:
        options["threshold"] = float(threshold)
    return options


def vertebrae_labels(segmentation_node, input_volume_node):
    """The vertebral-body segments (T11..L5) of a segmentation as a label map on the input's grid."""
    from spinetumor import mrml
    from spinetumor.labels import VERTEBRAE

    labels = mrml.segmentation_to_labels(segmentation_node, input_volume_node, skip_unknown=True)
    values = [lab.value for lab in VERTEBRAE]
    array = np.where(np.isin(labels.array, values), labels.array, 0).astype(np.uint8)
    if not array.any():
        raise ValueError(f"{segmentation_node.GetName()}: has no vertebral body segments (T11..L5); "
                         "run Vertebra Labeling first or leave the vertebrae empty")
    return labels.with_array(array)


def segment_arguments(input_path, out_dir, vertebrae_path=None, **options) -> list[str]:
    """Arguments of the ``spinetumor segment`` command (``options`` from :func:`segment_options`)."""
    arguments = ["segment", str(input_path), "--out", str(out_dir)]
    if vertebrae_path is not None:
        arguments += ["--vertebrae", str(vertebrae_path)]
    for key, value in options.items():
        arguments += [f"--{key}", str(value)]
    return arguments


def analyze_arguments(input_path, out_dir, device: str = "auto") -> list[str]:
    """Arguments of the ``spinetumor run`` command (the whole analysis)."""
    return ["run", str(input_path), "--out", str(out_dir), "--device", str(device)]


def _check_input(input_volume_node) -> None:
    if input_volume_node is None:
        raise ValueError("no input volume selected")


def prepare_segment_job(input_volume_node, vertebrae_node=None, output_node=None, clusters: int = 0,
                        denoiser: str = "model", threshold: float = 0.0):
    """Write the input (and the vertebrae, when given) into a fresh work folder; return it and the
    ``segment`` arguments. Refuses an output segmentation that is also the vertebrae input."""
    from spinetumor import mrml
    from spinetumor.slicer_support import new_work_folder

    _check_input(input_volume_node)
    if vertebrae_node is not None and vertebrae_node is output_node:
        raise ValueError("the output segmentation would overwrite the vertebrae; choose another output")
    vertebrae = vertebrae_labels(vertebrae_node, input_volume_node) if vertebrae_node is not None else None
    folder = new_work_folder("segment")
    input_path = mrml.write_volume_node(input_volume_node, folder / INPUT_FILE)
    vertebrae_path = None
    if vertebrae is not None:
        from spinetumor.io import write_volume

        vertebrae_path = write_volume(vertebrae, folder / VERTEBRAE_INPUT_FILE)
    return folder, segment_arguments(input_path, folder, vertebrae_path,
                                     **segment_options(clusters, denoiser, threshold))


def prepare_analyze_job(input_volume_node, device: str = "auto"):
    """Write the input into a fresh work folder; return it and the ``run`` arguments."""
    from spinetumor import mrml
    from spinetumor.slicer_support import new_work_folder

    _check_input(input_volume_node)
    folder = new_work_folder("analysis")
    return folder, analyze_arguments(mrml.write_volume_node(input_volume_node, folder / INPUT_FILE), folder, device)


def import_job_result(state, folder, kind: str, scene=None, segmentation_node=None, input_volume_node=None,
                      keep_folder: bool = False):
    """Finish a background run (``kind`` "segment" or "analyze"): import its outputs on success.

    Returns the :class:`ResultNodes` on success and None after Cancel; raises RuntimeError with
    the job's last error line when it failed, so the scene is only touched by a successful run.
    The work folder is removed afterwards unless ``keep_folder``.
    """
    from spinetumor.slicer_support import finish_job

    importer, what = {"segment": (import_segment_output, "tumor segmentation"),
                      "analyze": (import_analysis_output, "spine tumor analysis")}[kind]
    return finish_job(state, folder, lambda: importer(folder, scene=scene, segmentation_node=segmentation_node,
                                                      input_volume_node=input_volume_node), what, keep_folder)


# --- in-process runs (Python console, batch) ------------------------------------------------

def segment_volume_node(input_volume_node, segmentation_node=None, vertebrae_node=None, clusters: int = 0,
                        denoiser: str = "model", threshold: float = 0.0, progress=None, cancel=None,
                        segment_function=None) -> ResultNodes:
    """Segment tumor, canal and cord of a volume node in this process and show them (blocks).

    ``segment_function(volume, vertebrae=, progress=, cancel=, **options)`` defaults to
    :func:`spinetumor.segmentation.tumor.segment_tumor`. Nothing is added to the scene when
    it raises (e.g. on cancel).
    """
    from spinetumor import mrml

    _check_input(input_volume_node)
    if segment_function is None:
        from spinetumor.segmentation.tumor import segment_tumor as segment_function
    vertebrae = vertebrae_labels(vertebrae_node, input_volume_node) if vertebrae_node is not None else None
    result = segment_function(mrml.node_to_volume(input_volume_node), vertebrae=vertebrae, progress=progress,
                              cancel=cancel, **segment_options(clusters, denoiser, threshold))
    return show_segmentation(result.mask, result.canal, result.cord, result.probability,
                             scene=input_volume_node.GetScene(), segmentation_node=segmentation_node,
                             input_volume_node=input_volume_node)


def analyze_volume_node(input_volume_node, segmentation_node=None, device: str = "auto", progress=None, cancel=None,
                        analyze_function=None) -> ResultNodes:
    """Run the whole analysis of a volume node in this process and show it (blocks).

    ``analyze_function(volume, name, device=, progress=, cancel=)`` defaults to
    :func:`spinetumor.pipeline.analyze`. The report files are written (as ``spinetumor run``
    does) and kept for :func:`save_report`. Nothing is added to the scene when it raises.
    """
    from spinetumor import mrml
    from spinetumor.pipeline import write_analysis
    from spinetumor.slicer_support import new_work_folder

    _check_input(input_volume_node)
    if analyze_function is None:
        from spinetumor.pipeline import analyze as analyze_function
    analysis = analyze_function(mrml.node_to_volume(input_volume_node), input_volume_node.GetName(),
                                device=None if device == "auto" else device, progress=progress, cancel=cancel)
    work = new_work_folder("analysis")
    try:
        write_analysis(analysis, work)
        return _show_with_report(analysis, work, scene=input_volume_node.GetScene(),
                                 segmentation_node=segmentation_node, input_volume_node=input_volume_node)
    finally:
        shutil.rmtree(work, ignore_errors=True)
