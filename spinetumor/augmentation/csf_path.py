"""The CSF path: centerline of the dural sac from T11 to L5, arc-length parameterised in mm.

Works in the canonical sagittal stack (``array[s, r, c]``) with physical coordinates
``(x, y, z) = index * spacing`` per canonical axis (mm to the patient's right, inferior,
posterior from the stack's first voxel). The sac's centroid in every row is smoothed along
the rows and resampled every ``step_mm`` of arc length; the tangent is the unit derivative
and the curvature the signed curvature of the path's sagittal projection (positive when the
path turns posteriorly going down). The levels come from the vertebral-body labels: the path
starts at the top of T11 and ends at the bottom of L5, measured on the posterior third of each
body (next to the canal, so a wedge-shaped or tilted body does not move the limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import labels

#: Gaussian smoothing (mm, along the rows) of the sac centroids before resampling.
SMOOTH_MM = 4.0
#: Gaussian smoothing (mm of arc) of the curvature.
CURVATURE_SMOOTH_MM = 6.0


@dataclass
class CSFPath:
    """Points every ``step_mm`` along the CSF, superior to inferior, in canonical mm (x, y, z)."""

    points_mm: np.ndarray        # (n, 3) canonical mm
    arc_mm: np.ndarray           # (n,) arc length from the start, 0, step, 2 step ...
    tangent: np.ndarray          # (n, 3) unit tangent (pointing inferiorly)
    curvature: np.ndarray        # (n,) signed sagittal curvature (1/mm)
    spacing: np.ndarray          # (3,) mm per canonical axis (s, r, c)
    levels: list                 # (n,) level name at each point ("L2", or a disc "L2-L3")
    start_level: str = ""
    end_level: str = ""

    def __len__(self) -> int:
        return len(self.arc_mm)

    @property
    def points_index(self) -> np.ndarray:
        """The points as fractional canonical indices (s, r, c)."""
        return self.points_mm / self.spacing

    @property
    def angle(self) -> np.ndarray:
        """Sagittal tangent angle (radians) from the inferior axis toward posterior: atan2(t_z, t_y)."""
        return np.arctan2(self.tangent[:, 2], self.tangent[:, 1])

    @property
    def normal(self) -> np.ndarray:
        """(n, 2) unit sagittal normals (y, z) pointing posteriorly: the tangent turned by +90 degrees."""
        t = self.tangent[:, 1:] / np.linalg.norm(self.tangent[:, 1:], axis=1, keepdims=True)
        return np.stack([-t[:, 1], t[:, 0]], axis=1)

    def nearest(self, point_mm) -> int:
        """Index of the path point closest to a canonical mm point."""
        return int(np.argmin(np.linalg.norm(self.points_mm - np.asarray(point_mm, float), axis=1)))


def _row_centroids(sac: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows holding sac voxels (first to last, gaps filled linearly) and the mean slice and column of each."""
    count = sac.sum(axis=(0, 2)).astype(float)
    present = np.nonzero(count)[0]
    if present.size < 2:
        raise ValueError("the canal mask has fewer than two rows: no CSF path")
    s_mean = (sac.sum(axis=2) * np.arange(sac.shape[0])[:, None]).sum(axis=0)[present] / count[present]
    c_mean = (sac.sum(axis=0) * np.arange(sac.shape[2])[None, :]).sum(axis=1)[present] / count[present]
    rows = np.arange(present[0], present[-1] + 1)
    return rows, np.interp(rows, present, s_mean), np.interp(rows, present, c_mean)


def centerline(sac: np.ndarray, spacing, step_mm: float = 1.0, smooth_mm: float = SMOOTH_MM) -> CSFPath:
    """The whole sac's centerline, arc-length resampled every ``step_mm`` (no level limits).

    ``sac`` is a canonical boolean mask (everything inside the dura); ``spacing`` is mm per
    canonical axis (s, r, c).
    """
    from scipy.ndimage import gaussian_filter1d

    spacing = np.asarray(spacing, float)
    rows, s_mean, c_mean = _row_centroids(np.asarray(sac, bool))
    sigma = smooth_mm / spacing[1]
    dense = np.stack([gaussian_filter1d(s_mean, sigma, mode="nearest") * spacing[0], rows * spacing[1],
                      gaussian_filter1d(c_mean, sigma, mode="nearest") * spacing[2]], axis=1)
    seg = np.linalg.norm(np.diff(dense, axis=0), axis=1)
    arc_dense = np.r_[0.0, np.cumsum(seg)]
    arc = np.arange(0.0, arc_dense[-1] + 1e-9, step_mm)
    points = np.stack([np.interp(arc, arc_dense, dense[:, a]) for a in range(3)], axis=1)
    return _with_derivatives(points, arc, spacing, step_mm)


def _with_derivatives(points: np.ndarray, arc: np.ndarray, spacing, step_mm: float, levels=None) -> CSFPath:
    """Wrap points in a CSFPath with tangent and signed sagittal curvature from finite differences."""
    if len(points) < 3:
        raise ValueError("the CSF path is shorter than three steps")
    d1 = np.gradient(points, step_mm, axis=0)
    tangent = d1 / np.maximum(np.linalg.norm(d1, axis=1, keepdims=True), 1e-12)
    d2 = np.gradient(d1, step_mm, axis=0)
    y1, z1, y2, z2 = d1[:, 1], d1[:, 2], d2[:, 1], d2[:, 2]
    curvature = (y1 * z2 - z1 * y2) / np.maximum((y1 ** 2 + z1 ** 2) ** 1.5, 1e-12)
    # second differences of row centroids are noisy (rows quantise the sac's edges): average
    # the curvature over CURVATURE_SMOOTH_MM
    from scipy.ndimage import gaussian_filter1d

    curvature = gaussian_filter1d(curvature, CURVATURE_SMOOTH_MM / step_mm, mode="nearest")
    return CSFPath(points, arc - arc[0], tangent, curvature, np.asarray(spacing, float),
                   list(levels) if levels is not None else [""] * len(arc))


def level_rows(vertebrae: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per labeled body present: (top row, bottom row) of its posterior third, in canonical rows."""
    spans = {}
    for label in labels.VERTEBRAE:
        idx = np.argwhere(vertebrae == label.value)
        if len(idx) < 10:
            continue
        posterior = idx[idx[:, 2] >= np.percentile(idx[:, 2], 67)]
        spans[label.key] = (float(posterior[:, 1].min()), float(posterior[:, 1].max()))
    return spans


def level_at_row(row: float, spans: dict) -> str:
    """The body whose row span holds ``row``, the disc name between two bodies, or the nearest body."""
    names = list(spans)
    for name in names:
        top, bottom = spans[name]
        if top - 0.5 <= row <= bottom + 0.5:
            return name
    for upper, lower in zip(names, names[1:]):
        if spans[upper][1] < row < spans[lower][0]:
            return labels.disc_level_name(upper, lower)
    if not names:
        return ""
    return min(names, key=lambda n: min(abs(row - spans[n][0]), abs(row - spans[n][1])))


def csf_path(sac: np.ndarray, spacing, vertebrae: np.ndarray | None = None, step_mm: float = 1.0,
             first: str = "T11", last: str = "L5") -> CSFPath:
    """The CSF path from the top of ``first`` to the bottom of ``last`` (canonical arrays).

    Without ``vertebrae`` the whole sac is used. When a limiting body is missing (cut by the
    field of view) the path starts or ends at the outermost body present between them;
    ``start_level`` and ``end_level`` say where it did.
    """
    full = centerline(sac, spacing, step_mm)
    if vertebrae is None:
        return full
    spans = level_rows(np.asarray(vertebrae))
    order = list(labels.LEVEL_NAMES)
    wanted = [n for n in order[order.index(first):order.index(last) + 1] if n in spans]
    if not wanted:
        raise ValueError(f"no vertebral body between {first} and {last} is labeled: no CSF path")
    top, bottom = spans[wanted[0]][0], spans[wanted[-1]][1]
    rows = full.points_mm[:, 1] / full.spacing[1]
    keep = np.nonzero((rows >= top) & (rows <= bottom))[0]
    if keep.size < 3:
        raise ValueError(f"the canal does not reach from {wanted[0]} to {wanted[-1]}: no CSF path")
    points, arc = full.points_mm[keep], full.arc_mm[keep]
    levels = [level_at_row(r, spans) for r in rows[keep]]
    path = _with_derivatives(points, arc, full.spacing, step_mm, levels)
    path.tangent, path.curvature = full.tangent[keep], full.curvature[keep]   # derivatives of the uncut path
    path.start_level, path.end_level = wanted[0], wanted[-1]
    return path
