"""Sagittal overview pictures: an image slice with label maps overlaid in the label table's colors.

Used by ``make demo``, the reports and the docs. Matplotlib is imported only here, only when drawing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import labels as label_table
from .io import atomic_path
from .volume import Volume, to_canonical


def _display_range(image: np.ndarray) -> tuple[float, float]:
    """Robust window: 0.5th to 99.5th percentile of the non-zero voxels."""
    values = image[image > 0] if (image > 0).any() else image.ravel()
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(max(high, low + 1e-6))


def overlay_rgb(image_slice: np.ndarray, label_slice: np.ndarray | None, window, alpha: float = 0.45) -> np.ndarray:
    """RGB picture of a 2D slice with labels blended in their table colors."""
    low, high = window
    gray = np.clip((image_slice.astype(np.float32) - low) / (high - low), 0, 1)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    if label_slice is None:
        return rgb
    for value in np.unique(label_slice):
        if value == 0:
            continue
        color = np.asarray(label_table.by_value(int(value)).color, dtype=np.float32) / 255.0
        mask = label_slice == value
        rgb[mask] = (1 - alpha) * rgb[mask] + alpha * color
    return rgb


def sagittal_overview(image: Volume, label_map: Volume | None, path, *, title: str = "",
                      slice_index: int | None = None, annotate_levels: bool = True) -> Path:
    """Write a PNG of one sagittal slice (default: the one with most labeled voxels, else the middle).

    Left panel: the image; right panel: the image with the label map overlaid and vertebral
    level names at their centroids. Pixels are drawn with their physical aspect ratio.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    canon, _ = to_canonical(image)
    labels_canon = to_canonical(label_map)[0].array if label_map is not None else None
    if slice_index is None:
        if labels_canon is not None and labels_canon.any():
            slice_index = int(np.argmax((labels_canon > 0).sum(axis=(1, 2))))
        else:
            slice_index = canon.shape[0] // 2
    window = _display_range(canon.array)
    row_mm, col_mm = canon.spacing[1], canon.spacing[0]       # canonical: j = rows, i = columns
    extent = (0, canon.shape[2] * col_mm, canon.shape[1] * row_mm, 0)
    label_slice = labels_canon[slice_index] if labels_canon is not None else None

    fig, axes = plt.subplots(1, 2, figsize=(10, 6.5), dpi=110)
    axes[0].imshow(overlay_rgb(canon.array[slice_index], None, window), extent=extent, interpolation="nearest")
    axes[1].imshow(overlay_rgb(canon.array[slice_index], label_slice, window), extent=extent,
                   interpolation="nearest")
    if annotate_levels and label_slice is not None:
        for level in label_table.VERTEBRAE:
            rows, cols = np.nonzero(label_slice == level.value)
            if rows.size:
                axes[1].text(cols.mean() * col_mm, rows.mean() * row_mm, level.key, color="black",
                             fontsize=8, ha="center", va="center", weight="bold")
    for ax, name in zip(axes, ("image", "labels")):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("anterior → posterior (mm)", fontsize=8)
        ax.set_ylabel("superior → inferior (mm)", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{title}  (sagittal slice {slice_index + 1}/{canon.shape[0]}, "
                 f"{canon.spacing[2]:.2g} mm thick)".strip(), fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return Path(path)
