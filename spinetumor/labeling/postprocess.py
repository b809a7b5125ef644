"""Anatomy in 3D: one connected component per level, levels ordered superior to inferior.

The network labels each sagittal slice on its own, so its 3D label map can contain
fragments, a level repeated on two bodies, or two neighbours swapped. The rules here
follow the anatomy: vertebral bodies are separate blobs stacked along the spine and
their names increase downwards without repetition.

1. Every connected component of the vertebra mask (any level) is a *candidate body*
   when it is at least ``min_fraction`` of the typical body size and at least
   :data:`MIN_BODY_MM3`; smaller ones are fragments. Fragments whose sagittal footprints
   (their projections across the slices, axis 0) mostly overlap count as one component:
   pieces of one body that the network, labeling slice by slice, missed in the slices
   between (:data:`SAME_BODY_FOOTPRINT`, :func:`body_pieces`). The discs separate the bodies, so a
   body whose voxels the network split between two names stays one candidate; a
   component much taller than a body (:data:`BRIDGED_HEIGHT` typical heights, or over
   :data:`MAX_BODY_HEIGHT_MM`: bodies bridged across discs) is split at its thinnest
   places (or, failing that, by the network's level names).
2. Candidates are sorted by their superior-inferior position and, since bodies are
   stacked without gaps, named as one contiguous run: naming one body names them all.
   The run's offset maximizes ``sum(keep_bonus + p_level)`` over the kept bodies' voxels
   (``p_level`` = the network's mean probability of that level in the body). A swapped
   pair therefore comes out in order, a repeated level moves to its neighbour, bodies
   beyond the run (T10 above, the sacrum called L5 below the true L5) are dropped, and a
   gap of about one body spacing (a body the network missed) skips one name. Where the
   probabilities do not decide, levels are counted upwards from the lowest body
   (:data:`TIE_BREAK`). Before naming, a lowest candidate much smaller than the body above
   it, with image below it, is taken for the top of the sacrum and dropped
   (:func:`sacrum_top`): the keep bonus would otherwise name it L5 and every body above it
   one level too high. The body sitting on it (one body spacing above) is then L5, and the
   run is counted up from there, as a radiologist counts from the sacrum.
3. Fragments touching a kept body join it; isolated fragments are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Reward for keeping a candidate, per voxel, added to its probability of the assigned level.
KEEP_BONUS = 1.0
#: Smallest candidate body (mm^3): adult T11..L5 bodies are 15-45 ml, and even one cut by the
#: edge of the field of view keeps a few ml; smaller blobs are fragments, never a level.
MIN_BODY_MM3 = 2000.0
#: Per-voxel preference for the more inferior level name; only decides between otherwise equal
#: assignments, which are then counted upwards from the lowest body (L5 sits on the sacrum, and
#: lumbar scans always include the sacrum, while their top varies).
TIE_BREAK = 1e-4
#: A vertebra-mask component taller than this many typical body heights is two bodies bridged
#: (e.g. across a thin disc) and is split where it is thinnest.
BRIDGED_HEIGHT = 1.6
#: A component taller than this (mm, along the image's superior-inferior axis) is bridged bodies
#: whatever its neighbours measure: adult T11..L5 bodies are 20-35 mm tall, up to about 45 mm
#: along the image axis where lordosis tilts them. The relative rule above fails when most
#: components are pairs (their median is then a pair's height).
MAX_BODY_HEIGHT_MM = 50.0
#: Most erosion (voxels) tried to separate bridged bodies; thicker bridges are not discs.
MAX_EROSION = 6
#: Two fragments are pieces of one body when this share of the smaller one's sagittal
#: footprint lies in the other's: a body the network labels in some slices only falls apart
#: across the slices, at the same height and depth (seen on the SCT thoracolumbar sample, whose
#: L1 came in two pieces, each under :data:`MIN_BODY_MM3`, and was lost).
SAME_BODY_FOOTPRINT = 0.5
#: The lowest candidate is the top of the sacrum, not L5, when it holds less than this share of
#: the body above it and the image goes on below it (:data:`SACRUM_BELOW_MM`). The networks see
#: the top of S1 as a body and call it L5 with confidence: on chu_19 (1 mm) it is 14-15 ml under
#: an L5 of 31 ml, and with the upper bodies cut away it took the name L5 and pushed every level
#: above one name up. In the reference labels of chu_02..chu_19, L5 holds 0.90-1.08 times the
#: volume of L4 (``benchmarks/labeling.py`` measures that range).
SACRUM_TOP_FRACTION = 0.6
#: Image (mm) below the lowest candidate needed to call it the top of the sacrum: a small lowest
#: body that the field of view cuts is a cut vertebra, not S1.
SACRUM_BELOW_MM = 20.0


@dataclass
class PostprocessReport:
    """What the anatomy rules changed (for logs and the result JSON)."""

    relabeled: list = field(default_factory=list)       # (from_level, to_level, voxels)
    dropped_candidates: list = field(default_factory=list)  # (network level, voxels)
    dropped_fragments: int = 0                           # voxels of isolated fragments removed
    merged_fragments: int = 0                            # voxels of touching fragments absorbed
    sacrum_top: int = 0                                  # voxels of the lowest candidate taken for S1 (sacrum_top)

    def to_dict(self) -> dict:
        return {"relabeled": [list(map(int, r)) for r in self.relabeled],
                "dropped_candidates": [list(map(int, d)) for d in self.dropped_candidates],
                "dropped_fragment_voxels": int(self.dropped_fragments),
                "merged_fragment_voxels": int(self.merged_fragments),
                "sacrum_top_voxels": int(self.sacrum_top)}


@dataclass
class _Component:
    level: int           # network's label
    slices: tuple        # bounding box
    mask: np.ndarray     # within the bounding box
    size: int
    position: float      # superior-inferior coordinate of the centroid (mm, larger = inferior)
    scores: np.ndarray   # mean probability per level 1..n_levels


def _component(labels_sub: np.ndarray, sub: np.ndarray, box, probs, n_levels: int, axis_si: int,
               spacing_si: float) -> _Component:
    """One candidate: its majority network level, position and mean probability per level."""
    size = int(sub.sum())
    coords = np.nonzero(sub)[axis_si].mean() + box[axis_si].start
    level = int(np.bincount(labels_sub[sub], minlength=n_levels + 1)[1:].argmax()) + 1
    if probs is not None:
        scores = np.array([probs[l][box][sub].mean() for l in range(1, n_levels + 1)], dtype=float)
        if probs.dtype == np.uint8:
            scores = scores / 255.0
    else:
        scores = np.bincount(labels_sub[sub], minlength=n_levels + 1)[1:].astype(float) / size
    return _Component(level, box, sub, size, float(coords * spacing_si), scores)


def _level_components(labels: np.ndarray, region: np.ndarray, probs, n_levels: int) -> list[np.ndarray]:
    """Connected components of every predicted level inside ``region`` (a mask of ``labels``' shape)."""
    from scipy import ndimage

    parts = []
    for level in range(1, n_levels + 1):
        lab, n = ndimage.label(region & (labels == level))
        parts += [lab == i for i in range(1, n + 1)]
    return parts


def _split_bridged(mask: np.ndarray, min_voxels: float, max_erosion: int = MAX_EROSION) -> list[np.ndarray]:
    """Split a component of several bodies joined by thin bridges (across the discs).

    The mask is eroded until it falls apart into at least two pieces of at least
    ``min_voxels / 4``; every voxel of the mask then goes to the nearest piece, which
    follows tilted discs where a cut by rows would not. Returns ``[mask]`` when no erosion
    of up to ``max_erosion`` voxels separates it.
    """
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, 1)
    for iterations in range(1, max_erosion + 1):
        core = ndimage.binary_erosion(mask, structure, iterations=iterations)
        lab, n = ndimage.label(core)
        if n < 2:
            continue
        sizes = np.bincount(lab.ravel())
        seeds = [i for i in range(1, n + 1) if sizes[i] >= min_voxels / 4]
        if len(seeds) < 2:
            continue
        seed_map = np.where(np.isin(lab, seeds), lab, 0)
        nearest = ndimage.distance_transform_edt(seed_map == 0, return_distances=False, return_indices=True)
        owner = seed_map[tuple(nearest)]
        return [mask & (owner == i) for i in seeds]
    return [mask]


def _bodies(labels: np.ndarray, pieces: np.ndarray, probs, n_levels: int, axis_si: int, spacing,
            min_voxels: float):
    """Candidate bodies and fragments of ``labels``, whose pieces (:func:`body_pieces`) are given.

    A body is a piece of the vertebra mask (any level): the discs separate the bodies, so a
    body the network split between two level names stays one candidate.
    A component much taller than the typical body or than :data:`MAX_BODY_HEIGHT_MM` (bodies
    bridged across thin discs) is split where it is thinnest (:func:`_split_bridged`), or else
    by the network's level names. Components under ``min_voxels`` are fragments.
    """
    from scipy import ndimage

    spacing_si = float(spacing[axis_si])
    comps = []
    for index, box in enumerate(ndimage.find_objects(pieces), start=1):
        sub = pieces[box] == index
        comps.append(_component(labels[box], sub, box, probs, n_levels, axis_si, spacing_si))
    big = [c for c in comps if c.size >= min_voxels]
    fragments = [c for c in comps if c.size < min_voxels]
    if not big:
        return [], fragments
    heights = [np.ptp(np.nonzero(c.mask)[axis_si]) + 1 for c in big]
    typical = float(np.median(heights)) if len(big) > 2 else float("inf")   # too few bodies to know
    bodies = []
    pending = list(zip(big, heights))
    while pending:
        comp, height = pending.pop()
        parts = [comp.mask]
        if height > BRIDGED_HEIGHT * typical or height * spacing_si > MAX_BODY_HEIGHT_MM:
            parts = _split_bridged(comp.mask, min_voxels)
            if len(parts) == 1:         # a thick bridge: fall back to the network's level names
                parts = _level_components(labels[comp.slices], comp.mask, probs, n_levels)
        if len(parts) == 1:
            bodies.append(comp)
            continue
        for part in parts:          # each part may still hold two bodies
            piece = _component(labels[comp.slices], part, comp.slices, probs, n_levels, axis_si, spacing_si)
            if piece.size < min_voxels:
                fragments.append(piece)
            else:
                pending.append((piece, np.ptp(np.nonzero(part)[axis_si]) + 1))
    return bodies, fragments


def body_pieces(lab: np.ndarray, min_voxels: float) -> np.ndarray:
    """The connected components ``lab`` of the vertebra mask (``ndimage.label``), fragments of one body joined.

    Returns a label array (0 = background, 1..n). Two components smaller than ``min_voxels``
    (too small to be a body alone) join when at least :data:`SAME_BODY_FOOTPRINT` of the
    smaller one's sagittal footprint (its voxels projected along axis 0, the slice axis)
    lies in the other's: one body seen in the slices the network labeled, with slices it
    missed between. Components of body size stay as they are, so a fragment beside a body
    found whole is still a fragment (merged only when it touches the body).
    """
    from scipy import ndimage

    n = int(lab.max())
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    boxes = ndimage.find_objects(lab)
    small = [k for k in range(1, n + 1) if sizes[k] < min_voxels]
    footprints = {k: (lab[boxes[k - 1]] == k).any(axis=0) for k in small}
    parent = list(range(n + 1))

    def root(k: int) -> int:
        while parent[k] != k:
            k = parent[k]
        return k

    def shared(a: int, b: int) -> int:
        """Pixels of the two footprints that coincide (rows and columns of the slices)."""
        box_a, box_b = boxes[a - 1], boxes[b - 1]
        lo = [max(box_a[i].start, box_b[i].start) for i in (1, 2)]
        hi = [min(box_a[i].stop, box_b[i].stop) for i in (1, 2)]
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            return 0
        crop = lambda k, box: footprints[k][lo[0] - box[1].start:hi[0] - box[1].start,  # noqa: E731
                                            lo[1] - box[2].start:hi[1] - box[2].start]
        return int((crop(a, box_a) & crop(b, box_b)).sum())

    for i, a in enumerate(small):
        for b in small[i + 1:]:
            smaller = min(footprints[a].sum(), footprints[b].sum())
            if shared(a, b) >= SAME_BODY_FOOTPRINT * smaller:
                parent[root(b)] = root(a)
    if all(parent[k] == k for k in range(n + 1)):
        return lab
    _, joined = np.unique([root(k) for k in range(n + 1)], return_inverse=True)
    return joined[lab]


def _slots(positions: list[float]) -> list[int]:
    """Anatomical slot of each body (sorted superior -> inferior): consecutive bodies are one
    level apart, a gap of about n typical spacings skips n - 1 levels (a body the network missed)."""
    if len(positions) < 2:
        return [0] * len(positions)
    steps = np.diff(positions)
    typical = float(np.median(steps))
    slots = [0]
    for step in steps:
        slots.append(slots[-1] + max(1, int(round(step / max(typical, 1e-6)))))
    return slots


def _assign_levels(candidates: list[_Component], n_levels: int, lowest_level: int | None = None) -> list[int]:
    """Levels (0 = drop) for bodies sorted superior->inferior: one contiguous run of names.

    Vertebral bodies are stacked without gaps, so naming one body names all: body j gets
    level ``slot_j + k`` for the offset ``k`` that maximizes ``sum(size * (KEEP_BONUS +
    p_level + TIE_BREAK * level))`` over the bodies whose level falls in 1..n_levels; the
    others (e.g. T10 above, S1 below) are dropped. Two bodies in one slot (closer than half
    a typical spacing) cannot both be levels: the better-scoring one is kept.
    ``lowest_level`` fixes the name of the lowest body (L5 on a sacrum found just below it).
    """
    if not candidates:
        return []
    slots = _slots([c.position for c in candidates])
    best, best_levels = -np.inf, [0] * len(candidates)
    offsets = (range(1 - slots[-1], n_levels + 1) if lowest_level is None
               else [lowest_level - slots[-1]])
    for k in offsets:
        levels, total = [], 0.0
        taken: dict[int, tuple[float, int]] = {}
        for j, (comp, slot) in enumerate(zip(candidates, slots)):
            level = slot + k
            if not 1 <= level <= n_levels:
                levels.append(0)
                continue
            value = comp.size * (KEEP_BONUS + comp.scores[level - 1] + TIE_BREAK * level)
            if level in taken:
                if taken[level][0] >= value:
                    levels.append(0)
                    continue
                total -= taken[level][0]
                levels[taken[level][1]] = 0
            taken[level] = (value, j)
            levels.append(level)
            total += value
        if total > best:
            best, best_levels = total, levels
    return best_levels


def sacrum_top(candidates: list[_Component], n_rows: int, axis_si: int, spacing_si: float) -> bool:
    """Whether the lowest of ``candidates`` (sorted superior -> inferior) is the top of the sacrum.

    It is when it holds less than :data:`SACRUM_TOP_FRACTION` of the body above it and at least
    :data:`SACRUM_BELOW_MM` of image lies below it (``n_rows`` rows along ``axis_si``).
    """
    if len(candidates) < 2:
        return False
    lowest, above = candidates[-1], candidates[-2]
    below_mm = (n_rows - lowest.slices[axis_si].stop) * spacing_si
    return lowest.size < SACRUM_TOP_FRACTION * above.size and below_mm >= SACRUM_BELOW_MM


def enforce_anatomy(labels: np.ndarray, probs=None, spacing=(1.0, 1.0, 1.0), *, axis_si: int = 1,
                    n_levels: int = 7, min_fraction: float = 0.15,
                    min_volume_mm3: float = MIN_BODY_MM3) -> tuple[np.ndarray, PostprocessReport]:
    """Apply the anatomy rules to a 3D label map (values 0..n_levels).

    ``probs`` is ``[n_levels + 1, *labels.shape]`` (float, or uint8 scaled by 255) or None
    (then the labels themselves are the only evidence). ``spacing`` is per array axis;
    ``axis_si`` is the array axis running superior -> inferior (1 in the canonical stack).
    Returns the new label map and a report.
    """
    from scipy import ndimage

    labels = np.asarray(labels)
    report = PostprocessReport()
    out = np.zeros(labels.shape, np.uint8)
    components, _ = ndimage.label(labels > 0)
    sizes = np.bincount(components.ravel())[1:]
    if not sizes.size:
        return out, report
    reference = float(np.median(np.sort(sizes)[-n_levels:]))          # the largest blobs: the bodies
    min_voxels = max(min_fraction * reference, min_volume_mm3 / float(np.prod(spacing)))
    pieces = body_pieces(components, min_voxels)
    bodies, fragments = _bodies(labels, pieces, probs, n_levels, axis_si, spacing, min_voxels)
    candidates = sorted(bodies, key=lambda c: c.position)
    lowest_level = None
    if sacrum_top(candidates, labels.shape[axis_si], axis_si, float(spacing[axis_si])):
        sacrum = candidates.pop()
        report.dropped_candidates.append((sacrum.level, sacrum.size))
        report.sacrum_top = sacrum.size
        slots = _slots([c.position for c in candidates + [sacrum]])
        if slots[-1] - slots[-2] == 1:          # the body sitting on the sacrum is L5
            lowest_level = n_levels
    for comp, level in zip(candidates, _assign_levels(candidates, n_levels, lowest_level)):
        if level == 0:
            report.dropped_candidates.append((comp.level, comp.size))
            continue
        if level != comp.level:
            report.relabeled.append((comp.level, level, comp.size))
        out[comp.slices][comp.mask] = level
    # fragments: join the kept body they touch most, else drop
    structure = ndimage.generate_binary_structure(3, 1)
    for frag in fragments:
        box = tuple(slice(max(0, s.start - 1), min(n, s.stop + 1)) for s, n in zip(frag.slices, labels.shape))
        local = np.zeros(tuple(s.stop - s.start for s in box), bool)
        inner = tuple(slice(f.start - b.start, f.stop - b.start) for f, b in zip(frag.slices, box))
        local[inner] = frag.mask
        ring = ndimage.binary_dilation(local, structure) & ~local
        touching = out[box][ring]
        touching = touching[touching > 0]
        if touching.size:
            level = int(np.bincount(touching).argmax())
            region = out[box]
            region[local] = level
            report.merged_fragments += frag.size
        else:
            report.dropped_fragments += frag.size
    return out, report
