"""Training the tumor random forest on phantoms, and choosing its post-processing on others.

    spinetumor train segmentation --out DIR [--cases N] [--seed S] [--extra DATASET] [--negatives SCAN ...]

Training phantoms cycle through the three tumor types and tumor-free cases (seeds
``TRAIN_SEED_BASE + S*1000 + i``); validation phantoms, used only to choose the threshold
and the minimum component volume, come from ``VAL_SEED_BASE`` likewise; the benchmark's
test phantoms (``benchmarks/segmentation.py``) from ``TEST_SEED_BASE``, never seen here.
Every other group of four cases is prepared without vertebra labels, so the forest also
works when the labeling model is absent (the distance-to-bodies feature is then constant).

Samples per case: every tumor voxel of the working grid (see :mod:`.features`), plus
:data:`BACKGROUND_PER_CASE` background voxels, half drawn uniformly from the region of
interest and half "hard negatives" within :data:`HARD_MM` of the sac (CSF, cord, roots,
edema, syrinx, epidural fat, the bodies' posterior edge). The forest is class-balanced
(``class_weight="balanced_subsample"``), with bounded size so the file stays small and
prediction fast.
"""

from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

KINDS = ("intramedullary", "intradural-extramedullary", "extradural", "none")
TRAIN_SEED_BASE = 10_000
VAL_SEED_BASE = 20_000
TEST_SEED_BASE = 30_000
BACKGROUND_PER_CASE = 24000
HARD_MM = 5.0
#: Forest size: 32 trees of depth <= 16 with >= 20 samples per leaf (a few MB, ~1 s per case).
FOREST = {"n_estimators": 32, "max_depth": 16, "min_samples_leaf": 20, "max_features": "sqrt"}
#: Candidate post-processing settings searched on the validation phantoms.
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
MIN_VOLUMES_MM3 = (0.0, 50.0, 100.0, 200.0, 400.0)
#: Tumor-free validation phantoms that must come out empty for a setting to be eligible.
TARGET_CLEAN_RATE = 0.95
#: Mean validation Dice differences smaller than this are noise (12-16 tumors whose Dice varies
#: by about 0.2 from case to case): such settings are ties, broken towards caution.
DICE_TIE = 0.01
DEFAULT_CLUSTERS = 4
DEFAULT_DENOISER = "shearlet"


@dataclass
class PreparedCase:
    """One phantom in the canonical stack with the canal step done: what features need, plus truth."""

    seed: int
    kind: str
    image: np.ndarray
    spacing: np.ndarray
    canal: np.ndarray
    cord: np.ndarray
    vertebrae: np.ndarray | None
    truth: np.ndarray
    name: str = ""


def phantom_plan(base: int, n: int, seed: int = 0) -> list[tuple[int, str, bool]]:
    """``n`` (phantom seed, tumor kind, with vertebra labels) triples cycling through :data:`KINDS`."""
    return [(base + 1000 * seed + i, KINDS[i % 4], (i // 4) % 2 == 0) for i in range(n)]


def prepare_case(seed: int, kind: str, with_vertebrae: bool = True) -> PreparedCase | None:
    """Generate a phantom and run the canal step on it; None when no canal is found (logged)."""
    from ..phantom import generate
    from .canal import segment_canal_and_cord

    case = generate(seed, kind)
    vertebrae = case.vertebrae if with_vertebrae else None
    try:
        found = segment_canal_and_cord(case.image, vertebrae)
    except ValueError as error:
        log.warning("phantom %d (%s): %s; skipped", seed, kind, error)
        return None
    return prepared_from_volumes(case.image, case.tumor, found.canal, found.cord, vertebrae, kind, seed,
                                 f"phantom {seed}")


def prepared_from_volumes(image, tumor, canal, cord, vertebrae, kind: str, seed: int = -1,
                          name: str = "") -> PreparedCase | None:
    """A :class:`PreparedCase` from volumes on one grid (None, logged, when the canal is empty)."""
    from ..volume import to_canonical
    from .features import axis_spacing

    canon = to_canonical(image)[0]
    canal_c = to_canonical(canal)[0].array > 0
    if not canal_c.any():
        log.warning("%s (%s): empty canal; skipped", name or seed, kind)
        return None
    return PreparedCase(seed, kind, canon.array, axis_spacing(canon), canal_c,
                        to_canonical(cord)[0].array > 0,
                        to_canonical(vertebrae)[0].array > 0 if vertebrae is not None else None,
                        to_canonical(tumor)[0].array > 0, name)


def thick_prepared(image, tumor, vertebrae, kind: str, name: str, slab: int) -> PreparedCase | None:
    """A prepared case of volumes averaged into ``slab``-slice sagittal slabs (1: as they are):
    the tumor and vertebra masks of each slab's centre slice
    (:func:`~spinetumor.augmentation.thick_slices.thick_acquisition`), the sac and cord segmented
    on the thick image as at inference. None (logged) when no canal is found."""
    from ..augmentation.thick_slices import thick_acquisition
    from .canal import segment_canal_and_cord

    if slab > 1:
        masks = [tumor] + ([vertebrae] if vertebrae is not None else [])
        image, masks = thick_acquisition(image, slab, masks)
        tumor, vertebrae = masks[0], (masks[1] if vertebrae is not None else None)
    try:
        found = segment_canal_and_cord(image, vertebrae)
    except ValueError as error:
        log.warning("%s (%s): %s; skipped", name, kind, error)
        return None
    return prepared_from_volumes(image, tumor, found.canal, found.cord, vertebrae, kind, name=name)


def thick_slab_for(case_spacing_mm: float, index: int) -> int:
    """The slab (in slices) of the ``index``-th thick copy (``--thick-extra``) of a sample whose
    slices are ``case_spacing_mm`` thick: the two ends of ``CLINICAL_SLICE_MM`` (3 and 5 mm) in
    turn, 1 (no copy) for a sample that is not thin (``THIN_SLICE_MM``)."""
    from ..augmentation.thick_slices import CLINICAL_SLICE_MM, THIN_SLICE_MM

    if case_spacing_mm >= THIN_SLICE_MM:
        return 1
    return max(1, int(round(CLINICAL_SLICE_MM[index % 2] / case_spacing_mm)))


def check_tumor_free_scans(scans) -> None:
    """Refuse (UsageError, one line) a tumor-free scan that is not an existing ``NAME_t2.nii.gz``
    with ``NAME_vertebrae.nii.gz`` beside it (``--negatives`` of both trainers)."""
    from ..cli import UsageError

    for scan in map(Path, scans):
        if not scan.name.endswith("_t2.nii.gz") or not scan.is_file():
            raise UsageError(f"{scan}: a tumor-free scan must be an existing NAME_t2.nii.gz file")
        if not vertebrae_beside(scan).is_file():
            raise UsageError(f"{scan}: no {vertebrae_beside(scan).name} beside it (the scan's vertebra labels)")


def vertebrae_beside(scan: Path) -> Path:
    """The vertebra label file of a tumor-free scan ``NAME_t2.nii.gz``: ``NAME_vertebrae.nii.gz``."""
    return scan.with_name(scan.name.replace("_t2.nii.gz", "_vertebrae.nii.gz"))


def read_tumor_free_scan(scan) -> tuple[str, object, object]:
    """(NAME, image, vertebra labels) of a tumor-free scan ``NAME_t2.nii.gz`` (:func:`check_tumor_free_scans`),
    read as the Chu cases are (:func:`~spinetumor.labeling.dataset.load_chu_case`)."""
    from ..labeling.dataset import load_chu_case

    scan = Path(scan)
    name = scan.name.replace("_t2.nii.gz", "")
    return (name, *load_chu_case(scan.parent, name))


def negative_cases(scans) -> list[PreparedCase]:
    """Tumor-free real scans (``--negatives``) as prepared cases with nothing to find: each as it
    is and, when its slices are thin, also as a 3 mm and a 5 mm sagittal acquisition
    (:func:`thick_prepared`). Why: the forest otherwise meets real background only around
    inserted tumors in 1 mm scans, and marks sac, roots and ligaments of thick real scans."""
    prepared = []
    for scan in scans:
        name, image, vertebrae = read_tumor_free_scan(scan)
        empty = image.with_array(np.zeros(image.shape, np.uint8))
        as_is = thick_prepared(image, empty, vertebrae, "none", name, 1)
        if as_is is None:
            continue
        prepared.append(as_is)
        for slab in sorted({thick_slab_for(float(as_is.spacing[0]), index) for index in (0, 1)} - {1}):
            copy = thick_prepared(image, empty, vertebrae, "none", f"{name} as {slab}-slice slabs", slab)
            if copy is not None:
                prepared.append(copy)
    return prepared


def augmented_cases(folders, progress=None, cases=None, thick: bool = False) -> list[PreparedCase]:
    """Prepared cases from augmented datasets (real anatomy with inserted tumors; 3D samples).

    ``cases``: :class:`~spinetumor.augmentation.dataset.TrainingCase` objects already read
    (then ``folders`` is not read again). ``thick``: each thin-slice sample with a canal also
    comes as a thick acquisition (:func:`thick_slab_for`, :func:`thick_prepared`), after the
    samples as they are.
    """
    from ..augmentation.dataset import read_training_cases

    prepared, thick_copies = [], []
    for n, case in enumerate(read_training_cases(folders, progress) if cases is None else cases):
        prep = prepared_from_volumes(case.image, case.tumor, case.canal, case.cord, case.vertebrae,
                                     case.tumor_type, name=case.id)
        if prep is None:
            continue
        prepared.append(prep)
        slab = thick_slab_for(float(prep.spacing[0]), n) if thick else 1
        if slab > 1:
            copy = thick_prepared(case.image, case.tumor, case.vertebrae, case.tumor_type,
                                  f"{case.id} as {slab}-slice slabs", slab)
            if copy is not None:
                thick_copies.append(copy)
    return prepared + thick_copies


def case_samples(prep: PreparedCase, denoiser: str, clusters: int, rng, names, net=None) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (features ``names``, labels) of one prepared case: all tumor voxels plus sampled background.

    ``net``: the tumor network whose features the forest takes (None: it takes none)."""
    from .features import compute_features, working_truth

    stack = compute_features(prep.image, prep.spacing, prep.canal, prep.cord, prep.vertebrae, clusters,
                             denoiser=denoiser, select=False, net=net)
    y = working_truth(prep.truth, stack)
    dist = stack.values[:, stack.names.index("dist_canal_mm")]
    tumor = np.flatnonzero(y)
    hard = np.flatnonzero(~y & (np.abs(dist) <= HARD_MM))
    other = np.flatnonzero(~y)
    n_half = BACKGROUND_PER_CASE // 2
    pick = [tumor,
            rng.choice(hard, size=min(n_half, hard.size), replace=False) if hard.size else hard,
            rng.choice(other, size=min(n_half, other.size), replace=False)]
    index = np.unique(np.concatenate(pick))
    return stack.columns(names, index), y[index].astype(np.uint8)


def fit_forest(x: np.ndarray, y: np.ndarray, seed: int = 0, n_jobs: int = 1, **overrides):
    """A class-balanced random forest (:data:`FOREST`, overridable) fitted on ``x, y``."""
    from sklearn.ensemble import RandomForestClassifier

    params = {**FOREST, **overrides}
    forest = RandomForestClassifier(class_weight="balanced_subsample", random_state=seed, n_jobs=n_jobs, **params)
    return forest.fit(x, y)


def score_grid(tm, prep: PreparedCase, thresholds=THRESHOLDS, volumes=MIN_VOLUMES_MM3) -> dict:
    """Overlap counts of one case for every (threshold, minimum volume) pair, plus timing.

    Returns ``{"tp", "pred", "truth"}`` arrays of shape (thresholds, volumes) and ``seconds``
    (features + forest). Post-processing is :func:`~.tumor.postprocess`'s: components once per
    threshold (the volume filter only drops components), then, for a model that redraws its
    tumors along the network's outline, the redraw of each kept set.
    """
    from .tumor import components, min_voxels_of, network_outline, redraw_along_network, segment_canonical

    t0 = time.perf_counter()
    box, prob, dist, stack = segment_canonical(tm, prep.image, prep.spacing, prep.canal, prep.cord, prep.vertebrae)
    seconds = time.perf_counter() - t0
    truth = prep.truth[box]
    n_truth = int(prep.truth.sum())
    vert = prep.vertebrae[box] if prep.vertebrae is not None else None
    outline = network_outline(tm, stack, prob.shape)
    tp = np.zeros((len(thresholds), len(volumes)), np.int64)
    pred = np.zeros_like(tp)
    for i, t in enumerate(thresholds):
        lab, voxels, near = components(prob, t, dist, vert)
        hits = np.bincount(lab[truth], minlength=voxels.size)
        for j, v in enumerate(volumes):
            min_voxels = min_voxels_of(v, prep.spacing)
            keep = (voxels >= min_voxels) & near
            keep[0] = False
            if outline is None:
                tp[i, j] = hits[keep].sum()
                pred[i, j] = voxels[keep].sum()
            else:
                mask = redraw_along_network(keep[lab], outline, min_voxels)
                tp[i, j] = int((mask & truth).sum())
                pred[i, j] = int(mask.sum())
    return {"tp": tp, "pred": pred, "truth": np.full(tp.shape, n_truth), "seconds": seconds}


def choose_postprocessing(scores: list[dict], kinds: list[str], thresholds=THRESHOLDS,
                          volumes=MIN_VOLUMES_MM3) -> dict:
    """The (threshold, minimum volume) with the best mean Dice over tumor cases among the settings
    leaving at least :data:`TARGET_CLEAN_RATE` of the tumor-free cases empty (the cleanest
    settings when none reaches it); settings within :data:`DICE_TIE` of that Dice count as
    equally good, and the most cautious of them is chosen (:func:`_most_cautious_of_the_best`).
    Returns the choice and the whole table."""
    tumor = [s for s, k in zip(scores, kinds) if k != "none"]
    free = [s for s, k in zip(scores, kinds) if k == "none"]
    dice = np.mean([2 * s["tp"] / np.maximum(s["pred"] + s["truth"], 1) for s in tumor], axis=0) \
        if tumor else np.zeros((len(thresholds), len(volumes)))
    clean = np.mean([s["pred"] == 0 for s in free], axis=0) if free else np.ones_like(dice)
    eligible = clean >= TARGET_CLEAN_RATE
    if not eligible.any():
        eligible = clean >= clean.max()
    i, j = _most_cautious_of_the_best(np.where(eligible, dice, -1.0), clean)
    return {"threshold": float(thresholds[i]), "min_volume_mm3": float(volumes[j]),
            "validation_dice": round(float(dice[i, j]), 4), "validation_clean_rate": round(float(clean[i, j]), 4),
            "table": {"thresholds": list(thresholds), "min_volumes_mm3": list(volumes),
                      "dice": np.round(dice, 4).tolist(), "clean_rate": np.round(clean, 4).tolist()}}


def _most_cautious_of_the_best(score: np.ndarray, clean: np.ndarray) -> tuple[int, int]:
    """Index (threshold, volume) of the most cautious setting whose ``score`` is within
    :data:`DICE_TIE` of the best: the cleanest, then the highest threshold, then the largest
    minimum volume (the grids are in increasing order).

    Why: a few validation phantoms cannot tell settings apart by less than DICE_TIE, and a
    flat table (tumors drawn along the network's outline make it so) otherwise yields the
    lowest threshold, which marks tumor-free real anatomy that phantoms do not show.
    """
    rows, cols = np.nonzero(score >= score.max() - DICE_TIE)
    _, i, j = max(zip(clean[rows, cols], rows, cols))
    return int(i), int(j)


def validation_plan(val_cases: int, val_free: int, seed: int) -> list[tuple[int, str, bool]]:
    """Validation phantoms: ``val_cases`` cycling through :data:`KINDS`, plus ``val_free`` more
    tumor-free ones (seeds from ``VAL_SEED_BASE + 1000*seed + 500``).

    Why extra tumor-free cases: the post-processing must leave :data:`TARGET_CLEAN_RATE` (95 %)
    of them empty, and the quarter of ``val_cases`` that is tumor-free (4 of 16) cannot tell
    95 % from 75 %.
    """
    return phantom_plan(VAL_SEED_BASE, val_cases, seed) + free_plan(VAL_SEED_BASE, val_free, seed)


def free_plan(base: int, n: int, seed: int = 0) -> list[tuple[int, str, bool]]:
    """``n`` tumor-free (phantom seed, "none", with vertebra labels) triples from ``base + 1000*seed + 500``,
    clear of the :func:`phantom_plan` seeds of the same base."""
    return [(base + 1000 * seed + 500 + i, "none", i % 2 == 0) for i in range(n)]


def train_model(cases: int = 48, seed: int = 0, val_cases: int = 16, clusters: int = DEFAULT_CLUSTERS,
                denoiser: str = DEFAULT_DENOISER, select_slices: bool = True, progress=None, prepared=None,
                position: bool = False, extra: list | None = None, net=None, val_free: int = 0,
                net_outline: bool = False):
    """Train a forest on ``cases`` phantoms (plus ``extra`` prepared cases), choose post-processing
    on ``val_cases`` other phantoms plus ``val_free`` tumor-free ones (:func:`validation_plan`).

    Returns ``(TumorModel, info)`` where ``info`` holds the seeds used, sample counts,
    timings and the validation choice. ``prepared`` may map (seed, kind, with_vertebrae)
    to an already prepared case (the benchmark shares them between variants). ``extra``
    are :class:`PreparedCase` from other sources, e.g. real anatomy with inserted tumors
    (:func:`augmented_cases`). ``net`` is a loaded :class:`~.tumor_net.TumorNet` whose
    probability becomes two more features (:data:`~.features.NET_FEATURES`); its training
    phantoms must not be this forest's (the network's seeds are ``net_train.NET_SEED_BASE``),
    or the forest learns how the network behaves on cases it has memorised. ``net_outline``
    (needs ``net``): the kept tumors are drawn along the network's outline (post-processing
    step 5 of :mod:`.tumor`), in validation and in use.
    """
    from ..progress import report
    from .features import model_features
    from .tumor import NET_BOUNDARY, TumorModel

    names = model_features(clusters, position, net=net is not None)
    prepared = {} if prepared is None else prepared

    def get(plan_item):
        if plan_item not in prepared:
            prepared[plan_item] = prepare_case(*plan_item)
        return prepared[plan_item]

    rng = np.random.default_rng(seed)
    train_plan = phantom_plan(TRAIN_SEED_BASE, cases, seed)
    val_plan = validation_plan(val_cases, val_free, seed)
    xs, ys, used = [], [], []
    t0 = time.perf_counter()
    for n, item in enumerate(train_plan):
        report(progress, 0.6 * n / max(len(train_plan), 1), f"training phantom {n + 1}/{len(train_plan)}")
        prep = get(item)
        if prep is None:
            continue
        x, y = case_samples(prep, denoiser, clusters, rng, names, net)
        xs.append(x)
        ys.append(y)
        used.append(item[0])
    for prep in extra or ():
        x, y = case_samples(prep, denoiser, clusters, rng, names, net)
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    report(progress, 0.6, f"fitting the forest on {len(y)} voxels")
    forest = fit_forest(x, y, seed)
    fit_seconds = time.perf_counter() - t0
    model = TumorModel(forest, clusters, denoiser, 0.5, 0.0, select_slices, names, net=net,
                       net_boundary=NET_BOUNDARY if net is not None and net_outline else None)
    scores, kinds, val_used = [], [], []
    for n, item in enumerate(val_plan):
        report(progress, 0.7 + 0.3 * n / max(len(val_plan), 1), f"validation phantom {n + 1}/{len(val_plan)}")
        prep = get(item)
        if prep is None:
            continue
        scores.append(score_grid(model, prep))
        kinds.append(prep.kind)
        val_used.append(item[0])
    choice = choose_postprocessing(scores, kinds)
    model.threshold, model.min_volume_mm3 = choice["threshold"], choice["min_volume_mm3"]
    info = {
        "training": {"phantom_seeds": used, "kinds_cycle": list(KINDS),
                     "extra_cases": [p.name for p in extra or ()], "voxels": int(len(y)),
                     "tumor_voxels": int(y.sum()), "background_per_case": BACKGROUND_PER_CASE,
                     "hard_negative_mm": HARD_MM, "forest": dict(FOREST), "class_weight": "balanced_subsample",
                     "random_state": seed, "seconds": round(fit_seconds, 1)},
        "validation": {"phantom_seeds": val_used, **choice,
                       "seconds_per_case": round(float(np.mean([s["seconds"] for s in scores])), 2) if scores else None},
    }
    report(progress, 1.0, "done")
    return model, info


def add_arguments(parser) -> None:
    """Options of ``spinetumor train segmentation``."""
    parser.add_argument("--out", required=True, help="output folder for tumor_rf.skops and tumor_rf.json")
    parser.add_argument("--cases", type=int, default=48, help="training phantoms (cycling through the three "
                        "tumor types and tumor-free; default 48)")
    parser.add_argument("--val-cases", type=int, default=16, help="validation phantoms for the threshold (default 16)")
    parser.add_argument("--val-free", type=int, default=16,
                        help="extra tumor-free validation phantoms, so that the 95 %% empty rule is measurable "
                             "(default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantom draw and the forest (default 0)")
    parser.add_argument("--clusters", type=int, default=DEFAULT_CLUSTERS,
                        help=f"fuzzy c-means clusters, 0 for the forest alone (default {DEFAULT_CLUSTERS})")
    parser.add_argument("--denoiser", default=DEFAULT_DENOISER, help=f"denoising method (default {DEFAULT_DENOISER})")
    parser.add_argument("--extra", action="append", default=[], metavar="DATASET",
                        help="also train on the 3D samples of this augmented dataset (spinetumor augment --mode 3d: "
                             "real anatomy with inserted tumors); repeatable")
    parser.add_argument("--thick-extra", action="store_true",
                        help="also train on each thin-slice --extra sample as a 3 or 5 mm sagittal acquisition "
                             "(slabs averaged, sac and cord segmented on it): the real scans are 1 mm, clinical "
                             "scans 3-5 mm")
    parser.add_argument("--negatives", nargs="+", default=[], metavar="SCAN",
                        help="tumor-free real scans NAME_t2.nii.gz (with NAME_vertebrae.nii.gz beside them) to "
                             "train on as background, as they are and, when thin, as 3 and 5 mm acquisitions")
    parser.add_argument("--net", default=None, metavar="WEIGHTS",
                        help="tumor network (tumor_net.safetensors from spinetumor train tumor-net) whose probability "
                             "the forest takes as features; copied beside the forest")
    parser.add_argument("--net-outline", action="store_true",
                        help="draw each tumor the forest keeps along the network's outline, its own where the "
                             "network marks none of it (needs --net; the shipped forest's setting)")


def _net_beside(weights, out: Path):
    """Copy a tumor network (weights and manifest) into ``out`` (the forest's folder) and load it from there."""
    import shutil

    from ..labeling.model import ModelError, manifest_path
    from .tumor_net import load_tumor_net

    weights = Path(weights)
    out.mkdir(parents=True, exist_ok=True)
    try:
        load_tumor_net(weights)
    except ModelError as error:
        from ..cli import UsageError

        raise UsageError(str(error)) from None
    for src in (weights, manifest_path(weights)):
        if src.resolve() != (out / src.name).resolve():
            shutil.copyfile(src, out / src.name)
    return load_tumor_net(out / weights.name)


def run_from_args(args, progress=None) -> dict:
    """Train with the parsed options and write DIR/tumor_rf.skops + DIR/tumor_rf.json; returns the manifest."""
    from .tumor import save_tumor_model

    if args.cases < 4:
        from ..cli import UsageError

        raise UsageError("--cases must be at least 4 (one per tumor type and one tumor-free)")
    thick_extra = bool(getattr(args, "thick_extra", False))
    if thick_extra and not args.extra:
        from ..cli import UsageError

        raise UsageError("--thick-extra needs --extra: it adds thick copies of those samples")
    negatives = list(getattr(args, "negatives", []) or [])
    check_tumor_free_scans(negatives)
    extra = (augmented_cases(args.extra, thick=thick_extra) if args.extra else []) + negative_cases(negatives)
    net_outline = bool(getattr(args, "net_outline", False))
    if net_outline and not getattr(args, "net", None):
        from ..cli import UsageError

        raise UsageError("--net-outline needs --net: the outline is the tumor network's")
    net = _net_beside(args.net, Path(args.out)) if getattr(args, "net", None) else None
    val_free = getattr(args, "val_free", 0)
    model, info = train_model(args.cases, args.seed, args.val_cases, args.clusters, args.denoiser,
                              select_slices=args.clusters > 0, progress=progress, extra=extra, net=net,
                              val_free=val_free, net_outline=net_outline)
    command = (f"spinetumor train segmentation --out {args.out} --cases {args.cases} --val-cases {args.val_cases} "
               f"--val-free {val_free} "
               f"--seed {args.seed} --clusters {args.clusters} --denoiser {args.denoiser}"
               + "".join(f" --extra {d}" for d in args.extra) + (" --thick-extra" if thick_extra else "")
               + (f" --net {args.net}" if getattr(args, "net", None) else "") + (" --net-outline" if net_outline else "")
               + (" --negatives " + " ".join(map(str, negatives)) if negatives else ""))
    data = "spinetumor.phantom synthetic sagittal T2 cases (phantom seeds above)"
    if args.extra:
        data += "; augmented datasets (tumors inserted into real anatomy): " + ", ".join(map(str, args.extra))
        if thick_extra:
            data += " (their thin-slice samples also as 3 or 5 mm sagittal acquisitions)"
    if negatives:
        data += ("; tumor-free real scans as background, as they are and as 3 and 5 mm acquisitions: "
                 + ", ".join(map(str, negatives)))
    manifest = {"date": datetime.date.today().isoformat(), "command": command, **info, "data": data}
    return save_tumor_model(model, Path(args.out) / "tumor_rf.skops", manifest)
