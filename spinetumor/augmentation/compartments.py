"""The three tumor compartments and the rule an inserted tumor must obey.

* **intramedullary**: every tumor voxel lies in the spinal cord;
* **intradural-extramedullary**: every tumor voxel lies inside the dural sac and none in the cord;
* **extradural**: no tumor voxel lies inside the dural sac, and the tumor comes within
  :data:`EXTRADURAL_MAX_GAP_MM` of it (it sits in the epidural space or grows from the
  vertebra into the canal, not somewhere in the back's soft tissue).

An empty mask never passes. The sac is everything inside the dura (CSF, cord, cauda equina).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import labels

#: Largest gap (mm) between an extradural tumor and the dural sac.
EXTRADURAL_MAX_GAP_MM = 3.0

_SAC_KEYS = ("canal", "cord", "cauda_equina", "intramedullary", "intradural-extramedullary", "edema", "syrinx")
_CORD_KEYS = ("cord", "intramedullary", "edema", "syrinx")


@dataclass
class Compartments:
    """Boolean masks (same grid) of the dural sac (all intradural content) and of the cord."""

    sac: np.ndarray
    cord: np.ndarray

    def slice(self, index: int) -> "Compartments":
        """The masks of one sagittal slice (axis 0)."""
        return Compartments(self.sac[index], self.cord[index])


def compartments_from_anatomy(anatomy: np.ndarray) -> Compartments:
    """Sac and cord masks from a phantom anatomy label map (values of :mod:`spinetumor.labels`)."""
    anatomy = np.asarray(anatomy)
    sac = np.isin(anatomy, [labels.value(k) for k in _SAC_KEYS])
    cord = np.isin(anatomy, [labels.value(k) for k in _CORD_KEYS])
    return Compartments(sac, cord)


def as_compartments(anatomy_or_canal_cord) -> Compartments:
    """Accept a :class:`Compartments`, a ``(canal, cord)`` pair of masks, or an anatomy label map."""
    if isinstance(anatomy_or_canal_cord, Compartments):
        return anatomy_or_canal_cord
    if isinstance(anatomy_or_canal_cord, (tuple, list)) and len(anatomy_or_canal_cord) == 2:
        canal, cord = (np.asarray(getattr(m, "array", m)) > 0 for m in anatomy_or_canal_cord)
        return Compartments(canal | cord, cord)
    return compartments_from_anatomy(np.asarray(getattr(anatomy_or_canal_cord, "array", anatomy_or_canal_cord)))


def _gap_mm(mask: np.ndarray, sac: np.ndarray, spacing) -> float:
    """Smallest distance (mm) from a tumor voxel to a sac voxel (inf when no sac is near)."""
    from scipy import ndimage

    spacing = np.asarray(spacing, float)
    reach = np.ceil(EXTRADURAL_MAX_GAP_MM / spacing).astype(int) + 1
    idx = np.argwhere(mask)
    box = tuple(slice(max(int(lo) - r, 0), int(hi) + r + 1) for lo, hi, r in zip(idx.min(0), idx.max(0), reach))
    local_sac = sac[box]
    if not local_sac.any():
        return float("inf")
    distance = ndimage.distance_transform_edt(~local_sac, sampling=spacing)
    return float(distance[mask[box]].min())


def check_compartment(mask, anatomy_or_canal_cord, tumor_type: str, spacing=None) -> bool:
    """True when ``mask`` obeys its compartment's rule (see the module docstring).

    ``mask`` and the compartments share one grid (2D slice or 3D stack); ``spacing`` is mm
    per array axis (only the extradural gap uses it; default 1 mm).
    """
    if tumor_type not in labels.TUMOR_TYPE_NAMES:
        raise ValueError(f"unknown tumor type {tumor_type!r}; use one of {', '.join(labels.TUMOR_TYPE_NAMES)}")
    mask = np.asarray(getattr(mask, "array", mask)) > 0
    comp = as_compartments(anatomy_or_canal_cord)
    if comp.sac.shape != mask.shape:
        raise ValueError(f"mask shape {mask.shape} differs from the compartments' {comp.sac.shape}")
    if not mask.any():
        return False
    if tumor_type == "intramedullary":
        return not bool((mask & ~comp.cord).any())
    if tumor_type == "intradural-extramedullary":
        return not bool((mask & ~comp.sac).any() or (mask & comp.cord).any())
    if (mask & comp.sac).any():
        return False
    spacing = np.ones(mask.ndim) if spacing is None else np.asarray(spacing, float)
    return _gap_mm(mask, comp.sac, spacing) <= EXTRADURAL_MAX_GAP_MM
