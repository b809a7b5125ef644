"""The bridge between engine data and Slicer MRML nodes: the one place that converts between them.

Everything the Slicer module shows goes through here: volumes and label maps
(:func:`volume_to_node`, :func:`node_to_volume`), segmentations with standard
names, colors and terminology (:func:`labels_to_segmentation`,
:func:`segmentation_to_labels`), result tables (:func:`records_to_table`) and
labeled points such as level names at vertebra centroids
(:func:`points_to_markups`, :func:`markups_to_points`).

Geometry crosses the border only as Slicer's IJKToRAS matrix, built by
:meth:`Volume.ijk_to_ras <spinetumor.volume.Volume.ijk_to_ras>` and read back
by :func:`~spinetumor.volume.volume_from_ras`, so the LPS/RAS flip lives in
exactly one place. Arrays are always copied: a node never shares memory with an
engine array, so later edits on either side cannot leak into the other.

``slicer`` and ``vtk`` are imported inside the functions; the module itself
imports nothing heavy, so the engine stays usable without Slicer. Every
function takes an optional ``scene`` (default ``slicer.mrmlScene``) and an
optional ``node`` to fill in place of creating a new one, so a module can
update its output nodes on each run instead of piling up copies.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import labels as label_table
from .volume import Volume, volume_from_ras

#: Name of Slicer's binary labelmap representation (vtkSegmentationConverter).
BINARY_LABELMAP = "Binary labelmap"


# --- helpers -----------------------------------------------------------------------------

def _scene(scene):
    """The scene to add nodes to: the given one, else ``slicer.mrmlScene``."""
    if scene is not None:
        return scene
    import slicer

    scene = getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise ValueError("no MRML scene: pass scene= or set slicer.mrmlScene")
    return scene


def _node(scene, node, class_name: str, name: str):
    """Reuse ``node`` (renamed to ``name``) or add a new node of ``class_name`` to the scene."""
    if node is None:
        return _scene(scene).AddNewNodeByClass(class_name, name)
    if not node.IsA(class_name):
        raise TypeError(f"{node.GetClassName()} given where a {class_name} is needed")
    node.SetName(name)
    return node


def _vtk_matrix(array: np.ndarray):
    """A vtkMatrix4x4 holding a 4x4 numpy array."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _numpy_matrix(matrix) -> np.ndarray:
    """A 4x4 numpy array holding a vtkMatrix4x4."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _vtk_compatible(array: np.ndarray) -> np.ndarray:
    """The array in a type VTK image data can hold (bool -> uint8, 64-bit integers narrowed).

    Slicer cannot store 64-bit integer voxels; label maps computed with numpy often
    are int64, so they are narrowed to int32 when their values fit, else refused.
    """
    array = np.asarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.dtype.kind in "iu" and array.dtype.itemsize == 8:
        info = np.iinfo(np.int32)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise ValueError("voxel values do not fit in 32-bit integers, which Slicer needs")
        return array.astype(np.int32)
    return array


def _label_dtype(max_value: int):
    """The smallest unsigned type for label values up to ``max_value``."""
    return np.uint8 if max_value < 256 else np.uint16


# --- volumes -----------------------------------------------------------------------------

def volume_to_node(volume: Volume, name: str, scene=None, node=None, label: bool = False):
    """Put a Volume into a scalar volume node (or a label map node with ``label=True``).

    The voxels are copied and the node's IJKToRAS is ``volume.ijk_to_ras()``, so
    every voxel sits at the same physical place in Slicer as in the engine.
    ``node`` is reused when given (it must be of the matching class).
    """
    import slicer.util

    class_name = "vtkMRMLLabelMapVolumeNode" if label else "vtkMRMLScalarVolumeNode"
    node = _node(scene, node, class_name, name)
    array = _vtk_compatible(volume.array)
    if label and array.dtype.kind == "f":
        raise ValueError("a label map needs integer voxels, got floating point")
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(array))
    node.SetIJKToRASMatrix(_vtk_matrix(volume.ijk_to_ras()))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _ijk_to_world(node) -> np.ndarray:
    """IJKToRAS of a volume node in world coordinates (its parent linear transforms applied).

    A non-linear parent transform has no matrix; such a node must be hardened first.
    """
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    ijk_to_ras = _numpy_matrix(matrix)
    parent = node.GetParentTransformNode()
    if parent is None:
        return ijk_to_ras
    if not parent.IsTransformToWorldLinear():
        raise ValueError(f"{node.GetName()}: has a non-linear parent transform; harden it first")
    to_world = vtk.vtkMatrix4x4()
    parent.GetMatrixTransformToWorld(to_world)
    return _numpy_matrix(to_world) @ ijk_to_ras


def node_to_volume(node) -> Volume:
    """The Volume a scalar or label map volume node holds: voxels copied, geometry exact.

    Parent linear transforms are applied, so the result is where Slicer shows it.
    """
    import slicer.util

    if node is None or node.GetImageData() is None:
        raise ValueError("the volume node has no image data")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    if array.ndim != 3:
        raise ValueError(f"{node.GetName()}: has {array.shape[-1]} components per voxel; a scalar volume is needed")
    return volume_from_ras(array, _ijk_to_world(node))


def _as_volume(volume_or_node) -> Volume:
    """Accept either a Volume or a volume node."""
    return volume_or_node if isinstance(volume_or_node, Volume) else node_to_volume(volume_or_node)


# --- segmentations -------------------------------------------------------------------------

def _oriented_image(volume: Volume, array: np.ndarray | None = None):
    """A vtkOrientedImageData with ``volume``'s geometry and (optionally) voxels copied from ``array``."""
    import slicer
    import vtk.util.numpy_support as vtk_np

    image = slicer.vtkOrientedImageData()
    nk, nj, ni = volume.shape
    image.SetExtent(0, ni - 1, 0, nj - 1, 0, nk - 1)
    image.SetImageToWorldMatrix(_vtk_matrix(volume.ijk_to_ras()))
    if array is not None:
        scalars = vtk_np.numpy_to_vtk(np.ascontiguousarray(array).ravel(), deep=True)
        image.GetPointData().SetScalars(scalars)
    return image


def _segment_labels(array: np.ndarray, labels) -> list:
    """The labels to make segments of: the given ones, else every table label present in ``array``."""
    if labels is not None:
        return list(labels)
    present = set(np.unique(array).tolist()) - {0}
    known = {lab.value for lab in label_table.LABELS}
    unknown = sorted(v for v in present if v not in known)
    if unknown:
        raise ValueError(f"label values {unknown} are not in the label table")
    return [lab for lab in label_table.LABELS if lab.value in present]


def labels_to_segmentation(label_volume, name: str, scene=None, node=None, labels=None,
                           surfaces: bool = True):
    """Turn a label map into a segmentation node with one standard segment per label.

    Each segment's ID is the label key (e.g. ``"L3"``, ``"cord"``), its name, color
    and ``TerminologyEntry`` tag come from :mod:`spinetumor.labels`, and its label
    value in the shared labelmap layer is the label value, so
    :func:`segmentation_to_labels` gives the map back unchanged. ``labels`` restricts
    the segments to those labels (other voxels become background); by default every
    label present is used. The label map's geometry becomes the segmentation's
    reference geometry. With ``surfaces`` closed surfaces are built for 3D display.
    A reused ``node`` is emptied first, so no stale segment survives.
    """
    import slicer

    volume = _as_volume(label_volume)
    array = np.asarray(volume.array)
    if array.dtype.kind not in "iub":
        raise ValueError("a label map needs integer voxels")
    chosen = _segment_labels(array, labels)
    values = [lab.value for lab in chosen]
    layer = np.where(np.isin(array, values), array, 0).astype(_label_dtype(max(values, default=0)))

    node = _node(scene, node, "vtkMRMLSegmentationNode", name)
    was_modifying = node.StartModify()
    try:
        segmentation = node.GetSegmentation()
        segmentation.RemoveAllSegments()
        node.SetSourceRepresentationToBinaryLabelmap()
        shared = _oriented_image(volume, layer)
        geometry = slicer.vtkSegmentationConverter.SerializeImageGeometry(shared)
        segmentation.SetConversionParameter(
            slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName(), geometry)
        for lab in chosen:
            segmentation.AddSegment(_make_segment(lab, shared), lab.key)
        if node.GetDisplayNode() is None:
            node.CreateDefaultDisplayNodes()
        if surfaces:
            node.CreateClosedSurfaceRepresentation()
        else:
            node.RemoveClosedSurfaceRepresentation()
    finally:
        node.EndModify(was_modifying)
    return node


def _make_segment(lab, shared_labelmap):
    """A segment for label ``lab`` whose voxels are the ``lab.value`` voxels of the shared labelmap."""
    import slicer

    segment = slicer.vtkSegment()
    segment.SetName(lab.name)
    segment.SetNameAutoGenerated(False)
    segment.SetColor(*lab.color_float)
    segment.SetColorAutoGenerated(False)
    segment.SetLabelValue(lab.value)
    segment.SetTag(segment.GetTerminologyEntryTagName(), label_table.terminology_entry(lab))
    slicer.vtkSlicerSegmentationsModuleLogic.SetSegmentStatus(
        segment, slicer.vtkSlicerSegmentationsModuleLogic.Completed)
    segment.AddRepresentation(BINARY_LABELMAP, shared_labelmap)
    return segment


def _label_for_segment(segment_id: str, segment_name: str):
    """The table label of a segment: by ID (= label key), else by name or key written as its name."""
    for key in (segment_id, segment_name):
        try:
            return label_table.by_key(key)
        except KeyError:
            pass
    for lab in label_table.LABELS:
        if lab.name == segment_name:
            return lab
    raise ValueError(f"segment {segment_id!r} ({segment_name!r}) matches no label key or name in the label table")


def segmentation_to_labels(segmentation_node, reference, skip_unknown: bool = False) -> Volume:
    """Rasterize a segmentation node into a label map on ``reference``'s voxel grid.

    ``reference`` is a Volume or a volume node. Each segment is written with the
    table value of its label (found by segment ID, else by name), later segments
    on top where segments overlap; segments are resampled (nearest neighbour) when
    their own grid differs from the reference. Raises ValueError for a segment the
    label table does not know, so no voxel gets an arbitrary value; with
    ``skip_unknown`` such segments are left out instead (e.g. a user's "Segment_1"
    beside the anatomy segments).
    """
    ref = _as_volume(reference)
    segmentation = segmentation_node.GetSegmentation()
    segment_ids, values = [], []
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        try:
            lab = _label_for_segment(segment_id, segmentation.GetSegment(segment_id).GetName())
        except ValueError:
            if skip_unknown:
                continue
            raise
        segment_ids.append(segment_id)
        values.append(lab.value)
    dtype = _label_dtype(max(values, default=0))
    return ref.with_array(_merge_segments(segmentation_node, segment_ids, values, ref).astype(dtype))


def segment_to_mask(segmentation_node, segment_id: str, reference) -> Volume:
    """One segment (any name) as a uint8 mask (1 inside) on ``reference``'s voxel grid."""
    if segmentation_node.GetSegmentation().GetSegment(segment_id) is None:
        raise ValueError(f"{segmentation_node.GetName()}: has no segment {segment_id!r}")
    ref = _as_volume(reference)
    return ref.with_array(_merge_segments(segmentation_node, [segment_id], [1], ref).astype(np.uint8))


def _merge_segments(segmentation_node, segment_ids: list, values: list, ref: Volume) -> np.ndarray:
    """The segments ``segment_ids`` written with ``values`` into an array on ``ref``'s grid."""
    import slicer
    import vtk
    import vtk.util.numpy_support as vtk_np

    if not segment_ids:
        return np.zeros(ref.shape, dtype=np.uint8)
    ids = vtk.vtkStringArray()
    label_values = vtk.vtkIntArray()
    for segment_id, value in zip(segment_ids, values):
        ids.InsertNextValue(segment_id)
        label_values.InsertNextValue(int(value))
    if not segmentation_node.GetSegmentation().ContainsRepresentation(BINARY_LABELMAP):
        segmentation_node.CreateBinaryLabelmapRepresentation()
    merged = slicer.vtkOrientedImageData()
    ok = segmentation_node.GenerateMergedLabelmapForAllSegments(
        merged, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY, _oriented_image(ref), ids, label_values)
    if not ok:
        raise RuntimeError(f"{segmentation_node.GetName()}: Slicer could not merge the segments")
    nk, nj, ni = ref.shape
    if tuple(merged.GetExtent()) != (0, ni - 1, 0, nj - 1, 0, nk - 1):
        raise RuntimeError(f"merged labelmap extent {merged.GetExtent()} differs from the reference grid")
    return vtk_np.vtk_to_numpy(merged.GetPointData().GetScalars()).reshape(nk, nj, ni)


# --- tables --------------------------------------------------------------------------------

def _is_number(value) -> bool:
    """True for ints and floats (numpy ones included), not for booleans or strings."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _cell_text(value) -> str:
    """Text of a table cell: lists and tuples joined by ', ', None as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_cell_text(v) for v in value)
    return str(value)


def records_to_table(records: list[dict], name: str, scene=None, node=None, columns=None):
    """Show a list of result records (dicts) as a table node, one row per record.

    Columns appear in first-seen key order, after ``columns`` when given (which also
    gives a table without records its header). A column whose values are all numbers
    (or missing) becomes a double column, missing cells NaN; any other column is a
    string column, lists joined by ", " and missing cells empty. A reused ``node``
    gets a fresh table, so no column of an earlier run survives.
    """
    import vtk

    keys: list[str] = list(columns or ())
    for record in records:
        for key in record:
            if key not in keys:
                keys.append(key)
    table = vtk.vtkTable()
    for key in keys:
        cells = [record.get(key) for record in records]
        numeric = all(v is None or _is_number(v) for v in cells) and any(v is not None for v in cells)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(str(key))
        column.SetNumberOfValues(len(cells))
        for row, value in enumerate(cells):
            if numeric:
                column.SetValue(row, float("nan") if value is None else float(value))
            else:
                column.SetValue(row, _cell_text(value))
        table.AddColumn(column)
    node = _node(scene, node, "vtkMRMLTableNode", name)
    node.SetAndObserveTable(table)
    return node


# --- markups -------------------------------------------------------------------------------

def points_to_markups(points, name: str, scene=None, node=None):
    """Show labeled points (``(label, ras_xyz)`` pairs, RAS mm) as a point list node.

    Used for level names (``"L3"``) at vertebra centroids: each control point's
    label is shown next to it in the slice and 3D views. A reused ``node`` loses its
    previous points.
    """
    node = _node(scene, node, "vtkMRMLMarkupsFiducialNode", name)
    was_modifying = node.StartModify()
    try:
        node.RemoveAllControlPoints()
        for label, xyz in points:
            xyz = np.asarray(xyz, dtype=float).reshape(3)
            node.AddControlPoint(float(xyz[0]), float(xyz[1]), float(xyz[2]), str(label))
    finally:
        node.EndModify(was_modifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def markups_to_points(node) -> list[tuple[str, np.ndarray]]:
    """The ``(label, ras_xyz)`` pairs of a point list node, in point order (node coordinates)."""
    points = []
    for index in range(node.GetNumberOfControlPoints()):
        xyz = np.zeros(3)
        node.GetNthControlPointPosition(index, xyz)
        points.append((node.GetNthControlPointLabel(index), xyz))
    return points


# --- scene organisation ----------------------------------------------------------------------

def unique_name(scene, name: str) -> str:
    """``name``, or ``name_2``, ``name_3``... when the scene already has a node called so."""
    scene = _scene(scene)
    if scene.GetFirstNodeByName(name) is None:
        return name
    index = 2
    while scene.GetFirstNodeByName(f"{name}_{index}") is not None:
        index += 1
    return f"{name}_{index}"


def place_beside(node, input_node) -> None:
    """Put ``node`` under the same subject hierarchy parent (study) as ``input_node``.

    Results placed beside their input can be exported together (DICOM SEG needs it).
    """
    import slicer

    if input_node is None or node.GetScene() is None:
        return
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(node.GetScene())
    if hierarchy is None:
        return
    input_item = hierarchy.GetItemByDataNode(input_node)
    if not input_item:
        return
    parent = hierarchy.GetItemParent(input_item)
    item = hierarchy.GetItemByDataNode(node)
    if not item:                 # Slicer's GUI adds items for new nodes; a bare scene does not
        hierarchy.CreateItem(parent, node)
    elif hierarchy.GetItemParent(item) != parent:
        hierarchy.SetItemParent(item, parent)


# --- result nodes: output segmentation and its companions ------------------------------------
#
# A module shows a result as an output segmentation plus companion nodes (level points, a
# results table, ...) referenced from it under a role, so a re-run on the same output
# segmentation refills the same nodes instead of piling up copies.

def scene_of(scene=None, *nodes):
    """The scene to work in: the given one, else the first node's, else ``slicer.mrmlScene``."""
    if scene is not None:
        return scene
    for node in nodes:
        if node is not None and node.GetScene() is not None:
            return node.GetScene()
    return _scene(None)


def output_segmentation(scene=None, node=None, name: str = "Segmentation"):
    """The segmentation node to write into: ``node`` when given (reused), else a new uniquely named one."""
    if node is not None:
        if not node.IsA("vtkMRMLSegmentationNode"):
            raise TypeError(f"{node.GetClassName()} given where a segmentation node is needed")
        return node
    scene = scene_of(scene)
    return scene.AddNewNodeByClass("vtkMRMLSegmentationNode", unique_name(scene, name))


def companion_node(owner, role: str, class_name: str, name: str):
    """The node referenced from ``owner`` under ``role``, created (and referenced) if missing.

    A referenced node of another class (or one deleted meanwhile) is replaced, never reused.
    """
    node = owner.GetNodeReference(role)
    if node is None or not node.IsA(class_name):
        node = owner.GetScene().AddNewNodeByClass(class_name, name)
        owner.SetNodeReferenceID(role, node.GetID())
    return node


def remove_companions(owner, roles) -> None:
    """Remove the nodes referenced from ``owner`` under ``roles`` (stale results of another kind of run)."""
    for role in roles:
        node = owner.GetNodeReference(role)
        owner.RemoveNodeReferenceIDs(role)
        if node is not None and node.GetScene() is not None:
            node.GetScene().RemoveNode(node)


def companion_points(owner, role: str, points, name: str, beside=None):
    """Labeled points (``(label, ras)`` pairs) in ``owner``'s point list for ``role``, locked and
    placed beside the input node ``beside``; returns the point list."""
    node = companion_node(owner, role, "vtkMRMLMarkupsFiducialNode", name)
    points_to_markups(points, node.GetName(), scene=owner.GetScene(), node=node)
    node.SetLocked(True)
    place_beside(node, beside)
    return node


def companion_table(owner, role: str, records: list[dict], name: str, beside=None, columns=None):
    """Result records in ``owner``'s table for ``role`` (see :func:`records_to_table`), placed
    beside ``beside``; returns the table."""
    node = companion_node(owner, role, "vtkMRMLTableNode", name)
    records_to_table(records, node.GetName(), scene=owner.GetScene(), node=node, columns=columns)
    place_beside(node, beside)
    return node


def check_same_grid(volume: Volume, input_node, what: str) -> None:
    """Refuse a result whose grid is not the input node's (a stale or foreign output folder)."""
    reference = node_to_volume(input_node)
    if not volume.same_geometry(reference, tol=1e-3):
        raise ValueError(f"{what}'s grid {volume.shape} differs from the input {input_node.GetName()}'s "
                         f"{reference.shape}")


def write_volume_node(node, path):
    """Write a volume node (geometry exact, parent transforms applied) to ``path``, e.g. a job's input."""
    from .io import write_volume

    return write_volume(node_to_volume(node), path)


# --- vertebral levels --------------------------------------------------------------------------

#: Column names of a per-level results table, in order (:func:`level_records`).
LEVEL_TABLE_COLUMNS = ("Level", "Present", "Volume (mL)", "Centroid R (mm)", "Centroid A (mm)", "Centroid S (mm)",
                       "Confidence")


def level_list(levels) -> list[dict]:
    """Per-level results as dicts in T11..L5 order, whatever form they come in.

    Accepts the engine's ``LabelingResult.levels`` (name -> ``LevelResult``), a list of dicts
    (``vertebrae.json``'s ``levels``, or ``report.json``'s ``vertebrae``, which name the level
    under ``"level"``) or a name -> dict mapping. Levels not mentioned are listed as absent,
    so a table always has the seven rows.
    """
    items = levels.values() if isinstance(levels, dict) else levels
    by_name = {}
    for level in items:
        entry = level.to_dict() if hasattr(level, "to_dict") else dict(level)
        name = entry.get("name", entry.get("level"))
        if name not in label_table.LEVEL_NAMES:
            raise ValueError(f"unknown vertebral level {name!r}; expected one of "
                             f"{', '.join(label_table.LEVEL_NAMES)}")
        by_name[name] = {**entry, "name": name}
    return [by_name.get(name, {"name": name, "value": label_table.by_key(name).value, "present": False})
            for name in label_table.LEVEL_NAMES]


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
        rows.append(dict(zip(LEVEL_TABLE_COLUMNS, (
            entry["name"], "yes" if present else "no",
            float(entry.get("volume_ml") or 0.0) if present else None,
            r, a, s, None if confidence is None else float(confidence)))))
    return rows


def centroid_points(levels) -> list[tuple[str, np.ndarray]]:
    """``(level name, centroid RAS)`` of every level found, superior to inferior."""
    return [(entry["name"], np.asarray(entry["centroid_ras"], dtype=float))
            for entry in level_list(levels) if entry.get("present") and entry.get("centroid_ras") is not None]
