"""Canonical sagittal slices at the fixed in-plane spacing: the network's view of a volume.

Every volume, whatever its orientation and voxel size, is reoriented exactly to the
canonical sagittal stack (:func:`~spinetumor.volume.to_canonical`); each sagittal slice is
then resampled in-plane to :data:`SPACING_MM` with separable interpolation matrices, so
the same matrices (transposed in role) carry predictions back to the original grid.
Training slices are prepared once per case and cached as one ``.npz`` file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import SPACING_MM

#: The Chu cases, and the fixed split by case id (the three highest ids validate).
CHU_CASES = ("chu_02", "chu_04", "chu_06", "chu_07", "chu_08", "chu_09",
             "chu_12", "chu_13", "chu_14", "chu_17", "chu_18", "chu_19")
CHU_VALIDATION = ("chu_17", "chu_18", "chu_19")
CHU_TRAINING = tuple(c for c in CHU_CASES if c not in CHU_VALIDATION)


def interpolation_matrix(n_source: int, source_spacing: float, n_target: int, target_spacing: float) -> np.ndarray:
    """``[n_target, n_source]`` weights resampling a 1D axis whose first samples coincide.

    Target sample ``t`` lies at ``t * target_spacing`` mm, source sample ``s`` at
    ``s * source_spacing`` mm. The kernel is linear (a tent), widened to the target
    spacing when downsampling so that fine scans are averaged rather than aliased.
    Target samples beyond the source voxels' extent (half a pixel past the first and last
    sample) get no weight (zero padding); those within it take the edge value.
    """
    pos = np.arange(n_target) * target_spacing / source_spacing       # in source pixels
    width = max(1.0, target_spacing / source_spacing)
    src = np.arange(n_source)
    inside = (pos >= -0.5 - 1e-6) & (pos <= n_source - 0.5 + 1e-6)    # within the voxels' extent
    pos = np.clip(pos, 0, n_source - 1)                                # edge voxels extend half a pixel
    w = np.clip(1.0 - np.abs(pos[:, None] - src[None, :]) / width, 0.0, None)
    sums = w.sum(axis=1, keepdims=True)
    w = np.where((sums > 0) & inside[:, None], w / np.maximum(sums, 1e-12), 0.0)
    return w.astype(np.float32)


def nearest_indices(n_source: int, source_spacing: float, n_target: int, target_spacing: float) -> np.ndarray:
    """Source index nearest to each target sample (-1 outside the source extent), for label maps."""
    pos = np.arange(n_target) * target_spacing / source_spacing
    idx = np.rint(pos).astype(int)
    idx[(pos < -0.5) | (pos > n_source - 0.5)] = -1
    return idx


@dataclass(frozen=True)
class SliceGrid:
    """The in-plane resampling between a canonical stack's slices and the fixed-spacing grid."""

    rows: int                 # canonical slice size (superior->inferior rows)
    cols: int                 # (anterior->posterior columns)
    row_spacing: float
    col_spacing: float
    spacing: float = SPACING_MM

    @classmethod
    def of(cls, canonical) -> "SliceGrid":
        """The grid of a canonical Volume (array[s, r, c]; spacing is per (c, r, s))."""
        _, rows, cols = canonical.shape
        return cls(rows, cols, canonical.spacing[1], canonical.spacing[0])

    @property
    def out_rows(self) -> int:
        return max(1, int(np.ceil((self.rows - 1) * self.row_spacing / self.spacing + 1e-6)) + 1)

    @property
    def out_cols(self) -> int:
        return max(1, int(np.ceil((self.cols - 1) * self.col_spacing / self.spacing + 1e-6)) + 1)

    def to_fixed(self, stack: np.ndarray) -> np.ndarray:
        """Images ``[..., rows, cols]`` -> ``[..., out_rows, out_cols]`` at the fixed spacing."""
        wr = interpolation_matrix(self.rows, self.row_spacing, self.out_rows, self.spacing)
        wc = interpolation_matrix(self.cols, self.col_spacing, self.out_cols, self.spacing)
        return _apply_separable(wr, wc, stack)

    def labels_to_fixed(self, stack: np.ndarray) -> np.ndarray:
        """Label maps ``[..., rows, cols]`` -> fixed grid by nearest neighbour (0 outside)."""
        ir = nearest_indices(self.rows, self.row_spacing, self.out_rows, self.spacing)
        ic = nearest_indices(self.cols, self.col_spacing, self.out_cols, self.spacing)
        out = stack[..., np.clip(ir, 0, None)[:, None], np.clip(ic, 0, None)[None, :]]
        out[..., (ir < 0)[:, None] | (ic < 0)[None, :]] = 0
        return out

    def from_fixed(self, stack: np.ndarray) -> np.ndarray:
        """Fixed-grid maps ``[..., out_rows, out_cols]`` (e.g. probabilities) -> the slice grid."""
        wr = interpolation_matrix(self.out_rows, self.spacing, self.rows, self.row_spacing)
        wc = interpolation_matrix(self.out_cols, self.spacing, self.cols, self.col_spacing)
        return _apply_separable(wr, wc, stack)


def _apply_separable(wr: np.ndarray, wc: np.ndarray, stack: np.ndarray) -> np.ndarray:
    """``wr @ image @ wc.T`` for every image of ``stack [..., rows, cols]``, with sparse matrices.

    The interpolation matrices have a few non-zeros per row, so sparse products cost a
    small fraction of dense ones (this runs on every slice and class during inference).
    """
    from scipy import sparse

    stack = np.asarray(stack, dtype=np.float32)
    lead, (rows, cols) = stack.shape[:-2], stack.shape[-2:]
    flat = stack.reshape(-1, rows, cols)
    wr_s, wc_s = sparse.csr_matrix(wr), sparse.csr_matrix(wc)
    # rows: [rows, n * cols] -> [out_rows, n * cols]
    by_rows = np.ascontiguousarray(flat.transpose(1, 0, 2)).reshape(rows, -1)
    step = np.asarray(wr_s @ by_rows, dtype=np.float32).reshape(wr.shape[0], len(flat), cols)
    # cols: [n * out_rows, cols] @ wc.T -> [n * out_rows, out_cols]
    by_cols = np.ascontiguousarray(step.transpose(1, 0, 2)).reshape(-1, cols)
    out = np.asarray((wc_s @ by_cols.T).T, dtype=np.float32)
    return out.reshape(*lead, wr.shape[0], wc.shape[0])


def normalize_intensity(array: np.ndarray) -> np.ndarray:
    """Scale an MR volume so its 99.5th percentile of non-zero voxels is 1 (clipped at 0 and 2).

    MR intensities have no absolute unit; a robust upper percentile makes scans from
    different scanners and the phantoms comparable without being thrown by fat or flow spikes.
    """
    a = np.asarray(array, dtype=np.float32)
    nonzero = a[a > 0]
    top = float(np.percentile(nonzero, 99.5)) if nonzero.size else 1.0
    return np.clip(a / max(top, 1e-6), 0.0, 2.0)


def prepare_case(image, vertebrae=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Canonical slices of one case at the fixed spacing: normalized image (float16) and labels (uint8)."""
    from ..volume import resample_like, to_canonical

    canon, _ = to_canonical(image)
    grid = SliceGrid.of(canon)
    img = grid.to_fixed(normalize_intensity(canon.array)).astype(np.float16)
    if vertebrae is None:
        return img, None
    if not vertebrae.same_geometry(image):
        vertebrae = resample_like(vertebrae, image, label=True)
    lab_canon, _ = to_canonical(vertebrae)
    lab = grid.labels_to_fixed(np.asarray(lab_canon.array).astype(np.uint8))
    lab[lab > 7] = 0
    return img, lab


def load_chu_case(data_dir, case: str):
    """(image, vertebrae) Volumes of one Chu case from ``data_dir`` (../shared/data/chu_lumbar_t2)."""
    from ..io import read_volume

    data_dir = Path(data_dir)
    return (read_volume(data_dir / f"{case}_t2.nii.gz"),
            read_volume(data_dir / f"{case}_vertebrae.nii.gz", validate=False))


def phantom_available() -> bool:
    """True when :mod:`spinetumor.phantom` imports and offers ``generate``."""
    try:
        from .. import phantom
    except Exception:  # noqa: BLE001 - any import problem means: train without phantoms
        return False
    return hasattr(phantom, "generate")


def phantom_case(seed: int):
    """(image, vertebrae) Volumes of one tumor-free phantom."""
    from .. import phantom

    case = phantom.generate(seed, tumor="none")
    return case.image, case.vertebrae


def build_cache(path, chu_dir=None, chu_cases=CHU_CASES, phantom_seeds=(), progress=print) -> Path:
    """Prepare every case once and write ``path`` (.npz): ``{name}/image`` and ``{name}/label`` arrays.

    A sidecar ``.json`` lists the cases, so a cache is rebuilt only when they change.
    """
    path = Path(path)
    manifest = {"spacing_mm": SPACING_MM, "chu": list(chu_cases) if chu_dir else [],
                "phantom_seeds": [int(s) for s in phantom_seeds]}
    key = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists() and json.loads(meta.read_text()).get("key") == key:
        return path
    arrays = {}
    for case in manifest["chu"]:
        img, lab = prepare_case(*load_chu_case(chu_dir, case))
        arrays[f"{case}/image"], arrays[f"{case}/label"] = img, lab
        progress(f"prepared {case}: {img.shape}")
    for seed in manifest["phantom_seeds"]:
        img, lab = prepare_case(*phantom_case(seed))
        arrays[f"phantom_{seed:04d}/image"], arrays[f"phantom_{seed:04d}/label"] = img, lab
        progress(f"prepared phantom {seed}: {img.shape}")
    save_cache(path, arrays)
    meta.write_text(json.dumps({**manifest, "key": key}, indent=2))
    return path


def save_cache(path, arrays: dict) -> Path:
    """Write prepared slices atomically; ``arrays`` maps ``{case}/image`` and ``{case}/label`` to arrays.

    A dict ``{case: (image, label)}`` is accepted too.
    """
    path = Path(path)
    flat = {}
    for key, item in arrays.items():
        if isinstance(item, tuple):
            flat[f"{key}/image"], flat[f"{key}/label"] = item
        else:
            flat[key] = item
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **flat)
    tmp.replace(path)
    return path


def load_cache(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{case: (image [S, H, W] float16, label [S, H, W] uint8)}`` from a cache file."""
    with np.load(path) as data:
        names = sorted({k.split("/")[0] for k in data.files})
        return {n: (data[f"{n}/image"], data[f"{n}/label"]) for n in names}
