"""Tumor segmentation with fuzzy c-means features and a random forest (paper Section III.B).

:func:`segment_tumor` runs, on any sagittal-ish T2 volume:

1. the canal and cord step (:func:`~spinetumor.segmentation.canal.segment_canal_and_cord`)
   unless their masks are given;
2. the per-voxel features of :mod:`.features` within :data:`~.features.ROI_MM` of the sac,
   on an in-plane working grid of about 1 mm: denoising (shearlet by default), CSF-normalised
   intensities, multi-scale filters, distances, fuzzy c-means memberships, and the paper's
   selection of the sagittal slices holding tumor-like clusters;
3. the class-balanced random forest, evaluated coarse to fine: first on every second voxel
   of each row and column, then exactly wherever a neighbouring coarse value reaches
   :data:`REFINE_MIN` (elsewhere the coarse values are interpolated) -- the same mask at a
   quarter of the cost;
4. post-processing on the input's grid: a 1 mm in-plane Gaussian on the probabilities
   (:data:`PROB_SMOOTH_MM`), linear interpolation back to the input's grid, threshold, hole filling per sagittal slice, 3D connected components, removal of
   components under a minimum volume (mm³) or farther than :data:`NEAR_MM` from the sac
   (and not touching the vertebral bodies): tumors of these compartments live there;
5. only for a forest trained with ``--net-outline`` (manifest ``settings.net_boundary``): each
   tumor it keeps is redrawn along the tumor network's outline (:func:`redraw_along_network`):
   the forest decides where the tumors are, the network's probability >= :data:`NET_BOUNDARY`
   where they end (the forest's own outline where the network marks none of a tumor). That
   outline is the tighter one on phantoms and on real anatomy with inserted tumors, and the
   shipped forest uses it (``docs/benchmarks.md``, "Tumor segmentation: whose outline the
   tumors get").

The model is a scikit-learn ``RandomForestClassifier`` stored with skops
(``spinetumor/models/tumor_rf.skops``) beside a JSON manifest holding its sha256, feature
names, settings (denoiser, clusters, threshold, minimum volume), training data and
validation metrics. :func:`load_tumor_model` refuses a file whose sha256 differs from the
manifest's and loads it with ``skops.io.load`` and an explicit list of trusted types;
nothing is ever unpickled. Only the shipped file or a path the caller chose is loaded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..labeling.model import ModelError, manifest_path, sha256_of, verified_manifest
from ..progress import check_cancel, report, sub_progress
from ..volume import Volume, from_canonical, to_canonical

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = MODELS_DIR / "tumor_rf.skops"
#: The only types a tumor model file may hold beyond skops' built-in safe ones
#: (numpy arrays, builtins, scikit-learn estimators skops trusts by default).
TRUSTED_TYPES = ("sklearn.tree._tree.Tree",)
#: Coarse-to-fine prediction: voxels with a coarse neighbour at or above this probability
#: are evaluated exactly (well below any threshold chosen on validation).
REFINE_MIN = 0.1
#: Fewer rows than this per thread are predicted in one call (threads would cost more than they save).
PARALLEL_MIN_ROWS = 20000
#: Components farther than this (mm) from the thecal sac, and not touching a vertebral
#: body, are dropped: spinal tumors of the three compartments touch or displace the sac.
NEAR_MM = 6.0
#: In-plane Gaussian (mm) applied to the forest's probabilities: voxel-wise votes are noisy
#: on textured tumors; a little smoothing gives compact masks.
PROB_SMOOTH_MM = 1.0
#: Network probability at which a found tumor's outline is drawn (step 5): the network was
#: trained with cross-entropy plus soft Dice, so 0.5 is its own decision boundary.
NET_BOUNDARY = 0.5


class TumorModelError(ModelError):
    """The tumor model file or its manifest is missing, altered or inconsistent."""


@dataclass
class TumorModel:
    """A loaded forest and the settings it was trained and validated with."""

    forest: object
    clusters: int
    denoiser: str
    threshold: float
    min_volume_mm3: float
    select_slices: bool = True
    features: tuple = ()
    manifest: dict = field(default_factory=dict)
    path: str | None = None
    net: object = None         # the loaded TumorNet when the forest takes its features
    net_boundary: float | None = None   # step 5: redraw found tumors at this network probability

    def __post_init__(self):
        from .features import model_features

        self.features = tuple(self.features) or model_features(self.clusters, net=self.net is not None)

    @property
    def uses_net(self) -> bool:
        """Whether the forest takes the tumor network's features."""
        from .features import NET_FEATURES

        return any(n in NET_FEATURES for n in self.features)

    @property
    def feature_names(self) -> tuple:
        return self.features

    def settings(self) -> dict:
        return {"clusters": int(self.clusters), "denoiser": self.denoiser, "threshold": float(self.threshold),
                "min_volume_mm3": float(self.min_volume_mm3), "select_slices": bool(self.select_slices),
                "net_boundary": None if self.net_boundary is None else float(self.net_boundary)}


@dataclass(frozen=True)
class TumorResult:
    """Binary tumor mask (uint8 0/1) and tumor probability (float32), plus the canal and cord
    masks used, all on the input volume's grid."""

    mask: Volume
    probability: Volume
    canal: Volume
    cord: Volume
    info: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- model files

def save_tumor_model(model: TumorModel, path, manifest_extra: dict | None = None) -> dict:
    """Write the forest with ``skops.io.dump`` and its manifest (sha256, features, settings, extras).

    Both files are written atomically. Returns the manifest.
    """
    import skops.io as sio

    from ..io import atomic_path, write_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sio.dump(model.forest, tmp)
    manifest = {
        "name": "tumor_rf",
        "format": "skops",
        "sha256": sha256_of(path),
        "size_bytes": path.stat().st_size,
        "features": list(model.feature_names),
        "settings": model.settings(),
        **({"tumor_net": {"file": Path(model.net.path).name, "sha256": model.net.sha256}} if model.uses_net else {}),
        **(manifest_extra or {}),
    }
    write_json(manifest, manifest_path(path))
    return manifest


def load_tumor_model(path=None, device=None) -> TumorModel:
    """Load a tumor model (default: the shipped one) after checking its sha256 against the manifest.

    A forest that takes the tumor network's features names the network's file (beside it)
    and sha256 in its manifest (``tumor_net``); the network is loaded too, on ``device``
    (default: the GPU when there is one), and must be that very file.
    Raises :class:`TumorModelError` when the file or manifest is missing, the checksum
    differs, the file holds a type outside :data:`TRUSTED_TYPES`, or the manifest's feature
    list is not the one this engine computes.
    """
    import skops.io as sio

    from .features import feature_names

    path = Path(path) if path else DEFAULT_MODEL
    try:
        manifest = verified_manifest(path, "tumor model")
    except ModelError as error:
        raise TumorModelError(str(error)) from None
    untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in TRUSTED_TYPES]
    if untrusted:
        raise TumorModelError(f"{path}: holds types that are not trusted: {', '.join(untrusted)}")
    forest = sio.load(path, trusted=list(TRUSTED_TYPES))
    settings = manifest.get("settings", {})
    clusters = int(settings.get("clusters", 0))
    features = [str(n) for n in manifest.get("features", [])]
    unknown = [n for n in features if n not in feature_names(clusters, net=True)]
    if not features or unknown:
        raise TumorModelError(f"{path}: the manifest lists features this engine does not compute: "
                              f"{', '.join(unknown) or '(none listed)'}")
    model = TumorModel(forest, clusters, str(settings.get("denoiser", "shearlet")),
                       float(settings.get("threshold", 0.5)), float(settings.get("min_volume_mm3", 0.0)),
                       bool(settings.get("select_slices", True)), tuple(features), manifest, str(path),
                       net_boundary=settings.get("net_boundary"))
    if model.uses_net:
        model.net = _load_net_of(path, manifest, device)
    elif model.net_boundary is not None:
        raise TumorModelError(f"{path}: the manifest draws tumors along the network's outline, but the forest "
                              "takes no network features")
    if getattr(forest, "n_features_in_", None) != len(model.feature_names):
        raise TumorModelError(f"{path}: the forest takes {getattr(forest, 'n_features_in_', '?')} features, "
                              f"the manifest lists {len(model.feature_names)}")
    return model


def _load_net_of(path: Path, manifest: dict, device=None):
    """The tumor network a forest's manifest names (file beside the forest, sha256 checked)."""
    from .tumor_net import load_tumor_net

    entry = manifest.get("tumor_net") or {}
    if not entry.get("file"):
        raise TumorModelError(f"{path}: the forest takes the tumor network's features but its manifest names no network")
    try:
        net = load_tumor_net(path.parent / Path(entry["file"]).name, device)
    except ModelError as error:
        raise TumorModelError(str(error)) from None
    if net.sha256 != entry.get("sha256"):
        raise TumorModelError(f"{net.path}: not the tumor network this forest was trained with (sha256 differs)")
    return net


def _resolve_model(model, device=None) -> TumorModel:
    """A TumorModel from a TumorModel, a path, or None (the shipped model)."""
    if isinstance(model, TumorModel):
        return model
    return load_tumor_model(model, device)


# --------------------------------------------------------------------------- prediction

def _tumor_column(forest) -> int:
    """Column of ``predict_proba`` holding the tumor class (label 1)."""
    classes = list(getattr(forest, "classes_", [0, 1]))
    return classes.index(1) if 1 in classes else -1


def tumor_probability(forest, x: np.ndarray, column: int, threads: int | None = None) -> np.ndarray:
    """The forest's ``column`` probability of the rows of ``x``, the rows split in ``threads``
    chunks (default: :func:`~spinetumor.device.cpu_threads`, at most 4) predicted side by side
    (:func:`~spinetumor.device.thread_map`).

    The trees release the GIL, so this scales with the cores; each row's probability is still
    the sum of the same trees in the same order, so the result is bitwise that of one call.
    """
    from ..device import cpu_threads, thread_map

    threads = threads or min(4, cpu_threads())
    chunks = np.array_split(x, max(1, min(threads, len(x) // PARALLEL_MIN_ROWS)))
    return np.concatenate([p[:, column] for p in thread_map(forest.predict_proba, chunks)])


def predict_working(forest, stack, names) -> np.ndarray:
    """Tumor probability on the working grid of a :class:`~.features.FeatureStack` (0 outside its ROI).

    Coarse to fine (see the module docstring): exact on the even-row, even-column lattice
    and wherever one of the four surrounding lattice values reaches :data:`REFINE_MIN`;
    bilinear between lattice values elsewhere. ``names`` are the forest's feature columns.
    """
    roi = stack.roi
    prob = np.zeros(roi.shape, np.float32)
    if not roi.any():
        return prob
    column = _tumor_column(forest)
    s, r, c = np.nonzero(roi)
    on_lattice = (r % 2 == 0) & (c % 2 == 0)
    lattice = np.zeros((roi.shape[0], (roi.shape[1] + 1) // 2, (roi.shape[2] + 1) // 2), np.float32)
    if column >= 0 and on_lattice.any():
        lattice[s[on_lattice], r[on_lattice] // 2, c[on_lattice] // 2] = \
            tumor_probability(forest, stack.columns(names, on_lattice), column)
    r0, r1 = r // 2, np.minimum((r + 1) // 2, lattice.shape[1] - 1)
    c0, c1 = c // 2, np.minimum((c + 1) // 2, lattice.shape[2] - 1)
    corners = np.stack([lattice[s, r0, c0], lattice[s, r0, c1], lattice[s, r1, c0], lattice[s, r1, c1]])
    values = corners.mean(axis=0)
    refine = ~on_lattice & (corners.max(axis=0) >= REFINE_MIN)
    if column >= 0 and refine.any():
        values[refine] = tumor_probability(forest, stack.columns(names, refine), column)
    prob[s, r, c] = values
    return prob


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``mask`` (bool [s, r, c]) with the holes of each sagittal slice filled (a copy)."""
    from scipy import ndimage

    mask = np.array(mask, dtype=bool)
    for s in np.nonzero(mask.any(axis=(1, 2)))[0]:
        mask[s] = ndimage.binary_fill_holes(mask[s])
    return mask


def label_3d(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """3D connected components of ``mask`` (faces and edges, not corners), as ``ndimage.label``."""
    from scipy import ndimage

    return ndimage.label(mask, structure=ndimage.generate_binary_structure(3, 2))


def components(probability: np.ndarray, threshold: float, dist_canal: np.ndarray,
               vertebrae: np.ndarray | None = None, near_mm: float = NEAR_MM):
    """Thresholded, hole-filled (per sagittal slice) 3D components of a probability array.

    Returns ``(labels, voxels, near)``: the component label array, each component's voxel
    count (index 0 = background) and whether it lies within ``near_mm`` of the sac
    (``dist_canal``, signed mm) or touches the ``vertebrae`` mask.
    """
    from scipy import ndimage

    lab, n = label_3d(fill_holes_per_slice(probability >= threshold))
    voxels = np.bincount(lab.ravel(), minlength=n + 1)
    near = np.zeros(n + 1, bool)
    if n:
        index = np.arange(1, n + 1)
        near[1:] = np.asarray(ndimage.minimum(dist_canal, lab, index)) <= near_mm
        if vertebrae is not None and vertebrae.any():
            near[1:] |= np.asarray(ndimage.maximum(vertebrae, lab, index)) > 0
    return lab, voxels, near


def network_outline(tm: TumorModel, stack, box_shape) -> np.ndarray | None:
    """Where the tumor network's probability reaches the model's ``net_boundary`` (bool, box
    shape, holes filled per sagittal slice), or None when the model keeps the forest's outline.

    The network's probability is read back from the feature stack (its ``net_probability``
    column on the working grid's region of interest, 0 elsewhere) and interpolated to the
    box's full grid like the forest's.
    """
    from .features import upsample

    if tm.net_boundary is None:
        return None
    work = np.zeros(stack.roi.shape, np.float32)
    work[stack.roi] = stack.columns(["net_probability"])[:, 0]
    return fill_holes_per_slice(upsample(work, stack.factor, box_shape) >= float(tm.net_boundary))


def redraw_along_network(found: np.ndarray, outline: np.ndarray, min_voxels: int = 0) -> np.ndarray:
    """Step 5: each ``found`` tumor drawn with the network's outline (``outline``) where the
    network sees it, with the forest's own outline where it does not.

    A found tumor the network marks takes the network's extent: the network's voxels
    connected to it join, the forest's voxels outside the network drop. The network's
    regions that hold no found tumor stay out (the forest decides where the tumors are).
    Redrawn pieces under ``min_voxels`` go (the network's specks that only the forest's mask
    linked to a tumor would otherwise be reported as tumors of their own); a found tumor that
    none of the remaining network pieces touches keeps its own outline, so the redraw changes
    outlines only, never which tumors are found.
    """
    regions, _ = label_3d(found | outline)
    hit = np.unique(regions[found])
    mask = np.isin(regions, hit[hit > 0]) & outline
    if min_voxels > 0 and mask.any():
        lab, _ = label_3d(mask)
        big = np.bincount(lab.ravel()) >= min_voxels
        big[0] = False
        mask = big[lab]
    tumors, n = label_3d(found)
    if n:
        redrawn = np.zeros(n + 1, bool)
        redrawn[np.unique(tumors[mask])] = True
        redrawn[0] = True
        mask = mask | ~redrawn[tumors]
    return mask


def postprocess(probability: np.ndarray, threshold: float, min_volume_mm3: float, spacing: np.ndarray,
                dist_canal: np.ndarray, vertebrae: np.ndarray | None = None, near_mm: float = NEAR_MM,
                outline: np.ndarray | None = None) -> np.ndarray:
    """Binary tumor mask from a canonical probability array (see the module docstring, steps 4-5).

    ``spacing`` per canonical axis (mm); ``dist_canal`` the signed distance (mm) to the sac
    on the same grid; ``vertebrae`` an optional bool mask of the vertebral bodies;
    ``outline`` the network's mask (:func:`network_outline`) the found tumors are redrawn
    along (the redrawn pieces must reach the minimum volume too), or None to keep the
    forest's outline.
    """
    lab, voxels, near = components(probability, threshold, dist_canal, vertebrae, near_mm)
    min_voxels = min_voxels_of(min_volume_mm3, spacing)
    keep = (voxels >= min_voxels) & near
    keep[0] = False
    found = keep[lab]
    if outline is None:
        return found
    return redraw_along_network(found, outline, min_voxels)


def min_voxels_of(min_volume_mm3: float, spacing: np.ndarray) -> int:
    """The voxel count of the smallest kept component: ``min_volume_mm3`` on a grid of ``spacing``."""
    return int(np.ceil(float(min_volume_mm3) / float(np.prod(spacing)) - 1e-9))


def segment_canonical(tm: TumorModel, image: np.ndarray, spacing: np.ndarray, canal: np.ndarray,
                      cord: np.ndarray, vertebrae: np.ndarray | None, *, denoiser: str | None = None,
                      cancel=None, progress=None):
    """Probability and the pieces post-processing needs, on canonical arrays (no reorientation).

    Returns ``(box, probability, dist_canal, stack)``: the feature box, the tumor probability
    on the full grid inside the box (float32, box shape), the signed distance (mm) to the
    sac inside the box, and the :class:`~.features.FeatureStack`.
    """
    from .features import compute_features, signed_distance, upsample

    stack = compute_features(image, spacing, canal, cord, vertebrae, tm.clusters, denoiser=denoiser or tm.denoiser,
                             select=tm.select_slices, net=tm.net if tm.uses_net else None, cancel=cancel)
    check_cancel(cancel)
    report(progress, 0.5, "tumor: random forest")
    prob_w = predict_working(tm.forest, stack, tm.features)
    if PROB_SMOOTH_MM > 0:
        from scipy import ndimage

        work = spacing[1:] * np.asarray(stack.factor)
        prob_w = ndimage.gaussian_filter(prob_w, (0.0, PROB_SMOOTH_MM / work[0], PROB_SMOOTH_MM / work[1]))
    check_cancel(cancel)
    box = stack.box
    box_shape = tuple(sl.stop - sl.start for sl in box)
    prob = np.clip(upsample(prob_w, stack.factor, box_shape), 0.0, 1.0)
    return box, prob, signed_distance(canal[box], spacing), stack


# --------------------------------------------------------------------------- the step

def _canonical_mask(mask: Volume | None, volume: Volume, name: str) -> np.ndarray | None:
    """A bool canonical array of a mask on ``volume``'s grid (None stays None)."""
    if mask is None:
        return None
    if not mask.same_geometry(volume):
        raise ValueError(f"the {name} mask must be on the volume's grid (shape, spacing, origin, direction)")
    return to_canonical(mask)[0].array > 0


def segment_tumor(volume: Volume, vertebrae: Volume | None = None, canal: Volume | None = None,
                  cord: Volume | None = None, denoiser: str | None = None, clusters: int | None = None,
                  threshold: float | None = None, model=None, progress=None, cancel=None,
                  device=None) -> TumorResult:
    """Segment spinal tumors in a sagittal T2 volume; all outputs on the input's grid.

    ``vertebrae`` (optional label map, same grid) adds the distance-to-bodies feature and
    lets components touching a body stay. ``canal``/``cord`` are computed when not given
    (both or neither). ``denoiser``, ``clusters`` and ``threshold`` default to the model's;
    a denoiser or cluster count other than the model's would feed it features it never
    saw, so ``clusters`` must match and another ``denoiser`` is logged as a warning.
    ``model`` is a :class:`TumorModel`, a path, or None for the shipped model (its tumor
    network, if it has one, is loaded on ``device``: a torch device or name, default
    ``auto``, the GPU when there is one).
    ``progress(fraction, message)``/``cancel()`` follow :mod:`spinetumor.progress`;
    cancelling raises :class:`~spinetumor.progress.Cancelled`.
    """
    from .canal import segment_canal_and_cord
    from .features import axis_spacing

    check_cancel(cancel)
    report(progress, 0.0, "tumor: loading the model")
    tm = _resolve_model(model, device)
    if clusters is not None and int(clusters) != tm.clusters:
        raise ValueError(f"the tumor model was trained with {tm.clusters} fuzzy c-means clusters, not {clusters}")
    denoiser = denoiser or tm.denoiser
    if denoiser != tm.denoiser:
        log.warning("denoiser %r differs from the model's %r; its features will differ from training",
                    denoiser, tm.denoiser)
    threshold = tm.threshold if threshold is None else float(threshold)
    if vertebrae is not None and not vertebrae.same_geometry(volume):
        raise ValueError("the vertebrae label map must be on the volume's grid (shape, spacing, origin, direction)")
    if (canal is None) != (cord is None):
        raise ValueError("give both the canal and the cord masks, or neither")
    if canal is None:
        found = segment_canal_and_cord(volume, vertebrae, progress=sub_progress(progress, 0.02, 0.25), cancel=cancel)
        canal, cord = found.canal, found.cord
    check_cancel(cancel)
    canon, _ = to_canonical(volume)
    spacing = axis_spacing(canon)
    canal_c = _canonical_mask(canal, volume, "canal")
    cord_c = _canonical_mask(cord, volume, "cord")
    vert_c = _canonical_mask(vertebrae, volume, "vertebrae")
    report(progress, 0.25, "tumor: features")
    box, prob_box, dist_box, stack = segment_canonical(tm, canon.array, spacing, canal_c, cord_c, vert_c,
                                                       denoiser=denoiser, cancel=cancel,
                                                       progress=sub_progress(progress, 0.25, 0.9))
    report(progress, 0.9, "tumor: post-processing")
    vert_box = vert_c[box] if vert_c is not None else None
    mask = np.zeros(canon.shape, bool)
    outline = network_outline(tm, stack, prob_box.shape)
    mask[box] = postprocess(prob_box, threshold, tm.min_volume_mm3, spacing, dist_box, vert_box, outline=outline)
    prob = np.zeros(canon.shape, np.float32)
    prob[box] = prob_box
    report(progress, 1.0, "tumor: done")
    info = {"threshold": threshold, "denoiser": denoiser, "clusters": tm.clusters, "net_boundary": tm.net_boundary,
            "slices_kept": [int(s) for s in stack.slices_kept], "roi_voxels": int(stack.roi.sum()),
            "csf_reference": float(stack.reference),
            "model": {k: tm.manifest[k] for k in ("name", "sha256", "date", "tumor_net") if k in tm.manifest}}
    mask_v = from_canonical(mask.astype(np.uint8), volume)
    prob_v = from_canonical(prob, volume)
    canal_v = canal.with_array((canal.array > 0).astype(np.uint8))
    cord_v = cord.with_array((cord.array > 0).astype(np.uint8))
    return TumorResult(mask_v, prob_v, canal_v, cord_v, info)
