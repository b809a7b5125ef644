"""The whole analysis of one study: labeling, canal and cord, tumor segmentation, localization,
classification, and the report (``spinetumor run``).

:func:`analyze` does the work in memory and returns an :class:`Analysis`; :func:`write_analysis`
writes every mask in the input's geometry, the Slicer segmentation and the reports;
:func:`run_study` does both for one file or DICOM folder; :func:`find_studies` and
:func:`run_batch` handle a folder of studies.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io as _io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from . import labels as label_table
from .io import IMAGE_SUFFIXES, InputError, read_volume, write_segmentation, write_text, write_volume
from .progress import check_cancel, report, sub_progress
from .volume import Volume

#: Fraction of the progress bar each stage takes (measured share of the run time, roughly).
STAGES = (("labeling", 0.0, 0.45), ("canal_cord", 0.45, 0.5), ("segmentation", 0.5, 0.85),
          ("localization", 0.85, 0.88), ("classification", 0.88, 0.95))


@dataclass
class Analysis:
    """Everything one run found, on the input's grid, plus the report dictionary."""

    image: Volume
    vertebrae: Volume
    canal: Volume
    cord: Volume
    tumor_instances: Volume
    tumor_probability: Volume
    report: dict = field(default_factory=dict)


def _model_info(manifest: dict) -> dict:
    """Name, version/date and sha256 of a model, from its manifest."""
    return {"name": manifest.get("name", ""), "version": str(manifest.get("version", manifest.get("date", ""))),
            "sha256": manifest.get("sha256", "")}


def input_info(volume: Volume, name: str) -> dict:
    from .info import orientation_code

    return {"name": Path(name).name, "path": str(name), "size": " x ".join(map(str, volume.shape[::-1])),
            "spacing": " x ".join(f"{s:.3g}" for s in volume.spacing), "orientation": orientation_code(volume)}


def tumor_entry(location, type_name: str, probabilities: dict) -> dict:
    """One entry of report["tumors"] (schema in docs/report.md)."""
    from .localization import cautions

    return {
        "id": location.id, "type": type_name, "type_probabilities": probabilities,
        "rule_type": location.compartment, "types_agree": location.compartment in (None, type_name),
        "levels": list(location.levels), "disc_levels": list(location.discs),
        "epicenter_level": location.epicenter_level, "volume_ml": location.volume_ml,
        "extent_mm": location.extent_mm, "centroid_ras": location.centroid_ras,
        "canal_compromise_percent": location.canal_compromise_percent or 0.0,
        "cautions": cautions(location, type_name),
    }


def analyze(volume: Volume, name: str = "input", *, device=None, progress=None, cancel=None,
            labeling_model=None, tumor_model=None, type_model=None) -> Analysis:
    """Run every stage on ``volume``; models default to the shipped ones."""
    from .classification.infer import classify_tumor
    from .classification.model import load_model as load_type_model
    from .device import select_device
    from .labeling.infer import label_vertebrae
    from .localization import localize_tumors, tumor_instances
    from .segmentation.canal import segment_canal_and_cord
    from .segmentation.tumor import TumorModel, load_tumor_model, segment_tumor

    timings = {}
    stage = dict((s, sub_progress(progress, a, b)) for s, a, b in STAGES)
    torch_device = select_device(device)

    start = time.perf_counter()
    labeling = label_vertebrae(volume, device=torch_device, progress=stage["labeling"], cancel=cancel,
                               model=labeling_model)
    timings["labeling"] = time.perf_counter() - start

    start = time.perf_counter()
    check_cancel(cancel)
    report(progress, STAGES[1][1], "canal and cord")
    canal_cord = segment_canal_and_cord(volume, vertebrae=labeling.labels, cancel=cancel)
    timings["canal_cord"] = time.perf_counter() - start

    start = time.perf_counter()
    forest = tumor_model if isinstance(tumor_model, TumorModel) else load_tumor_model(tumor_model, torch_device)
    tumor = segment_tumor(volume, vertebrae=labeling.labels, canal=canal_cord.canal, cord=canal_cord.cord,
                          model=forest, progress=stage["segmentation"], cancel=cancel)
    timings["segmentation"] = time.perf_counter() - start

    start = time.perf_counter()
    report(progress, STAGES[3][1], "localization")
    instances = tumor_instances(tumor.mask, instances=False).astype(np.uint16)
    locations = localize_tumors(volume.with_array(instances), labeling.labels, canal_cord.canal, canal_cord.cord,
                                instances=True)
    timings["localization"] = time.perf_counter() - start

    start = time.perf_counter()
    report(progress, STAGES[4][1], "classification")
    type_model = type_model or (load_type_model(device=torch_device) if locations else None)
    tumors = []
    for location in locations:
        check_cancel(cancel)
        mask = volume.with_array((instances == location.id).astype(np.uint8))
        type_name, probabilities = classify_tumor(volume, mask, canal_cord.canal, canal_cord.cord, model=type_model)
        tumors.append(tumor_entry(location, type_name, probabilities))
    timings["classification"] = time.perf_counter() - start

    notes = labeling.notes()
    models = {"vertebra_labeling": _model_info(labeling.model), "tumor_segmentation": _model_info(forest.manifest)}
    if forest.uses_net:
        models["tumor_network"] = _model_info(forest.net.manifest)
    if locations:                                   # the type model is used (and named) only when there are tumors
        models["tumor_type"] = _model_info(type_model.manifest)
    result = {
        "schema": "spinetumor-report/1",
        "spinetumor_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "input": input_info(volume, name),
        "tumors": tumors,
        "vertebrae": [{"level": lv.name, "present": lv.present, "volume_ml": lv.volume_ml,
                       "centroid_ras": list(lv.centroid_ras) if lv.centroid_ras is not None else None,
                       "confidence": lv.confidence} for lv in labeling.levels.values()],
        "sacrum_in_view": labeling.sacrum_in_view(),
        "partial_levels": labeling.partial_levels(),
        "models": models,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "notes": notes,
    }
    return Analysis(volume, labeling.labels, canal_cord.canal, canal_cord.cord, volume.with_array(instances),
                    tumor.probability, result)


def combined_labels(analysis: Analysis) -> Volume:
    """One label map of every structure for the Slicer segmentation: tumors (by type) over cord over
    canal over vertebral bodies."""
    out = np.asarray(analysis.vertebrae.array).astype(np.uint8).copy()
    out[np.asarray(analysis.canal.array) > 0] = label_table.value("canal")
    out[np.asarray(analysis.cord.array) > 0] = label_table.value("cord")
    instances = np.asarray(analysis.tumor_instances.array)
    for tumor in analysis.report["tumors"]:
        out[instances == tumor["id"]] = label_table.value(tumor["type"])
    return analysis.image.with_array(out)


def _figures(analysis: Analysis, out_dir: Path) -> list[tuple[str, Path]]:
    """Sagittal overlays (overview and one per tumor at its centroid slice) and a 3D rendering."""
    from .figures import sagittal_overview
    from .render3d import RenderError, render_labels
    from .volume import to_canonical

    combined = combined_labels(analysis)
    figures = [("Sagittal overview", sagittal_overview(analysis.image, combined, out_dir / "overview.png",
                                                       title=analysis.report["input"]["name"]))]
    canon_instances = to_canonical(analysis.tumor_instances)[0].array
    for tumor in analysis.report["tumors"]:
        slice_index = int(np.argmax((canon_instances == tumor["id"]).sum(axis=(1, 2))))
        path = sagittal_overview(analysis.image, combined, out_dir / f"tumor{tumor['id']}.png",
                                 title=f"tumor {tumor['id']}: {tumor['type']}", slice_index=slice_index)
        figures.append((f"Tumor {tumor['id']} ({tumor['type']}) at its largest sagittal slice", path))
    try:
        opacity = {label_table.value("canal"): 0.3, label_table.value("cord"): 0.6}
        path = render_labels(combined, out_dir / "render3d.png", opacity=opacity,
                             title=analysis.report["input"]["name"])
        figures.append(("3D view from the left: vertebral bodies, canal (translucent), cord and tumors", path))
    except RenderError as error:
        analysis.report["notes"].append(f"No 3D rendering: {error}.")
    return figures


def write_analysis(analysis: Analysis, out_dir) -> list[Path]:
    """Write masks (input geometry), segmentation.seg.nrrd, pictures and the three reports."""
    from .report import write_reports

    out_dir = Path(out_dir)
    start = time.perf_counter()
    written = [
        write_volume(analysis.vertebrae, out_dir / "vertebrae.nii.gz"),
        write_volume(analysis.tumor_instances, out_dir / "tumor.nii.gz"),
        write_volume(analysis.tumor_probability, out_dir / "tumor_probability.nii.gz"),
        write_volume(analysis.canal, out_dir / "canal.nii.gz"),
        write_volume(analysis.cord, out_dir / "cord.nii.gz"),
        write_segmentation(combined_labels(analysis), out_dir / "segmentation.seg.nrrd"),
    ]
    figures = _figures(analysis, out_dir)
    written += [path for _, path in figures]
    analysis.report["timings_s"]["writing"] = round(time.perf_counter() - start, 3)
    written += write_reports(analysis.report, out_dir, figures)
    return written


def load_models(device=None) -> dict:
    """The shipped models, each loaded once and checked against its sha256, as the keyword
    arguments of :func:`analyze` (a batch loads them once for all its studies)."""
    from .classification.model import load_model as load_type_model
    from .device import select_device
    from .labeling.model import load_model as load_labeling_model
    from .segmentation.tumor import load_tumor_model

    torch_device = select_device(device)
    return {"labeling_model": load_labeling_model(device=torch_device),
            "tumor_model": load_tumor_model(None, torch_device),
            "type_model": load_type_model(device=torch_device)}


def run_study(path, out_dir, *, device=None, progress=None, cancel=None, notes=(), models=None) -> Analysis:
    """Read one study (file or DICOM folder), analyze it and write everything into ``out_dir``.

    ``models``: :func:`load_models`'s dictionary, or None to load the shipped models here.
    """
    start = time.perf_counter()
    volume = read_volume(path)
    read_seconds = time.perf_counter() - start
    analysis = analyze(volume, str(path), device=device, progress=progress, cancel=cancel, **(models or {}))
    analysis.report["timings_s"] = {"reading": round(read_seconds, 3), **analysis.report["timings_s"]}
    analysis.report["notes"].extend(notes)
    write_analysis(analysis, out_dir)
    report(progress, 1.0, "done")
    return analysis


def _is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and any(name.endswith(s) for s in IMAGE_SUFFIXES)


def holds_dicom(folder: Path) -> bool:
    """True when ``folder`` itself holds DICOM files (checked by the 'DICM' preamble)."""
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                head = handle.read(132)
            if head[128:132] == b"DICM":
                return True
    return False


def find_studies(folder) -> list[Path]:
    """The studies of a batch folder: its image files and its sub-folders holding a DICOM series."""
    folder = Path(folder)
    studies = sorted(p for p in folder.iterdir() if _is_image_file(p))
    studies += sorted(p for p in folder.iterdir() if p.is_dir() and holds_dicom(p))
    return studies


def study_name(path: Path) -> str:
    """Output folder name of a study: the file name without image suffixes, or the folder name."""
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


SUMMARY_COLUMNS = ("study", "status", "id", "type", "levels", "epicenter_level", "volume_ml",
                   "canal_compromise_percent", "cautions", "sacrum_in_view", "partial_levels")


def run_batch(folder, out_dir, *, device=None, progress=None, cancel=None) -> Path:
    """Analyze every study of ``folder`` into ``out_dir/<study>/``; write ``out_dir/summary.csv``.

    A study that fails (unreadable, say) gets a row with its one-line error and the batch goes on.
    """
    studies = find_studies(folder)
    if not studies:
        raise InputError(f"{folder}: no image files or DICOM series found")
    models = load_models(device)
    rows = []
    for index, path in enumerate(studies):
        check_cancel(cancel)
        name = study_name(path)
        part = sub_progress(progress, index / len(studies), (index + 1) / len(studies))
        try:
            analysis = run_study(path, Path(out_dir) / name, device=device, progress=part, cancel=cancel,
                                 models=models)
        except InputError as error:
            rows.append({"study": name, "status": f"error: {error}"})
            continue
        tumors = analysis.report["tumors"]
        study = {"study": name, "status": "ok", "sacrum_in_view": "yes" if analysis.report["sacrum_in_view"] else "no",
                 "partial_levels": " ".join(analysis.report["partial_levels"])}
        rows += [{**study, "id": t["id"], "type": t["type"], "levels": " ".join(t["levels"]),
                  "epicenter_level": t["epicenter_level"] or "", "volume_ml": round(t["volume_ml"], 3),
                  "canal_compromise_percent": round(t["canal_compromise_percent"], 1),
                  "cautions": "; ".join(t["cautions"])} for t in tumors] or [study]
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(buffer.getvalue(), Path(out_dir) / "summary.csv")
