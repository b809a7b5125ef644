"""Level-named landmark points in a markups node, and the vertebral-body masks drawn from them.

Convention of the point labels (one point list may hold several sagittal slices):

* ``"L3"`` - the centroid of the L3 vertebral body on the slice it is placed on;
* ``"L3-corner"`` - one of two corners of that body on the same slice (for example
  anterior-superior and posterior-inferior; two corners on one side work too).

Labels are read case-insensitively and ``"L3 corner"`` / ``"L3_corner"`` are accepted, so
hand-typed names work. :func:`next_landmark_label` names the next point to place in the
order T11, T11-corner, T11-corner, T12, ... L5-corner, then again for the next slice, so
the widget can label points as the user clicks. The masks come from the engine's
:func:`spinetumor.labeling.landmarks.masks_from_landmarks`.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

#: Suffix of corner point labels.
CORNER_SUFFIX = "-corner"
#: Node reference role from a landmark point list to the segmentation made from it.
MASKS_ROLE = "VertebraLabeling.masks"
#: Corners per level and slice, as the engine needs them.
CORNERS_PER_LEVEL = 2
_LABEL_RE = re.compile(r"^\s*([A-Za-z]\d{1,2})(?:\s*[-_ ]\s*(corner|c))?\s*$", re.IGNORECASE)


def landmark_label(level: str, role: str) -> str:
    """The point label of a landmark: ``"L3"`` for a centroid, ``"L3-corner"`` for a corner."""
    if role == "centroid":
        return level
    if role == "corner":
        return level + CORNER_SUFFIX
    raise ValueError(f"unknown landmark role {role!r}; use 'centroid' or 'corner'")


def parse_landmark_label(label: str) -> tuple[str, str]:
    """``(level, role)`` of a point label such as ``"L3"`` or ``"l3-corner"``; ValueError otherwise."""
    from spinetumor.labels import LEVEL_NAMES

    match = _LABEL_RE.match(label or "")
    level = match.group(1).upper() if match else None
    if level not in LEVEL_NAMES:
        raise ValueError(f"point {label!r}: name it by level ({', '.join(LEVEL_NAMES)}) for a centroid, "
                         f"or level{CORNER_SUFFIX} (e.g. L3{CORNER_SUFFIX}) for a corner")
    return level, "corner" if match.group(2) else "centroid"


def markups_to_landmarks(markups_node) -> list[tuple[str, str, tuple]]:
    """``(level, role, (R, A, S))`` of every control point, positions in world coordinates.

    World coordinates (parent transforms applied) are where the points lie on the image,
    which is also read in world coordinates.
    """
    landmarks = []
    for index in range(markups_node.GetNumberOfControlPoints()):
        level, role = parse_landmark_label(markups_node.GetNthControlPointLabel(index))
        ras = np.zeros(3)
        markups_node.GetNthControlPointPositionWorld(index, ras)
        landmarks.append((level, role, tuple(float(x) for x in ras)))
    return landmarks


def landmarks_to_markups(landmarks, name: str = "Vertebra landmarks", scene=None, node=None):
    """Put landmarks (``Landmark`` objects or ``(level, role, ras)`` triples) into a point list node."""
    from spinetumor import mrml

    points = []
    for item in landmarks:
        level, role, ras = (item.level, item.role, item.ras) if hasattr(item, "level") else item
        points.append((landmark_label(level, role), ras))
    return mrml.points_to_markups(points, name, scene=scene, node=node)


def next_landmark_label(labels) -> str:
    """The label of the next point to place, given the labels placed so far.

    Points are placed slice by slice in the order T11, T11-corner, T11-corner, T12, ...;
    the next label is the first one of the earliest round that is still short, so
    deleting a point makes it the next one asked for. Unreadable labels are ignored.
    """
    from spinetumor.labels import LEVEL_NAMES

    counts: Counter = Counter()
    for label in labels:
        try:
            counts[parse_landmark_label(label)] += 1
        except ValueError:
            continue
    rounds = 1 + max((counts[(level, "centroid")] for level in LEVEL_NAMES), default=0)
    for round_index in range(1, rounds + 1):
        for level in LEVEL_NAMES:
            if counts[(level, "centroid")] < round_index:
                return landmark_label(level, "centroid")
            if counts[(level, "corner")] < CORNERS_PER_LEVEL * round_index:
                return landmark_label(level, "corner")
    return landmark_label(LEVEL_NAMES[0], "centroid")


def masks_from_markups(markups_node, input_volume_node, scene=None, segmentation_node=None,
                       name: str | None = None, strict: bool = False):
    """Vertebral-body segmentation from the landmarks of a point list placed on the input volume.

    Each annotated body needs one centroid and two corners per slice (see the module
    docstring); slices between annotated ones are interpolated by the engine. The
    segmentation (``segmentation_node`` when given, else the one made from this point list
    before, found through the :data:`MASKS_ROLE` reference, else a new one) gets one standard segment per
    level with landmarks. Raises ``LandmarkError`` (a ValueError) naming the level when
    the points cannot make a mask; implausible boxes warn, or raise with ``strict``.
    """
    from spinetumor import mrml
    from spinetumor.labeling.landmarks import masks_from_landmarks

    if markups_node is None or markups_node.GetNumberOfControlPoints() == 0:
        raise ValueError("place landmark points first (centroid and two corners per vertebral body)")
    if input_volume_node is None:
        raise ValueError("no input volume selected")
    image = mrml.node_to_volume(input_volume_node)
    labels = masks_from_landmarks(markups_to_landmarks(markups_node), image, strict=strict)
    if segmentation_node is None:
        segmentation_node = markups_node.GetNodeReference(MASKS_ROLE)
    if name is None:
        name = segmentation_node.GetName() if segmentation_node is not None else \
            f"{input_volume_node.GetName()} landmark masks"
    node = mrml.output_segmentation(scene or input_volume_node.GetScene(), segmentation_node, name)
    mrml.labels_to_segmentation(labels, node.GetName(), scene=node.GetScene(), node=node, surfaces=True)
    markups_node.SetNodeReferenceID(MASKS_ROLE, node.GetID())
    mrml.place_beside(node, input_volume_node)
    return node
