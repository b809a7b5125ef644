"""Label the vertebral bodies T11..L5 of any T2 sagittal-ish volume and map them back exactly.

Pipeline: exact reorientation to the canonical sagittal stack; per sagittal slice,
in-plane resampling to the fixed spacing and centring (or tiling, for fields of view
beyond 384 mm) on the 256 x 256 canvas; batched prediction; probabilities resampled
back onto each canonical slice's own grid; arg-max; anatomy rules in 3D
(:mod:`.postprocess`); exact inverse reorientation. The label map therefore has the
input's shape, spacing, origin and direction, voxel for voxel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import NUM_CLASSES, TILE, Cancelled
from .dataset import SliceGrid, normalize_intensity


@dataclass
class LevelResult:
    """One vertebral level of a labeling result."""

    name: str
    value: int
    present: bool
    volume_ml: float = 0.0
    centroid_ras: tuple | None = None
    confidence: float | None = None     # mean network probability of this level over its voxels

    def to_dict(self) -> dict:
        return {"name": self.name, "value": self.value, "present": self.present,
                "volume_ml": round(self.volume_ml, 3),
                "centroid_ras": None if self.centroid_ras is None else [round(float(x), 2) for x in self.centroid_ras],
                "confidence": None if self.confidence is None else round(float(self.confidence), 4)}


#: Image (mm) below the lowest labeled body from which the sacrum counts as in view: the
#: L5-S1 disc (8-12 mm) and the top of S1. The names lean on the sacrum (L5 sits on it); a
#: field of view ending above it leaves the network the bodies' appearance alone, and names
#: then come out one level off in some scans (docs/benchmarks.md, "Vertebra labeling").
#: Full lumbar fields of view hold 87-121 mm below L5 on the held-out Chu scans and 55-106 mm on
#: fresh phantoms; cut at the L3-L4 disc, 0-1 mm below L3 (``benchmarks/labeling.py``; 87-122,
#: 58-107 and 0-7 mm with the single network shipped before, when the threshold was chosen).
SACRUM_VIEW_MM = 20.0

#: Volume (ml) under which a labeled level is a body found only in part. Whole vertebral bodies
#: T11..L5 hold about 15-45 ml; the shipped model gives 20.6-40.8 ml on the held-out Chu scans and
#: 18.3-53.2 ml on fresh phantoms (``benchmarks/labeling.py``), and 2.0-2.9 ml for the two
#: uppermost bodies of the SCT sample of another scanner, which it finds only in patches. (The
#: threshold was chosen with the single network shipped before: 20.5-39.0, 15.1-47.7 and 2.1-2.7 ml.)
PARTIAL_BODY_ML = 5.0


@dataclass
class LabelingResult:
    """The label Volume (input geometry, values 1..7) and what was found per level.

    ``inferior_margin_mm``: length of image below the lowest labeled voxel along the
    superior-inferior axis (None when nothing was labeled); under :data:`SACRUM_VIEW_MM`
    the sacrum is taken as out of view and :meth:`notes` asks the reader to check the names.
    """

    labels: object                      # spinetumor.volume.Volume, uint8
    levels: dict = field(default_factory=dict)   # name -> LevelResult, T11..L5
    missing: list = field(default_factory=list)  # level names not found
    postprocess: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    inferior_margin_mm: float | None = None

    def sacrum_in_view(self) -> bool:
        """Whether enough image lies below the lowest labeled body to hold the sacrum."""
        return self.inferior_margin_mm is not None and self.inferior_margin_mm >= SACRUM_VIEW_MM

    def sacrum_note(self) -> str | None:
        """The caution for a field of view ending above the sacrum, or None."""
        if self.inferior_margin_mm is None or self.sacrum_in_view():
            return None
        return (f"The field of view ends {self.inferior_margin_mm:.0f} mm below the lowest labeled body, so the "
                "sacrum, which anchors the level names, is not in view: the names may be one level off; "
                "confirm them by counting from another landmark (e.g. the last rib).")

    def partial_levels(self) -> list[str]:
        """The levels labeled with less than :data:`PARTIAL_BODY_ML` of body: found only in part."""
        return [lv.name for lv in self.levels.values() if lv.present and lv.volume_ml < PARTIAL_BODY_ML]

    def partial_note(self) -> str | None:
        """The caution for bodies found only in part, or None."""
        partial = self.partial_levels()
        if not partial:
            return None
        return (f"{', '.join(partial)} {'was' if len(partial) == 1 else 'were'} found only in part (under "
                f"{PARTIAL_BODY_ML:g} ml; a vertebral body holds about 15-45 ml): check {'its' if len(partial) == 1 else 'their'} "
                "labels and names. This happens where a body is cut by the field of view and on scans that look "
                "unlike the training scans (another scanner or protocol).")

    def cautions(self) -> list[str]:
        """The reasons to check the labels and level names, one sentence each (none: nothing to check)."""
        return [note for note in (self.partial_note(), self.sacrum_note()) if note]

    def notes(self) -> list[str]:
        """Cautions for the reader, one sentence each: levels not found, labels and names to verify."""
        notes = []
        if self.missing:
            notes.append("The vertebra labeling did not find " + ", ".join(self.missing)
                         + " (outside the field of view, or missed by the network).")
        return notes + self.cautions()

    def to_dict(self) -> dict:
        margin = None if self.inferior_margin_mm is None else round(float(self.inferior_margin_mm), 1)
        return {"levels": [lv.to_dict() for lv in self.levels.values()], "missing": list(self.missing),
                "inferior_margin_mm": margin, "sacrum_note": self.sacrum_note(),
                "partial_levels": self.partial_levels(), "partial_note": self.partial_note(),
                "cautions": self.cautions(),
                "postprocess": self.postprocess, "model": self.model}


def inferior_margin_mm(labels: np.ndarray, row_spacing: float) -> float | None:
    """Length (mm) of a canonical ``[s, r, c]`` stack below its lowest nonzero voxel (rows run
    superior to inferior; ``row_spacing`` in mm), or None when ``labels`` is empty."""
    rows = np.flatnonzero(labels.any(axis=(0, 2)))
    if rows.size == 0:
        return None
    return float(labels.shape[1] - 1 - rows[-1]) * float(row_spacing)


def tile_starts(n: int, size: int = TILE, overlap: int = 64) -> list[int]:
    """Start offsets of windows of ``size`` covering ``n`` samples (one centred window when n <= size)."""
    if n <= size:
        return [-((size - n) // 2)]
    count = int(np.ceil((n - size) / (size - overlap))) + 1
    return [int(round(x)) for x in np.linspace(0, n - size, count)]


def _window(array2d: np.ndarray, r0: int, c0: int, size: int = TILE) -> np.ndarray:
    """A ``size`` x ``size`` window of a 2D array starting at (r0, c0), zero outside."""
    out = np.zeros((size, size), np.float32)
    h, w = array2d.shape
    rs, cs = max(0, r0), max(0, c0)
    re, ce = min(h, r0 + size), min(w, c0 + size)
    out[rs - r0:re - r0, cs - c0:ce - c0] = array2d[rs:re, cs:ce]
    return out


def predict_probabilities(model, fixed: np.ndarray, device, batch_size: int = 8, progress=None, cancel=None,
                          progress_span=(0.05, 0.85)) -> np.ndarray:
    """Softmax probabilities ``[S, C, H, W]`` (float32) for fixed-spacing slices ``[S, H, W]``.

    Each slice is cut into the windows of :func:`tile_starts`; overlapping windows average.
    """
    import torch

    from ..device import exact_inference

    n_slices, h, w = fixed.shape
    windows = [(s, r0, c0) for s in range(n_slices) for r0 in tile_starts(h) for c0 in tile_starts(w)]
    probs = np.zeros((n_slices, NUM_CLASSES, h, w), np.float32)
    weight = np.zeros((n_slices, 1, h, w), np.float32)
    model.eval()
    with exact_inference():
        for start in range(0, len(windows), batch_size):
            if cancel is not None and cancel():
                raise Cancelled("vertebra labeling was cancelled")
            chunk = windows[start:start + batch_size]
            x = np.stack([_window(fixed[s], r0, c0) for s, r0, c0 in chunk])[:, None]
            p = torch.softmax(model(torch.from_numpy(x).to(device)), dim=1).float().cpu().numpy()
            for (s, r0, c0), ps in zip(chunk, p):
                rs, cs = max(0, r0), max(0, c0)
                re, ce = min(h, r0 + TILE), min(w, c0 + TILE)
                probs[s, :, rs:re, cs:ce] += ps[:, rs - r0:re - r0, cs - c0:ce - c0]
                weight[s, :, rs:re, cs:ce] += 1.0
            if progress is not None:
                lo, hi = progress_span
                done = min(len(windows), start + batch_size) / len(windows)
                progress(lo + (hi - lo) * done, f"slices {min(len(windows), start + batch_size)}/{len(windows)}")
    probs /= np.maximum(weight, 1e-6)            # in place: a second array this size costs up to a second of page faults
    return probs


def decide_labels(probs: np.ndarray) -> np.ndarray:
    """Labels from class probabilities ``[C, ...]``: vertebra where background is below one half,
    then the most probable level.

    Deciding "vertebra or not" first keeps a body whose level is uncertain (its probability
    split between two neighbours) instead of losing it to the background; the level is
    then settled in 3D by :func:`~spinetumor.labeling.postprocess.enforce_anatomy`.
    """
    half = 127.5 if probs.dtype == np.uint8 else 0.5
    level = probs[1:].argmax(axis=0).astype(np.uint8) + 1
    return np.where(probs[0] < half, level, 0).astype(np.uint8)


def label_vertebrae(volume, device=None, progress=None, cancel=None, *, model=None, batch_size: int = 8,
                    postprocess: bool = True) -> LabelingResult:
    """Label T11..L5 in ``volume`` (a :class:`~spinetumor.volume.Volume`); see the module docstring.

    ``device``: torch device or name (default: :func:`spinetumor.device.select_device`).
    ``progress(fraction, message)`` is called along the way; ``cancel()`` returning True
    stops with :class:`~spinetumor.labeling.Cancelled`. ``model`` overrides the shipped one
    (a module, or a ``(module, manifest)`` pair from :func:`~spinetumor.labeling.model.load_model`).
    """
    import torch
    from scipy import ndimage

    from ..device import select_device
    from ..labels import VERTEBRAE
    from ..volume import from_canonical, to_canonical
    from .model import load_model
    from .postprocess import enforce_anatomy

    def report(fraction, message):
        if progress is not None:
            progress(float(fraction), message)
        if cancel is not None and cancel():
            raise Cancelled("vertebra labeling was cancelled")

    device = device if isinstance(device, torch.device) else select_device(device)
    report(0.0, "loading the labeling model")
    manifest = {}
    if model is None:
        model, manifest = load_model(device=device)
    elif isinstance(model, tuple):
        model, manifest = model
    model = model.to(device).eval()
    canon, _ = to_canonical(volume)
    grid = SliceGrid.of(canon)
    report(0.03, "resampling slices")
    fixed = grid.to_fixed(normalize_intensity(canon.array))
    probs_fixed = predict_probabilities(model, fixed, device, batch_size, progress, cancel)
    report(0.86, "mapping back to the input grid")
    n_s = canon.shape[0]
    probs = np.zeros((NUM_CLASSES,) + canon.shape, np.uint8)
    for s in range(n_s):
        back = grid.from_fixed(probs_fixed[s])
        probs[:, s] = np.clip(np.rint(back * 255.0), 0, 255).astype(np.uint8)
    del probs_fixed
    labels = decide_labels(probs)
    pp = {}
    if postprocess:
        report(0.9, "enforcing anatomy")
        spacing_kji = canon.spacing[::-1]
        labels, pp_report = enforce_anatomy(labels, probs, spacing_kji, axis_si=1)
        pp = pp_report.to_dict()
    report(0.97, "summarizing levels")
    result_canon = canon.with_array(labels)
    levels, missing = {}, []
    voxel_ml = float(np.prod(canon.spacing)) / 1000.0
    boxes = ndimage.find_objects(labels)           # each level's bounding box: measure it there, not everywhere
    for lab in VERTEBRAE:
        box = boxes[lab.value - 1] if lab.value <= len(boxes) else None
        if box is None:
            levels[lab.key] = LevelResult(lab.key, lab.value, False)
            missing.append(lab.key)
            continue
        mask = labels[box] == lab.value
        kji = np.argwhere(mask).mean(axis=0) + [sl.start for sl in box]
        levels[lab.key] = LevelResult(lab.key, lab.value, True, float(mask.sum()) * voxel_ml,
                                      tuple(result_canon.index_to_ras(kji)),
                                      float(probs[lab.value][box][mask].mean()) / 255.0)
    out = from_canonical(labels, volume)
    out = out.with_array(out.array.astype(np.uint8))
    info = {k: manifest[k] for k in ("name", "sha256", "date") if k in manifest}
    report(1.0, "done")
    return LabelingResult(out, levels, missing, pp, info, inferior_margin_mm(labels, canon.spacing[1]))
