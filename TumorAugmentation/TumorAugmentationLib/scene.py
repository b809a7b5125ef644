"""Scene work of the Tumor Augmentation module: sources, targets, preview and the background job.

* **Source**: a :class:`TumorSource` names where the tumor comes from: a segment of a
  segmentation over a scene volume (any segment name; its type chosen by the user), a
  saved source folder (:func:`write_source_folder`: ``image.nrrd``, ``tumor.nrrd``, optional
  ``canal.nrrd`` + ``cord.nrrd`` and ``source.json``), or a phantom seed. When the source's
  segmentation also holds canal or cord segments (label-table names), they give the sac and
  cord; otherwise the engine segments them.
* **Targets**: tumor-free volumes with vertebra labels: a segmentation on the volume's grid
  with T11..L5 segments (what Vertebra Labeling makes), found by :func:`labels_for`; canal
  and cord segments in it are used too.
* **Preview** (:func:`preview`): one position of the tumor glided along the first target,
  computed in this process and shown as a *new* volume with exactly the target's geometry
  plus a segmentation holding one segment named and colored for the tumor type. The source
  and target nodes are only read.
* **Run**: :func:`prepare_job` writes the scene's source and targets into a work folder in
  the layout ``spinetumor augment`` reads and returns the command's arguments;
  :func:`finish_run` reads the dataset summary when the job succeeded (the scene is never
  changed by a run, so Cancel leaves it as it was) and removes the work folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import FILLS, MODES, SOURCE_KINDS, TUMOR_TYPES

#: Files of a saved tumor source folder (and of the job's ``source`` subfolder).
SOURCE_FILES = {"image": "image.nrrd", "tumor": "tumor.nrrd", "canal": "canal.nrrd", "cord": "cord.nrrd"}
SOURCE_JSON = "source.json"
#: Subfolders of the job's work folder.
SOURCE_SUBFOLDER = "source"
TARGETS_SUBFOLDER = "targets"


@dataclass
class TumorSource:
    """Where the tumor comes from (see the module docstring); ``tumor_type`` is its compartment."""

    kind: str
    tumor_type: str
    volume_node: object = None
    segmentation_node: object = None
    segment_id: str = ""
    folder: Path | None = None
    phantom_seed: int = 0

    def check(self) -> None:
        """Raise ValueError naming what is missing or wrong."""
        if self.kind not in SOURCE_KINDS:
            raise ValueError(f"unknown source kind {self.kind!r}; use one of {', '.join(SOURCE_KINDS)}")
        if self.tumor_type not in TUMOR_TYPES:
            raise ValueError(f"unknown tumor type {self.tumor_type!r}; use one of {', '.join(TUMOR_TYPES)}")
        if self.kind == "segment":
            if self.volume_node is None or self.segmentation_node is None or not self.segment_id:
                raise ValueError("select the source volume and the tumor segment")
            if self.segmentation_node.GetSegmentation().GetSegment(self.segment_id) is None:
                raise ValueError(f"{self.segmentation_node.GetName()}: has no segment {self.segment_id!r}")
        elif self.kind == "folder" and (self.folder is None or not Path(self.folder).is_dir()):
            raise ValueError(f"the tumor source folder {self.folder} does not exist")

    @property
    def name(self) -> str:
        """A short name for node names and the manifest's ``source`` column."""
        if self.kind == "segment":
            segment = self.segmentation_node.GetSegmentation().GetSegment(self.segment_id)
            return _safe_name(f"{self.volume_node.GetName()}-{segment.GetName()}")
        if self.kind == "folder":
            return _safe_name(Path(self.folder).name)
        return f"phantom{int(self.phantom_seed)}-{self.tumor_type}"


@dataclass
class AugmentParameters:
    """The ``spinetumor augment`` options the GUI offers (see ``spinetumor augment --help``)."""

    per_slice: int = 20
    mode: str = "2d"
    rotations: int = 0
    fill: str = "default"
    seed: int = 0

    def check(self) -> None:
        if self.per_slice < 1:
            raise ValueError("samples per slice must be at least 1")
        if self.rotations < 0:
            raise ValueError("rotations must be 0 or more")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {self.fill!r}")

    @property
    def fill_method(self) -> str:
        """The engine's fill method ("default" resolved to the engine's default)."""
        from spinetumor.augmentation.inpaint import DEFAULT_FILL

        return DEFAULT_FILL if self.fill == "default" else self.fill

    def arguments(self) -> list[str]:
        """The options as command-line arguments."""
        self.check()
        arguments = ["--per-slice", str(self.per_slice), "--mode", self.mode, "--rotations", str(self.rotations),
                     "--seed", str(self.seed)]
        return arguments + ([] if self.fill == "default" else ["--fill", self.fill])


@dataclass
class PreviewNodes:
    """The nodes a preview adds (or refills)."""

    volume: object
    segmentation: object
    result: object                 # spinetumor.augmentation.glide.Insertion


# --- names --------------------------------------------------------------------------------

def _safe_name(name: str) -> str:
    """``name`` with every character but letters, digits, ``.``, ``_`` and ``-`` made ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "volume"


def _unique_names(names) -> list[str]:
    """Safe file names for ``names``, made distinct with ``_2``, ``_3``... suffixes."""
    taken, result = set(), []
    for name in names:
        base = candidate = _safe_name(name)
        index = 2
        while candidate in taken:
            candidate, index = f"{base}_{index}", index + 1
        taken.add(candidate)
        result.append(candidate)
    return result


def guess_tumor_type(segmentation_node, segment_id: str) -> str | None:
    """The tumor type a segment's ID or name spells (a label key or name), else None."""
    from spinetumor.labels import TUMOR_TYPES as TUMOR_LABELS

    if segmentation_node is None or not segment_id:
        return None
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    names = {segment_id.lower(), segment.GetName().lower()} if segment is not None else {segment_id.lower()}
    for lab in TUMOR_LABELS:
        if {lab.key.lower(), lab.name.lower()} & names:
            return lab.key
    return None


# --- label maps from segmentations --------------------------------------------------------

def _anatomy(segmentation_node, reference):
    """The label-table segments of a segmentation as a label map on ``reference``'s grid.

    Returns None when there is no segmentation or it holds neither canal nor cord, so the
    engine segments them itself.
    """
    from spinetumor import mrml
    from spinetumor.labels import value

    if segmentation_node is None:
        return None
    labels = mrml.segmentation_to_labels(segmentation_node, reference, skip_unknown=True)
    return labels if np.isin(labels.array, [value("canal"), value("cord")]).any() else None


def _sac_and_cord(anatomy) -> tuple:
    """(sac, cord) uint8 masks of an anatomy label map (for ``--source-canal/--source-cord``)."""
    from spinetumor.augmentation.compartments import compartments_from_anatomy

    comp = compartments_from_anatomy(anatomy.array)
    return anatomy.with_array(comp.sac.astype(np.uint8)), anatomy.with_array(comp.cord.astype(np.uint8))


def source_volumes(source: TumorSource):
    """(image, tumor mask, anatomy or None) Volumes of a scene source, all on the image's grid."""
    from spinetumor import mrml

    source.check()
    if source.kind != "segment":
        raise ValueError("only a scene source (a segment) has scene volumes")
    image = mrml.node_to_volume(source.volume_node)
    mask = mrml.segment_to_mask(source.segmentation_node, source.segment_id, source.volume_node)
    if not mask.array.any():
        raise ValueError(f"the tumor segment {source.segment_id!r} is empty on {source.volume_node.GetName()}'s grid")
    return image, mask, _anatomy(source.segmentation_node, source.volume_node)


def write_source_folder(source: TumorSource, folder) -> Path:
    """Save a scene source as a folder (image, tumor mask, sac/cord when known, ``source.json``).

    The folder is both a saved tumor source the module can load later and the ``source``
    part of the background job's work folder.
    """
    from spinetumor.io import write_json, write_volume

    image, mask, anatomy = source_volumes(source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_volume(image, folder / SOURCE_FILES["image"])
    write_volume(mask, folder / SOURCE_FILES["tumor"])
    if anatomy is not None:
        sac, cord = _sac_and_cord(anatomy)
        write_volume(sac, folder / SOURCE_FILES["canal"])
        write_volume(cord, folder / SOURCE_FILES["cord"])
    write_json({"tumor_type": source.tumor_type, "name": source.name}, folder / SOURCE_JSON)
    return folder


def read_source_folder(folder) -> dict:
    """The files of a saved source folder: ``{"image", "tumor", "canal", "cord"}`` paths (None when
    absent) plus ``tumor_type`` and ``name`` from ``source.json``; InputError when incomplete."""
    from spinetumor.io import InputError

    folder = Path(folder)
    info = {key: folder / name for key, name in SOURCE_FILES.items()}
    for key in ("image", "tumor"):
        if not info[key].is_file():
            raise InputError(f"{folder}: not a tumor source folder ({SOURCE_FILES[key]} is missing)")
    for key in ("canal", "cord"):
        info[key] = info[key] if info[key].is_file() else None
    meta = json.loads((folder / SOURCE_JSON).read_text(encoding="utf-8")) if (folder / SOURCE_JSON).is_file() else {}
    info["tumor_type"] = meta.get("tumor_type")
    info["name"] = meta.get("name", folder.name)
    return info


def source_patch(source: TumorSource, fill: str = "default"):
    """The engine's ``TumorPatch`` of a source (cut out, hole filled) for the preview."""
    from spinetumor.augmentation.dataset import source_from_files, source_from_phantom
    from spinetumor.augmentation.extract import extract_tumor

    source.check()
    fill = AugmentParameters(fill=fill).fill_method
    if source.kind == "phantom":
        return source_from_phantom(int(source.phantom_seed), source.tumor_type, fill)
    if source.kind == "folder":
        files = read_source_folder(source.folder)
        return source_from_files(files["image"], files["tumor"], source.tumor_type, files["canal"], files["cord"],
                                 fill)
    image, mask, anatomy = source_volumes(source)
    return extract_tumor(image, mask, source.tumor_type, anatomy, fill=fill, source=source.name).patch


def source_arguments(source: TumorSource, work_folder) -> list[str]:
    """The ``augment`` source options; a scene source is first written to ``work_folder/source``."""
    source.check()
    if source.kind == "phantom":
        return ["--phantom-source", str(int(source.phantom_seed)), "--source-type", source.tumor_type]
    if source.kind == "folder":
        folder = source.folder
    else:
        folder = write_source_folder(source, Path(work_folder) / SOURCE_SUBFOLDER)
    files = read_source_folder(folder)
    arguments = ["--source-image", str(files["image"]), "--source-tumor", str(files["tumor"]),
                 "--source-type", source.tumor_type]
    if files["canal"] is not None:
        arguments += ["--source-canal", str(files["canal"])]
        if files["cord"] is not None:
            arguments += ["--source-cord", str(files["cord"])]
    return arguments


# --- targets --------------------------------------------------------------------------------

def _has_vertebrae(segmentation_node) -> bool:
    """True when a segmentation holds at least one vertebral body segment (T11..L5, by ID or name)."""
    from spinetumor.labels import VERTEBRAE

    names = {lab.key for lab in VERTEBRAE} | {lab.name for lab in VERTEBRAE}
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        if {segmentation.GetNthSegmentID(index), segmentation.GetNthSegment(index).GetName()} & names:
            return True
    return False


def _on_grid(segmentation_node, volume_node, tol: float = 1e-3) -> bool:
    """True when the segmentation's reference geometry is the volume's voxel grid."""
    import slicer
    import vtk

    geometry = segmentation_node.GetSegmentation().GetConversionParameter(
        slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName())
    image = volume_node.GetImageData()
    if not geometry or image is None:
        return False
    reference = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, reference, False)
    if tuple(reference.GetExtent()) != tuple(image.GetExtent()):
        return False
    a, b = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    reference.GetImageToWorldMatrix(a)
    volume_node.GetIJKToRASMatrix(b)
    return all(abs(a.GetElement(r, c) - b.GetElement(r, c)) <= tol for r in range(4) for c in range(4))


def labels_for(volume_node):
    """The segmentation with vertebra segments that belongs to ``volume_node``, or None.

    Preferred: one whose reference geometry node is the volume; else one whose reference
    geometry is the volume's grid (Vertebra Labeling's output), the most recent first.
    """
    import slicer

    nodes = volume_node.GetScene().GetNodesByClass("vtkMRMLSegmentationNode")
    candidates = [n for n in (nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())) if _has_vertebrae(n)]
    role = slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()
    for node in reversed(candidates):
        if node.GetNodeReference(role) is volume_node:
            return node
    for node in reversed(candidates):
        if _on_grid(node, volume_node):
            return node
    return None


def target_volumes(volume_node, labels_node=None):
    """(image, vertebrae, anatomy or None) Volumes of a target volume node, on its grid.

    ``labels_node`` defaults to :func:`labels_for`; ValueError when the volume has none.
    """
    from spinetumor import mrml
    from spinetumor.labels import VERTEBRAE

    labels_node = labels_node or labels_for(volume_node)
    if labels_node is None:
        raise ValueError(f"{volume_node.GetName()}: no segmentation with vertebra labels (T11..L5) on its grid; "
                         "run Vertebra Labeling on it first")
    image = mrml.node_to_volume(volume_node)
    labels = mrml.segmentation_to_labels(labels_node, volume_node, skip_unknown=True)
    vertebrae = np.where(np.isin(labels.array, [lab.value for lab in VERTEBRAE]), labels.array, 0).astype(np.uint8)
    if not vertebrae.any():
        raise ValueError(f"{volume_node.GetName()}: its labels {labels_node.GetName()} hold no vertebral body voxels")
    return image, labels.with_array(vertebrae), _anatomy(labels_node, volume_node)


def write_targets(volume_nodes, folder) -> Path:
    """Write target volume nodes as ``folder/targets/<name>/{image,vertebrae[,anatomy]}.nii.gz``.

    That is the layout of a ``spinetumor phantom`` folder, which ``spinetumor augment --targets``
    reads; every target is checked (vertebra labels present) before anything is written.
    """
    from spinetumor.io import write_volume

    if not volume_nodes:
        raise ValueError("check at least one target volume")
    loaded = [target_volumes(node) for node in volume_nodes]
    root = Path(folder) / TARGETS_SUBFOLDER
    for name, (image, vertebrae, anatomy) in zip(_unique_names(n.GetName() for n in volume_nodes), loaded):
        write_volume(image, root / name / "image.nii.gz")
        write_volume(vertebrae, root / name / "vertebrae.nii.gz")
        if anatomy is not None:
            write_volume(anatomy, root / name / "anatomy.nii.gz")
    return root


# --- preview ------------------------------------------------------------------------------

def preview_sample(patch, image, vertebrae, anatomy=None, parameters: AugmentParameters | None = None,
                   name: str = "target"):
    """The engine's :func:`spinetumor.augmentation.glide.insert_once` with the module's parameters."""
    from spinetumor.augmentation.glide import insert_once

    parameters = parameters or AugmentParameters()
    parameters.check()
    return insert_once(patch, image, vertebrae, anatomy, per_slice=parameters.per_slice, mode=parameters.mode,
                       seed=parameters.seed, name=name)


def show_preview(result, tumor_type: str, name: str, scene=None, volume_node=None,
                 segmentation_node=None, beside=None) -> tuple:
    """Show a preview as a volume node and a segmentation with one tumor-type segment.

    ``volume_node``/``segmentation_node`` (an earlier preview) are refilled when given, so
    previews do not pile up; new nodes are placed beside ``beside`` in the subject hierarchy.
    """
    from spinetumor import mrml
    from spinetumor.labels import by_key

    lab = by_key(tumor_type)
    if scene is None and beside is not None:
        scene = beside.GetScene()
    volume_node = mrml.volume_to_node(result.image, volume_node.GetName() if volume_node is not None
                                      else mrml.unique_name(scene, name), scene=scene, node=volume_node)
    labels = result.mask.with_array((result.mask.array > 0).astype(np.uint8) * np.uint8(lab.value))
    seg_name = (segmentation_node.GetName() if segmentation_node is not None
                else mrml.unique_name(scene, f"{name} tumor"))
    segmentation_node = mrml.labels_to_segmentation(labels, seg_name, scene=scene, node=segmentation_node,
                                                    labels=[lab], surfaces=False)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    for node in (volume_node, segmentation_node):
        mrml.place_beside(node, beside)
    return volume_node, segmentation_node


def preview(source: TumorSource, target_volume_node, parameters: AugmentParameters | None = None,
            volume_node=None, segmentation_node=None, target_labels_node=None) -> PreviewNodes:
    """Insert the source tumor once into a target volume node and show it (source and target untouched)."""
    parameters = parameters or AugmentParameters()
    if target_volume_node is None:
        raise ValueError("select a target volume to preview on")
    image, vertebrae, anatomy = target_volumes(target_volume_node, target_labels_node)
    patch = source_patch(source, parameters.fill)
    result = preview_sample(patch, image, vertebrae, anatomy, parameters, target_volume_node.GetName())
    name = f"{target_volume_node.GetName()} {source.tumor_type} preview"
    volume, segmentation = show_preview(result, source.tumor_type, name, scene=target_volume_node.GetScene(),
                                        volume_node=volume_node, segmentation_node=segmentation_node,
                                        beside=target_volume_node)
    return PreviewNodes(volume, segmentation, result)


# --- the background job ---------------------------------------------------------------------

def augment_arguments(source_args: list[str], targets: list, out_dir, parameters: AugmentParameters) -> list[str]:
    """Arguments of the ``spinetumor augment`` command the widget runs in the background."""
    if not targets:
        raise ValueError("no targets: check target volumes or choose a target folder")
    if not str(out_dir) or str(out_dir) == ".":
        raise ValueError("choose an output folder for the dataset")
    return ["augment", *source_args, "--targets", *map(str, targets), "--out", str(out_dir), *parameters.arguments()]


def prepare_job(source: TumorSource, out_dir, parameters: AugmentParameters, target_nodes=(), target_folder=None,
                work_folder=None) -> tuple[Path, list[str]]:
    """Write what the job reads from the scene into a fresh work folder; return it and the arguments.

    Targets are the checked ``target_nodes`` (written with their labels) or ``target_folder``
    (read by the command itself). Nothing in the scene changes.
    """
    import shutil

    from spinetumor.slicer_support import new_work_folder

    parameters.check()
    source.check()
    folder = Path(work_folder) if work_folder is not None else new_work_folder("augment")
    try:
        targets = [target_folder] if target_folder else [write_targets(list(target_nodes), folder)]
        arguments = augment_arguments(source_arguments(source, folder), targets, out_dir, parameters)
    except Exception:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, arguments


def finish_run(state, work_folder, out_dir, keep_folder: bool = False):
    """The dataset summary (``dataset.json``) when the job succeeded, None after Cancel; raise on error.

    The work folder is removed in every case unless ``keep_folder``; the scene is not touched.
    """
    from spinetumor.slicer_support import finish_job

    def summary():
        return json.loads((Path(out_dir) / "dataset.json").read_text(encoding="utf-8"))

    return finish_job(state, work_folder, summary, "tumor augmentation", keep_folder)


def summary_text(summary: dict) -> str:
    """One line: samples written, dropped and why."""
    return (f"{summary['samples']} samples ({summary['written']} written, "
            f"{summary['skipped_existing']} already there); "
            f"dropped: {summary['dropped_compartment']} outside the compartment, {summary['dropped_clipped']} clipped")
