"""Evaluation metrics: per-label overlap, surface distances in millimetres, vertebra identification.

Everything here compares a predicted label map with a ground-truth one on the same
grid (:meth:`Volume.same_geometry`). Distances are physical: the array is indexed
``[k, j, i]`` while :attr:`Volume.spacing` is given per ``(i, j, k)``, so every
distance transform here uses ``sampling=spacing[::-1]``; an anisotropic scan
(e.g. 0.5 x 0.5 x 3 mm) therefore gives distances in millimetres, not voxels.

Conventions for empty sets (following the VerSe evaluation code and the
"empty reference" discussion of Metrics Reloaded, Maier-Hein et al. 2024):

* Overlap metrics (Dice, IoU, precision, recall): when a ratio is 0/0 it is **1.0
  if both masks are empty** (nothing to find, nothing found: perfect agreement,
  VerSe's ``empty_score=1.0``) and **0.0 if only one of them is empty** (a missed
  or a spurious structure is a complete failure). ``empty`` in the per-label
  result says which case applied (``"both"``, ``"pred"``, ``"truth"`` or ``None``)
  so a caller can exclude such labels instead of trusting the convention.
* Surface distances (HD95, ASSD): ``nan`` when both masks are empty (no surface to
  compare, the distance is undefined) and ``inf`` when exactly one is empty (the
  other surface is infinitely far). :func:`summarize` averages finite values only
  and counts the missed and spurious labels separately, so one missing label does
  not turn the mean into ``inf``.
* Identification (VerSe): a ground-truth level absent from the prediction is not
  identified and has distance ``inf``; the rate's denominator is the number of
  levels present in the ground truth, so predicted levels the truth lacks do not
  change it (they are listed as ``spurious_levels``).
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .volume import Volume

#: VerSe's identification threshold: a predicted centroid farther than this from its true one is a miss.
IDENTIFICATION_MAX_MM = 20.0

#: The per-label keys that :func:`summarize` averages.
AVERAGED_KEYS = ("dice", "iou", "precision", "recall", "accuracy", "hd95_mm", "assd_mm")


# --------------------------------------------------------------------------- overlap

def _ratio(numerator: int, denominator: int, both_empty: bool) -> float:
    """``numerator / denominator`` with the module's 0/0 convention (1.0 if both masks are empty, else 0.0)."""
    if denominator == 0:
        return 1.0 if both_empty else 0.0
    return float(numerator) / float(denominator)


def _empty_case(n_pred: int, n_truth: int) -> str | None:
    """Which mask is empty: ``"both"``, ``"pred"``, ``"truth"`` or ``None``."""
    if n_pred == 0 and n_truth == 0:
        return "both"
    if n_pred == 0:
        return "pred"
    if n_truth == 0:
        return "truth"
    return None


def overlap(pred: np.ndarray, truth: np.ndarray) -> dict:
    """Dice, IoU (Jaccard), precision, recall and voxel accuracy of two boolean masks.

    Also returns the confusion counts (``tp``, ``fp``, ``fn``, ``tn``) so results can
    be pooled over cases, and ``empty`` (see the module docstring for the 0/0
    convention). Voxel accuracy is reported only as a secondary figure: it counts
    true negatives, so on a spine scan it is close to 1.0 even for a useless
    prediction of a small structure.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, truth {truth.shape}")
    n_pred, n_truth = int(pred.sum()), int(truth.sum())
    tp = int(np.count_nonzero(pred & truth))
    fp, fn = n_pred - tp, n_truth - tp
    tn = int(pred.size) - tp - fp - fn
    both = n_pred == 0 and n_truth == 0
    return {
        "dice": _ratio(2 * tp, n_pred + n_truth, both),
        "iou": _ratio(tp, tp + fp + fn, both),
        "precision": _ratio(tp, n_pred, both),
        "recall": _ratio(tp, n_truth, both),
        "accuracy": (tp + tn) / pred.size if pred.size else 1.0,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "pred_voxels": n_pred, "truth_voxels": n_truth,
        "empty": _empty_case(n_pred, n_truth),
    }


# --------------------------------------------------------------------------- surfaces

def _kji_sampling(spacing_ijk) -> tuple[float, float, float]:
    """Voxel size per array axis ``(k, j, i)`` from a Volume spacing given per ``(i, j, k)``."""
    spacing = tuple(float(s) for s in spacing_ijk)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (i, j, k), got {spacing_ijk}")
    return spacing[::-1]


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of a boolean mask: mask voxels with at least one 6-neighbour outside it.

    Voxels on the array border count as surface (outside the array is background),
    so a structure cut by the field of view still has a closed surface.
    """
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def _bounding_box(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask``'s voxels, grown by ``margin`` inside the array."""
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n))
                 for i, n in zip(idx, mask.shape))


def surface_distances(pred: np.ndarray, truth: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (pred surface -> truth surface, truth surface -> pred surface).

    ``spacing`` is per ``(i, j, k)`` as in :class:`Volume`; the masks are ``[k, j, i]``.
    Each surface voxel's distance is the Euclidean distance (with anisotropic spacing)
    from its centre to the nearest surface-voxel centre of the other mask, from
    ``scipy.ndimage.distance_transform_edt(..., sampling=spacing[::-1])``. The work is
    cropped to the bounding box of both masks, which is exact: every surface voxel
    of either mask lies inside it. Both masks must be non-empty.
    """
    from scipy import ndimage

    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: prediction {pred.shape}, truth {truth.shape}")
    if not pred.any() or not truth.any():
        raise ValueError("surface distances need two non-empty masks")
    sampling = _kji_sampling(spacing)
    # The one-voxel margin keeps the crop's border outside both masks, except where the box
    # meets the array border, which closes the surface exactly as on the full array.
    box = _bounding_box(pred | truth)
    s_pred, s_truth = surface(pred[box]), surface(truth[box])
    to_truth = ndimage.distance_transform_edt(~s_truth, sampling=sampling)
    to_pred = ndimage.distance_transform_edt(~s_pred, sampling=sampling)
    return to_truth[s_pred], to_pred[s_truth]


def surface_metrics(pred: np.ndarray, truth: np.ndarray, spacing, percentile: float = 95.0) -> dict:
    """95 % Hausdorff distance, average symmetric surface distance and Hausdorff distance, in mm.

    * ``hd95_mm``: the larger of the two directed 95th percentiles (the Metrics
      Reloaded definition); robust to a few outlying voxels, unlike the maximum.
    * ``assd_mm``: the mean of all directed distances of both surfaces pooled
      (each surface voxel counts once).
    * ``hd_mm``: the classic (100 %) Hausdorff distance, for reference.

    Empty masks: ``nan`` for all three when both are empty, ``inf`` when one is.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    has_pred, has_truth = bool(pred.any()), bool(truth.any())
    if not has_pred or not has_truth:
        value = float("nan") if not has_pred and not has_truth else float("inf")
        return {"hd95_mm": value, "assd_mm": value, "hd_mm": value}
    d_pt, d_tp = surface_distances(pred, truth, spacing)
    hd95 = max(float(np.percentile(d_pt, percentile)), float(np.percentile(d_tp, percentile)))
    assd = float((d_pt.sum() + d_tp.sum()) / (d_pt.size + d_tp.size))
    hd = max(float(d_pt.max()), float(d_tp.max()))
    return {"hd95_mm": hd95, "assd_mm": assd, "hd_mm": hd}


# --------------------------------------------------------------------------- identification

def centroids(volume: Volume, labels: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """Centroid (LPS mm) of every label present in a label-map volume.

    ``labels`` restricts the result (labels absent from the map are left out);
    ``None`` means every nonzero value. The centroid is the mean voxel index mapped
    through the volume's geometry, which equals the mean physical position because
    the index-to-LPS map is affine.
    """
    from scipy import ndimage

    array = np.asarray(volume.array)
    present = [int(v) for v in np.unique(array) if v != 0]
    wanted = present if labels is None else [int(v) for v in labels if int(v) in present]
    if not wanted:
        return {}
    kji = ndimage.center_of_mass(np.ones(array.shape, dtype=np.uint8), array, wanted)
    return {label: volume.index_to_lps(np.asarray(c, dtype=float)) for label, c in zip(wanted, kji)}


def identification_from_centroids(pred: Mapping[int, np.ndarray], truth: Mapping[int, np.ndarray],
                                  max_distance_mm: float = IDENTIFICATION_MAX_MM) -> dict:
    """VerSe identification rate from centroids in mm (any common frame, e.g. LPS).

    A ground-truth level is *identified* when the prediction has that level, its
    predicted centroid lies within ``max_distance_mm`` (<= 20 mm, as the VerSe code
    tests) of the level's true centroid, and is strictly closer to it than to every
    other true centroid (a tie counts as a miss: the label would be ambiguous). The
    competing true centroids are all levels of the ground truth, as the VerSe paper
    states it (the VerSe script only lets levels that are also predicted compete).

    Returns ``rate`` (identified / levels in the truth; ``nan`` when the truth has no
    level), ``identified`` and ``n_levels`` counts, ``mean_distance_mm`` over the
    levels present in both (VerSe's localisation distance; ``nan`` if none),
    ``spurious_levels`` (predicted, absent from the truth) and ``levels``: per true
    level ``{"distance_mm", "identified", "nearest_true_label"}`` where the distance
    is ``inf`` and the nearest label ``None`` for a level the prediction lacks.
    """
    true_labels = sorted(int(k) for k in truth)
    true_points = np.array([np.asarray(truth[k], dtype=float) for k in true_labels]).reshape(-1, 3)
    levels, distances = {}, []
    for index, label in enumerate(true_labels):
        if label not in pred:
            levels[label] = {"distance_mm": float("inf"), "identified": False, "nearest_true_label": None}
            continue
        to_true = np.linalg.norm(true_points - np.asarray(pred[label], dtype=float), axis=1)
        own = float(to_true[index])
        others = np.delete(to_true, index)
        closest = bool(others.size == 0 or own < others.min())
        nearest = true_labels[int(np.argmin(to_true))]
        levels[label] = {"distance_mm": own, "identified": closest and own <= max_distance_mm,
                         "nearest_true_label": nearest}
        distances.append(own)
    identified = sum(1 for level in levels.values() if level["identified"])
    return {
        "rate": identified / len(true_labels) if true_labels else float("nan"),
        "identified": identified,
        "n_levels": len(true_labels),
        "mean_distance_mm": float(np.mean(distances)) if distances else float("nan"),
        "spurious_levels": sorted(int(k) for k in pred if int(k) not in truth),
        "levels": levels,
    }


def identification(pred: Volume, truth: Volume, levels: Iterable[int] | None = None,
                   max_distance_mm: float = IDENTIFICATION_MAX_MM) -> dict:
    """VerSe identification rate of two vertebra label maps (see :func:`identification_from_centroids`).

    ``levels`` are the label values that count as vertebrae; ``None`` means the
    project's vertebra labels (:data:`spinetumor.labels.VERTEBRAE`), so other
    structures in a combined map never compete as centroids.
    """
    _check_geometry(pred, truth)
    if levels is None:
        from . import labels as label_table

        levels = [label.value for label in label_table.VERTEBRAE]
    levels = list(levels)
    return identification_from_centroids(centroids(pred, levels), centroids(truth, levels), max_distance_mm)


# --------------------------------------------------------------------------- per label

def _check_geometry(pred: Volume, truth: Volume) -> None:
    """Raise ``ValueError`` naming what differs when the two volumes are not on the same grid."""
    if pred.same_geometry(truth):
        return
    parts = []
    if pred.shape != truth.shape:
        parts.append(f"shape {pred.shape} vs {truth.shape}")
    if not np.allclose(pred.spacing, truth.spacing, atol=1e-4):
        parts.append(f"spacing {pred.spacing} vs {truth.spacing}")
    if not np.allclose(pred.origin, truth.origin, atol=1e-4):
        parts.append(f"origin {pred.origin} vs {truth.origin}")
    if not np.allclose(pred.direction, truth.direction, atol=1e-4):
        parts.append(f"direction {pred.direction.round(4).tolist()} vs {truth.direction.round(4).tolist()}")
    raise ValueError("prediction and truth do not share geometry (" + "; ".join(parts)
                     + "); resample the prediction onto the truth's grid first")


def label_metrics(pred: Volume, truth: Volume, labels: list[int] | None = None,
                  levels: Iterable[int] | None = None) -> dict[int, dict]:
    """All metrics per label: overlap, surface distances (mm) and, for vertebrae, identification.

    ``labels`` are the label values to evaluate; ``None`` means every nonzero value
    in either map. Each result holds the keys of :func:`overlap` and
    :func:`surface_metrics`; labels that are vertebral levels (``levels``, by default
    the project's vertebra labels) also get ``centroid_distance_mm`` and
    ``identified`` from :func:`identification`, computed among the evaluated levels
    (``inf`` / ``False`` for a level the prediction lacks, ``nan`` / ``False`` for a
    level only the prediction has).
    Raises ``ValueError`` when the two volumes are not on the same grid: comparing
    voxel by voxel across different geometries would silently give wrong numbers.
    """
    _check_geometry(pred, truth)
    p, t = np.asarray(pred.array), np.asarray(truth.array)
    if labels is None:
        labels = sorted(int(v) for v in np.union1d(np.unique(p), np.unique(t)) if v != 0)
    labels = [int(v) for v in labels]
    if levels is None:
        from . import labels as label_table

        levels = [label.value for label in label_table.VERTEBRAE]
    eval_levels = [v for v in labels if v in set(int(x) for x in levels)]
    ident = identification(pred, truth, eval_levels)["levels"] if eval_levels else {}

    results = {}
    for label in labels:
        pm, tm = p == label, t == label
        result = overlap(pm, tm)
        result.update(surface_metrics(pm, tm, truth.spacing))
        if label in eval_levels:
            level = ident.get(label)
            result["identified"] = bool(level["identified"]) if level else False
            result["centroid_distance_mm"] = level["distance_mm"] if level else float("nan")
        results[label] = result
    return results


def summarize(per_label: Mapping[int, dict]) -> dict:
    """Mean of each metric over labels, plus counts that explain what the means leave out.

    For every key in :data:`AVERAGED_KEYS`, the mean over labels whose value is
    finite (``nan`` if none is): infinite surface distances of missed or spurious
    labels are not averaged but counted in ``n_missed`` (truth present, prediction
    empty) and ``n_spurious`` (prediction present, truth empty). Labels empty in
    both maps are counted in ``n_both_empty`` and excluded from every mean, so that
    evaluating a label nobody drew does not inflate the mean Dice with the 1.0
    convention. ``identification_rate`` is identified / evaluated levels present in
    the truth (``nan`` when there are none).
    """
    counted = {k: v for k, v in per_label.items() if v.get("empty") != "both"}
    summary = {}
    for key in AVERAGED_KEYS:
        values = np.array([float(v[key]) for v in counted.values() if key in v], dtype=float)
        finite = values[np.isfinite(values)]
        summary[key] = float(finite.mean()) if finite.size else float("nan")
    summary["n_labels"] = len(counted)
    summary["n_missed"] = sum(1 for v in counted.values() if v.get("empty") == "pred")
    summary["n_spurious"] = sum(1 for v in counted.values() if v.get("empty") == "truth")
    summary["n_both_empty"] = len(per_label) - len(counted)
    levels = [v for v in counted.values() if "identified" in v and v.get("truth_voxels", 0) > 0]
    summary["identification_rate"] = (sum(1 for v in levels if v["identified"]) / len(levels)
                                      if levels else float("nan"))
    return summary
