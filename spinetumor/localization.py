"""Tumor localization (paper Section III.D): fuse tumor masks with the vertebral labels and the canal.

For every tumor (a connected component of a binary mask, or one id of an instance map)
:func:`localize_tumors` reports the vertebral levels it spans, the disc spaces it
touches, its epicentre level, its compartment by a transparent geometric rule, its
volume, its extent along the local spine axis, anterior-posterior and left-right, its
centroid (RAS) and how much of the canal's cross-section it occupies at its worst.

**Level slabs** (:func:`level_planes`, :func:`levels_of`, :func:`tumor_levels`; the phantom's
ground truth uses the same functions, so truth and measurement cannot drift apart). Level *k*
is the slab between the superior plane of body *k* and that of the next level, i.e.
body *k* plus the disc below it. A body's superior plane passes through its superior
extreme (1st percentile of its voxels projected on the local spine axis) perpendicular
to that axis; the axis runs between the centroids of the neighbouring bodies (RAS).
When the sacrum is labeled, S1's plane is the top of the sacrum measured the same way
on the sacral voxels within 25 mm of its top. When it is not (the seven labels T11..L5
of the vertebra labeling), the last labeled body's slab is closed one disc height below
its inferior extreme (99th percentile), the disc height being the gap measured between
it and the body above along its axis (:data:`TYPICAL_DISC_MM` when there is none); below
that plane lies the next level (S1 under L5). Everything above the first labeled body
belongs to the level above it (T10 above T11). With T10..L5 and the sacrum (the phantom's
anatomy map) the slabs are the truth's; with T11..L5 only they agree for tumors within
T11..L5 except where the L5-S1 disc differs from the L4-L5 one (a few millimetres).
A tumor spans the levels whose slabs it reaches at least :data:`MIN_LEVEL_DEPTH_MM` into,
plus its epicentre's (a voxel or two past the next body's superior plane is not the next level).

**Disc spaces**: the part of level *k*'s slab below body *k*'s inferior extreme is the
disc space "k-(k+1)" (e.g. "L2-L3"); a tumor touches it when any voxel lies there.

**Compartment** (:func:`compartment_rule`): with ``T`` the tumor, ``R`` its in-plane
one-pixel ring (4-neighbours in the sagittal slices, the slices being the thick axis),
and a structure mask ``M``, the cord's containment score is ``max(|T & M| / |T|, |R & M| / |R|)``
-- high when the mask includes the tumor *or* encloses it, so it does not matter
whether a segmenter kept the tumor inside the cord mask or cut it out. The sac's score
is the ring's share ``|R & M| / |R|`` only: a sac segmented from the image grows into a
bright extradural tumor that abuts it (the tumor then lies "in" the sac), while the ring
of such a tumor stays mostly outside the sac, which touches one side of it; the ring of an
intradural tumor is CSF, cord or roots, inside the sac either way. Cord score
>= :data:`CONTAINMENT_THRESHOLD` (0.5) -> intramedullary; else sac score >= 0.5 ->
intradural-extramedullary; else extradural. Without a sac mask the rule abstains (None).

**Canal compromise**: per row of the canonical sagittal stack (an axial-ish plane; the
lumbar spine is within about 30 degrees of vertical, and the ratio of two areas in the
same plane barely depends on the tilt), the canal is the dural sac plus the tumor lying
within :data:`CANAL_MARGIN_MM` of the sac in that plane (the epidural space, where an
extradural tumor displaces the sac), and the compromise is the tumor's share of it. The
reported value is the largest share over the rows, in percent (0 when the tumor never
comes near the sac).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import numpy as np

from . import labels
from .volume import Volume, resample_like, to_canonical

#: Level names the slabs use, superior to inferior: T10 above the labeled T11..L5, S1 below.
ALL_LEVELS = ("T10",) + labels.LEVEL_NAMES + ("S1",)
#: Disc height (mm) closing the last labeled body's slab when no disc above it can be measured
#: (adult lumbar discs are 8-12 mm; the phantom draws 10-11 mm at L4-S1).
TYPICAL_DISC_MM = 10.0
#: Containment score from which a tumor is "in" the cord or the sac.
CONTAINMENT_THRESHOLD = 0.5
#: Width (mm) of the epidural space around the sac counted as canal for the compromise.
CANAL_MARGIN_MM = 4.0
#: Percentiles of a body's voxels along the spine axis taken as its superior and inferior extremes.
SUPERIOR_PERCENTILE, INFERIOR_PERCENTILE = 1, 99
#: Reach (mm) below the top of the sacrum used to measure S1's plane.
SACRUM_TOP_MM = 25
#: Half-height (mm, along the spine) of the part of the sac around a tumor's centroid whose centre
#: tells whether the tumor lies in front of the sac (:func:`in_front_of_sac`).
SAC_SLAB_MM = 5.0
#: The caution of an extradural finding centred on a disc space in front of the sac (:func:`cautions`).
DISC_CAUTION = ("it is centred on the {disc} disc space in front of the dural sac, where a disc herniation "
                "or bulge looks alike on sagittal T2: compare with the axial images")
#: The caution of a finding that only one sagittal slice holds (:func:`cautions`).
ONE_SLICE_CAUTION = ("it is seen on one sagittal slice only, where the partial volume of the dural sac's or the "
                     "epidural fat's edge can look like a mass: check the neighbouring slices and the axial images")
#: Depth (mm, span of the tumor's voxel centres along the spine axis) a tumor must reach into a
#: level's slab for that level to count among the levels it spans (:func:`tumor_levels`).
MIN_LEVEL_DEPTH_MM = 1.0


class LevelPlane(NamedTuple):
    """Superior boundary of a level's slab: plane through ``point`` with unit ``normal`` (inferior).

    ``bottom`` is the body's inferior extreme on the same axis (where its disc below starts),
    None for S1. Indexing as a tuple gives ``(index, point, normal, bottom)``.
    """

    index: int
    point: np.ndarray
    normal: np.ndarray
    bottom: np.ndarray | None


def _points_by_value(labelmap: Volume, values) -> dict:
    """RAS points of the voxels of each label value present in ``labelmap``."""
    arr = labelmap.array
    flat = np.flatnonzero(np.isin(arr, values))
    found = arr.ravel()[flat]
    out = {}
    for value in values:
        sel = flat[found == value]
        if len(sel):
            out[value] = np.stack(np.unravel_index(sel, arr.shape), 1)
    return out


def level_planes(labelmap: Volume) -> list[LevelPlane]:
    """The superior plane of every labeled level's slab, superior to inferior (see the module doc).

    ``labelmap`` may hold the vertebra labels T11..L5 only, or also T10 and the sacrum
    (the phantom's anatomy map); other labels are ignored.
    """
    names = ALL_LEVELS[:-1]
    values = [labels.value(n) for n in names] + [labels.value("sacrum")]
    by_value = _points_by_value(labelmap, values)
    centroid, points = {}, {}
    for name in names:
        kji = by_value.get(labels.value(name))
        if kji is not None:
            points[name] = labelmap.index_to_ras(kji)
            centroid[name] = points[name].mean(0)
    present = [n for n in names if n in centroid]
    planes = []
    for i, name in enumerate(present):
        prev = centroid[present[max(i - 1, 0)]]
        nxt = centroid[present[min(i + 1, len(present) - 1)]]
        if len(present) < 2:
            axis = np.array([0.0, 0.0, -1.0])
        else:
            axis = (nxt - prev) / np.linalg.norm(nxt - prev)
        proj = (points[name] - centroid[name]) @ axis
        top = centroid[name] + axis * np.percentile(proj, SUPERIOR_PERCENTILE)
        bottom = centroid[name] + axis * np.percentile(proj, INFERIOR_PERCENTILE)
        planes.append(LevelPlane(ALL_LEVELS.index(name), top, axis, bottom))
    kji = by_value.get(labels.value("sacrum"))
    if kji is not None and present:
        pts = labelmap.index_to_ras(kji)
        axis = planes[-1].normal
        proj = pts @ axis
        top = pts[proj <= proj.min() + SACRUM_TOP_MM]
        c = top.mean(0)
        axis_s = (c - centroid[present[-1]]) / np.linalg.norm(c - centroid[present[-1]])
        proj_s = (top - c) @ axis_s
        planes.append(LevelPlane(ALL_LEVELS.index("S1"), c + axis_s * np.percentile(proj_s, SUPERIOR_PERCENTILE),
                                 axis_s, None))
    elif planes and planes[-1].index + 1 < len(ALL_LEVELS):
        planes.append(_closing_plane(planes))
    return planes


def _closing_plane(planes: list[LevelPlane]) -> LevelPlane:
    """The plane one disc height below the last body (no sacrum labeled): the top of the next level."""
    last = planes[-1]
    disc = TYPICAL_DISC_MM
    if len(planes) >= 2 and planes[-2].bottom is not None and planes[-2].index == last.index - 1:
        disc = float((last.point - planes[-2].bottom) @ last.normal)
        disc = disc if disc > 0 else TYPICAL_DISC_MM
    return LevelPlane(last.index + 1, last.bottom + disc * last.normal, last.normal, None)


def levels_of(points_ras: np.ndarray, planes) -> np.ndarray:
    """Index in :data:`ALL_LEVELS` of each point: the last level whose superior plane it lies below."""
    if not planes:
        return np.zeros(len(points_ras), int)
    level = np.full(len(points_ras), planes[0][0] - 1, int)
    for idx, p, n, *_ in planes:
        below = (points_ras - p) @ n >= 0
        level = np.where(below, np.maximum(level, idx), level)
    return np.clip(level, 0, len(ALL_LEVELS) - 1)


def tumor_levels(points_ras: np.ndarray, planes, min_depth_mm: float = MIN_LEVEL_DEPTH_MM) -> tuple[list[int], int]:
    """``(levels, epicentre)``: indices in :data:`ALL_LEVELS` of the level slabs a tumor reaches
    into and of the slab holding its centroid.

    A slab counts when the tumor's points in it span at least ``min_depth_mm`` along that
    level's spine axis, or when it holds the centroid: a tumor grazing the next body's superior
    plane by a voxel or two does not involve that level (the plane itself is not placed more
    precisely than that). When no slab qualifies (a tiny tumor on a plane) all touched count.
    """
    level = levels_of(points_ras, planes)
    epicentre = int(levels_of(points_ras.mean(0)[None], planes)[0])
    touched = [int(k) for k in np.unique(level)]
    if not planes:
        return touched, epicentre
    reached = [k for k in touched
               if k == epicentre or np.ptp(points_ras[level == k] @ _axis_at(planes, k)) >= min_depth_mm]
    return reached or touched, epicentre


def discs_of(points_ras: np.ndarray, planes) -> list[str]:
    """Names of the disc spaces (e.g. "L2-L3") that any of the points lies in, superior to inferior."""
    if not planes:
        return []
    level = levels_of(points_ras, planes)
    found = set()
    for plane in planes:
        if plane.bottom is None or plane.index + 1 >= len(ALL_LEVELS):
            continue
        in_disc = (level == plane.index) & ((points_ras - plane.bottom) @ plane.normal > 0)
        if in_disc.any():
            found.add(plane.index)
    first = planes[0]
    if first.index > 0:   # the disc above the first labeled body, one disc height thick
        below_next = [p for p in planes[1:] if p.bottom is not None]
        disc = TYPICAL_DISC_MM
        if below_next and first.bottom is not None:
            disc = max(float((below_next[0].point - first.bottom) @ below_next[0].normal), 0.0) or TYPICAL_DISC_MM
        d = (points_ras - first.point) @ first.normal
        if ((d < 0) & (d >= -disc)).any():
            found.add(first.index - 1)
    return [labels.disc_level_name(ALL_LEVELS[i], ALL_LEVELS[i + 1]) for i in sorted(found)]


# --------------------------------------------------------------------------- compartment

def _ring_in_plane(mask: np.ndarray) -> np.ndarray:
    """The 4-neighbours of ``mask`` within each slice of axis 0 (canonical: sagittal slices), outside it."""
    ring = np.zeros_like(mask)
    ring[:, 1:] |= mask[:, :-1]
    ring[:, :-1] |= mask[:, 1:]
    ring[:, :, 1:] |= mask[:, :, :-1]
    ring[:, :, :-1] |= mask[:, :, 1:]
    return ring & ~mask


def share_in(mask: np.ndarray, structure: np.ndarray) -> float:
    """``|mask & structure| / |mask|`` (0 for an empty mask)."""
    return float((mask & structure).sum()) / max(int(mask.sum()), 1)


def containment(tumor: np.ndarray, structure: np.ndarray, ring: np.ndarray | None = None) -> float:
    """``max(|T & M| / |T|, |R & M| / |R|)``: how much ``structure`` holds or encloses ``tumor`` (canonical arrays)."""
    ring = _ring_in_plane(tumor) if ring is None else ring
    return max(share_in(tumor, structure), share_in(ring, structure))


def compartment_rule(tumor: np.ndarray, canal: np.ndarray | None, cord: np.ndarray | None,
                     threshold: float = CONTAINMENT_THRESHOLD) -> tuple[str | None, dict]:
    """(compartment or None, scores) of one tumor from canonical boolean arrays (see the module doc)."""
    ring = _ring_in_plane(tumor)
    scores = {}
    if cord is not None:
        scores["cord"] = round(containment(tumor, cord, ring), 4)
    if canal is not None:       # the ring only: a segmented sac may have grown into the tumor
        scores["sac"] = round(share_in(ring, canal), 4)
    if scores.get("cord", 0.0) >= threshold:
        return "intramedullary", scores
    if canal is None:
        return None, scores
    if scores["sac"] >= threshold:
        return "intradural-extramedullary", scores
    return "extradural", scores


def canal_compromise(tumor: np.ndarray, canal: np.ndarray, spacing_src: tuple) -> float:
    """Largest share (percent) of the canal's cross-section occupied by tumor, over canonical rows.

    ``tumor`` and ``canal`` are canonical boolean arrays ``[s, r, c]``; ``spacing_src`` the
    canonical volume's spacing (per c, r, s). See the module doc for the canal's definition.
    """
    from scipy.ndimage import distance_transform_edt

    rows = np.nonzero(tumor.any(axis=(0, 2)))[0]
    if not len(rows) or not canal.any():
        return 0.0
    sampling = (spacing_src[2], spacing_src[0])          # (s, c) in mm
    worst = 0.0
    for r in rows:
        sac = canal[:, r, :]
        tum = tumor[:, r, :]
        if not sac.any():
            continue
        near = distance_transform_edt(~sac, sampling=sampling) <= CANAL_MARGIN_MM
        occupied = tum & near
        area = (sac | occupied).sum()
        if area:
            worst = max(worst, float(occupied.sum()) / float(area))
    return round(100.0 * worst, 2)


# --------------------------------------------------------------------------- the tumors

@dataclass
class TumorLocation:
    """Where one tumor is: levels, disc spaces, compartment, size, centroid and canal compromise.

    ``centre_disc``: the disc space holding the centroid (None when it lies in a body's part of
    its level, or without labels); ``in_front_of_sac``: whether the centroid lies anterior to the
    sac at its height (:func:`in_front_of_sac`; None without a sac mask or sac there);
    ``sagittal_slices``: how many sagittal (left-right) slices hold some of the tumor.
    """

    id: int
    voxels: int
    volume_ml: float
    centroid_ras: list
    levels: list = field(default_factory=list)
    epicenter_level: str | None = None
    discs: list = field(default_factory=list)
    compartment: str | None = None
    compartment_scores: dict = field(default_factory=dict)
    extent_mm: dict = field(default_factory=dict)
    canal_compromise_percent: float | None = None
    centre_disc: str | None = None
    in_front_of_sac: bool | None = None
    sagittal_slices: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _on_grid(mask: Volume | None, reference: Volume) -> Volume | None:
    """``mask`` on ``reference``'s grid (nearest neighbour when the grids differ)."""
    if mask is None or mask.same_geometry(reference):
        return mask
    return resample_like(mask, reference, label=True)


def tumor_instances(tumor: Volume, instances: bool | None = None) -> np.ndarray:
    """An instance map (0 = background, 1..n) of ``tumor``.

    ``instances=True`` keeps the mask's own ids; ``False`` labels the connected components
    (26-connectivity) of ``tumor > 0``; ``None`` (default) keeps the ids when the mask holds
    more than one non-zero value and labels components otherwise.
    """
    from scipy.ndimage import label

    arr = np.asarray(tumor.array)
    if instances is None:
        values = np.unique(arr[arr != 0])
        instances = len(values) > 1
    if instances:
        return arr.astype(np.int32)
    out, _ = label(arr != 0, structure=np.ones((3, 3, 3), bool))
    return out


def _axes(spine_axis: np.ndarray) -> dict:
    """Unit vectors (RAS) along the spine (inferior), left-right (right) and anterior-posterior (anterior)."""
    si = spine_axis / np.linalg.norm(spine_axis)
    lr = np.array([1.0, 0.0, 0.0]) - si * si[0]
    lr /= np.linalg.norm(lr)
    ap = np.cross(si, lr)
    ap = ap if ap[1] >= 0 else -ap
    return {"superior_inferior": si, "anterior_posterior": ap, "left_right": lr}


def _extents(ras: np.ndarray, step_vectors: np.ndarray, spine_axis: np.ndarray) -> dict:
    """Extent (mm) of the voxels along the three axes: spread of their centres plus one voxel's footprint."""
    out = {}
    for name, e in _axes(spine_axis).items():
        proj = ras @ e
        footprint = float(np.abs(step_vectors.T @ e).sum())
        out[name] = round(float(proj.max() - proj.min()) + footprint, 3)
    return out


def localize_tumors(tumor: Volume, vertebrae: Volume | None = None, canal: Volume | None = None,
                    cord: Volume | None = None, *, instances: bool | None = None,
                    min_voxels: int = 1) -> list[TumorLocation]:
    """Locate every tumor of ``tumor`` (binary mask or instance map) relative to the spine.

    ``vertebrae``: label map with the bodies T11..L5 (1..7), optionally T10 and the sacrum;
    ``canal``: the dural sac (CSF and everything in it); ``cord``: the spinal cord. Masks on
    other grids are resampled onto the tumor's (nearest neighbour). Without ``vertebrae``
    the levels stay empty and the extents use the image's superior-inferior axis; without
    ``canal`` there is no compromise and the compartment rule abstains.
    Components smaller than ``min_voxels`` are skipped. Ids follow the instance map.
    """
    vertebrae, canal, cord = (_on_grid(m, tumor) for m in (vertebrae, canal, cord))
    inst = tumor_instances(tumor, instances)
    planes = level_planes(vertebrae) if vertebrae is not None else []
    canal_ras = tumor.index_to_ras(np.argwhere(canal.array > 0)) if canal is not None else None
    canon_inst, _ = to_canonical(tumor.with_array(inst))
    canon_canal = to_canonical(canal)[0].array > 0 if canal is not None else None
    canon_cord = to_canonical(cord)[0].array > 0 if cord is not None else None
    step_vectors = tumor.ijk_to_ras()[:3, :3]
    voxel_ml = float(np.prod(tumor.spacing)) / 1000.0
    out = []
    for tid in [int(v) for v in np.unique(inst) if v != 0]:
        kji = np.argwhere(inst == tid)
        if len(kji) < min_voxels:
            continue
        ras = tumor.index_to_ras(kji)
        centroid = ras.mean(0)
        loc = TumorLocation(id=tid, voxels=int(len(kji)), volume_ml=round(len(kji) * voxel_ml, 6),
                            centroid_ras=[round(float(c), 3) for c in centroid])
        spine_axis = np.array([0.0, 0.0, -1.0])
        if planes:
            spanned, epi = tumor_levels(ras, planes)
            loc.levels = [ALL_LEVELS[k] for k in spanned]
            loc.epicenter_level = ALL_LEVELS[epi]
            loc.discs = discs_of(ras, planes)
            loc.centre_disc = next(iter(discs_of(centroid[None], planes)), None)
            spine_axis = _axis_at(planes, epi)
        loc.extent_mm = _extents(ras, step_vectors, spine_axis)
        if canal_ras is not None:
            loc.in_front_of_sac = in_front_of_sac(centroid, canal_ras, spine_axis)
        mask = canon_inst.array == tid
        loc.sagittal_slices = int(mask.any(axis=(1, 2)).sum())
        loc.compartment, loc.compartment_scores = compartment_rule(mask, canon_canal, canon_cord)
        if canon_canal is not None:
            loc.canal_compromise_percent = canal_compromise(mask, canon_canal, canon_inst.spacing)
        out.append(loc)
    return out


def in_front_of_sac(centroid: np.ndarray, canal_ras: np.ndarray, spine_axis: np.ndarray,
                    half_height_mm: float = SAC_SLAB_MM) -> bool | None:
    """Whether ``centroid`` (RAS) lies anterior to the centre of the sac voxels ``canal_ras`` within
    ``half_height_mm`` of it along ``spine_axis``; None when the sac has no voxel there."""
    axes = _axes(spine_axis)
    near = np.abs((canal_ras - centroid) @ axes["superior_inferior"]) <= half_height_mm
    if not near.any():
        return None
    return bool((centroid - canal_ras[near].mean(axis=0)) @ axes["anterior_posterior"] > 0)


def cautions(location: TumorLocation, type_name: str) -> list[str]:
    """Plain-language cautions about one finding (``report.json`` ``tumors[].cautions``).

    An extradural finding (by the CNN or the geometric rule) whose centroid lies in a disc
    space, in front of the sac, is where a disc herniation or bulge lies: on a sagittal T2 the
    two look alike, and the networks were never shown discs as a class of their own.
    A finding that one sagittal slice holds: most false findings on tumor-free real scans are
    such single slices, at the edge of the sac or in the fat behind it, where a thick slice
    averages the two (``benchmarks/tumor_free_real.py``); a small true tumor can be one too, so
    it is cautioned, not dropped.
    """
    out = []
    if "extradural" in (type_name, location.compartment) and location.centre_disc and location.in_front_of_sac:
        out.append(DISC_CAUTION.format(disc=location.centre_disc))
    if location.sagittal_slices == 1:
        out.append(ONE_SLICE_CAUTION)
    return out


def _axis_at(planes, level_index: int) -> np.ndarray:
    """The spine axis of the level ``level_index`` (that of the nearest labeled level)."""
    best = min(planes, key=lambda p: abs(p.index - level_index))
    return np.asarray(best.normal, float)
