"""Tumor-centred sagittal patches: extraction from volumes, phantom training cases, cache, augmentation.

Every volume is reoriented exactly to the canonical sagittal stack
(:func:`~spinetumor.volume.to_canonical`). For each sagittal slice that holds tumor,
a :data:`~spinetumor.classification.CROP`-pixel square at
:data:`~spinetumor.classification.SPACING_MM` mm is resampled around the centroid of
the tumor's section in that slice (bilinear for the image; masks bilinear, then
thresholded at 0.5). The image is divided by the 99th percentile of the tumor's crops,
so the patches do not depend on the scanner's intensity scale. The network sees the
central :data:`~spinetumor.classification.PATCH` pixels; the larger crop leaves room for
training-time augmentation to re-centre, rotate and perturb the masks.

Channels: image, tumor mask, and (4-channel variant) the dural sac ("canal": CSF and
everything in it) and the spinal cord. In phantoms the sac is every intradural label
(tumors inside it included) and the cord is cord, intramedullary tumor, edema and syrinx.

:func:`samples_from_cases` is the entry point for other training data: a list of
``(image, tumor_mask, canal, cord, type)`` cases, e.g. tumors inserted into real scans.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import labels
from ..volume import Volume, resample_like, to_canonical
from . import CLASSES, CROP, PATCH, SPACING_MM

#: Phantom labels inside the dural sac, and inside the cord (the tumor types included).
SAC_KEYS = ("canal", "cord", "cauda_equina", "intramedullary", "intradural-extramedullary", "edema", "syrinx")
CORD_KEYS = ("cord", "intramedullary", "edema", "syrinx")
#: Bits of the packed mask array of the cache.
TUMOR_BIT, CANAL_BIT, CORD_BIT = 1, 2, 4
#: Share of training patches whose sac and cord channels are blanked, so a 4-channel model
#: still answers (less surely) when no sac or cord mask is available.
ANATOMY_DROPOUT = 0.1
#: Seed ranges of the phantom splits (disjoint): training, validation, held-out benchmark.
TRAIN_SEED0, VAL_SEED0, TEST_SEED0 = 100_000, 200_000, 300_000


@dataclass
class TumorPatches:
    """The crops of one tumor: per slice, image (normalized), masks and the tumor's area."""

    image: np.ndarray        # [n, CROP, CROP] float32
    tumor: np.ndarray        # [n, CROP, CROP] bool
    canal: np.ndarray        # [n, CROP, CROP] bool (all False when no sac mask was given)
    cord: np.ndarray         # [n, CROP, CROP] bool
    area_mm2: np.ndarray     # [n] tumor area in each sagittal slice (mm^2, original grid)
    slices: np.ndarray       # [n] canonical slice index
    has_anatomy: bool        # whether sac and cord masks were given


def _on_grid(mask: Volume | None, reference: Volume) -> np.ndarray | None:
    """``mask`` in ``reference``'s canonical layout (resampled nearest-neighbour when its grid differs)."""
    if mask is None:
        return None
    if not mask.same_geometry(reference):
        mask = resample_like(mask, reference, label=True)
    return to_canonical(mask)[0].array


def _crop_slice(plane: np.ndarray, centre, step, size: int, order: int) -> np.ndarray:
    """``size`` x ``size`` samples of a 2D array around ``centre`` (pixels) ``step`` pixels apart."""
    from scipy.ndimage import map_coordinates

    offsets = (np.arange(size) - (size - 1) / 2.0)
    rr = centre[0] + offsets[:, None] * step[0]
    cc = centre[1] + offsets[None, :] * step[1]
    rr, cc = np.broadcast_arrays(rr, cc)
    return map_coordinates(plane.astype(np.float32), [rr, cc], order=order, mode="constant", cval=0.0)


def tumor_patches(image: Volume, tumor_mask: Volume, canal: Volume | None = None, cord: Volume | None = None,
                  size: int = CROP) -> TumorPatches:
    """The crops of the (binary) ``tumor_mask`` in ``image``; masks on other grids are resampled onto it."""
    canon, _ = to_canonical(image)
    tum = _on_grid(tumor_mask, image)
    if tum is None or not np.any(tum):
        raise ValueError("the tumor mask is empty")
    tum = tum > 0
    sac = _on_grid(canal, image)
    crd = _on_grid(cord, image)
    has_anatomy = sac is not None or crd is not None
    spacing = np.asarray(canon.spacing)  # (c, r, s)
    step = (SPACING_MM / spacing[1], SPACING_MM / spacing[0])
    pixel_mm2 = float(spacing[0] * spacing[1])
    slices = np.nonzero(tum.reshape(len(tum), -1).any(axis=1))[0]
    img, t_out, s_out, c_out, areas = [], [], [], [], []
    for s in slices:
        rows, cols = np.nonzero(tum[s])
        centre = (rows.mean(), cols.mean())
        img.append(_crop_slice(canon.array[s], centre, step, size, 1))
        section = _crop_slice(tum[s], centre, step, size, 1)
        # a section smaller than a patch pixel vanishes at 0.5: keep its interpolated support instead
        t_out.append(section >= 0.5 if np.any(section >= 0.5) else section > 0)
        s_out.append(_crop_slice(sac[s] > 0, centre, step, size, 1) >= 0.5 if sac is not None
                     else np.zeros((size, size), bool))
        c_out.append(_crop_slice(crd[s] > 0, centre, step, size, 1) >= 0.5 if crd is not None
                     else np.zeros((size, size), bool))
        areas.append(len(rows) * pixel_mm2)
    img = np.stack(img).astype(np.float32)
    positive = img[img > 0]
    scale = float(np.percentile(positive, 99)) if positive.size else 1.0
    img /= scale if scale > 0 else 1.0
    return TumorPatches(img, np.stack(t_out), np.stack(s_out), np.stack(c_out), np.asarray(areas, np.float32),
                        slices.astype(np.int32), has_anatomy)


def network_input(p: TumorPatches, channels: int) -> np.ndarray:
    """The central PATCH x PATCH pixels of every crop as ``[n, channels, PATCH, PATCH]`` float32."""
    lo = (p.image.shape[-1] - PATCH) // 2
    sl = (slice(None), slice(lo, lo + PATCH), slice(lo, lo + PATCH))
    planes = [p.image[sl], p.tumor[sl]]
    if channels == 4:
        planes += [p.canal[sl], p.cord[sl]]
    return np.stack(planes, axis=1).astype(np.float32)


# --- phantom cases and the cache -------------------------------------------------------------

def phantom_anatomy_masks(anatomy: Volume) -> tuple[Volume, Volume]:
    """Dural-sac and cord masks (uint8 0/1) from a phantom's anatomy map."""
    arr = anatomy.array
    sac = np.isin(arr, [labels.value(k) for k in SAC_KEYS]).astype(np.uint8)
    cord = np.isin(arr, [labels.value(k) for k in CORD_KEYS]).astype(np.uint8)
    return anatomy.with_array(sac), anatomy.with_array(cord)


def phantom_kind(seed: int) -> str:
    """The tumor type a phantom seed of the classification splits is drawn with (seeds cycle the three)."""
    return CLASSES[seed % len(CLASSES)]


def phantom_cases(seeds, anatomy: str = "truth"):
    """Yield ``(image, tumor_mask, canal, cord, type, source)`` for every tumor of the phantoms of ``seeds``.

    ``anatomy="truth"``: sac and cord from the phantom's anatomy map; ``"segmented"``: from
    :func:`spinetumor.segmentation.canal.segment_canal_and_cord` on the image (what the
    pipeline will give the classifier).
    """
    from ..phantom import generate

    if anatomy not in ("truth", "segmented"):
        raise ValueError(f"anatomy must be 'truth' or 'segmented', got {anatomy!r}")
    for seed in seeds:
        case = generate(int(seed), phantom_kind(int(seed)))
        if anatomy == "truth":
            sac, cord = phantom_anatomy_masks(case.anatomy)
        else:
            from ..segmentation.canal import segment_canal_and_cord

            seg = segment_canal_and_cord(case.image, case.vertebrae)
            sac, cord = seg.canal, seg.cord
        for entry in case.truth["tumors"]:
            mask = case.tumor.with_array((case.tumor.array == entry["id"]).astype(np.uint8))
            yield case.image, mask, sac, cord, entry["type"], f"phantom:{seed}:{entry['id']}"


def samples_from_cases(cases, progress=None) -> dict:
    """Pack cases ``(image, tumor_mask, canal, cord, type[, source])`` into the cache's arrays.

    This is the hook for training data other than phantoms (tumors inserted into real
    anatomy): ``canal``/``cord`` may be None, ``type`` is one of :data:`CLASSES`.
    """
    images, masks, areas, owner, targets, sources, anatomy = [], [], [], [], [], [], []
    for n, case in enumerate(cases):
        image, tumor, canal, cord, kind = case[:5]
        source = case[5] if len(case) > 5 else f"case:{n}"
        if kind not in CLASSES:
            raise ValueError(f"unknown tumor type {kind!r}; expected one of {', '.join(CLASSES)}")
        p = tumor_patches(image, tumor, canal, cord)
        images.append(p.image.astype(np.float16))
        masks.append(p.tumor * TUMOR_BIT | p.canal * CANAL_BIT | p.cord * CORD_BIT)
        areas.append(p.area_mm2)
        owner.append(np.full(len(p.image), len(targets), np.int32))
        targets.append(CLASSES.index(kind))
        sources.append(source)
        anatomy.append(p.has_anatomy)
        if progress is not None:
            progress(f"{source}: {kind}, {len(p.image)} slices")
    if not targets:
        raise ValueError("no cases")
    return {"images": np.concatenate(images), "masks": np.concatenate(masks).astype(np.uint8),
            "areas": np.concatenate(areas), "owner": np.concatenate(owner),
            "targets": np.asarray(targets, np.int64), "sources": np.asarray(sources),
            "has_anatomy": np.asarray(anatomy, bool)}


def merge_samples(*parts: dict) -> dict:
    """Concatenate packed sample sets (tumor indices of later parts are offset)."""
    out: dict = {}
    offset = 0
    for part in parts:
        for key, value in part.items():
            value = value + offset if key == "owner" else value
            out.setdefault(key, []).append(value)
        offset += len(part["targets"])
    return {k: np.concatenate(v) for k, v in out.items()}


def build_cache(path, seeds, progress=None, anatomy: str = "truth") -> Path:
    """Write the packed samples of the phantoms of ``seeds`` to ``path`` (.npz); reuse it when it exists."""
    path = Path(path)
    if path.exists():
        return path
    data = samples_from_cases(phantom_cases(seeds, anatomy), progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".part.npz")
    np.savez_compressed(tmp, **data)
    tmp.replace(path)
    return path


def load_cache(path) -> dict:
    """The packed samples of a cache file."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def tumor_inputs(data: dict, t: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Un-augmented network input ``[n, C, PATCH, PATCH]`` and slice areas of tumor ``t`` of packed samples."""
    idx = np.nonzero(data["owner"] == t)[0]
    m = data["masks"][idx]
    p = TumorPatches(data["images"][idx].astype(np.float32), (m & TUMOR_BIT) > 0, (m & CANAL_BIT) > 0,
                     (m & CORD_BIT) > 0, data["areas"][idx], idx, bool(data["has_anatomy"][t]))
    return network_input(p, channels), p.area_mm2


# --- augmentation ----------------------------------------------------------------------------

def _perturb_mask(mask: np.ndarray, rng) -> np.ndarray:
    """An imperfect segmentation of ``mask``: dilated, eroded, shifted or partly cut (never empty)."""
    from scipy.ndimage import binary_dilation, binary_erosion

    choice = rng.random()
    out = mask
    if choice < 0.25:
        out = binary_dilation(mask, iterations=int(rng.integers(1, 3)))
    elif choice < 0.45:
        out = binary_erosion(mask, iterations=int(rng.integers(1, 3)))
    elif choice < 0.6:
        out = np.roll(mask, (int(rng.integers(-2, 3)), int(rng.integers(-2, 3))), axis=(0, 1))
    elif choice < 0.7:
        rows, cols = np.nonzero(mask)
        angle = rng.uniform(0, 2 * np.pi)
        proj = (rows - rows.mean()) * np.cos(angle) + (cols - cols.mean()) * np.sin(angle)
        cut = np.percentile(proj, rng.uniform(50, 80))
        out = mask.copy()
        out[rows[proj > cut], cols[proj > cut]] = False
    return out if out.any() else mask


def augment(images: np.ndarray, masks: np.ndarray, rng, channels: int, train: bool = True):
    """A batch ``[B, C, PATCH, PATCH]`` (torch float32) from packed crops, augmented when ``train``.

    Masks: the tumor is perturbed as an imperfect segmentation; sac and cord are dilated
    or eroded by a pixel, half the time the tumor is cut out of them (a segmenter may
    leave a bright tumor out of the sac or cord), and in :data:`ANATOMY_DROPOUT` of the
    patches they are blanked. Geometry: the patch is centred on the
    perturbed tumor's centroid, jittered by up to 3 px, rotated by up to 10 degrees and
    scaled by 0.9..1.1. Intensity: scale, gamma, a smooth bias and Rician noise.
    """
    import torch
    import torch.nn.functional as F
    from scipy.ndimage import binary_dilation, binary_erosion

    b, size = len(images), images.shape[-1]
    planes = np.zeros((b, 4, size, size), np.float32)
    theta = np.zeros((b, 2, 3), np.float32)
    for n in range(b):
        tumor = (masks[n] & TUMOR_BIT) > 0
        canal = (masks[n] & CANAL_BIT) > 0
        cord = (masks[n] & CORD_BIT) > 0
        centre = np.array([(size - 1) / 2.0] * 2)
        angle, scale = 0.0, 1.0
        if train:
            if rng.random() < 0.7:
                tumor = _perturb_mask(tumor, rng)
            if rng.random() < 0.5:
                canal, cord = canal & ~tumor, cord & ~tumor
            for arr_name in ("canal", "cord"):
                r = rng.random()
                arr = canal if arr_name == "canal" else cord
                if r < 0.2:
                    arr = binary_dilation(arr)
                elif r < 0.4:
                    arr = binary_erosion(arr)
                canal, cord = (arr, cord) if arr_name == "canal" else (canal, arr)
            if rng.random() < ANATOMY_DROPOUT:         # no sac/cord masks given at inference
                canal, cord = np.zeros_like(canal), np.zeros_like(cord)
            rows, cols = np.nonzero(tumor)
            if len(rows):
                centre = np.array([rows.mean(), cols.mean()]) + rng.uniform(-3, 3, 2)
            angle, scale = np.radians(rng.uniform(-10, 10)), rng.uniform(0.9, 1.1)
        planes[n, 0] = images[n]
        planes[n, 1], planes[n, 2], planes[n, 3] = tumor, canal, cord
        # affine_grid maps output (x=col, y=row) in [-1, 1] to input; PATCH output px = input px * scale
        c, s = np.cos(angle) * scale, np.sin(angle) * scale
        f = PATCH / size
        theta[n] = [[c * f, -s * f, (2 * centre[1] + 1) / size - 1],
                    [s * f, c * f, (2 * centre[0] + 1) / size - 1]]
    x = torch.from_numpy(planes)
    grid = F.affine_grid(torch.from_numpy(theta), [b, 4, PATCH, PATCH], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    x[:, 1:] = (x[:, 1:] >= 0.5).float()
    if train:
        yy = torch.linspace(-1, 1, PATCH)[:, None]
        xx = torch.linspace(-1, 1, PATCH)[None, :]
        for n in range(b):
            img = x[n, 0].clamp(min=0) * rng.uniform(0.85, 1.15)
            img = img ** rng.uniform(0.8, 1.25)
            k = rng.uniform(-0.2, 0.2, 3)
            img = img * torch.exp(k[0] * xx + k[1] * yy + k[2] * xx * yy)
            sigma = rng.uniform(0.0, 0.03)
            noise = torch.from_numpy(rng.normal(0, sigma, (2, PATCH, PATCH)).astype(np.float32))
            x[n, 0] = torch.sqrt((img + noise[0]) ** 2 + noise[1] ** 2)
    return x[:, :channels].contiguous()
