"""Filling the hole a removed tumor leaves, per sagittal slice, and measuring the seam.

Two fills, both from the known pixels around each connected hole of a 2D slice:

* ``"bicubic"`` (the paper's choice): cubic bridges across the hole along rows and along
  columns (each through two known pixels on either side), averaged with weights favouring
  the shorter bridge.
* ``"biharmonic"``: the smoothest surface through the surroundings, solving the biharmonic
  equation (Laplacian of the Laplacian = 0) on the hole pixels with the two rings of known
  pixels outside as boundary values (a sparse linear system, :mod:`scipy.sparse`).

Both take their boundary values from the image roughly filled (the same method) and smoothed
by a light Gaussian (:data:`SMOOTH_PX`), so the surroundings' noise is not extrapolated into
the hole while a linear ramp is still reproduced exactly.

:func:`seam_metrics` measures the result: the squared intensity step across the hole's
boundary relative to the step between neighbouring pixels of the surroundings, and (when
the true tissue is known) the RMS error inside the hole. ``docs/benchmarks.md``
("Tumor augmentation") compares the two; :data:`DEFAULT_FILL` is the better one.
"""

from __future__ import annotations

import numpy as np

FILL_METHODS = ("bicubic", "biharmonic")
#: The default fill, chosen by ``benchmarks/augmentation.py`` (docs/benchmarks.md, "Tumor augmentation").
DEFAULT_FILL = "bicubic"
#: Margin (pixels) of known surroundings kept around each hole component.
RING_PX = 4
#: Gaussian sigma (pixels) smoothing the known pixels that serve as boundary values.
SMOOTH_PX = 1.0


def _components(hole: np.ndarray):
    """Bounding-box slices and masks of the 8-connected components of a 2D hole."""
    from scipy import ndimage

    lab, n = ndimage.label(hole, structure=np.ones((3, 3), bool))
    for index, box in enumerate(ndimage.find_objects(lab), start=1):
        yield box, lab[box] == index


def _padded_box(box, shape, margin: int):
    """The box grown by ``margin`` pixels, clipped to ``shape``."""
    return tuple(slice(max(b.start - margin, 0), min(b.stop + margin, n)) for b, n in zip(box, shape))


def _smooth_known(image: np.ndarray, hole: np.ndarray, fill, spacing, sigma: float = SMOOTH_PX) -> np.ndarray:
    """Boundary values: the image, roughly filled, smoothed by a Gaussian.

    Continuing the surroundings' noise into the hole would amplify it (a cubic or
    biharmonic continuation follows each noisy slope). Filling roughly first keeps the
    smoothing symmetric, so a linear ramp stays exactly linear.
    """
    from scipy.ndimage import gaussian_filter

    rough = image.copy()
    rough[hole] = fill(image, hole, spacing)
    return gaussian_filter(rough, sigma)


def _cubic_runs(values: np.ndarray, hole: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Cubic interpolation along axis 1 across every run of hole pixels; (values, run length) per pixel.

    Each run is bridged by the cubic through the two known pixels on each side of it (fewer
    at the crop's border: a lower degree); pixels of a run that reaches the border stay NaN.
    """
    out = np.full(values.shape, np.nan)
    length = np.full(values.shape, np.inf)
    n = values.shape[1]
    for row in np.nonzero(hole.any(axis=1))[0]:
        flags = np.r_[False, hole[row], False].astype(np.int8)
        starts = np.nonzero(np.diff(flags) == 1)[0]
        stops = np.nonzero(np.diff(flags) == -1)[0]
        for a, b in zip(starts, stops):          # hole pixels a .. b-1
            support = [i for i in (a - 2, a - 1, b, b + 1) if 0 <= i < n and not hole[row, i]]
            if not any(i < a for i in support) or not any(i >= b for i in support):
                continue
            x = np.asarray(support, float) * step
            coeffs = np.polyfit(x, values[row, support], len(support) - 1)
            out[row, a:b] = np.polyval(coeffs, np.arange(a, b) * step)
            length[row, a:b] = (b - a) * step
    return out, length


def _fill_bicubic(values: np.ndarray, hole: np.ndarray, spacing) -> np.ndarray:
    """Bicubic fill values of the hole pixels (one component): cubic bridges along rows and
    along columns, averaged with weights by the inverse length of the gap each bridges (the
    shorter bridge is the better informed)."""
    along_c, len_c = _cubic_runs(values, hole, spacing[1])
    along_r, len_r = _cubic_runs(values.T, hole.T, spacing[0])
    along_r, len_r = along_r.T, len_r.T
    w_c = np.where(np.isfinite(along_c), 1.0 / len_c, 0.0)
    w_r = np.where(np.isfinite(along_r), 1.0 / len_r, 0.0)
    total = w_c + w_r
    fill = (np.nan_to_num(along_c) * w_c + np.nan_to_num(along_r) * w_r) / np.maximum(total, 1e-12)
    return np.where(total[hole] > 0, fill[hole], np.median(values[~hole]))


def _laplacian(shape, spacing):
    """Sparse 5-point Laplacian on a 2D grid (rows on the grid border are zero)."""
    from scipy import sparse

    R, C = shape
    idx = np.arange(R * C).reshape(R, C)
    inner = idx[1:-1, 1:-1].ravel()
    hr2, hc2 = 1.0 / spacing[0] ** 2, 1.0 / spacing[1] ** 2
    rows = np.concatenate([inner] * 5)
    cols = np.concatenate([inner, inner - C, inner + C, inner - 1, inner + 1])
    vals = np.concatenate([np.full(inner.size, -2 * (hr2 + hc2)), np.full(inner.size, hr2),
                           np.full(inner.size, hr2), np.full(inner.size, hc2), np.full(inner.size, hc2)])
    return sparse.csr_matrix((vals, (rows, cols)), shape=(R * C, R * C))


def _fill_biharmonic(values: np.ndarray, hole: np.ndarray, spacing) -> np.ndarray:
    """Biharmonic fill values of the hole pixels (one component): Laplacian(Laplacian(u)) = 0
    on the hole with the known pixels fixed. The crop is padded by 3 pixels (edge values) so
    every stencil of a hole pixel and of its neighbours lies inside it."""
    from scipy.sparse.linalg import spsolve

    pad = 3
    img = np.pad(values, pad, mode="edge")
    h = np.pad(hole, pad).ravel()
    L = _laplacian(img.shape, spacing)
    B = (L @ L).tocsr()
    Bh = B[h]
    rhs = -(Bh[:, ~h] @ img.ravel()[~h])
    return spsolve(Bh[:, h].tocsc(), rhs)


def fill_hole_2d(image: np.ndarray, hole: np.ndarray, method: str = DEFAULT_FILL, spacing=(1.0, 1.0)) -> np.ndarray:
    """A copy of the 2D ``image`` with the ``hole`` pixels replaced from their surroundings.

    ``spacing`` is the pixel size (mm) per array axis, so the fill is physical on anisotropic
    pixels. Each connected component of the hole is filled on its own small crop.
    """
    if method not in FILL_METHODS:
        raise ValueError(f"unknown fill method {method!r}; use one of {', '.join(FILL_METHODS)}")
    hole = np.asarray(hole, bool)
    out = np.asarray(image, np.float32).copy()
    if not hole.any():
        return out
    if hole.all():
        raise ValueError("the hole covers the whole slice: nothing to fill it from")
    fill = _fill_bicubic if method == "bicubic" else _fill_biharmonic
    for box, component in _components(hole):
        crop = _padded_box(box, hole.shape, RING_PX + 3)
        local = np.zeros(out[crop].shape, bool)
        inner = tuple(slice(b.start - c.start, b.stop - c.start) for b, c in zip(box, crop))
        local[inner] = component
        values = out[crop].astype(np.float64)
        filled = values.copy()
        filled[local] = fill(_smooth_known(values, local, fill, spacing), local, spacing)
        out[crop] = filled
    return out


def fill_hole(image: np.ndarray, hole: np.ndarray, method: str = DEFAULT_FILL, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Fill a 3D hole slice by slice along axis 0 (the sagittal slices of a canonical stack).

    ``spacing`` is per array axis; the in-plane part is used. Slices are independent
    because sagittal MRI slices are thick and often separated by gaps.
    """
    out = np.asarray(image, np.float32).copy()
    hole = np.asarray(hole, bool)
    for s in np.nonzero(hole.any(axis=(1, 2)))[0]:
        out[s] = fill_hole_2d(out[s], hole[s], method, spacing[1:])
    return out


def seam_metrics(filled: np.ndarray, hole: np.ndarray, truth: np.ndarray | None = None) -> dict:
    """Seam quality of a filled 2D or 3D (slice-wise) image.

    * ``seam_ratio``: mean squared intensity step between 4-neighbour pixel pairs that cross
      the hole boundary, divided by the same for pairs of the surroundings (both pixels in a
      ring 1-5 pixels outside the hole). A seamless fill of a noisy image scores about 0.5
      (one side of each pair is noise-free); a visible edge scores well above 1.
    * ``rmse``: RMS difference to ``truth`` inside the hole (when the true tissue is known),
      and ``rmse_rel``: the same divided by the standard deviation of the truth in the ring.
    """
    from scipy import ndimage

    filled = np.asarray(filled, float)
    hole = np.asarray(hole, bool)
    if filled.ndim == 2:
        filled, hole = filled[None], hole[None]
        truth = None if truth is None else np.asarray(truth, float)[None]
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    ring = ndimage.binary_dilation(hole, structure, iterations=5) & ~ndimage.binary_dilation(hole, structure)
    cross, around = [], []
    for axis in (1, 2):
        a = [slice(None)] * 3
        b = [slice(None)] * 3
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        step = (filled[tuple(a)] - filled[tuple(b)]) ** 2
        ha, hb = hole[tuple(a)], hole[tuple(b)]
        cross.append(step[ha ^ hb])
        around.append(step[ring[tuple(a)] & ring[tuple(b)]])
    cross, around = np.concatenate(cross), np.concatenate(around)
    result = {"seam_ratio": float(cross.mean() / max(around.mean(), 1e-12)) if cross.size else float("nan")}
    if truth is not None:
        truth = np.asarray(truth, float)
        rmse = float(np.sqrt(np.mean((filled[hole] - truth[hole]) ** 2)))
        result["rmse"] = rmse
        result["rmse_rel"] = rmse / max(float(truth[ring].std()), 1e-12)
    return result
