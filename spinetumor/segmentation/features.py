"""Per-voxel features of the random-forest tumor segmentation (paper Section III.B).

Everything works in the canonical sagittal stack (``array[s, r, c]``: left→right,
superior→inferior, anterior→posterior; :mod:`spinetumor.volume`) and only inside a box
around the spinal canal: spinal tumors of the three compartments (intramedullary,
intradural-extramedullary, extradural) live in or next to the canal, so voxels farther
than :data:`ROI_MM` from the thecal sac are never classified.

Features (all float32, distances and scales in millimetres, so they mean the same at
0.5 mm and at 1 mm in-plane spacing):

* ``intensity`` -- the denoised image divided by the median of the canal's CSF (the sac
  minus the cord). CSF is the brightest stable tissue on T2 and is always found by the
  canal step, so the ratio is scanner-independent (no arbitrary units, no 8/12/16-bit range).
* ``gauss_{1,2,4}mm`` -- in-plane Gaussian smoothing per sagittal slice (slices are 3-5 mm
  thick, so the paper's 2D processing is kept); ``neighbour_slices`` -- the mean of the
  two adjacent slices (smoothed 1 mm), which sees partial volume across slices.
* ``gradient_1mm``, ``log_{2,4}mm`` (scale-normalised Laplacian of Gaussian),
  ``local_sd_2mm`` (local standard deviation: tumor texture against smooth CSF).
* ``contrast_6mm`` -- ``gauss_1mm`` minus an in-plane 6 mm Gaussian (local background);
  ``si_contrast_{15,40}mm`` -- ``gauss_1mm`` minus its mean along the rows over +-15 mm and
  +-40 mm. The sac, the cord and the epidural fat run superior-inferior, so a focal mass
  stands out against the same structure above and below it.
* ``marrow_ratio`` -- ``gauss_2mm`` divided by the median of the tissue 8-25 mm in front of
  the sac (the vertebral bodies and discs): T2 tumor signal is usually described relative to
  marrow; ``texture_cv_3mm`` -- the local coefficient of variation of ``gauss_1mm`` over
  3 mm (tumors are heterogeneous, CSF and cord smooth).
* ``row_sac_width_ratio``, ``row_sac_mean_ratio`` -- per sagittal slice and row, the sac's
  anterior-posterior width and mean intensity divided by their running median over +-20 mm
  of rows: a mass in or against the sac widens, narrows, darkens or brightens it locally.
* ``dist_canal_mm``, ``dist_cord_mm``, ``dist_vertebrae_mm`` -- signed distances (negative
  inside) computed in 3D with the physical spacing; :data:`ABSENT_MM` when the structure is
  not available (no cord in view, no vertebra labels).
* ``ap_offset_mm``, ``lr_offset_mm`` -- signed anterior→posterior and absolute left-right
  offset from the canal's centre in the same row (which side of the sac a voxel lies on:
  vertebral body in front, epidural fat and laminae behind).
* ``si_position`` -- the row's position along the image, 0 at the top, 1 at the bottom.
  These three position features are computed but left out of the shipped forest
  (:data:`POSITION_FEATURES`, :func:`model_features`).
* ``fcm_0 .. fcm_{c-1}`` -- fuzzy c-means memberships of the normalised intensity
  (clusters sorted dark to bright), the paper's unsupervised step before the forest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Voxels farther than this (mm, 3D) from the thecal sac are not classified. The largest
#: phantom tumors (9 ml vertebral metastases, ventrolateral epidural masses) reach about
#: 20 mm from the sac's edge; the margin holds them with a few millimetres to spare.
ROI_MM = 24.0
#: Extra margin (mm) of the feature box beyond the region of interest, so smoothing
#: filters see real image rather than the box's border.
BOX_MARGIN_MM = 8.0
#: Value of a distance feature whose structure is absent (no cord, no vertebra labels).
ABSENT_MM = 100.0
#: Fuzzy c-means of the normalised intensity is fitted on at most this many ROI voxels.
FCM_SAMPLE = 200_000
#: In-plane spacing (mm) of the working grid: finer images are block-averaged in-plane by
#: an integer factor (0.5 mm -> 1.0 mm) so features and forest run on 4x fewer voxels; the
#: probabilities are interpolated back to the input grid before thresholding.
WORK_MM = 1.0

BASE_FEATURES = ("intensity", "gauss_1mm", "gauss_2mm", "gauss_4mm", "neighbour_slices", "gradient_1mm",
                 "log_2mm", "log_4mm", "local_sd_2mm", "contrast_6mm", "si_contrast_15mm", "si_contrast_40mm",
                 "marrow_ratio", "texture_cv_3mm", "row_sac_width_ratio", "row_sac_mean_ratio",
                 "dist_canal_mm", "dist_cord_mm", "dist_vertebrae_mm",
                 "ap_offset_mm", "lr_offset_mm", "si_position")


#: Features computed but not given to the shipped forest: with a few dozen training
#: phantoms the forest memorised where their tumors sat through these coordinates (in
#: development runs they were its most important features and its false positives
#: followed them along the canal).
POSITION_FEATURES = ("ap_offset_mm", "lr_offset_mm", "si_position")


#: Features from the tumor probability network (:mod:`.tumor_net`): its probability and the
#: same smoothed in-plane over 2 mm (a voxel at the edge of a confident region).
NET_FEATURES = ("net_probability", "net_probability_2mm")


def feature_names(clusters: int, net: bool = False) -> tuple[str, ...]:
    """All computed feature names for ``clusters`` fuzzy c-means clusters (0: no FCM features),
    with the network's when ``net``."""
    return BASE_FEATURES + (NET_FEATURES if net else ()) + tuple(f"fcm_{k}" for k in range(int(clusters)))


def model_features(clusters: int, position: bool = False, net: bool = False) -> tuple[str, ...]:
    """The features a forest is trained on: all computed ones, without :data:`POSITION_FEATURES`
    unless ``position``."""
    return tuple(n for n in feature_names(clusters, net) if position or n not in POSITION_FEATURES)


@dataclass
class FeatureStack:
    """Features of the voxels of a region of interest, with where they came from.

    ``box`` (three slices) is the crop of the canonical stack the work was done in;
    ``factor`` the in-plane block size (rows, columns) of the working grid (see
    :data:`WORK_MM`); ``roi`` (bool, working-grid shape of the box) the voxels that were
    classified; ``values`` (N x F float32)
    one row per ``roi`` voxel in C order; ``names`` the column names; ``reference`` the CSF
    median used to normalise; ``slices_kept`` the canonical slice indices kept by
    :func:`select_slices` (all slices of the box when no selection was made).
    """

    box: tuple
    factor: tuple
    roi: np.ndarray
    values: np.ndarray
    names: tuple
    reference: float
    slices_kept: np.ndarray

    def columns(self, names, rows=None) -> np.ndarray:
        """The feature matrix restricted to ``names`` (in that order) and to ``rows`` (a boolean
        mask or indices of the ROI voxels; default all). Rows are taken first, so only the rows
        asked for are copied."""
        index = [self.names.index(n) for n in names]
        return (self.values if rows is None else self.values[rows])[:, index]


def axis_spacing(canon) -> np.ndarray:
    """Spacing (mm) per canonical array axis (s, r, c) of a canonical Volume (whose spacing is (c, r, s))."""
    return np.asarray(canon.spacing[::-1], dtype=float)


def work_factor(spacing: np.ndarray) -> tuple[int, int]:
    """In-plane block sizes (rows, columns) bringing the spacing closest to :data:`WORK_MM`."""
    return tuple(max(1, int(round(WORK_MM / float(sp)))) for sp in spacing[1:])


def canal_box(canal: np.ndarray, spacing: np.ndarray, factor=(1, 1),
              margin_mm: float = ROI_MM + BOX_MARGIN_MM) -> tuple:
    """The canal's bounding box grown by ``margin_mm``, clipped to the array, rows and columns
    trimmed to whole blocks of ``factor``."""
    if not canal.any():
        raise ValueError("the canal mask is empty: the tumor segmentation needs the thecal sac")
    idx = np.nonzero(canal)
    grow = np.ceil(margin_mm / spacing).astype(int)
    box = [slice(max(int(i.min()) - g, 0), min(int(i.max()) + g + 1, n))
           for i, g, n in zip(idx, grow, canal.shape)]
    for axis, f in zip((1, 2), factor):
        start, stop = box[axis].start, box[axis].stop
        box[axis] = slice(start, start + max(f, (stop - start) // f * f))
    return tuple(box)


def block_mean(array: np.ndarray, factor) -> np.ndarray:
    """Mean over in-plane blocks of ``factor`` (rows, columns) of an [s, r, c] array (float32)."""
    fr, fc = factor
    a = np.asarray(array, dtype=np.float32)
    if fr == 1 and fc == 1:
        return a
    s, r, c = a.shape
    return a.reshape(s, r // fr, fr, c // fc, fc).mean(axis=(2, 4), dtype=np.float32)


def upsample(array: np.ndarray, factor, shape) -> np.ndarray:
    """Linear interpolation of a working-grid [s, r, c] array back to the box's full ``shape``.

    Block ``b`` of size ``f`` covers full indices ``b*f .. b*f+f-1``; its value sits at the
    block's centre (``grid_mode``), and values beyond the outermost centres are held.
    """
    from scipy import ndimage

    if tuple(factor) == (1, 1):
        return np.asarray(array, dtype=np.float32)
    return ndimage.zoom(np.asarray(array, np.float32), (1, factor[0], factor[1]), order=1,
                        mode="nearest", grid_mode=True, output=np.float32)[:, :shape[1], :shape[2]]


def signed_distance(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance (mm) to a mask's boundary: positive outside, negative inside.

    The inside distance is computed on the mask's bounding box only (padded by one voxel),
    which is exact and much cheaper for a thin structure such as the canal.
    :data:`ABSENT_MM` everywhere for an empty mask.
    """
    from scipy import ndimage

    if not mask.any():
        return np.full(mask.shape, ABSENT_MM, np.float32)
    out = ndimage.distance_transform_edt(~mask, sampling=spacing).astype(np.float32)
    idx = np.nonzero(mask)
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)
    inner = np.pad(mask[box], 1)
    inside = ndimage.distance_transform_edt(inner, sampling=spacing)[1:-1, 1:-1, 1:-1]
    out[box] -= inside.astype(np.float32)
    return np.minimum(out, ABSENT_MM)


def signed_distances(masks: dict, spacing: np.ndarray) -> dict:
    """:func:`signed_distance` of each mask in ``masks`` (a None mask gives None), side by side.

    scipy's distance transform releases the GIL, so the masks run in threads
    (:func:`~spinetumor.device.thread_map`): the same arrays as one after the other, sooner.
    """
    from ..device import thread_map

    given = [name for name, mask in masks.items() if mask is not None]
    found = dict(zip(given, thread_map(lambda name: signed_distance(masks[name], spacing), given)))
    return {name: found.get(name) for name in masks}


def csf_reference(image: np.ndarray, canal: np.ndarray, cord: np.ndarray) -> float:
    """Median intensity of the CSF (sac minus cord; the whole sac if that is empty); must be > 0."""
    csf = canal & ~cord
    values = image[csf] if csf.any() else image[canal]
    ref = float(np.median(values)) if values.size else 0.0
    if not ref > 0:
        raise ValueError("the canal's CSF has no positive intensity; cannot normalise the image")
    return ref


def _row_centres(canal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the (s, c) centroid of the canal's cross-section, interpolated where the row has none."""
    area = canal.sum(axis=(0, 2)).astype(float)
    rows = np.nonzero(area)[0]
    s_idx = np.arange(canal.shape[0], dtype=float)[:, None, None]
    c_idx = np.arange(canal.shape[2], dtype=float)[None, None, :]
    s_sum = (canal * s_idx).sum(axis=(0, 2))
    c_sum = (canal * c_idx).sum(axis=(0, 2))
    all_rows = np.arange(canal.shape[1])
    s_c = np.interp(all_rows, rows, s_sum[rows] / area[rows])
    c_c = np.interp(all_rows, rows, c_sum[rows] / area[rows])
    return s_c, c_c


def fcm_memberships(values: np.ndarray, clusters: int, seed: int = 0) -> np.ndarray:
    """Fuzzy c-means memberships (N x c, clusters dark to bright) of normalised intensities.

    Fitted with the exact-histogram FCM of :mod:`.fcm` (binned: the data are floats) on a
    regular subsample of at most :data:`FCM_SAMPLE` values, then evaluated at every value.
    """
    from .fcm import fcm_intensity

    values = np.asarray(values, dtype=np.float64).ravel()
    step = max(1, values.size // FCM_SAMPLE)
    model = fcm_intensity(np.clip(values[::step], 0.0, 3.0), clusters, seed=seed, bins=512)
    return model.predict(np.clip(values, 0.0, 3.0)).T.astype(np.float32)


def select_slices(hard: np.ndarray, roi: np.ndarray, spacing: np.ndarray, min_area_mm2: float = 20.0) -> np.ndarray:
    """The paper's slice selection: sagittal slices holding a tumor-like cluster region near the canal.

    ``hard`` is the hard fuzzy c-means label (0 = darkest cluster) of every box voxel and
    ``roi`` the voxels near the canal. A slice is kept when the ROI part of it holds a
    connected in-plane region of at least ``min_area_mm2`` whose cluster is not the darkest
    one: on T2, tumors of all three compartments are iso- to hyperintense to marrow (never
    as dark as cortical bone, ligament or flow voids), so a slice whose near-canal tissue
    is all in the darkest cluster, or only in specks, cannot hold one. Returns a bool per
    box slice. ``benchmarks/segmentation.py`` measures the tumor voxels this loses.
    """
    from scipy import ndimage

    pixel_mm2 = float(spacing[1] * spacing[2])
    keep = np.zeros(hard.shape[0], bool)
    for s in range(hard.shape[0]):
        candidate = roi[s] & (hard[s] > 0)
        if candidate.sum() * pixel_mm2 < min_area_mm2:
            continue
        lab, n = ndimage.label(candidate)
        if n and np.bincount(lab.ravel())[1:].max() * pixel_mm2 >= min_area_mm2:
            keep[s] = True
    return keep


@dataclass
class WorkingCrop:
    """The canal box of a canonical stack on the working grid: what features and network start from.

    ``box`` (three slices of the canonical stack), ``factor`` (in-plane block size),
    ``spacing`` (s, r, c) of the working grid, the block-averaged ``image`` and the
    ``canal``, ``cord`` and ``vertebrae`` (None when not given) masks on that grid.
    """

    box: tuple
    factor: tuple
    spacing: np.ndarray
    image: np.ndarray
    canal: np.ndarray
    cord: np.ndarray
    vertebrae: np.ndarray | None

    def normalised(self) -> np.ndarray:
        """The (not denoised) image divided by the CSF median: the tumor network's input."""
        return (self.image / csf_reference(self.image, self.canal, self.cord)).astype(np.float32)


def working_crop(image: np.ndarray, spacing, canal: np.ndarray, cord: np.ndarray,
                 vertebrae: np.ndarray | None) -> WorkingCrop:
    """Crop a canonical [s, r, c] stack to :func:`canal_box` and block-average it in-plane to the working grid."""
    spacing = np.asarray(spacing, dtype=float)
    factor = work_factor(spacing)
    box = canal_box(canal, spacing, factor)
    canal_w = block_mean(canal[box], factor) >= 0.5
    if not canal_w.any():
        canal_w = block_mean(canal[box], factor) > 0
    return WorkingCrop(box, factor, spacing * np.array([1.0, factor[0], factor[1]]), block_mean(image[box], factor),
                       canal_w, block_mean(cord[box], factor) >= 0.5,
                       block_mean(vertebrae[box], factor) >= 0.5 if vertebrae is not None else None)


def compute_features(image: np.ndarray, spacing: np.ndarray, canal: np.ndarray, cord: np.ndarray,
                     vertebrae: np.ndarray | None, clusters: int, *, denoiser: str = "shearlet",
                     select: bool = True, roi_mm: float = ROI_MM, net=None, cancel=None) -> FeatureStack:
    """Features of the voxels within ``roi_mm`` of the canal, on the working grid of the canonical stack.

    ``image`` is the canonical [s, r, c] array, ``spacing`` its per-axis spacing (mm),
    ``canal``/``cord``/``vertebrae`` bool masks on the same grid (``vertebrae`` may be None).
    The image is cropped to :func:`canal_box`, block-averaged in-plane to the working grid
    (:data:`WORK_MM`), denoised there with ``denoiser`` (see
    :func:`~spinetumor.segmentation.denoise.denoise`), normalised by the CSF median and
    filtered per sagittal slice. With ``clusters`` > 0 fuzzy c-means memberships are added
    and, when ``select`` is true, only the slices of :func:`select_slices` are kept. With
    ``net`` (a loaded :class:`~.tumor_net.TumorNet`) the network's :data:`NET_FEATURES` are added.
    """
    from ..progress import check_cancel
    from .denoise import denoise

    w = working_crop(image, spacing, canal, cord, vertebrae)
    box, factor, work, crop, canal_w, cord_w, vert_w = w.box, w.factor, w.spacing, w.image, w.canal, w.cord, w.vertebrae
    smooth = denoise(crop, denoiser, spacing=tuple(work[::-1])) if denoiser != "none" else crop
    check_cancel(cancel)
    reference = csf_reference(smooth, canal_w, cord_w)
    norm = (smooth / reference).astype(np.float32)
    dist = signed_distances({"canal": canal_w, "cord": cord_w, "vertebrae": vert_w}, work)
    dist_canal = dist["canal"]
    roi = dist_canal <= roi_mm
    memberships = None
    kept = np.arange(box[0].start, box[0].stop)
    if clusters > 0:
        memberships = fcm_memberships(norm[roi], clusters)
        if select:
            hard = np.zeros(norm.shape, np.int16)
            hard[roi] = np.argmax(memberships, axis=1)
            keep = select_slices(hard, roi, work)
            memberships = memberships[np.repeat(keep, roi.sum(axis=(1, 2)))]
            roi = roi & keep[:, None, None]
            kept = kept[keep]
    check_cancel(cancel)
    g1, g2 = _smoothed(norm, work)
    columns = _image_features(norm, roi, work, g1, g2)
    columns.update(_context_features(norm, roi, work, canal_w, cord_w, g1, g2))
    check_cancel(cancel)
    columns["dist_canal_mm"] = dist_canal[roi]
    columns["dist_cord_mm"] = dist["cord"][roi]
    if dist["vertebrae"] is not None:
        columns["dist_vertebrae_mm"] = dist["vertebrae"][roi]
    else:
        columns["dist_vertebrae_mm"] = np.full(int(roi.sum()), ABSENT_MM, np.float32)
    columns.update(_position_features(canal, roi, box, factor, spacing))
    if net is not None:
        columns.update(_net_features(net, w, roi, cancel))
    for k in range(clusters):
        columns[f"fcm_{k}"] = memberships[:, k]
    names = feature_names(clusters, net is not None)
    values = np.empty((int(roi.sum()), len(names)), np.float32)
    for j, name in enumerate(names):
        values[:, j] = columns[name]
    return FeatureStack(box, factor, roi, values, names, reference, kept)


def _smoothed(norm: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``norm`` smoothed in-plane with Gaussians of 1 and 2 mm, side by side
    (:func:`~spinetumor.device.thread_map`; scipy's filters release the GIL); both feature
    groups start from them."""
    from scipy import ndimage

    from ..device import thread_map

    def smooth(mm: float) -> np.ndarray:
        return ndimage.gaussian_filter(norm, (0.0, mm / spacing[1], mm / spacing[2]), mode="nearest")

    g1, g2 = thread_map(smooth, (1.0, 2.0))
    return g1, g2


def _image_features(norm: np.ndarray, roi: np.ndarray, spacing: np.ndarray, g1: np.ndarray,
                    g2: np.ndarray) -> dict:
    """The intensity features (smoothing, gradient, LoG, local sd, neighbour slices) at the ROI voxels;
    ``g1``, ``g2``: ``norm`` smoothed by :func:`_smoothed`."""
    from scipy import ndimage

    def inplane(mm: float) -> tuple:
        return (0.0, mm / spacing[1], mm / spacing[2])

    out = {"intensity": norm[roi]}
    out["gauss_1mm"] = g1[roi]
    out["gauss_2mm"] = g2[roi]
    out["gauss_4mm"] = ndimage.gaussian_filter(g2, inplane(np.sqrt(12.0)), mode="nearest")[roi]
    padded = np.pad(g1, ((1, 1), (0, 0), (0, 0)), mode="edge")
    out["neighbour_slices"] = (0.5 * (padded[:-2] + padded[2:]))[roi]
    out["gradient_1mm"] = ndimage.gaussian_gradient_magnitude(norm, inplane(1.0), mode="nearest")[roi]
    for mm in (2.0, 4.0):
        out[f"log_{mm:g}mm"] = (ndimage.gaussian_laplace(norm, inplane(mm), mode="nearest") * mm * mm)[roi]
    sq = ndimage.gaussian_filter(norm * norm, inplane(2.0), mode="nearest")
    out["local_sd_2mm"] = np.sqrt(np.clip(sq - g2 * g2, 0.0, None))[roi]
    out["contrast_6mm"] = (g1 - ndimage.gaussian_filter(g2, inplane(np.sqrt(32.0)), mode="nearest"))[roi]
    for mm in (15.0, 40.0):
        size = 2 * int(round(mm / spacing[1])) + 1
        out[f"si_contrast_{mm:g}mm"] = (g1 - ndimage.uniform_filter1d(g1, size, axis=1, mode="nearest"))[roi]
    return out


def _context_features(norm: np.ndarray, roi: np.ndarray, spacing: np.ndarray, canal: np.ndarray,
                      cord: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> dict:
    """Marrow-relative intensity, texture and the per-row sac anomalies (see the module docstring)."""
    from scipy import ndimage

    def inplane(mm: float) -> tuple:
        return (0.0, mm / spacing[1], mm / spacing[2])

    s_c, c_c = _row_centres(canal)
    cols = np.arange(norm.shape[2])[None, :]
    offset = (cols - c_c[:, None]) * spacing[2]                     # (r, c) mm, + posterior
    band = (offset > -25.0) & (offset < -8.0)
    near_mid = np.abs(np.arange(norm.shape[0]) - np.median(s_c)) * spacing[0] < 10.0
    front = norm[near_mid][:, band] if near_mid.any() and band.any() else norm[canal]
    marrow = float(np.median(front)) if front.size else 1.0
    out = {"marrow_ratio": g2[roi] / max(marrow, 1e-3)}
    m3 = ndimage.gaussian_filter(g1, inplane(3.0), mode="nearest")
    sq3 = ndimage.gaussian_filter(g1 * g1, inplane(3.0), mode="nearest")
    out["texture_cv_3mm"] = (np.sqrt(np.clip(sq3 - m3 * m3, 0.0, None)) / np.maximum(m3, 1e-3))[roi]
    width = canal.sum(axis=2).astype(np.float32)                     # (s, r)
    total = np.where(canal, norm, 0.0).sum(axis=2)
    mean = np.where(width > 0, total / np.maximum(width, 1), 0.0).astype(np.float32)
    size = 2 * int(round(20.0 / spacing[1])) + 1
    ratios = {}
    for name, prof in (("row_sac_width_ratio", width), ("row_sac_mean_ratio", mean)):
        ref = ndimage.median_filter(prof, size=(1, size), mode="nearest")
        ratios[name] = np.where(ref > 0, prof / np.maximum(ref, 1e-3), 1.0).astype(np.float32)
    s_idx, r_idx, _ = np.nonzero(roi)
    for name, table in ratios.items():
        out[name] = table[s_idx, r_idx]
    return out


def _net_features(net, crop: WorkingCrop, roi: np.ndarray, cancel=None) -> dict:
    """The tumor network's probability (and its 2 mm in-plane smoothing) at the ROI voxels.

    Only the slices holding ROI voxels go through the network: the smoothing is in-plane,
    so the other slices' probabilities are never read.
    """
    from scipy import ndimage

    from .tumor_net import predict_probability

    slices = np.nonzero(roi.any(axis=(1, 2)))[0]
    prob = predict_probability(net, crop.normalised(), crop.canal, crop.spacing, cancel=cancel, slices=slices)
    sigma = (0.0, 2.0 / crop.spacing[1], 2.0 / crop.spacing[2])
    return {"net_probability": prob[roi],
            "net_probability_2mm": ndimage.gaussian_filter(prob, sigma, mode="nearest")[roi]}


def _position_features(canal: np.ndarray, roi: np.ndarray, box, factor, spacing: np.ndarray) -> dict:
    """Offsets (mm) from the canal's centre in the voxel's row and the normalised row position."""
    s_c, c_c = _row_centres(canal)
    s_idx, r_idx, c_idx = np.nonzero(roi)
    r_full = box[1].start + r_idx * factor[0] + (factor[0] - 1) / 2.0
    c_full = box[2].start + c_idx * factor[1] + (factor[1] - 1) / 2.0
    row = np.clip(np.rint(r_full).astype(int), 0, canal.shape[1] - 1)
    return {
        "ap_offset_mm": ((c_full - c_c[row]) * spacing[2]).astype(np.float32),
        "lr_offset_mm": np.abs((s_idx + box[0].start - s_c[row]) * spacing[0]).astype(np.float32),
        "si_position": (r_full / max(canal.shape[1] - 1, 1)).astype(np.float32),
    }


def working_truth(mask: np.ndarray, stack: FeatureStack) -> np.ndarray:
    """A full-grid bool mask on the working grid (block fraction >= 0.5) at the stack's ROI voxels."""
    return block_mean(mask[stack.box], stack.factor)[stack.roi] >= 0.5
