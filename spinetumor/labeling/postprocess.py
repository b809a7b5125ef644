"""Anatomy in 3D: one connected component per level, levels ordered superior to inferior.

The network labels each sagittal slice on its own, so its 3D label map can contain
fragments, a level repeated on two bodies, or two neighbours swapped. The rules here
follow the anatomy: vertebral bodies are separate blobs stacked along the spine and
their names increase downwards without repetition.

1. Every connected component of every predicted level is a *candidate body* when it
   is at least ``min_fraction`` of the typical body size and at least
   :data:`MIN_BODY_MM3`; smaller ones are fragments.
2. Candidates are sorted by their superior-inferior position and given strictly
   increasing levels by dynamic programming, maximizing ``sum(keep_bonus + p_level)``
   over their voxels (``p_level`` = the network's mean probability of that level in the
   candidate). A swapped pair therefore comes out in order, a repeated level moves to
   the next free one, and a candidate that fits no free level (e.g. the sacrum called L5
   below the true L5) is dropped. Where the probabilities do not decide, levels are
   counted upwards from the lowest body (:data:`TIE_BREAK`).
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


@dataclass
class PostprocessReport:
    """What the anatomy rules changed (for logs and the result JSON)."""

    relabeled: list = field(default_factory=list)       # (from_level, to_level, voxels)
    dropped_candidates: list = field(default_factory=list)  # (network level, voxels)
    dropped_fragments: int = 0                           # voxels of isolated fragments removed
    merged_fragments: int = 0                            # voxels of touching fragments absorbed

    def to_dict(self) -> dict:
        return {"relabeled": [list(map(int, r)) for r in self.relabeled],
                "dropped_candidates": [list(map(int, d)) for d in self.dropped_candidates],
                "dropped_fragment_voxels": int(self.dropped_fragments),
                "merged_fragment_voxels": int(self.merged_fragments)}


@dataclass
class _Component:
    level: int           # network's label
    slices: tuple        # bounding box
    mask: np.ndarray     # within the bounding box
    size: int
    position: float      # superior-inferior coordinate of the centroid (mm, larger = inferior)
    scores: np.ndarray   # mean probability per level 1..n_levels


def _components(labels: np.ndarray, probs, n_levels: int, axis_si: int, spacing_si: float) -> list[_Component]:
    """Connected components (6-connectivity) of every level, with their position and mean probabilities."""
    from scipy import ndimage

    comps = []
    for level in range(1, n_levels + 1):
        mask = labels == level
        if not mask.any():
            continue
        lab, n = ndimage.label(mask)
        for index, box in enumerate(ndimage.find_objects(lab), start=1):
            sub = lab[box] == index
            size = int(sub.sum())
            coords = np.nonzero(sub)[axis_si].mean() + box[axis_si].start
            if probs is not None:
                scores = np.array([probs[l][box][sub].mean() for l in range(1, n_levels + 1)], dtype=float)
                if probs.dtype == np.uint8:
                    scores = scores / 255.0
            else:
                scores = np.eye(n_levels)[level - 1]
            comps.append(_Component(level, box, sub, size, float(coords * spacing_si), scores))
    return comps


def _assign_levels(candidates: list[_Component], n_levels: int) -> list[int]:
    """Strictly increasing levels (0 = drop) for candidates sorted superior->inferior, by DP."""
    n = len(candidates)
    neg = -np.inf
    # best[i][l]: best total using the first i candidates with the last used level <= l
    best = np.zeros((n + 1, n_levels + 1))
    choice = np.zeros((n + 1, n_levels + 1), dtype=int)   # level given to candidate i-1 (0 = dropped)
    for i in range(1, n + 1):
        comp = candidates[i - 1]
        for l in range(0, n_levels + 1):
            keep_drop = best[i - 1][l]
            take = neg
            if l >= 1:
                take = best[i - 1][l - 1] + comp.size * (KEEP_BONUS + comp.scores[l - 1] + TIE_BREAK * l)
            # either candidate i-1 gets level l exactly, or it is dropped; or last level is < l
            options = [(keep_drop, 0), (take, l)]
            if l >= 1:
                options.append((best[i][l - 1], -1))
            value, pick = max(options, key=lambda o: o[0])
            best[i][l], choice[i][l] = value, pick
    levels = [0] * n
    i, l = n, n_levels
    while i > 0:
        pick = choice[i][l]
        if pick == -1:
            l -= 1
            continue
        levels[i - 1] = pick
        if pick > 0:
            l = pick - 1
        i -= 1
    return levels


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
    comps = _components(labels, probs, n_levels, axis_si, float(spacing[axis_si]))
    out = np.zeros(labels.shape, np.uint8)
    if not comps:
        return out, report
    largest = {}
    for c in comps:
        largest[c.level] = max(largest.get(c.level, 0), c.size)
    reference = float(np.median(list(largest.values())))
    min_voxels = max(min_fraction * reference, min_volume_mm3 / float(np.prod(spacing)))
    candidates = sorted((c for c in comps if c.size >= min_voxels), key=lambda c: c.position)
    fragments = [c for c in comps if c.size < min_voxels]
    for comp, level in zip(candidates, _assign_levels(candidates, n_levels)):
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
