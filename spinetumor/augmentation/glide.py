"""Gliding a tumor patch along a target's CSF path: placement, rotation, sizing, blending, checks.

For each position along the path (1 mm steps from T11 to L5, :mod:`.csf_path`):

1. **Placement** (:func:`place`): the patch is turned by the angle between its source tangent and
   the target's tangent there (a rotation about the left-right axis), and its centre is set
   along the local normal so that it sits in its compartment: an intramedullary tumor centred
   in the cord, an intradural-extramedullary one in the CSF between cord and dura on the side it
   had in the source (the whole sac below the conus), an extradural one just outside the dura on
   its source side. Where the compartment is too narrow, the patch is shrunk to fit (down to
   :data:`MIN_FIT`); positions where even that fails are skipped.
2. **Sizing per sagittal slice**: in 2D mode (the paper's), every target slice that crosses the
   tumor gets the source's largest cross-section scaled by the source's size at the same lateral
   distance from the tumor centre (:meth:`TumorPatch.scale_at`), so the tumor is largest near its
   centre slice and shrinks to each side. In 3D mode the whole patch is resampled as one object.
3. **Blending**: the patch (resampled from its spacing to the target's, linear) is cut to its
   compartment, its intensities scaled by target CSF / source CSF near the tumor, and blended
   with a feathered alpha (the interpolated mask smoothed by :data:`FEATHER_PX`). The exact
   output mask is ``alpha >= 0.5`` inside the compartment.
4. **Checks**: :func:`~.compartments.check_compartment` on the final mask (failures are dropped),
   at most :data:`MAX_CLIPPED` of the tumor may be cut away by the compartment, and the boundary
   gradient relative to the source's is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..volume import Volume, from_canonical, to_canonical
from .compartments import Compartments, as_compartments, check_compartment
from .csf_path import CSFPath, csf_path
from .extract import TumorPatch, boundary_gradient, local_csf, surround_intensity

#: Smallest shrink factor that may fit a tumor into a narrow compartment.
MIN_FIT = 0.6
#: Largest fraction of the (interpolated) tumor the compartment may cut away.
MAX_CLIPPED = 0.25
#: Gaussian sigma (pixels) that feathers the blending alpha.
FEATHER_PX = 0.5
#: Smallest equivalent radius (mm) of a cross-section worth inserting in a slice.
MIN_RADIUS_MM = 1.0
#: Sampling step (mm) of the normal line that finds the compartment's interval.
LINE_STEP_MM = 0.25


@dataclass
class Target:
    """A tumor-free scan prepared for gliding: canonical arrays, compartments and CSF path."""

    name: str
    reference: Volume            # the input image (its geometry is the output's in 3D mode)
    canonical: Volume            # the canonical image (geometry of 2D samples)
    image: np.ndarray            # float32 canonical
    vertebrae: np.ndarray        # uint8 canonical
    comp: Compartments
    path: CSFPath
    csf: np.ndarray              # local CSF intensity at every path point

    @property
    def spacing(self) -> np.ndarray:
        return self.path.spacing


@dataclass
class Placement:
    """Where and how a patch goes: path index, centre (canonical mm), rotation (rad), fit scale."""

    index: int
    arc_mm: float
    level: str
    centre_mm: np.ndarray
    rotation: float
    scale: float


@dataclass
class Sample:
    """One augmented sample: a 2D slice ([R, C], ``slice_index`` set) or a 3D canonical stack."""

    image: np.ndarray
    mask: np.ndarray
    vertebrae: np.ndarray
    placement: Placement
    slice_index: int | None
    ok: bool
    reason: str
    boundary_ratio: float
    scale: float
    clipped: float


def prepare_target(image: Volume, vertebrae: Volume, anatomy_or_canal_cord=None, name: str = "",
                   step_mm: float = 1.0) -> Target:
    """Canonical arrays, sac/cord masks and the T11-L5 CSF path of a target scan.

    When ``vertebrae`` labels no body at all, the path runs along the whole sac (levels unnamed).

    ``anatomy_or_canal_cord``: a phantom anatomy map or a ``(canal, cord)`` pair on the image's
    grid; None segments them with :func:`spinetumor.segmentation.canal.segment_canal_and_cord`.
    """
    if not vertebrae.same_geometry(image):
        raise ValueError("the vertebra labels must be on the image's grid (shape, spacing, origin, direction)")
    if anatomy_or_canal_cord is None:
        from ..segmentation.canal import segment_canal_and_cord

        result = segment_canal_and_cord(image, vertebrae)
        anatomy_or_canal_cord = (result.canal, result.cord)
    canon, _ = to_canonical(image)
    if isinstance(anatomy_or_canal_cord, (tuple, list)):
        comp = as_compartments(tuple(to_canonical(v)[0].array for v in anatomy_or_canal_cord))
    else:
        comp = as_compartments(to_canonical(anatomy_or_canal_cord)[0].array)
    vert = to_canonical(vertebrae)[0].array.astype(np.uint8)
    spacing = np.asarray(canon.spacing[::-1], float)
    # no labeled body at all (labeling failed or another spine region): glide along the whole sac
    path = csf_path(comp.sac, spacing, vert if vert.any() else None, step_mm)
    img = canon.array.astype(np.float32)
    no_exclusion = np.zeros(img.shape, bool)
    every = np.arange(0, len(path), 5)
    idx = path.points_index
    values = [local_csf(img, comp, no_exclusion, idx[i], spacing) for i in every]
    csf = np.interp(np.arange(len(path)), every, values)
    return Target(name, image, canon, img, vert, comp, path, csf)


# --------------------------------------------------------------------------- placement

def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) index of every run of True."""
    padded = np.r_[False, flags, False].astype(np.int8)
    starts = np.nonzero(np.diff(padded) == 1)[0]
    stops = np.nonzero(np.diff(padded) == -1)[0] - 1
    return list(zip(starts, stops))


def _line(target: Target, k: int, point_yz, normal_yz, reach_mm: float = 25.0):
    """Sac and cord flags along the normal line through ``point_yz`` in slice k, with the line's t (mm)."""
    t = np.arange(-reach_mm, reach_mm + 1e-9, LINE_STEP_MM)
    yz = np.asarray(point_yz)[None] + t[:, None] * np.asarray(normal_yz)[None]
    r = np.round(yz[:, 0] / target.spacing[1]).astype(int)
    c = np.round(yz[:, 1] / target.spacing[2]).astype(int)
    inside = (r >= 0) & (r < target.image.shape[1]) & (c >= 0) & (c < target.image.shape[2])
    sac = np.zeros(t.size, bool)
    cord = np.zeros(t.size, bool)
    sac[inside] = target.comp.sac[k, r[inside], c[inside]]
    cord[inside] = target.comp.cord[k, r[inside], c[inside]]
    return t, sac, cord


def _nearest_run(runs, t: np.ndarray, at: float = 0.0):
    """The run (as t interval, half a step grown on each side) closest to ``at``; None when no run."""
    if not runs:
        return None
    half = LINE_STEP_MM / 2
    intervals = [(t[a] - half, t[b] + half) for a, b in runs]
    return min(intervals, key=lambda iv: 0.0 if iv[0] <= at <= iv[1] else min(abs(iv[0] - at), abs(iv[1] - at)))


def _fit(interval, post: float, ant: float):
    """(scale, centre t) that fits extents (post, ant) centred in ``interval``; None below MIN_FIT."""
    lo, hi = interval
    scale = min(1.0, (hi - lo) / (post + ant))
    if scale < MIN_FIT:
        return None
    return scale, (lo + hi) / 2 + (ant - post) * scale / 2


def _lateral_centre(target: Target, patch: TumorPatch, row: int, path_x: float) -> float | None:
    """x (mm) of the tumor centre: the cord's centre for intramedullary tumors, else the sac centre
    plus the source's lateral offset, kept within the sac's half-width."""
    sp = target.spacing
    if patch.tumor_type == "intramedullary":
        cord_s = np.nonzero(target.comp.cord[:, row].any(axis=1))[0]
        return None if not cord_s.size else float(cord_s.mean() * sp[0])
    sac_s = np.nonzero(target.comp.sac[:, row].any(axis=1))[0]
    if not sac_s.size:
        return None
    half = (sac_s[-1] - sac_s[0]) * sp[0] / 2
    return path_x + float(np.clip(patch.lateral_mm, -half, half))


def place(target: Target, patch: TumorPatch, index: int, slice_index: int | None = None) -> Placement | None:
    """Where ``patch`` goes at path point ``index``, inside its compartment; None when it cannot fit.

    ``slice_index`` is the patch slice whose extents count (the largest cross-section in 2D
    mode), None for the whole patch (3D mode).
    """
    path = target.path
    P = path.points_mm[index]
    normal = path.normal[index]
    row = int(np.clip(round(P[1] / target.spacing[1]), 0, target.image.shape[1] - 1))
    x = _lateral_centre(target, patch, row, float(P[0]))
    if x is None:
        return None
    k = int(np.clip(round(x / target.spacing[0]), 0, target.image.shape[0] - 1))
    t, sac, cord = _line(target, k, P[1:], normal)
    sac_iv = _nearest_run(_runs(sac), t)
    if sac_iv is None:
        return None
    s_ang = patch.angle
    source_normal = np.array([-np.sin(s_ang), np.cos(s_ang)])
    post, ant = patch.extents(source_normal, slice_index)
    in_sac = (t >= sac_iv[0]) & (t <= sac_iv[1])
    cord_iv = _nearest_run(_runs(cord & in_sac), t, (sac_iv[0] + sac_iv[1]) / 2)
    kind = patch.tumor_type
    if kind == "intramedullary":
        fitted = None if cord_iv is None else _fit(cord_iv, post, ant)
    elif kind == "intradural-extramedullary":
        if cord_iv is None:
            fitted = _fit(sac_iv, post, ant)
        else:
            sides = {1.0: (cord_iv[1], sac_iv[1]), -1.0: (sac_iv[0], cord_iv[0])}
            first = patch.side_cord or patch.side_sac
            fitted = _fit(sides[first], post, ant) or _fit(sides[-first], post, ant)
    else:
        fitted = (1.0, sac_iv[1] + ant) if patch.side_sac > 0 else (1.0, sac_iv[0] - post)
    if fitted is None:
        return None
    scale, t_centre = fitted
    centre = np.r_[x, P[1:] + t_centre * normal]
    level = path.levels[index] if path.levels else ""
    return Placement(int(index), float(path.arc_mm[index]), level, centre,
                     float(path.angle[index] - patch.angle), float(scale))


def choose_positions(target: Target, patch: TumorPatch, count: int, rng: np.random.Generator,
                     mode: str = "2d") -> list[Placement]:
    """``count`` placements spread evenly (random phase) over the path points where the patch fits."""
    slice_index = patch.largest_slice if mode == "2d" else None
    feasible = [p for p in (place(target, patch, i, slice_index) for i in range(len(target.path))) if p]
    if not feasible:
        return []
    count = min(count, len(feasible))
    phase = rng.uniform(0.0, 1.0)
    picks = sorted({int((j + phase) * len(feasible) / count) for j in range(count)})
    return [feasible[min(i, len(feasible) - 1)] for i in picks]


# --------------------------------------------------------------------------- insertion

def _allowed(comp_sac: np.ndarray, comp_cord: np.ndarray, kind: str) -> np.ndarray:
    """Where a tumor of ``kind`` may be: the cord, the sac outside the cord, or outside the sac."""
    if kind == "intramedullary":
        return comp_cord
    if kind == "intradural-extramedullary":
        return comp_sac & ~comp_cord
    return ~comp_sac


def _rotation(angle: float) -> np.ndarray:
    """2x2 rotation in the (y, z) plane by ``angle`` radians (from inferior toward posterior)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def match_contrast(tumor: np.ndarray, base: np.ndarray, mask: np.ndarray, patch: TumorPatch,
                   gain: float) -> np.ndarray:
    """Tumor intensities for the target: the source's step against its surroundings, kept.

    ``gain`` (target CSF / source CSF) converts the source's units to the target's. The
    tumor is placed relative to the tissue around it in the target (median of the in-plane
    ring outside ``mask`` in ``base``) with the step it had against its own surroundings in
    the source, scaled by ``gain``: its edge keeps the source's contrast, so the boundary
    gradient matches the source's instead of following an unrelated new background. A patch
    without a known surround falls back to plain CSF-ratio scaling.
    """
    target_surround = surround_intensity(base, mask) if mask.any() else float("nan")
    if not (np.isfinite(patch.surround) and np.isfinite(target_surround)):
        return tumor * gain
    return np.clip(target_surround + gain * (tumor - patch.surround), 0.0, None)


def _blend(base: np.ndarray, tumor: np.ndarray, alpha: np.ndarray, allowed: np.ndarray, gain: float,
           patch: TumorPatch):
    """(blended crop, exact mask, clipped fraction) from the interpolated tumor and alpha."""
    from scipy.ndimage import gaussian_filter

    raw = alpha >= 0.5
    mask = raw & allowed
    n_raw = int(raw.sum())
    clipped = 1.0 - mask.sum() / n_raw if n_raw else 1.0
    sigma = [0.0] * (alpha.ndim - 2) + [FEATHER_PX, FEATHER_PX]
    soft = np.clip(gaussian_filter(alpha, sigma), 0.0, 1.0) * allowed
    return (1.0 - soft) * base + soft * match_contrast(tumor, base, mask, patch, gain), mask, clipped


def _crop_box(centre_idx, half_idx, shape):
    """Slices of a box of half-sizes ``half_idx`` about ``centre_idx``, clipped to ``shape``."""
    return tuple(slice(max(int(np.floor(c - h)), 0), min(int(np.ceil(c + h)) + 1, n))
                 for c, h, n in zip(centre_idx, half_idx, shape))


def _patch_radius(mask: np.ndarray, spacing, anchor_mm) -> float:
    """Largest distance (mm) from the anchor to a mask voxel (plus one voxel)."""
    idx = np.argwhere(mask)
    return float(np.linalg.norm(idx * spacing - anchor_mm, axis=1).max() + max(spacing))


def insert_2d(target: Target, patch: TumorPatch, placement: Placement, k: int) -> Sample | None:
    """Insert the patch's largest cross-section, sized for target slice ``k``; None when the slice misses it."""
    from scipy.ndimage import affine_transform

    sp = target.spacing
    lateral = k * sp[0] - placement.centre_mm[0]
    f = patch.scale_at(lateral) * placement.scale
    if f <= 0 or f * patch.profile()[1].max() < MIN_RADIUS_MM:
        return None
    src = patch.largest_slice
    radius = _patch_radius(patch.mask[src:src + 1], patch.spacing, patch.anchor_mm * [0, 1, 1])
    centre_rc = placement.centre_mm[1:] / sp[1:]
    box = _crop_box(centre_rc, (radius * f + 2 * sp[1:]) / sp[1:], target.image.shape[1:])
    origin_mm = np.array([b.start for b in box]) * sp[1:]
    Rinv = _rotation(-placement.rotation) / f
    matrix = np.diag(1 / patch.spacing[1:]) @ Rinv @ np.diag(sp[1:])
    offset = (Rinv @ (origin_mm - placement.centre_mm[1:]) + patch.anchor_mm[1:]) / patch.spacing[1:]
    shape = tuple(b.stop - b.start for b in box)
    alpha = affine_transform(patch.mask[src].astype(np.float32), matrix, offset, shape, order=1, cval=0.0)
    tumor = affine_transform(patch.image[src], matrix, offset, shape, order=1, mode="nearest")
    allowed = _allowed(target.comp.sac[k][box], target.comp.cord[k][box], patch.tumor_type)
    gain = target.csf[placement.index] / patch.reference
    image = target.image[k].copy()
    image[box], local_mask, clipped = _blend(image[box], tumor, alpha, allowed, gain, patch)
    if not (alpha >= 0.5).any():
        return None
    mask = np.zeros(image.shape, np.uint8)
    mask[box] = local_mask
    return _finish(target, patch, placement, image, mask, target.vertebrae[k], k, clipped, f,
                   target.comp.slice(k), sp[1:], mask)


def insert_3d(target: Target, patch: TumorPatch, placement: Placement) -> Sample:
    """Insert the whole patch as one object (resampled to the target grid, turned about left-right)."""
    from scipy.ndimage import affine_transform

    sp, f = target.spacing, placement.scale
    radius = _patch_radius(patch.mask, patch.spacing, patch.anchor_mm)
    centre_idx = placement.centre_mm / sp
    box = _crop_box(centre_idx, (radius * f + 2 * sp) / sp, target.image.shape)
    origin_mm = np.array([b.start for b in box]) * sp
    Rinv = np.eye(3) / f
    Rinv[1:, 1:] = _rotation(-placement.rotation) / f
    matrix = np.diag(1 / patch.spacing) @ Rinv @ np.diag(sp)
    offset = (Rinv @ (origin_mm - placement.centre_mm) + patch.anchor_mm) / patch.spacing
    shape = tuple(b.stop - b.start for b in box)
    alpha = affine_transform(patch.mask.astype(np.float32), matrix, offset, shape, order=1, cval=0.0)
    tumor = affine_transform(patch.image, matrix, offset, shape, order=1, mode="nearest")
    allowed = _allowed(target.comp.sac[box], target.comp.cord[box], patch.tumor_type)
    gain = target.csf[placement.index] / patch.reference
    image = target.image.copy()
    image[box], local_mask, clipped = _blend(image[box], tumor, alpha, allowed, gain, patch)
    mask = np.zeros(image.shape, np.uint8)
    mask[box] = local_mask
    k = int(np.argmax(mask.sum(axis=(1, 2))))
    return _finish(target, patch, placement, image, mask, target.vertebrae, None, clipped, f,
                   target.comp, sp, mask[k], image[k], k)


def _finish(target, patch, placement, image, mask, vertebrae, k, clipped, scale, comp, spacing,
            gradient_mask, gradient_image=None, gradient_slice=None) -> Sample:
    """Run the checks and wrap the sample."""
    ok = check_compartment(mask, comp, patch.tumor_type, spacing)
    reason = "" if ok else "compartment"
    if ok and clipped > MAX_CLIPPED:
        ok, reason = False, "clipped"
    ratio = float("nan")
    if gradient_mask.any():
        g_image = image if gradient_image is None else gradient_image
        g = boundary_gradient(g_image, gradient_mask, target.spacing[1:]) / target.csf[placement.index]
        ratio = g / patch.boundary_gradient_at(target.spacing[1:])
    return Sample(image, mask, vertebrae, placement, k, ok, reason, float(ratio), float(scale), float(clipped))


def slices_for(target: Target, patch: TumorPatch, placement: Placement) -> list[int]:
    """Target slices whose cross-section of the tumor is at least :data:`MIN_RADIUS_MM` in radius."""
    x, r = patch.profile()
    xs = np.arange(target.image.shape[0]) * target.spacing[0] - placement.centre_mm[0]
    sizes = np.interp(xs, x, r, left=0.0, right=0.0) * placement.scale
    return [int(k) for k in np.nonzero(sizes >= MIN_RADIUS_MM)[0]]


def glide(target: Target, patch: TumorPatch, per_slice: int = 20, mode: str = "2d", seed: int = 0):
    """Yield samples of ``patch`` glided along ``target``'s CSF path (failed ones too, ``ok`` False).

    2D: about ``per_slice`` positions, each inserted in every target slice the tumor crosses.
    3D: ``per_slice`` positions, each one whole volume.
    """
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}")
    rng = np.random.default_rng(seed)
    for placement in choose_positions(target, patch, per_slice, rng, mode):
        if mode == "3d":
            yield insert_3d(target, patch, placement)
            continue
        for k in slices_for(target, patch, placement):
            sample = insert_2d(target, patch, placement, k)
            if sample is not None:
                yield sample


@dataclass
class Insertion:
    """One tumor inserted at one position: the target with the tumor and its exact mask (target grid)."""

    image: Volume                  # float32, the target's geometry
    mask: Volume                   # uint8, 1 = tumor, same grid
    level: str
    position_mm: float
    slices: list = field(default_factory=list)   # canonical slices holding the tumor (2D mode)


def insert_once(patch: TumorPatch, image: Volume, vertebrae: Volume, anatomy_or_canal_cord=None, *,
                per_slice: int = 20, mode: str = "3d", seed: int = 0, name: str = "target") -> Insertion:
    """Insert ``patch`` at the first position along the target's CSF where it fits its compartment.

    In 2D mode every sagittal slice the tumor crosses at that position is pasted into the
    whole target (in a dataset each is a separate sample); in 3D mode the sample is the
    volume. The result has exactly the target's grid. ValueError when the tumor fits nowhere.
    Used by the TumorAugmentation module's preview and by ``make demo``.
    """
    target = prepare_target(image, vertebrae, anatomy_or_canal_cord, name)
    canvas, mask = target.image.copy(), np.zeros(target.image.shape, np.uint8)
    chosen, slices = None, []
    for sample in glide(target, patch, per_slice, mode, seed):
        if chosen is not None and sample.placement.index != chosen.index:
            break
        if not sample.ok:
            continue
        chosen = sample.placement
        if sample.slice_index is None:
            canvas, mask = sample.image, sample.mask.astype(np.uint8)
        else:
            canvas[sample.slice_index], mask[sample.slice_index] = sample.image, sample.mask
            slices.append(sample.slice_index)
    if chosen is None:
        raise ValueError(f"the {patch.tumor_type} tumor fits nowhere in its compartment along {name}'s CSF")
    return Insertion(from_canonical(canvas.astype(np.float32), target.reference),
                     from_canonical((mask > 0).astype(np.uint8), target.reference), chosen.level, chosen.arc_mm,
                     slices)
