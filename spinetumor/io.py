"""Reading and writing volumes with their geometry: DICOM series, NIfTI, NRRD, MHA, Slicer .seg.nrrd.

Every reader returns a :class:`~spinetumor.volume.Volume`; every writer is atomic
(a temporary file beside the target, then a rename), so a crash never leaves a
half-written output, and inputs are never modified. Unusable input raises
:class:`InputError` with a one-line message that the command line prints as is.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from . import labels as label_table
from .volume import Volume, from_sitk, to_sitk

log = logging.getLogger(__name__)

#: File endings the readers accept (DICOM comes as a folder).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class InputError(ValueError):
    """An input the engine cannot use; the message is one line meant for the user."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (".seg.nrrd", ".nii.gz"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


def read_volume(path, *, validate: bool = True) -> Volume:
    """Read a 3D scalar image from a file (NIfTI, NRRD, MHA) or a DICOM series folder.

    With ``validate`` the volume must be 3D, non-empty and contain finite values.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    try:
        image = _read_dicom_series(path) if path.is_dir() else sitk.ReadImage(str(path))
    except InputError:
        raise
    except RuntimeError as error:
        raise InputError(f"{path}: not a readable image ({_itk_reason(error)})") from None
    image = _squeeze_to_3d(image, path)
    volume = from_sitk(image)
    if validate:
        validate_volume(volume, str(path))
    if volume.array.dtype.kind == "f" and not np.isfinite(volume.array).all():
        log.warning("%s: %d NaN or infinite voxels read as 0", path, int((~np.isfinite(volume.array)).sum()))
        volume = volume.with_array(np.nan_to_num(volume.array, nan=0.0, posinf=0.0, neginf=0.0))
    return volume


def _itk_reason(error: Exception) -> str:
    """The one line of an ITK exception that says what went wrong, without source paths."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "ERROR:" in line:
            return line.split("ERROR:", 1)[1].strip()[:200]
    return (lines[-1][:200] if lines else "unknown format")


def _read_dicom_series(folder: Path):
    """Read the largest DICOM series of a folder (searched recursively)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    best_files: list[str] = []
    folders = [folder] + [p for p in sorted(folder.rglob("*")) if p.is_dir()]
    warnings_shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)   # GDCM warns on every folder without DICOM
    try:
        for sub in folders:
            for series_id in reader.GetGDCMSeriesIDs(str(sub)) or ():
                files = list(reader.GetGDCMSeriesFileNames(str(sub), series_id))
                if len(files) > len(best_files):
                    best_files = files
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warnings_shown)
    if not best_files:
        raise InputError(f"{folder}: no DICOM series found in this folder")
    if len(best_files) < 2:
        raise InputError(f"{folder}: the DICOM series has a single slice; a 3D volume needs several")
    reader.SetFileNames(best_files)
    return reader.Execute()


def _squeeze_to_3d(image, path: Path):
    """Accept 3D scalar images and 4D ones with a single time point; refuse the rest."""
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "a scalar MRI volume is needed")
    dim = image.GetDimension()
    if dim == 4 and image.GetSize()[3] == 1:
        return sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0])
    if dim != 3:
        raise InputError(f"{path}: is a {dim}D image; a 3D volume is needed")
    return image


def validate_volume(volume: Volume, name: str = "input") -> None:
    """Raise InputError when a volume cannot be analysed (too small, constant, or without finite values).

    Some non-finite voxels are tolerated (``read_volume`` reads them as 0): resampled
    NIfTI files often carry NaN outside the scanned field of view.
    """
    shape = volume.shape
    if min(shape) < 1 or sum(s > 1 for s in shape) < 3:
        raise InputError(f"{name}: is {'x'.join(map(str, shape[::-1]))} voxels; a 3D volume with "
                         "at least 2 voxels along each axis is needed")
    array = volume.array
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.any():
            raise InputError(f"{name}: contains no finite values (all NaN or infinite)")
        array = np.where(finite, array, 0)
    if array.max() == array.min():
        raise InputError(f"{name}: is empty (every voxel is {array.flat[0]})")


def _umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The file gets the permissions any new file of the user gets (0666 less the umask), not
    mkstemp's private 0600: results on a shared server stay readable by the group.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + _suffix(path), dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_volume(volume: Volume, path) -> Path:
    """Write a volume (NIfTI, NRRD or MHA by the file ending), atomically, compressed."""
    import SimpleITK as sitk

    path = Path(path)
    if _suffix(path) not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unknown image file ending; use one of {', '.join(IMAGE_SUFFIXES)}")
    with atomic_path(path) as tmp:
        sitk.WriteImage(to_sitk(volume), str(tmp), True)
    return path


def _json_safe(value):
    """Standard JSON: numpy scalars and arrays become Python values, NaN and infinity become null."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data, path) -> Path:
    """Write standard JSON (indented, UTF-8; NaN and infinity as null) atomically."""
    text = json.dumps(_json_safe(data), indent=2, ensure_ascii=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return Path(path)


def write_text(text: str, path) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# --- Slicer segmentation files -------------------------------------------------------------

def _extent(mask: np.ndarray) -> str:
    """Slicer's segment extent 'imin imax jmin jmax kmin kmax' of a [k, j, i] mask."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    bounds = []
    for axis in (2, 1, 0):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.nonzero(mask.any(axis=other))[0]
        bounds += [int(idx[0]), int(idx[-1])]
    return " ".join(map(str, bounds))


def write_segmentation(label_map: Volume, path, segment_labels=None) -> Path:
    """Write a label map as a Slicer ``.seg.nrrd`` with one named, colored, coded segment per label.

    ``segment_labels`` lists the :class:`~spinetumor.labels.Label` entries to write; by default
    every table label whose value occurs in the map. All segments share one layer (the
    label map itself), as Slicer does for non-overlapping segments.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise InputError(f"{path}: a Slicer segmentation file must end in .seg.nrrd")
    array = np.asarray(label_map.array)
    present = set(np.unique(array).tolist()) - {0}
    if segment_labels is None:
        unknown = sorted(v for v in present if v not in {lab.value for lab in label_table.LABELS})
        if unknown:
            raise ValueError(f"label values {unknown} are not in the label table")
        segment_labels = [lab for lab in label_table.LABELS if lab.value in present]
    image = to_sitk(label_map.with_array(array.astype(np.uint8 if array.max() < 256 else np.uint16)))
    image.SetMetaData("Segmentation_MasterRepresentation", "Binary labelmap")
    image.SetMetaData("Segmentation_ContainedRepresentationNames", "Binary labelmap|Closed surface|")
    image.SetMetaData("Segmentation_ReferenceImageExtentOffset", "0 0 0")
    for index, lab in enumerate(segment_labels):
        prefix = f"Segment{index}_"
        image.SetMetaData(prefix + "ID", lab.key)
        image.SetMetaData(prefix + "Name", lab.name)
        image.SetMetaData(prefix + "NameAutoGenerated", "0")
        image.SetMetaData(prefix + "Color", " ".join(str(c) for c in lab.color_float))
        image.SetMetaData(prefix + "ColorAutoGenerated", "0")
        image.SetMetaData(prefix + "LabelValue", str(lab.value))
        image.SetMetaData(prefix + "Layer", "0")
        image.SetMetaData(prefix + "Extent", _extent(array == lab.value))
        image.SetMetaData(prefix + "Tags", "Segmentation.Status:completed|TerminologyEntry:"
                          + label_table.terminology_entry(lab) + "|")
    with atomic_path(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)
    return path


def read_segmentation(path) -> tuple[Volume, list[dict]]:
    """Read a single-layer ``.seg.nrrd``: the label map and, per segment, id, name, color, value, tags.

    Multi-layer files (overlapping segments) are merged in segment order, later segments on top.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    image = sitk.ReadImage(str(path))
    keys = set(image.GetMetaDataKeys())
    segments = []
    index = 0
    while f"Segment{index}_ID" in keys:
        p = f"Segment{index}_"
        get = lambda k, default="": image.GetMetaData(p + k) if p + k in keys else default  # noqa: E731
        segments.append({
            "id": get("ID"),
            "name": get("Name"),
            "color": tuple(float(c) for c in get("Color", "0.5 0.5 0.5").split()),
            "label_value": int(get("LabelValue", str(index + 1))),
            "layer": int(get("Layer", "0")),
            "tags": get("Tags"),
        })
        index += 1
    if image.GetNumberOfComponentsPerPixel() > 1:
        layers = sitk.GetArrayFromImage(image)  # [k, j, i, layer]
        merged = np.zeros(layers.shape[:3], dtype=np.uint16)
        for seg in segments:
            merged[layers[..., seg["layer"]] == seg["label_value"]] = seg["label_value"]
        reference = sitk.VectorIndexSelectionCast(image, 0)
        return from_sitk(reference).with_array(merged), segments
    return from_sitk(image), segments
