"""Multi-label vertebral-body masks from centroid and corner landmarks (paper section IV.A).

An annotator places, on some sagittal slices, each vertebral body's centroid and two of
its corners (for example anterior-superior and posterior-inferior), as Slicer markups in
RAS millimetres. From these:

1. each annotated body gets a box: its long axis follows the spine (the line through
   the centroids of the neighbouring levels on that slice), its extent comes from the
   corners (two opposite corners span the box; two corners on one side are mirrored
   through the centroid);
2. the box is checked against plausible sizes (diameter through the centroid, area,
   height-to-width ratio); failing levels are listed in a warning or, with
   ``strict=True``, in a :class:`LandmarkError`;
3. slices between two annotated ones get centroids and box extents by linear
   interpolation (the paper's projection between the previous and next annotated slice),
   so thick-slice annotations yield a mask on every slice of the image;
4. inside each box the body is traced by excluding dark pixels (cortex, ligaments,
   background; below ``dark_fraction`` of the median of the box core) and keeping the
   connected region around the centroid, holes filled.

:func:`landmarks_from_labels` derives such landmarks from an existing label map, which
lets the method be scored against real masks (``benchmarks/landmark_masks.py``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

ROLES = ("centroid", "corner")

#: Plausible ranges on a sagittal slice (mm, mm^2, ratio), generous enough for T11..L5 of
#: adults including slices away from the midline where the body section is smaller.
PLAUSIBLE = {
    "diameter_mm": (10.0, 90.0),          # corner -> centroid -> corner
    "area_mm2": (60.0, 3000.0),           # box area
    "height_to_width": (0.25, 2.0),       # along the spine / across it
}


class LandmarkError(ValueError):
    """Landmarks that cannot make a mask; the message names the level(s) and the reason."""


class LandmarkWarning(UserWarning):
    """Landmarks that make a mask of implausible size; the message lists the levels."""


@dataclass(frozen=True)
class Landmark:
    """One markup point: the level it belongs to, its role and its RAS position (mm)."""

    level: str
    role: str
    ras: tuple


@dataclass
class BodyBox:
    """An oriented box on one canonical slice, in millimetres of the slice plane (row, col)."""

    center: np.ndarray        # (row_mm, col_mm)
    axis: np.ndarray          # unit vector along the spine (row_mm, col_mm)
    u_range: tuple            # extent along the axis, relative to the centre
    v_range: tuple            # extent across the axis

    def measures(self, corners) -> dict:
        """Diameter (corner-centroid-corner), area, height-to-width ratio."""
        diameter = float(sum(np.linalg.norm(np.asarray(c) - self.center) for c in corners))
        height = self.u_range[1] - self.u_range[0]
        width = self.v_range[1] - self.v_range[0]
        return {"diameter_mm": diameter, "area_mm2": float(height * width),
                "height_to_width": float(height / width) if width > 0 else float("inf")}


def _as_landmarks(items) -> list[Landmark]:
    """Accept Landmark objects or (level, role, ras) triples; validate names and roles."""
    from ..labels import LEVEL_NAMES

    out = []
    for item in items:
        lm = item if isinstance(item, Landmark) else Landmark(str(item[0]), str(item[1]).lower(), tuple(item[2]))
        if lm.level not in LEVEL_NAMES:
            raise LandmarkError(f"unknown level {lm.level!r}; use one of {', '.join(LEVEL_NAMES)}")
        if lm.role not in ROLES:
            raise LandmarkError(f"{lm.level}: unknown landmark role {lm.role!r}; use 'centroid' or 'corner'")
        if len(lm.ras) != 3 or not np.all(np.isfinite(np.asarray(lm.ras, float))):
            raise LandmarkError(f"{lm.level}: landmark position must be three finite RAS numbers, got {lm.ras}")
        out.append(Landmark(lm.level, lm.role, tuple(float(x) for x in lm.ras)))
    return out


def _ras_to_canonical_index(canon, ras) -> np.ndarray:
    """Continuous canonical (s, r, c) indices of RAS points [N, 3]."""
    m = np.linalg.inv(canon.ijk_to_ras())
    ras = np.asarray(ras, float).reshape(-1, 3)
    ijk = (np.c_[ras, np.ones(len(ras))] @ m.T)[:, :3]
    return ijk[:, ::-1]


def _group(landmarks, canon) -> dict:
    """``{(level, slice): (centroid_mm, [corner_mm, corner_mm])}`` in slice-plane millimetres."""
    sr, sc = canon.spacing[1], canon.spacing[0]
    groups: dict = {}
    for lm in landmarks:
        s, r, c = _ras_to_canonical_index(canon, lm.ras)[0]
        k = int(np.rint(s))
        if not (0 <= k < canon.shape[0] and -0.5 <= r <= canon.shape[1] - 0.5 and -0.5 <= c <= canon.shape[2] - 0.5):
            raise LandmarkError(f"{lm.level}: {lm.role} at RAS {tuple(round(x, 1) for x in lm.ras)} lies outside the image")
        entry = groups.setdefault((lm.level, k), {"centroid": [], "corner": []})
        entry[lm.role].append(np.array([r * sr, c * sc]))
    out = {}
    for (level, k), entry in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if len(entry["centroid"]) != 1 or len(entry["corner"]) != 2:
            raise LandmarkError(f"{level} on slice {k}: needs 1 centroid and 2 corners, got "
                                f"{len(entry['centroid'])} centroid(s) and {len(entry['corner'])} corner(s)")
        centroid = entry["centroid"][0]
        for corner in entry["corner"]:
            if np.linalg.norm(corner - centroid) < 1e-3:
                raise LandmarkError(f"{level} on slice {k}: a corner coincides with the centroid")
        out[(level, k)] = (centroid, entry["corner"])
    return out


def _spine_axis(level: str, k: int, groups: dict) -> np.ndarray:
    """Unit vector along the spine at ``level`` on slice ``k``, from the neighbouring levels' centroids."""
    from ..labels import LEVEL_NAMES

    index = LEVEL_NAMES.index(level)
    here = groups[(level, k)][0]
    above = groups.get((LEVEL_NAMES[index - 1], k)) if index > 0 else None
    below = groups.get((LEVEL_NAMES[index + 1], k)) if index + 1 < len(LEVEL_NAMES) else None
    if above is not None and below is not None:
        axis = below[0] - above[0]
    elif below is not None:
        axis = below[0] - here
    elif above is not None:
        axis = here - above[0]
    else:
        axis = np.array([1.0, 0.0])
    norm = np.linalg.norm(axis)
    axis = axis / norm if norm > 0 else np.array([1.0, 0.0])
    return axis if axis[0] >= 0 else -axis


def _extent(a1: float, a2: float) -> tuple[float, float]:
    """Box extent along one axis from the two corners' offsets (span, or mirrored through the centroid)."""
    if abs(a1 - a2) >= 0.5 * (abs(a1) + abs(a2)):
        return (min(a1, a2), max(a1, a2))
    half = max(abs(a1), abs(a2))
    return (-half, half)


def body_box(centroid, corners, axis) -> BodyBox:
    """The oriented box of one body from its centroid, two corners and the spine axis."""
    axis = np.asarray(axis, float)
    perp = np.array([-axis[1], axis[0]])
    d = [np.asarray(c) - centroid for c in corners]
    return BodyBox(np.asarray(centroid, float), axis,
                   _extent(float(d[0] @ axis), float(d[1] @ axis)),
                   _extent(float(d[0] @ perp), float(d[1] @ perp)))


def check_plausibility(boxes: dict, corners: dict, strict: bool = False) -> list[str]:
    """Problems of the annotated boxes against :data:`PLAUSIBLE`; warns, or raises when ``strict``."""
    problems = []
    for (level, k), box in boxes.items():
        for name, value in box.measures(corners[(level, k)]).items():
            lo, hi = PLAUSIBLE[name]
            if not lo <= value <= hi:
                problems.append(f"{level} (slice {k}): {name.replace('_', ' ')} {value:.2f} outside {lo:g}..{hi:g}")
    if problems:
        message = "implausible vertebral body landmarks: " + "; ".join(problems)
        if strict:
            raise LandmarkError(message)
        warnings.warn(message, LandmarkWarning, stacklevel=3)
    return problems


def interpolate_boxes(boxes: dict) -> dict:
    """Boxes on every slice between two annotated slices of the same level (linear in all parameters)."""
    out = dict(boxes)
    by_level: dict = {}
    for level, k in boxes:
        by_level.setdefault(level, []).append(k)
    for level, ks in by_level.items():
        ks = sorted(ks)
        for a, b in zip(ks[:-1], ks[1:]):
            A, B = boxes[(level, a)], boxes[(level, b)]
            for k in range(a + 1, b):
                t = (k - a) / (b - a)
                axis = (1 - t) * A.axis + t * B.axis
                axis = axis / max(np.linalg.norm(axis), 1e-9)
                out[(level, k)] = BodyBox((1 - t) * A.center + t * B.center, axis,
                                          tuple((1 - t) * np.asarray(A.u_range) + t * np.asarray(B.u_range)),
                                          tuple((1 - t) * np.asarray(A.v_range) + t * np.asarray(B.v_range)))
    return out


def trace_body(image2d: np.ndarray, box: BodyBox, spacing_rc, dark_fraction: float = 0.5,
               bright_factor: float | None = None) -> np.ndarray:
    """Mask of one body on a slice: the box minus its dark pixels, the region around the centroid.

    Dark means below ``dark_fraction`` times the median of the box core (cortical rim,
    ligaments, air). With ``bright_factor`` pixels above that multiple of the median
    (CSF, disc, fluid that a tilted box catches) are excluded as well - an addition to
    the paper's rule, measured in the benchmark.
    """
    from scipy import ndimage

    rows, cols = image2d.shape
    rr = np.arange(rows)[:, None] * spacing_rc[0] - box.center[0]
    cc = np.arange(cols)[None, :] * spacing_rc[1] - box.center[1]
    perp = np.array([-box.axis[1], box.axis[0]])
    u = rr * box.axis[0] + cc * box.axis[1]
    v = rr * perp[0] + cc * perp[1]
    tol = 0.5 * min(spacing_rc)
    inside = ((u >= box.u_range[0] - tol) & (u <= box.u_range[1] + tol)
              & (v >= box.v_range[0] - tol) & (v <= box.v_range[1] + tol))
    if not inside.any():
        return inside
    core = ((np.abs(u - np.mean(box.u_range)) <= 0.25 * (box.u_range[1] - box.u_range[0]))
            & (np.abs(v - np.mean(box.v_range)) <= 0.25 * (box.v_range[1] - box.v_range[0])))
    reference = float(np.median(image2d[core])) if core.any() else float(np.median(image2d[inside]))
    mask = inside & (image2d >= dark_fraction * reference)
    if bright_factor is not None:
        mask &= image2d <= bright_factor * reference
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    r0 = int(np.clip(np.rint(box.center[0] / spacing_rc[0]), 0, rows - 1))
    c0 = int(np.clip(np.rint(box.center[1] / spacing_rc[1]), 0, cols - 1))
    keep = lab[r0, c0] if lab[r0, c0] > 0 else int(np.bincount(lab[lab > 0]).argmax())
    return ndimage.binary_fill_holes(lab == keep)


def masks_from_landmarks(landmarks, image, *, dark_fraction: float = 0.5, bright_factor: float | None = None,
                         interpolate: bool = True, strict: bool = False):
    """Vertebrae label Volume (1..7 = T11..L5, the image's geometry) from centroid + corner landmarks.

    ``landmarks``: iterable of :class:`Landmark` or ``(level name, role, (R, A, S))`` with
    role ``"centroid"`` or ``"corner"``; each annotated body on a slice needs one centroid and
    two corners. ``image``: the :class:`~spinetumor.volume.Volume` they were placed on.
    Raises :class:`LandmarkError` for unusable landmarks (and, with ``strict``, implausible ones).
    """
    from ..labels import value as label_value
    from ..volume import from_canonical, to_canonical

    lms = _as_landmarks(landmarks)
    if not lms:
        raise LandmarkError("no landmarks given")
    canon, _ = to_canonical(image)
    groups = _group(lms, canon)
    boxes = {key: body_box(c, corners, _spine_axis(key[0], key[1], groups)) for key, (c, corners) in groups.items()}
    check_plausibility(boxes, {key: corners for key, (c, corners) in groups.items()}, strict)
    if interpolate:
        boxes = interpolate_boxes(boxes)
    spacing_rc = (canon.spacing[1], canon.spacing[0])
    data = np.asarray(canon.array, dtype=np.float32)
    out = np.zeros(canon.shape, np.uint8)
    for (level, k), box in sorted(boxes.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        mask = trace_body(data[k], box, spacing_rc, dark_fraction, bright_factor)
        out[k][mask & (out[k] == 0)] = label_value(level)
    return from_canonical(out, image)


def landmarks_from_labels(vertebrae, *, step_mm: float = 4.0, min_area_fraction: float = 0.25,
                          slices=None, edge_percentile: float = 98.0) -> list[Landmark]:
    """Centroid + two opposite corners of every body on chosen sagittal slices of a label map.

    The box of a body on a slice is aligned with the spine there (the line through the
    neighbouring levels' centroids, as :func:`masks_from_landmarks` reconstructs it) and
    spans the ``edge_percentile`` extremes of the body's pixels along and across it (an
    annotator clicks the corners of the body, not its outermost stray pixel); its
    superior-anterior and inferior-posterior corners are returned. Slices: ``slices`` (canonical indices) or every ``step_mm`` across each
    level's lateral extent where its section is at least ``min_area_fraction`` of its
    largest, always including the first and last such slice.
    """
    from ..labels import VERTEBRAE
    from ..volume import to_canonical

    canon, _ = to_canonical(vertebrae)
    arr = np.asarray(canon.array)
    sr, sc, ss = canon.spacing[1], canon.spacing[0], canon.spacing[2]
    chosen_by_level = {}
    for lab in VERTEBRAE:
        areas = (arr == lab.value).reshape(len(arr), -1).sum(axis=1)
        if areas.max() == 0:
            continue
        if slices is not None:
            chosen_by_level[lab.key] = [int(k) for k in slices if areas[int(k)] > 0]
        else:
            good = np.nonzero(areas >= min_area_fraction * areas.max())[0]
            step = max(1, int(round(step_mm / ss)))
            chosen_by_level[lab.key] = sorted(set(range(int(good[0]), int(good[-1]) + 1, step)) | {int(good[-1])})
    points = {}
    for lab in VERTEBRAE:
        for k in chosen_by_level.get(lab.key, []):
            rc = np.argwhere(arr[k] == lab.value).astype(float) * [sr, sc]
            if len(rc) >= 3:
                points[(lab.key, k)] = rc
    centres = {key: (rc.mean(axis=0), []) for key, rc in points.items()}
    out = []
    for (level, k), rc in points.items():
        center = centres[(level, k)][0]
        u = _spine_axis(level, k, centres)                  # as an annotator sees it: along the spine
        v = np.array([-u[1], u[0]])
        pu, pv = (rc - center) @ u, (rc - center) @ v
        lo_u, hi_u = np.percentile(pu, [100 - edge_percentile, edge_percentile])
        lo_v, hi_v = np.percentile(pv, [100 - edge_percentile, edge_percentile])
        corners = [center + lo_u * u + lo_v * v, center + hi_u * u + hi_v * v]
        for role, point in [("centroid", center)] + [("corner", c) for c in corners]:
            kji = np.array([k, point[0] / sr, point[1] / sc])
            out.append(Landmark(level, role, tuple(float(x) for x in canon.index_to_ras(kji))))
    return out
