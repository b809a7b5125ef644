"""Spinal canal (thecal sac with CSF) and spinal cord masks on sagittal T2 MRI.

Tumor localization and tumor augmentation need to know where the dural sac and the
cord are. There is no trained model for them: the masks come from intensities and
anatomy, in the canonical sagittal stack (``array[s, r, c]``: left→right,
superior→inferior, anterior→posterior; see :mod:`spinetumor.volume`).

1. **Tube map** (coarse grid, 2 mm across, 4 mm along the rows): on T2 the CSF-filled sac
   is a bright tube running superior→inferior. The smaller of the two scale-normalized
   second derivatives across it (left-right and anterior-posterior), times brightness,
   is high only where the image is bright in *both* directions across a structure, so
   it separates the tube from bright *sheets* (subcutaneous fat). Voxels within 25 mm of
   the back's skin are down-weighted, and with a vertebral-body label map the search is
   limited to a band posterior to the bodies and to near their left-right centre.
2. **Centerline**: dynamic programming over columns, row by row, on the maximum of the
   tube map over the sagittal slices gives a smooth anterior–posterior path; the slice of
   the tube's maximum along it gives the left–right position. Rows where the path leaves
   the tube (e.g. below the sac's end) are cut off.
3. **Sac**: at full resolution, voxels brighter than a per-row threshold halfway between
   the CSF level on the centerline and the tissue in an annulus around it, connected to
   the centerline and within :data:`MAX_RADIUS_MM`; each axial cross-section is closed
   and its holes filled so the cord and nerve roots inside belong to the sac.
4. **Cord**: darker voxels well inside the sac (opened so thin cauda equina roots go).
   The cord comes down from the brain, so its top piece is the highest-starting dark blob
   at least 15 mm long; it is followed down across gaps of up to :data:`MAX_CORD_GAP_MM`
   (an intramedullary tumor is not dark and cuts the cord in two) to pieces on its axis,
   the gaps filled by interpolating the cross-sections, and cut at the conus: where its
   cross section stays below :data:`MIN_CORD_AREA_MM2` for 4 mm. The cord ends at L1-L2
   in adults, so a dark blob starting below the centre of the L2 body (with vertebra
   labels; without them, more than :data:`CORD_TOP_MM` below the sac's top) is clumped
   cauda equina roots, not cord.

The masks are returned in the input geometry (:func:`~spinetumor.volume.from_canonical`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..progress import check_cancel, report
from ..volume import Volume, from_canonical, to_canonical

#: Grid spacing (mm) of the coarse search for the canal's centerline.
COARSE_MM = 2.0
#: Hessian scale (mm) of the tube map: about half the radius of a lumbar thecal sac.
TUBE_SIGMA_MM = 3.0
#: Multiples of TUBE_SIGMA_MM at which the tube map is computed (a thin lumbar sac, a cord-filled canal).
TUBE_SCALES = (1.7, 2.5)
#: Largest distance (mm) of a sac voxel from the centerline, across slices and columns.
MAX_RADIUS_MM = 14.0
#: With vertebra labels: sd (mm) of the search weight around the bodies' left-right centre in each row.
LATERAL_SD_MM = 8.0
#: Smallest cross-section (mm^2) of the cord; below it, the cord has ended (conus).
MIN_CORD_AREA_MM2 = 10.0
#: Largest gap (mm, along the spine) bridged between two pieces of the cord (an intramedullary tumor).
MAX_CORD_GAP_MM = 40.0
#: Largest left-right / anterior-posterior offset (mm) between the ends of two pieces of one cord.
CORD_AXIS_MM = 5.0
#: Length (mm) of each piece's end whose cross-sections, merged, are interpolated across a gap.
END_SECTION_MM = 3.0
#: Without vertebra labels, the cord must start within this distance (mm) of the sac's top
#: (about two vertebral levels: the threshold may break the cord's top part off).
CORD_TOP_MM = 60.0
#: With vertebra labels, the cord must start above the centre of this body (the conus ends at L1-L2).
CORD_START_ABOVE = "L2"


@dataclass(frozen=True)
class CanalResult:
    """Masks of the dural sac (CSF and everything in it) and of the cord, plus the canal's centerline.

    ``canal`` and ``cord`` are uint8 0/1 volumes on the input's grid; ``cord`` lies inside
    ``canal``. ``centerline_ras`` is an ``(n, 3)`` array of RAS points (mm), one per
    canonical row, ordered superior→inferior.
    """

    canal: Volume
    cord: Volume
    centerline_ras: np.ndarray


# --------------------------------------------------------------------------- helpers

def _axis_spacing(canon: Volume) -> np.ndarray:
    """Spacing (mm) per canonical array axis (s, r, c); Volume.spacing is per (i, j, k) = (c, r, s)."""
    return np.asarray(canon.spacing[::-1], dtype=float)


def _normalize(array: np.ndarray) -> np.ndarray:
    """Intensities scaled so the 1st..99.5th percentiles of the non-zero voxels map to 0..1.

    Robust to the 8-bit, 12-bit and 16-bit ranges of the data we meet; a few very
    bright voxels (fat, flow artefacts) cannot squash the CSF level. The percentiles
    come from a regular subsample of at most about a million voxels, which is fast and
    deterministic.
    """
    a = np.asarray(array, dtype=np.float32)
    step = max(1, int(a.size // 1_000_000))
    sample = a.ravel()[::step]
    values = sample[sample > 0] if np.count_nonzero(sample) > 100 else sample
    lo, hi = np.percentile(values, [1.0, 99.5])
    out = a - lo
    out *= 1.0 / max(hi - lo, 1e-6)
    return np.clip(out, 0.0, 1.5, out=out)


def _to_coarse(image: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block-average to about :data:`COARSE_MM` (s, c) and twice that along the rows.

    The canal runs along the rows, so they can be coarser. Integer block means are
    exact, fast and need no extra smoothing against aliasing. Returns the coarse image
    and its spacing per axis.
    """
    target = np.array([COARSE_MM, 2 * COARSE_MM, COARSE_MM])
    factor = np.maximum(1, np.round(target / spacing)).astype(int)
    shape = np.asarray(image.shape) // factor
    if np.any(shape < 4):
        factor = np.ones(3, dtype=int)
        shape = np.asarray(image.shape)
    crop = image[:shape[0] * factor[0], :shape[1] * factor[1], :shape[2] * factor[2]]
    blocks = crop.reshape(shape[0], factor[0], shape[1], factor[1], shape[2], factor[2])
    coarse = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    return coarse, spacing * factor


def _tube_map(coarse: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Bright superior-inferior tube response on the coarse grid.

    Across a bright tube running along the rows the image curves down both left-right
    (second derivative along s) and anterior-posterior (along c); across a bright sheet
    such as the subcutaneous fat of the back, only one of them does. The smaller of the
    two negated, scale-normalized second derivatives, times the local brightness, is
    therefore high on the CSF-filled sac and low on sheets. Two Gaussian derivative
    filters are far cheaper than a full Hessian eigen-analysis and enough for a tube that
    stays within about 40 degrees of the rows. The outermost slices are zeroed: near the
    array border the filters see a mirrored image and invent tubes.
    """
    from scipy import ndimage

    tube = np.zeros(coarse.shape, dtype=np.float32)
    for scale in TUBE_SCALES:
        sig_s, sig_c = TUBE_SIGMA_MM * scale * 1.3, TUBE_SIGMA_MM * scale
        sigma = np.array([sig_s, TUBE_SIGMA_MM * scale, sig_c]) / spacing
        smooth = ndimage.gaussian_filter(coarse, sigma, mode="nearest")
        d_ss = ndimage.gaussian_filter(coarse, sigma, order=(2, 0, 0), mode="nearest") * (sig_s / spacing[0]) ** 2
        d_cc = ndimage.gaussian_filter(coarse, sigma, order=(0, 0, 2), mode="nearest") * (sig_c / spacing[2]) ** 2
        np.maximum(tube, np.clip(np.minimum(-d_ss, -d_cc), 0, None) * np.clip(smooth, 0, None), out=tube)
    sigma = np.array([TUBE_SIGMA_MM * max(TUBE_SCALES) * 1.3, 0, 0]) / spacing
    edge = int(np.ceil(sigma[0]))
    if tube.shape[0] > 2 * edge + 1:
        tube[:edge] = 0
        tube[tube.shape[0] - edge:] = 0
    return tube


def _skin_depth_weight(coarse: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Weight (s, r, c) in 0..1 that is 0 within 12 mm of the back's skin and 1 deeper than 25 mm.

    The canal lies several centimetres anterior to the skin of the back, while the
    subcutaneous fat, as bright as CSF on T2, lies just under it. Where the image ends
    without air behind the patient (a cropped field of view) the weight is 1.
    """
    from scipy import ndimage

    body = ndimage.uniform_filter1d(coarse, size=3, axis=2) > 0.08
    n_c = coarse.shape[2]
    tail = max(2, int(round(6.0 / spacing[2])))
    air_behind = ~body[:, :, n_c - tail:].any(axis=2)                       # (s, r)
    last = n_c - 1 - np.argmax(body[:, :, ::-1], axis=2)                   # posterior-most body column
    last = np.where(air_behind & body.any(axis=2), last, n_c + 1000)
    depth = (last[:, :, None] - np.arange(n_c)[None, None, :]) * spacing[2]
    return np.clip((depth - 12.0) / 13.0, 0.0, 1.0).astype(np.float32)


def _coarse_to_full(index, factor) -> np.ndarray:
    """Full-resolution index of the centre of a coarse block (block means of ``factor`` voxels)."""
    return np.asarray(index, dtype=float) * factor + (factor - 1) / 2.0


def _vertebra_prior(vertebrae: np.ndarray | None, coarse_shape, factor, spacing_s: float
                    ) -> tuple[np.ndarray, np.ndarray] | None:
    """Search weights from a vertebral-body label map: (rows, columns) and (slices, rows).

    The column weight is 1 from 6 mm in front of the bodies' posterior edge to 45 mm
    behind it (the canal lies just behind the bodies) and 0 elsewhere; the edge is
    interpolated between labeled rows and extrapolated linearly beyond them. The slice
    weight, (slices, rows), is a Gaussian (sd :data:`LATERAL_SD_MM`) around the bodies'
    left-right centre in each row, interpolated between labeled rows and held beyond
    them: the canal runs behind the bodies, also where a scoliosis moves them sideways,
    and on thick sagittal slices a bright foramen or facet joint beside the spine must
    not pull the centerline out of the midline. ``None`` without a usable label map.
    ``vertebrae``: the label map as a canonical array.
    """
    if vertebrae is None:
        return None
    lab = vertebrae > 0
    if not lab.any():
        return None
    rows = np.nonzero(lab.any(axis=(0, 2)))[0]
    back = np.array([np.nonzero(lab[:, r].any(axis=0))[0].max() for r in rows], dtype=float)
    full_rows = _coarse_to_full(np.arange(coarse_shape[1]), factor[1])
    edge = np.interp(full_rows, rows, back)
    outside = (full_rows < rows[0]) | (full_rows > rows[-1])
    if outside.any() and rows.size >= 2:
        fit = np.polyfit(rows, back, 1)
        edge[outside] = np.polyval(fit, full_rows[outside])
    cols = _coarse_to_full(np.arange(coarse_shape[2]), factor[2])
    depth = cols[None, :] - edge[:, None]
    col_weight = ((depth > -6.0) & (depth < 45.0)).astype(np.float32)
    occupied = lab.any(axis=2)[:, rows]                                   # (slices, labeled rows)
    s_centers = (occupied * np.arange(lab.shape[0])[:, None]).sum(axis=0) / occupied.sum(axis=0)
    s_center = np.interp(full_rows, rows, s_centers)                     # held beyond the labeled rows
    s_full = _coarse_to_full(np.arange(coarse_shape[0]), factor[0])
    sd_slices = LATERAL_SD_MM / spacing_s
    s_weight = np.exp(-0.5 * ((s_full[:, None] - s_center[None, :]) / sd_slices) ** 2).astype(np.float32)
    return col_weight, s_weight


def _dp_path(score: np.ndarray, max_step: int, penalty: float) -> np.ndarray:
    """Column per row maximizing the summed score minus ``penalty`` per column moved.

    ``score`` is (rows, columns); moves between consecutive rows are limited to
    ``max_step`` columns, so the path stays a continuous tube.
    """
    n_rows, n_cols = score.shape
    total = score[0].copy()
    back = np.zeros((n_rows, n_cols), dtype=np.int32)
    cols = np.arange(n_cols)
    for r in range(1, n_rows):
        best = np.full(n_cols, -np.inf)
        arg = np.zeros(n_cols, dtype=np.int32)
        for d in range(-max_step, max_step + 1):
            src = cols + d
            ok = (src >= 0) & (src < n_cols)
            cand = np.full(n_cols, -np.inf)
            cand[ok] = total[src[ok]] - penalty * abs(d)
            better = cand > best
            best[better] = cand[better]
            arg[better] = src[better]
        total = best + score[r]
        back[r] = arg
    path = np.zeros(n_rows, dtype=np.int32)
    path[-1] = int(np.argmax(total))
    for r in range(n_rows - 1, 0, -1):
        path[r - 1] = back[r, path[r]]
    return path


def _longest_run(flags: np.ndarray, max_gap: int) -> tuple[int, int]:
    """Start and stop (exclusive) of the longest run of True, bridging gaps up to ``max_gap``."""
    idx = np.nonzero(flags)[0]
    if idx.size == 0:
        return 0, 0
    best, start = (idx[0], idx[0] + 1), idx[0]
    for prev, cur in zip(idx[:-1], idx[1:]):
        if cur - prev > max_gap + 1:
            if prev + 1 - start > best[1] - best[0]:
                best = (start, prev + 1)
            start = cur
    if idx[-1] + 1 - start > best[1] - best[0]:
        best = (start, idx[-1] + 1)
    return int(best[0]), int(best[1])


# --------------------------------------------------------------------------- steps

def find_centerline(image: np.ndarray, spacing: np.ndarray, vertebrae: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Coarse centerline of the canal in full-resolution canonical indices.

    Returns ``(rows, points)``: the rows (superior→inferior) where a bright tube was
    followed and, per row, its (s, c) position as floats. ``image`` is the normalized
    canonical array, ``spacing`` its per-axis spacing (mm); ``vertebrae`` an optional
    vertebral-body label map, canonical like ``image``.
    """
    from scipy import ndimage

    small, cs = _to_coarse(image, spacing)
    factor = np.rint(cs / spacing).astype(int)
    tube = _tube_map(small, cs) * _skin_depth_weight(small, cs)
    n_s = tube.shape[0]
    prior = _vertebra_prior(vertebrae, small.shape, factor, spacing[0]) if vertebrae is not None else None
    if prior is not None:
        tube *= prior[1][:, :, None]
    else:
        # The canal is near the mid-sagittal plane, which scans put near the middle slice.
        s_axis = (np.arange(n_s) - (n_s - 1) / 2) / max(n_s / 2, 1)
        tube *= np.exp(-0.5 * (s_axis / 0.45) ** 2).astype(np.float32)[:, None, None]
    mip = tube.max(axis=0)                                      # (rows, cols)
    if prior is not None:
        mip = mip * prior[0]
    scale = np.percentile(mip[mip > 0], 99.5) if (mip > 0).any() else 1.0
    score = np.clip(mip / max(scale, 1e-9), 0, 1)
    max_step = max(1, int(round(cs[1] / cs[2])))                # slopes up to 45 degrees
    path_c = _dp_path(score - 0.15, max_step=max_step, penalty=0.05)
    on_path = score[np.arange(score.shape[0]), path_c]
    keep = ndimage.median_filter(on_path, size=3) > 0.12
    lo, hi = _longest_run(keep, max_gap=max(1, int(round(8.0 / cs[1]))))
    if hi - lo < 3:
        raise ValueError("no spinal canal found: no bright tube runs superior-inferior through this image")
    rows_c = np.arange(lo, hi)
    # Left-right: the slice of the tube's maximum next to the path, smoothed along the rows.
    prof = np.stack([tube[:, r, max(c - 1, 0):c + 2].max(axis=1) for r, c in zip(rows_c, path_c[rows_c])])
    prof = ndimage.gaussian_filter1d(prof, sigma=max(1.0, 6.0 / cs[1]), axis=0, mode="nearest")
    s_c = ndimage.median_filter(np.argmax(prof, axis=1).astype(float), size=5, mode="nearest")
    s_c = ndimage.gaussian_filter1d(s_c, 1.0, mode="nearest")
    c_c = ndimage.gaussian_filter1d(path_c[rows_c].astype(float), 1.0, mode="nearest")
    first = max(0, int(np.floor(_coarse_to_full(lo, factor[1]) - factor[1] / 2)))
    last = min(image.shape[1], int(np.ceil(_coarse_to_full(hi - 1, factor[1]) + factor[1] / 2)))
    full_rows = np.arange(first, last)
    rc = _coarse_to_full(rows_c, factor[1])
    s_full = np.interp(full_rows, rc, _coarse_to_full(s_c, factor[0]))
    c_full = np.interp(full_rows, rc, _coarse_to_full(c_c, factor[2]))
    return full_rows, np.stack([s_full, c_full], axis=1)


def _disk(radius_vox: np.ndarray) -> np.ndarray:
    """In-plane (s, c) elliptic structuring element, one row thick, radii in voxels per axis."""
    rs, rc = max(int(np.floor(radius_vox[0])), 0), max(int(np.floor(radius_vox[1])), 0)
    ss, cc = np.mgrid[-rs:rs + 1, -rc:rc + 1]
    inside = (ss / max(radius_vox[0], 1e-6)) ** 2 + (cc / max(radius_vox[1], 1e-6)) ** 2 <= 1.0 + 1e-9
    return inside[:, None, :]


def _row_levels(values: np.ndarray, inner: np.ndarray, outer: np.ndarray, rows_mm: float) -> tuple:
    """Per row of a crop (axis 1): CSF level (90th percentile near the centerline) and tissue level.

    The tissue level is the 40th percentile of an annulus around the sac, mostly bone,
    ligament, fat and muscle. Both are median-filtered along the rows over about 15 mm so a
    disc or a root sleeve cannot move them.
    """
    from scipy import ndimage

    n = values.shape[1]
    csf, tissue = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for r in range(n):
        near = values[:, r][inner[:, r]]
        wide = values[:, r][outer[:, r]]
        csf[r] = np.percentile(near, 90) if near.size else 0.0
        tissue[r] = np.percentile(wide, 40) if wide.size else 0.0
    size = max(3, int(round(15.0 / rows_mm)) | 1)
    return (ndimage.median_filter(csf, size=size, mode="nearest"),
            ndimage.median_filter(tissue, size=size, mode="nearest"))


def segment_sac(image: np.ndarray, spacing: np.ndarray, rows: np.ndarray, points: np.ndarray):
    """Full-resolution thecal sac around a centerline; returns (mask, box, csf level per row).

    ``box`` is the crop (tuple of slices) the mask lives in. Per row, voxels brighter
    than halfway between the CSF level on the centerline and the tissue in an annulus
    around it, within :data:`MAX_RADIUS_MM` of the centerline and connected to it, form
    the CSF; each axial cross-section is then closed (1.5 mm) and its holes filled so
    the cord and roots inside belong to the sac. Rows whose CSF is not clearly brighter
    than the tissue stay empty.
    """
    from scipy import ndimage

    radius_vox = (MAX_RADIUS_MM + 3) / spacing + 1
    s_lo = max(0, int(np.floor(points[:, 0].min() - radius_vox[0])))
    s_hi = min(image.shape[0], int(np.ceil(points[:, 0].max() + radius_vox[0])) + 1)
    c_lo = max(0, int(np.floor(points[:, 1].min() - radius_vox[2])))
    c_hi = min(image.shape[2], int(np.ceil(points[:, 1].max() + radius_vox[2])) + 1)
    box = (slice(s_lo, s_hi), slice(int(rows[0]), int(rows[-1]) + 1), slice(c_lo, c_hi))
    crop = ndimage.gaussian_filter(image[box], 0.6 / spacing)          # speckle, not structure
    ss = np.arange(s_lo, s_hi)[:, None, None] - points[:, 0][None, :, None]
    cc = np.arange(c_lo, c_hi)[None, None, :] - points[:, 1][None, :, None]
    dist2 = lambda rad: (ss * spacing[0] / rad) ** 2 + (cc * spacing[2] / rad) ** 2  # noqa: E731
    csf, tissue = _row_levels(crop, dist2(5.0) <= 1.0, (dist2(MAX_RADIUS_MM + 3) <= 1.0) & (dist2(11.0) > 1.0),
                              spacing[1])
    threshold = tissue + 0.5 * (csf - tissue)
    contrast = csf - tissue
    valid = contrast > 0.4 * np.median(contrast)
    bright = (crop > threshold[None, :, None]) & (dist2(MAX_RADIUS_MM) <= 1.0) & valid[None, :, None]
    lab, n = ndimage.label(bright)
    if n == 0:
        return np.zeros(crop.shape, bool), box, csf
    seeds = np.unique(lab[(dist2(4.0) <= 1.0) & bright])
    sac = np.isin(lab, seeds[seeds > 0])
    sac = ndimage.binary_closing(sac, structure=_disk(1.5 / spacing[[0, 2]]))
    plane = np.zeros((3, 3, 3), bool)
    plane[:, 1, :] = ndimage.generate_binary_structure(2, 1)
    sac = ndimage.binary_fill_holes(sac, structure=plane)
    # Keep the longest run of rows with a cross-section: the sac is one tube.
    lo, hi = _longest_run(sac.any(axis=(0, 2)), max_gap=max(1, int(round(5.0 / spacing[1]))))
    sac[:, :lo] = False
    sac[:, hi:] = False
    return sac, box, csf


def segment_cord(image_crop: np.ndarray, sac: np.ndarray, csf: np.ndarray, spacing: np.ndarray,
                 latest_start: int | None = None) -> np.ndarray:
    """Cord inside the sac: dark, compact, long, followed from the top down to the conus.

    Voxels of the sac (away from its wall) darker than halfway between the CSF level
    and the darkest tenth of the sac in that row are opened with a 1.5 mm disk, which
    removes the thin cauda equina roots but keeps the cord (about 6-10 mm across). Of the
    components at least 15 mm long starting at or above crop row ``latest_start`` (default:
    :data:`CORD_TOP_MM` below the sac's top row), the highest-starting one is the cord's top
    (none: no cord); :func:`_follow_down` adds its pieces below an intramedullary tumor. The
    cord ends at the first stretch of 4 mm where its cross-section is under
    :data:`MIN_CORD_AREA_MM2`. Without the start rule, clumped roots at L3-L5 were taken
    for the cord on real lumbar scans; choosing the longest blob instead of the highest
    took the cauda equina for the cord below an intramedullary tumor.
    """
    from scipy import ndimage

    if not sac.any():
        return np.zeros_like(sac)
    smooth = ndimage.gaussian_filter(image_crop, 0.6 / spacing)
    interior = ndimage.binary_erosion(sac, structure=_disk(1.0 / spacing[[0, 2]]))
    n_rows = sac.shape[1]
    dark_level = np.zeros(n_rows, np.float32)
    for r in range(n_rows):
        vals = smooth[:, r][interior[:, r]]
        dark_level[r] = np.percentile(vals, 10) if vals.size else csf[r]
    dark_level = ndimage.median_filter(dark_level, size=max(3, int(round(9.0 / spacing[1])) | 1), mode="nearest")
    contrast = csf - dark_level
    threshold = dark_level + 0.5 * contrast
    dark = interior & (smooth < threshold[None, :, None]) & (contrast > 0.2 * np.maximum(csf, 1e-6))[None, :, None]
    dark = ndimage.binary_opening(dark, structure=_disk(1.5 / spacing[[0, 2]]))
    lab, n = ndimage.label(dark)
    if n == 0:
        return dark
    # The cord comes down from the brain: its top piece is the highest long blob starting high enough.
    if latest_start is None:
        latest_start = int(np.flatnonzero(sac.any(axis=(0, 2)))[0] + CORD_TOP_MM / spacing[1])
    objects = ndimage.find_objects(lab)
    min_rows = 15.0 / spacing[1]
    candidates = [(sl[1].start, -(sl[1].stop - sl[1].start), index) for index, sl in enumerate(objects, start=1)
                  if sl is not None and sl[1].start <= latest_start and sl[1].stop - sl[1].start >= min_rows]
    if not candidates:
        return np.zeros_like(sac)
    cord = _follow_down(lab, objects, min(candidates)[2], sac, spacing, latest_start)
    area = cord.sum(axis=(0, 2)) * spacing[0] * spacing[2]
    present = np.nonzero(area > 0)[0]
    small = area < MIN_CORD_AREA_MM2
    run = max(1, int(round(4.0 / spacing[1])))
    end = n_rows
    count = 0
    for r in range(present[0], n_rows):
        count = count + 1 if small[r] else 0
        if count >= run:
            end = r - run + 1
            break
    cord[:, end:, :] = False
    return cord


def _cross_section_centre(mask2d: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Centroid (mm, slice and column) of one axial cross-section ``[s, c]``."""
    s, c = np.nonzero(mask2d)
    return np.array([s.mean() * spacing[0], c.mean() * spacing[2]])


def _bridge(cord: np.ndarray, upper_row: int, lower_row: int, sac: np.ndarray, spacing: np.ndarray) -> None:
    """Fill the rows between two cord cross-sections by interpolating their signed distance maps.

    The cross-section morphs linearly from row ``upper_row`` to row ``lower_row`` (shape-based
    interpolation), kept inside the sac; ``cord`` is changed in place.
    """
    from scipy.ndimage import distance_transform_edt

    sampling = (spacing[0], spacing[2])
    signed = lambda m: distance_transform_edt(~m, sampling=sampling) - distance_transform_edt(m, sampling=sampling)  # noqa: E731
    reach = max(1, int(round(END_SECTION_MM / spacing[1])))
    top = signed(cord[:, max(0, upper_row - reach + 1):upper_row + 1].any(axis=1))
    bottom = signed(cord[:, lower_row:lower_row + reach].any(axis=1))
    for r in range(upper_row + 1, lower_row):
        t = (r - upper_row) / (lower_row - upper_row)
        cord[:, r] |= (((1 - t) * top + t * bottom) <= 0) & sac[:, r]


def _follow_down(lab: np.ndarray, objects: list, first: int, sac: np.ndarray, spacing: np.ndarray,
                 latest_start: int) -> np.ndarray:
    """The cord's top piece plus the dark pieces below it on its axis, gaps bridged.

    An intramedullary tumor (and its swollen cord) is not dark, so it cuts the cord in two.
    Going down from the top piece, the nearest component that starts below it, at most
    :data:`MAX_CORD_GAP_MM` lower and no lower than ``latest_start``, with its top
    cross-section within :data:`CORD_AXIS_MM` of the current lowest one, is the cord's
    continuation; the rows between are interpolated (:func:`_bridge`). ``objects``: the
    components' bounding boxes (``scipy.ndimage.find_objects(lab)``).
    """
    cord = lab == first
    max_gap = MAX_CORD_GAP_MM / spacing[1]
    while True:
        bottom = int(np.flatnonzero(cord.any(axis=(0, 2)))[-1])
        centre = _cross_section_centre(cord[:, bottom], spacing)
        below = sorted((sl[1].start, index) for index, sl in enumerate(objects, start=1)
                       if sl is not None and bottom < sl[1].start <= min(bottom + max_gap, latest_start))
        piece = next(((start, index) for start, index in below
                      if np.linalg.norm(_cross_section_centre(lab[:, start] == index, spacing) - centre)
                      <= CORD_AXIS_MM), None)
        if piece is None:
            return cord
        cord |= lab == piece[1]
        _bridge(cord, bottom, piece[0], sac, spacing)


def _cord_start_limit(vertebrae: np.ndarray | None, box) -> int | None:
    """Crop row of the centre of the :data:`CORD_START_ABOVE` body, the lowest row where the
    cord may start; None without vertebra labels (a canonical array) or without that body."""
    from ..labels import value

    if vertebrae is None:
        return None
    rows = np.nonzero(vertebrae == value(CORD_START_ABOVE))[1]
    return int(round(rows.mean())) - box[1].start if rows.size else None


def _centerline_points(sac: np.ndarray, box, rows: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Per row, the sac cross-section's centroid (full indices s, r, c); the coarse path where empty."""
    area = sac.sum(axis=(0, 2))
    ss = np.arange(sac.shape[0])[:, None, None] + box[0].start
    cc = np.arange(sac.shape[2])[None, None, :] + box[2].start
    with np.errstate(invalid="ignore", divide="ignore"):
        s_mean = (sac * ss).sum(axis=(0, 2)) / area
        c_mean = (sac * cc).sum(axis=(0, 2)) / area
    s_mean = np.where(area > 0, s_mean, points[:, 0])
    c_mean = np.where(area > 0, c_mean, points[:, 1])
    return np.stack([s_mean, rows.astype(float), c_mean], axis=1)


def segment_canal_and_cord(volume: Volume, vertebrae: Volume | None = None, progress=None,
                           cancel=None) -> CanalResult:
    """Thecal-sac and spinal-cord masks of a sagittal T2 volume, in the volume's own geometry.

    ``vertebrae`` (optional) is a vertebral-body label map on the same grid; it limits the
    search to the band just posterior to the bodies. ``progress(fraction, message)`` and
    ``cancel()`` follow :mod:`spinetumor.progress`; cancelling raises
    :class:`~spinetumor.progress.Cancelled`. Raises ``ValueError`` when no canal-like
    bright tube is found.
    """
    if vertebrae is not None and not vertebrae.same_geometry(volume):
        raise ValueError("the vertebrae label map must be on the volume's grid (shape, spacing, origin, direction)")
    check_cancel(cancel)
    report(progress, 0.0, "canal: normalizing")
    canon, _ = to_canonical(volume)
    spacing = _axis_spacing(canon)
    image = _normalize(canon.array)
    vert_c = to_canonical(vertebrae)[0].array if vertebrae is not None else None
    check_cancel(cancel)
    report(progress, 0.2, "canal: following the bright tube")
    rows, points = find_centerline(image, spacing, vert_c)
    check_cancel(cancel)
    report(progress, 0.5, "canal: growing the thecal sac")
    sac, box, csf = segment_sac(image, spacing, rows, points)
    check_cancel(cancel)
    report(progress, 0.75, "canal: finding the cord")
    cord = segment_cord(image[box], sac, csf, spacing, _cord_start_limit(vert_c, box)) & sac
    canal_full = np.zeros(image.shape, np.uint8)
    cord_full = np.zeros(image.shape, np.uint8)
    canal_full[box] = sac
    cord_full[box] = cord
    present = sac.any(axis=(0, 2))
    kept = _centerline_points(sac, box, rows, points)[present]
    centerline = canon.index_to_ras(kept) if kept.size else np.zeros((0, 3))
    check_cancel(cancel)
    report(progress, 1.0, "canal: done")
    return CanalResult(from_canonical(canal_full, volume), from_canonical(cord_full, volume), centerline)
