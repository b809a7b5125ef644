"""Separating a tumor from its image: the tumor patch ``I_x`` and the image without it ``I_\\x``.

The paper: "we separate the tumor x from X and generate two images, namely I_x which has
only x, and I_\\x which has X without x [...] the missing data is regenerated using bicubic
interpolation". Here the hole is the tumor mask grown by one pixel in-plane (the partial
-volume rim carries tumor signal too) and is filled per sagittal slice by
:func:`~spinetumor.augmentation.inpaint.fill_hole`.

The patch keeps, besides intensities and mask (canonical crop, physical spacing), what
gliding needs from the source: the CSF tangent angle at the tumor (to turn it to a target's
tangent), on which side of the sac's and cord's centre it sat, its lateral offset from the
sac's centre, its extents along the local normal, its cross-section size per sagittal slice,
the local CSF intensity (to match contrast in the target) and its boundary gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import labels
from ..volume import Volume, from_canonical, to_canonical
from .compartments import Compartments, as_compartments
from .inpaint import DEFAULT_FILL, fill_hole


@dataclass
class TumorPatch:
    """A tumor cut from a source scan, in the canonical layout, with its physical spacing."""

    image: np.ndarray            # float32 [S, R, C]; outside the mask: nearest tumor value (for interpolation)
    mask: np.ndarray             # bool [S, R, C]
    spacing: np.ndarray          # mm per canonical axis (s, r, c)
    tumor_type: str
    anchor_mm: np.ndarray        # mask centroid, patch mm (x, y, z)
    angle: float                 # source CSF tangent angle (rad), see CSFPath.angle
    side_sac: float              # +1 posterior / -1 anterior of the sac's centre line
    side_cord: float             # same relative to the cord's centre (0 without cord at the tumor)
    lateral_mm: float            # anchor x minus the sac centre's x
    reference: float             # local CSF intensity of the source
    boundary_gradient: float     # mean gradient magnitude across the boundary / reference (largest slice)
    source: str = ""
    info: dict = field(default_factory=dict)
    surround: float = float("nan")   # median source intensity just outside the tumor (see surround_intensity)
    edge_image: np.ndarray | None = None   # the source's largest tumor slice with its surroundings (2D)
    edge_mask: np.ndarray | None = None    # the tumor mask of that slice

    def boundary_gradient_at(self, spacing_rc) -> float:
        """The source's boundary gradient (/ reference) as it would be at pixel spacing ``spacing_rc``.

        An edge is at least one pixel wide, so its gradient per mm depends on the pixel
        size: a tumor from a 0.7 mm source cannot have as steep an edge in a 1 mm target.
        The source slice is resampled (linearly) to the target's spacing before measuring,
        which makes inserted and source edges comparable. Without the source slice, or at
        the source's own spacing, this is :attr:`boundary_gradient`.
        """
        from scipy import ndimage

        spacing_rc = np.asarray(spacing_rc, float)
        if self.edge_image is None or np.allclose(spacing_rc, self.spacing[1:]):
            return self.boundary_gradient
        zoom = self.spacing[1:] / spacing_rc
        image = ndimage.zoom(self.edge_image.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest")
        mask = ndimage.zoom(self.edge_mask.astype(np.float32), zoom, order=1, grid_mode=True, mode="nearest") >= 0.5
        if not mask.any():
            return self.boundary_gradient
        return boundary_gradient(image, mask, spacing_rc) / self.reference

    @property
    def largest_slice(self) -> int:
        """Patch slice with the largest cross-section."""
        return int(np.argmax(self.mask.sum(axis=(1, 2))))

    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """Cross-section size per sagittal slice: lateral offsets (mm, from the anchor) and equivalent radii (mm).

        The profile falls to zero half a slice beyond the outermost slices holding tumor.
        """
        area = self.mask.sum(axis=(1, 2)) * self.spacing[1] * self.spacing[2]
        has = np.nonzero(area)[0]
        offsets = np.arange(self.mask.shape[0]) * self.spacing[0] - self.anchor_mm[0]
        radii = np.sqrt(area / np.pi)
        lo, hi = has[0], has[-1]
        half = self.spacing[0] / 2 + 0.5
        x = np.r_[offsets[lo] - half, offsets[lo:hi + 1], offsets[hi] + half]
        return x, np.r_[0.0, radii[lo:hi + 1], 0.0]

    def scale_at(self, lateral_mm: float) -> float:
        """Size of the cross-section ``lateral_mm`` from the anchor relative to the largest one (0 outside)."""
        x, r = self.profile()
        return float(np.interp(lateral_mm, x, r, left=0.0, right=0.0) / r.max())

    def extents(self, normal_yz, slice_index: int | None = None) -> tuple[float, float]:
        """(posterior, anterior) extent (mm) of the mask from the anchor along the sagittal ``normal_yz``.

        ``slice_index`` restricts to one patch slice (2D insertion); None uses all slices.
        """
        mask = self.mask if slice_index is None else self.mask[slice_index:slice_index + 1]
        idx = np.argwhere(mask)
        yz = idx[:, 1:] * self.spacing[1:] - self.anchor_mm[1:]
        proj = yz @ np.asarray(normal_yz, float)
        half = 0.5 * float(np.abs(np.asarray(normal_yz)) @ self.spacing[1:])
        return float(proj.max() + half), float(-proj.min() + half)


@dataclass
class Extraction:
    """The result of :func:`extract_tumor`: the patch and the source image without the tumor."""

    patch: TumorPatch
    filled: Volume               # the source image, tumor removed and filled (input geometry)
    hole: Volume                 # the filled voxels (uint8, input geometry)


def boundary_gradient(image: np.ndarray, mask: np.ndarray, spacing) -> float:
    """Mean gradient magnitude (intensity per mm) on the pixels next to a 2D mask's boundary.

    The band is the mask's boundary pixels and the background pixels touching them, so it
    straddles the edge; ``spacing`` is mm per array axis.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return float("nan")
    box = tuple(slice(max(int(lo) - 3, 0), int(hi) + 4) for lo, hi in zip(np.argwhere(mask).min(0),
                                                                            np.argwhere(mask).max(0)))
    m, img = mask[box], np.asarray(image, float)[box]
    band = ndimage.binary_dilation(m) & ~ndimage.binary_erosion(m)
    gy, gx = np.gradient(img, *spacing)
    return float(np.hypot(gy, gx)[band].mean())


def surround_intensity(image: np.ndarray, mask: np.ndarray, width_px: int = 2) -> float:
    """Median intensity of the in-plane ring ``width_px`` pixels wide just outside ``mask``.

    The tissue a tumor borders: inserting it elsewhere keeps its step against this level
    (see :func:`spinetumor.augmentation.glide.match_contrast`), so its edge looks as sharp
    as in the source whatever the new surroundings.
    """
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    inplane = np.zeros((3,) * mask.ndim, bool)
    inplane[(1,) * (mask.ndim - 2)] = ndimage.generate_binary_structure(2, 1)
    ring = ndimage.binary_dilation(mask, inplane, iterations=width_px) & ~mask
    return float(np.median(np.asarray(image)[ring])) if ring.any() else float("nan")


def _extend(image: np.ndarray, mask: np.ndarray, spacing) -> np.ndarray:
    """The image with every voxel outside ``mask`` set to its nearest mask voxel's value.

    Interpolating the patch later then never mixes in the source's surroundings.
    """
    from scipy import ndimage

    _, index = ndimage.distance_transform_edt(~mask, sampling=spacing, return_indices=True)
    return image[tuple(index)].astype(np.float32)


def local_csf(image: np.ndarray, comp: Compartments, exclude: np.ndarray, centre_idx, spacing,
              half_mm=(6.0, 15.0)) -> float:
    """Median intensity of CSF (sac minus cord minus ``exclude``) within a box around ``centre_idx``.

    ``half_mm`` is the half-size across slices and along rows; the box spans all columns of the
    sac there. Grows the box when it holds too little CSF; the whole sac's median as a last resort.
    """
    csf = comp.sac & ~comp.cord & ~exclude
    for grow in (1.0, 2.0, 4.0):
        hs = int(np.ceil(half_mm[0] * grow / spacing[0]))
        hr = int(np.ceil(half_mm[1] * grow / spacing[1]))
        s, r = int(round(centre_idx[0])), int(round(centre_idx[1]))
        box = (slice(max(s - hs, 0), s + hs + 1), slice(max(r - hr, 0), r + hr + 1))
        values = image[box][csf[box]]
        if values.size >= 20:
            return float(np.median(values))
    values = image[csf] if csf.any() else image[comp.sac]
    if not values.size:
        raise ValueError("no CSF to take a reference intensity from")
    return float(np.median(values))


def _side(value: float) -> float:
    return 1.0 if value >= 0 else -1.0


def extract_tumor(image: Volume, tumor: Volume, tumor_type: str, anatomy_or_canal_cord=None, *,
                  fill: str = DEFAULT_FILL, grow_px: int = 1, source: str = "") -> Extraction:
    """Separate the tumor (``tumor`` > 0) from ``image``; fill the hole; describe the patch.

    ``anatomy_or_canal_cord``: the source's sac and cord, as a phantom anatomy map, a
    ``(canal, cord)`` pair of volumes on the image grid, or None to segment them with
    :func:`spinetumor.segmentation.canal.segment_canal_and_cord`.
    """
    from scipy import ndimage

    from .csf_path import centerline

    if tumor_type not in labels.TUMOR_TYPE_NAMES:
        raise ValueError(f"unknown tumor type {tumor_type!r}; use one of {', '.join(labels.TUMOR_TYPE_NAMES)}")
    if not tumor.same_geometry(image):
        raise ValueError("the tumor mask must be on the image's grid (shape, spacing, origin, direction)")
    canon, _ = to_canonical(image)
    spacing = np.asarray(canon.spacing[::-1], float)
    img = canon.array.astype(np.float32)
    mask = to_canonical(tumor)[0].array > 0
    if not mask.any():
        raise ValueError("the tumor mask is empty")
    comp = _source_compartments(image, anatomy_or_canal_cord)
    # the image without the tumor
    grow = np.zeros((3, 3, 3), bool)
    grow[1] = ndimage.generate_binary_structure(2, 1)
    hole = ndimage.binary_dilation(mask, grow, iterations=grow_px) if grow_px else mask
    filled = fill_hole(img, hole, fill, spacing)
    # the patch
    idx = np.argwhere(mask)
    box = tuple(slice(max(int(lo) - m, 0), min(int(hi) + m + 1, n))
                for lo, hi, m, n in zip(idx.min(0), idx.max(0), (1, 3, 3), mask.shape))
    pmask, pimg = mask[box], img[box]
    offset = np.array([b.start for b in box], float)
    anchor_idx = np.argwhere(pmask).mean(axis=0)
    anchor_mm = anchor_idx * spacing
    centre_idx = anchor_idx + offset
    path = centerline(comp.sac, spacing)
    k = path.nearest(centre_idx * spacing)
    normal = path.normal[k]
    rel = centre_idx * spacing - path.points_mm[k]
    side_cord = 0.0
    row = int(round(centre_idx[1]))
    cord_row = comp.cord[:, row] if 0 <= row < comp.cord.shape[1] else np.zeros((1, 1), bool)
    if cord_row.any():
        cord_c = np.argwhere(cord_row)[:, 1].mean() * spacing[2]
        side_cord = _side((centre_idx[2] * spacing[2] - cord_c) * np.sign(normal[1] or 1.0))
    reference = local_csf(img, comp, ndimage.binary_dilation(mask, iterations=2), centre_idx, spacing)
    ls = int(np.argmax(pmask.sum(axis=(1, 2))))
    gradient = boundary_gradient(pimg[ls], pmask[ls], spacing[1:]) / reference
    patch = TumorPatch(_extend(pimg, pmask, spacing), pmask, spacing, tumor_type, anchor_mm,
                       float(path.angle[k]), _side(float(rel[1:] @ normal)), side_cord, float(rel[0]),
                       reference, gradient, source,
                       {"voxels": int(mask.sum()), "volume_mm3": float(mask.sum() * np.prod(spacing)),
                        "centre_index": centre_idx.tolist()},
                       surround_intensity(img, mask), pimg[ls].copy(), pmask[ls].copy())
    return Extraction(patch, from_canonical(filled, image), from_canonical(hole.astype(np.uint8), image))


def _source_compartments(image: Volume, anatomy_or_canal_cord) -> Compartments:
    """Canonical sac/cord masks of the source from the given maps, or segmented when none are given."""
    if anatomy_or_canal_cord is None:
        from ..segmentation.canal import segment_canal_and_cord

        result = segment_canal_and_cord(image)
        anatomy_or_canal_cord = (result.canal, result.cord)
    if isinstance(anatomy_or_canal_cord, Compartments):
        return anatomy_or_canal_cord
    if isinstance(anatomy_or_canal_cord, (tuple, list)):
        return as_compartments(tuple(to_canonical(v)[0].array for v in anatomy_or_canal_cord))
    return as_compartments(to_canonical(anatomy_or_canal_cord)[0].array)
