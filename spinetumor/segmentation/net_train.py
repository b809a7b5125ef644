"""Training the tumor probability network (:mod:`.tumor_net`) on phantoms and real anatomy.

    spinetumor train tumor-net --out DIR [--phantoms N] [--extra DATASET ...] [--negatives SCAN ...]

Data, each case reduced once to its canal box on the network grid (``DIR/cache/*.npz``):

* ``--phantoms`` synthetic cases from :data:`NET_SEED_BASE` (cycling through the three tumor
  types and tumor-free; never the forest's training, validation or test seeds);
* ``--extra``: 3D augmented datasets (``spinetumor augment --mode 3d``: phantom tumors
  inserted into real scans);
* ``--negatives``: tumor-free real scans (``NAME_t2.nii.gz`` with ``NAME_vertebrae.nii.gz``
  beside it), so that real anatomy without a tumor is seen as such;
* validation: ``--val-cases`` phantoms from the forest's validation seeds; the epoch with the
  best mean validation Dice is kept (``best.pt``).

Fine-tuning: ``--init WEIGHTS`` starts from earlier weights (shipped safetensors, ``best.pt``
or ``checkpoint.pt``). With ``--hard-negatives F`` (needs ``--init``) a fraction F of the
patches is centred on the starting network's false positives in the training cases (pixels
with probability >= 0.5 farther than :data:`HARD_MARGIN` pixels from any tumor): the places
where it mistakes CSF, cord, roots or fat for tumor. With ``--hard-positives F`` (needs
``--init``) a fraction F is centred on the tumor pixels it misses: mostly whole end slices of
a tumor, and the part of an extradural tumor beside the sac, where the network says 0 on
slices in which the tumor is plain to see. Both are found once, with the starting weights,
and kept in ``DIR/hard_negatives.npz`` and ``DIR/hard_positives.npz``, so a resumed run
draws from the same pools.

Training samples are 2D patches (:data:`PATCH`, in mm at 1 mm) of sagittal slices, a
fraction :data:`POSITIVE_FRACTION` centred near a tumor voxel, the rest near a random sac
voxel; with random intensity scale, gamma, noise and the order of the neighbouring slices.
``--thick-fraction F``: the real scans at hand are 1 mm thick, clinical sagittal T2 is 3-5 mm;
a fraction F of the patches of thin-slice cases shows them as a thick acquisition would
(slabs of 3-5 mm averaged, the centre slice's masks), so that the network learns thick real
anatomy too (a forest trained on 1 mm real anatomy lost half its Dice on the same scans
averaged into 5 mm slices).
Loss: cross-entropy plus soft Dice (the labeling network's). Checkpoints every epoch;
``--resume`` continues a run; the epoch's random draws depend only on (seed, epoch), so a
resumed run is the run that was not interrupted.
"""

from __future__ import annotations

import datetime
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoints import read_checkpoint, restore, save_checkpoint, start_epoch

log = logging.getLogger(__name__)

NET_SEED_BASE = 60_000
PATCH = (128, 96)          # rows (superior-inferior) x columns (anterior-posterior), pixels of NET_MM
POSITIVE_FRACTION = 0.5
#: A false positive counts as a hard negative only this many pixels (mm) away from any tumor pixel.
HARD_MARGIN = 3
#: At most this many hard-negative centres are kept per case (evenly subsampled).
HARD_PER_CASE = 4000
#: Hard negatives are searched in every phantom and tumor-free scan but only in every n-th
#: augmented sample: those repeat the same few real scans (whose tumor-free copies are searched
#: too), and predicting a whole real scan takes seconds on a CPU.
HARD_SEARCH_EVERY_AUGMENTED = 4


@dataclass
class NetTrainConfig:
    """Everything that defines a run; stored in checkpoints and the manifest."""

    phantoms: int = 120
    val_cases: int = 16
    extra: list = field(default_factory=list)
    negatives: list = field(default_factory=list)
    epochs: int = 30
    steps: int = 100
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    init_from: str = ""          # weights the run started from ("" = random)
    hard_negatives: float = 0.0  # fraction of patches centred on the starting network's false positives
    thick_fraction: float = 0.0  # fraction of thin-slice cases' patches seen as thick slabs (_slab_of)
    appearance: float = 0.0      # fraction of patches given another scanner's look (labeling.train.vary_appearance)
    hard_positives: float = 0.0  # fraction of patches centred on tumor pixels the starting network misses

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "NetTrainConfig":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


# --------------------------------------------------------------------------- data

def net_case(image, spacing, canal, cord, truth) -> dict:
    """One case on the network grid: normalised image (float16), sac and tumor (uint8), [s, r, c]."""
    from .features import block_mean, working_crop
    from .tumor_net import to_net_grid

    w = working_crop(image, spacing, canal, cord, None)
    tumor = block_mean(truth[w.box], w.factor)
    return {"image": to_net_grid(w.normalised(), w.spacing).astype(np.float16),
            "sac": (to_net_grid(w.canal.astype(np.float32), w.spacing) >= 0.5).astype(np.uint8),
            "tumor": (to_net_grid(tumor, w.spacing) >= 0.5).astype(np.uint8),
            "slice_mm": np.float32(w.spacing[0])}


def _cached(cache: Path, name: str, make) -> dict | None:
    """The case ``name`` from ``cache`` (made with ``make()`` and written when missing; None when it fails)."""
    from ..io import atomic_path

    path = cache / f"{name}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    arrays = make()
    if arrays is None:
        return None
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return arrays


def _from_prepared(prep) -> dict | None:
    return None if prep is None else net_case(prep.image, prep.spacing, prep.canal, prep.cord, prep.truth)


def validation_cases(n: int, seed: int = 0, cache: Path | None = None) -> list[tuple[int, str, dict]]:
    """``(phantom seed, tumor kind, case)`` of the first ``n`` validation phantoms (the forest's
    validation seeds, ``VAL_SEED_BASE``), cached in ``cache`` when given; failed cases are left out."""
    from .train import VAL_SEED_BASE, phantom_plan, prepare_case

    cases = []
    for phantom_seed, kind, with_v in phantom_plan(VAL_SEED_BASE, n, seed):
        def make(phantom_seed=phantom_seed, kind=kind, with_v=with_v):
            return _from_prepared(prepare_case(phantom_seed, kind, with_v))

        case = make() if cache is None else _cached(cache, f"val_{phantom_seed}", make)
        if case is not None:
            cases.append((phantom_seed, kind, case))
    return cases


def _from_volumes(image, tumor, canal, cord, name: str) -> dict | None:
    """A case from volumes on one grid (None, logged, when the canal is empty)."""
    from .train import prepared_from_volumes

    return _from_prepared(prepared_from_volumes(image, tumor, canal, cord, None, "", name=name))


def load_cases(config: NetTrainConfig, cache: Path, log=print) -> tuple[dict, dict]:
    """(training cases, validation cases) by name, built on first use and cached."""
    from ..augmentation.dataset import read_training_case, training_rows
    from .canal import segment_canal_and_cord
    from .train import phantom_plan, prepare_case, read_tumor_free_scan

    train = {}
    for n, (seed, kind, with_v) in enumerate(phantom_plan(NET_SEED_BASE, config.phantoms, config.seed)):
        case = _cached(cache, f"phantom_{seed}", lambda: _from_prepared(prepare_case(seed, kind, with_v)))
        if case is not None:
            train[f"phantom_{seed}"] = case
        if n % 20 == 19:
            log(f"phantoms {n + 1}/{config.phantoms}")
    for folder, row in training_rows(config.extra):

        def make(folder=folder, row=row):
            c = read_training_case(folder, row)
            return _from_volumes(c.image, c.tumor, c.canal, c.cord, c.id)
        case = _cached(cache, f"aug_{folder.name}_{row['id']}", make)
        if case is not None:
            train[f"aug_{row['id']}"] = case
    if config.extra:
        log(f"{sum(k.startswith('aug_') for k in train)} augmented cases")
    for scan in map(Path, config.negatives):
        name = scan.name.replace("_t2.nii.gz", "")

        def make(scan=scan):
            name, image, vertebrae = read_tumor_free_scan(scan)
            found = segment_canal_and_cord(image, vertebrae)
            return _from_volumes(image, image.with_array(np.zeros(image.shape, np.uint8)), found.canal, found.cord,
                                 name)
        case = _cached(cache, f"free_{name}", make)
        if case is not None:
            train[f"free_{name}"] = case
    val = {f"val_{seed}_{kind}": case for seed, kind, case in validation_cases(config.val_cases, config.seed, cache)}
    log(f"{len(train)} training cases ({sum(c['tumor'].any() for c in train.values())} with a tumor), "
        f"{len(val)} validation cases")
    return train, val


# --------------------------------------------------------------------------- sampling

def _slab_slices(img: np.ndarray, s: int, slab: int) -> np.ndarray:
    """The previous, current and next slice [3, r, c] of a stack seen as slabs of ``slab`` slices.

    Slab ``n`` averages slices ``s + n*slab - slab//2 .. s + n*slab - slab//2 + slab - 1``
    (n = -1, 0, 1), as a thick acquisition integrates its slab; indices beyond the stack repeat
    its edge slices. ``slab=1`` gives the slices ``s-1, s, s+1`` themselves.
    """
    start = s - slab // 2 + np.arange(-1, 2)[:, None] * slab + np.arange(slab)[None, :]
    index = np.clip(start, 0, img.shape[0] - 1)
    return img[index].astype(np.float32).mean(axis=1)


def _patch(case: dict, s: int, r: int, c: int, slab: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Channels (4, PATCH) and tumor (PATCH) of slice ``s`` centred at (r, c), zero beyond the box.

    ``slab`` > 1 shows the case as an acquisition with slices ``slab`` times thicker, centred
    on slice ``s`` (:func:`_slab_slices`); the sac and tumor are those of the centre slice,
    as a thick slice's reference mask is its centre's (the phantoms' convention).
    """
    from .tumor_net import CLIP

    img, sac, tumor = case["image"], case["sac"], case["tumor"]
    h, w = PATCH
    r0, c0 = r - h // 2, c - w // 2
    rs = slice(max(r0, 0), min(r0 + h, img.shape[1]))
    cs = slice(max(c0, 0), min(c0 + w, img.shape[2]))
    dst = (slice(None), slice(rs.start - r0, rs.stop - r0), slice(cs.start - c0, cs.stop - c0))
    x = np.zeros((4, h, w), np.float32)
    x[dst][:3] = np.clip(_slab_slices(img[:, rs, cs], s, slab), 0.0, CLIP)
    x[3][dst[1:]] = sac[s, rs, cs] > 0
    out_tum = np.zeros((h, w), np.int64)
    out_tum[dst[1:]] = tumor[s, rs, cs]
    return x, out_tum


def _slab_of(case: dict, rng, thick_fraction: float) -> int:
    """How many of a case's slices one patch's slab spans: 1, or for a thin-slice case
    (``augmentation.thick_slices.THIN_SLICE_MM``) in a ``thick_fraction`` of the draws, a slab
    of clinical thickness (``CLINICAL_SLICE_MM``, uniform)."""
    from ..augmentation.thick_slices import CLINICAL_SLICE_MM, THIN_SLICE_MM

    slice_mm = float(case.get("slice_mm", np.inf))
    if thick_fraction <= 0 or slice_mm >= THIN_SLICE_MM or rng.random() >= thick_fraction:
        return 1
    return max(1, int(round(rng.uniform(*CLINICAL_SLICE_MM) / slice_mm)))


def draw_batch(cases: dict, names: list, tumor_index: dict, sac_index: dict, n: int, rng,
               hard_index: dict | None = None, hard_fraction: float = 0.0, thick_fraction: float = 0.0,
               appearance: float = 0.0, positive_index: dict | None = None, positive_fraction: float = 0.0) -> tuple:
    """``n`` augmented patches: (x float32 [n, 4, h, w], y int64 [n, h, w]).

    A patch is centred near a tumor pixel the starting network missed (``positive_fraction``
    of the draws, from the cases that have some, see :func:`mistake_index`), near a hard
    negative (``hard_fraction`` of the draws, likewise), else near a tumor pixel
    (:data:`POSITIVE_FRACTION` of the rest from cases with a tumor) or a random sac pixel. A thin-slice
    case's patch is shown as a thick slab in ``thick_fraction`` of its draws (:func:`_slab_of`),
    and ``appearance`` of the patches get another scanner's look
    (:func:`spinetumor.labeling.train.vary_appearance`; the CSF stays at about 1).
    """
    from .tumor_net import CLIP

    def with_entries(index: dict | None) -> list:
        return [k for k in names if index and index.get(k) is not None and len(index[k])]

    hard_names = with_entries(hard_index) if hard_fraction > 0 else []
    positive_names = with_entries(positive_index) if positive_fraction > 0 else []
    p_positive = positive_fraction if positive_names else 0.0
    xs, ys = [], []
    for _ in range(n):
        u = rng.random() if hard_names or positive_names else 1.0
        if u < p_positive:
            name = positive_names[int(rng.integers(len(positive_names)))]
            pool = positive_index[name]
        elif hard_names and u < p_positive + hard_fraction:
            name = hard_names[int(rng.integers(len(hard_names)))]
            pool = hard_index[name]
        else:
            name = names[int(rng.integers(len(names)))]
            pool = (tumor_index[name] if tumor_index[name].size and rng.random() < POSITIVE_FRACTION
                    else sac_index[name])
        case = cases[name]
        s, r, c = pool[int(rng.integers(len(pool)))]
        r += int(rng.integers(-PATCH[0] // 3, PATCH[0] // 3 + 1))
        c += int(rng.integers(-PATCH[1] // 4, PATCH[1] // 4 + 1))
        if pool is sac_index.get(name):
            s = int(np.clip(s + rng.integers(-3, 4), 0, case["image"].shape[0] - 1))
        x, y = _patch(case, int(s), r, c, _slab_of(case, rng, thick_fraction))
        if appearance > 0 and rng.random() < appearance:
            x[:3] = np.clip(_another_look(x[:3], rng), 0.0, CLIP)
        x[:3] = np.clip(x[:3] * rng.uniform(0.85, 1.15), 0, None) ** rng.uniform(0.8, 1.25)
        x[:3] += rng.normal(0, rng.uniform(0, 0.04), x[:3].shape).astype(np.float32)
        if rng.random() < 0.5:
            x[[0, 2]] = x[[2, 0]]
        xs.append(x)
        ys.append(y)
    return np.stack(xs).astype(np.float32), np.stack(ys)


def _another_look(slices: np.ndarray, rng) -> np.ndarray:
    """Neighbouring slices [3, h, w] as another scanner would show them (one change for all three)."""
    import torch

    from ..labeling.train import vary_appearance

    return vary_appearance(torch.from_numpy(np.ascontiguousarray(slices)), rng).numpy()


def _indices(cases: dict) -> tuple[dict, dict]:
    """Per case, the (s, r, c) of tumor voxels and of sac voxels (subsampled)."""
    tumor, sac = {}, {}
    for name, case in cases.items():
        tumor[name] = np.argwhere(case["tumor"] > 0)
        idx = np.argwhere(case["sac"] > 0)
        sac[name] = idx[:: max(1, len(idx) // 20000)]
    return tumor, sac


def mistake_index(net, cases: dict, device) -> tuple[dict, dict]:
    """The starting network's mistakes in the training cases: (hard negatives, hard positives).

    Hard negatives: per case, the (s, r, c) of pixels where ``net`` says tumor (probability
    >= 0.5) and no tumor is within :data:`HARD_MARGIN` pixels in-plane. Hard positives: the
    tumor pixels it misses (probability < 0.5), often whole end slices of a tumor or the part
    of an extradural tumor beside the sac. Both on the slices holding sac or tumor, at most
    :data:`HARD_PER_CASE` each (evenly subsampled); cases with none are left out. Augmented
    samples (names ``aug_*``) are searched one in :data:`HARD_SEARCH_EVERY_AUGMENTED`.
    """
    from scipy import ndimage

    negatives, positives = {}, {}
    augmented = [name for name in sorted(cases) if name.startswith("aug_")]
    skip = set(augmented) - set(augmented[::HARD_SEARCH_EVERY_AUGMENTED])
    for name, case in cases.items():
        if name in skip:
            continue
        tumor = case["tumor"] > 0
        near = ndimage.binary_dilation(tumor, np.ones((1, 2 * HARD_MARGIN + 1, 2 * HARD_MARGIN + 1), bool)) \
            if tumor.any() else tumor
        # only where training patches are drawn: slices with sac pixels (lateral slices of a
        # real scan's canal box hold none, and predicting them would cost most of the time)
        with_sac = np.flatnonzero(case["sac"].any(axis=(1, 2)) | tumor.any(axis=(1, 2)))
        says_tumor = case_probability(net, case, device, with_sac) >= 0.5
        for index, found in ((negatives, np.argwhere(says_tumor & ~near)), (positives, np.argwhere(tumor & ~says_tumor))):
            if len(found):
                index[name] = found[:: max(1, len(found) // HARD_PER_CASE)]
    return negatives, positives


#: The files of a run folder that keep the starting network's mistakes (:func:`mistake_index`).
MISTAKE_FILES = ("hard_negatives.npz", "hard_positives.npz")


def _hard_pools(folder: Path, make_net, cases: dict, device, log) -> tuple[dict, dict]:
    """(hard negatives, hard positives) of ``cases``, read from ``folder`` or found with
    ``make_net()`` (the starting network, built only when they are not on disk yet) and written there."""
    from ..io import atomic_path

    paths = [folder / name for name in MISTAKE_FILES]
    if all(path.exists() for path in paths):
        pools = []
        for path in paths:
            with np.load(path) as data:
                pools.append({k: data[k] for k in data.files})
        return tuple(pools)
    pools = mistake_index(make_net(), cases, device)
    for path, index in zip(paths, pools):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, **index)
    for what, index in zip(("hard negatives", "hard positives"), pools):
        log(f"{what}: {sum(len(v) for v in index.values())} centres in {len(index)} of {len(cases)} cases")
    return pools


# --------------------------------------------------------------------------- validation

def case_probability(net, case: dict, device, slices=None) -> np.ndarray:
    """Tumor probability [s, r, c] of ``net`` on the slices of a network-grid case (``slices``:
    indices to predict, default all; the others stay 0)."""
    from ..labeling.network import NetConfig, min_input_multiple
    from .tumor_net import NET_CONFIG, net_channels, slice_probability

    x = net_channels(case["image"].astype(np.float32), case["sac"])
    return slice_probability(net, x, device, min_input_multiple(NetConfig.from_dict(NET_CONFIG)), slices)


def validate(net, cases: dict, device) -> dict:
    """Per validation case: 3D Dice at 0.5 (tumor cases) or false-positive voxels (tumor-free)."""
    per_case = {}
    for name, case in cases.items():
        pred = case_probability(net, case, device) >= 0.5
        truth = case["tumor"] > 0
        per_case[name] = (float(2 * (pred & truth).sum() / (pred.sum() + truth.sum())) if truth.any()
                          else -float(pred.sum()))
    dice = [v for k, v in per_case.items() if not k.endswith("_none")]
    free = [v for k, v in per_case.items() if k.endswith("_none")]
    return {"mean_dice": float(np.mean(dice)) if dice else float("nan"),
            "free_clean": int(sum(v == 0 for v in free)), "free_cases": len(free), "per_case": per_case}


# --------------------------------------------------------------------------- training

def train(out, config: NetTrainConfig | None = None, *, resume: bool = False, device=None, log=print) -> dict:
    """Train (or resume) the tumor network in ``out``; returns the history."""
    import torch

    from ..device import select_device
    from ..labeling.network import NetConfig, build_unet, segmentation_loss
    from .tumor_net import NET_CONFIG

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    ckpt = read_checkpoint(ckpt_path, NetTrainConfig) if resume and ckpt_path.exists() else None
    if ckpt and config is not None:
        ckpt["config"].epochs = config.epochs
    config = ckpt["config"] if ckpt else (config or NetTrainConfig())
    device = select_device(device) if not hasattr(device, "type") else device
    cases, val = load_cases(config, out / "cache", log)
    names = sorted(cases)
    tumor_index, sac_index = _indices(cases)
    torch.manual_seed(config.seed)
    net = build_unet(NetConfig.from_dict(NET_CONFIG)).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=1e-4)
    history, start = restore(ckpt, net, optimizer, log)
    def starting_network():
        from ..labeling.train import initial_weights

        start = build_unet(NetConfig.from_dict(NET_CONFIG)).to(device)
        start.load_state_dict(initial_weights(config.init_from))
        return start

    if config.init_from and not ckpt:
        net.load_state_dict(starting_network().state_dict())
        log(f"initialized from {config.init_from}")
    hard_index, positive_index = {}, {}
    if config.hard_negatives > 0 or config.hard_positives > 0:
        if not config.init_from:
            raise ValueError("hard examples need starting weights (--init): a random network's mistakes teach nothing")
        hard_index, positive_index = _hard_pools(out, starting_network, cases, device, log)
    for epoch in range(start, config.epochs):
        t0 = time.time()
        rng, lr = start_epoch(optimizer, config.lr, epoch, config.epochs, config.seed)
        net.train()
        losses = []
        for _ in range(config.steps):
            x, y = draw_batch(cases, names, tumor_index, sac_index, config.batch, rng, hard_index,
                              config.hard_negatives, config.thick_fraction, config.appearance,
                              positive_index, config.hard_positives)
            optimizer.zero_grad(set_to_none=True)
            loss = segmentation_loss(net(torch.from_numpy(x).to(device)), torch.from_numpy(y).to(device))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        result = validate(net, val, device)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": lr, "val_dice": result["mean_dice"],
                 "val_free_clean": result["free_clean"], "val_per_case": result["per_case"],
                 "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        best = max((h["val_dice"] for h in history[:-1]), default=-1.0)
        save_checkpoint(ckpt_path, net, optimizer, epoch, config, history)
        if entry["val_dice"] > best:
            torch.save({"model": net.state_dict(), "epoch": epoch, "val_dice": entry["val_dice"]}, out / "best.pt.part")
            (out / "best.pt.part").replace(out / "best.pt")
        log(f"epoch {epoch + 1}/{config.epochs} loss {entry['loss']:.4f} val dice {entry['val_dice']:.3f} "
            f"tumor-free clean {result['free_clean']}/{result['free_cases']} ({entry['seconds']} s)")
    return {"history": history, "config": config.to_dict()}


def extra_dataset_summaries(folders) -> dict:
    """Each ``--extra`` dataset's ``dataset.json`` (mode, positions, seed, sources, targets, counts):
    what ``spinetumor augment`` needs to write it again."""
    summaries = {}
    for folder in map(Path, folders):
        path = folder / "dataset.json"
        summaries[str(folder)] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return summaries


def ship(run_dir, out_weights, command: str) -> dict:
    """Export ``run_dir/best.pt`` as safetensors with its manifest (training data, command, validation)."""
    import torch

    from ..labeling.model import sha256_of
    from .tumor_net import export_tumor_net

    run_dir = Path(run_dir)
    best = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    ckpt = read_checkpoint(run_dir / "checkpoint.pt", NetTrainConfig)
    config = ckpt["config"]
    entry = next(h for h in ckpt["history"] if h["epoch"] == int(best["epoch"]))
    return export_tumor_net(best["model"], out_weights, {
        "date": datetime.date.today().isoformat(), "command": command,
        "training": {**config.to_dict(), "phantom_seeds_from": NET_SEED_BASE, "patch": list(PATCH),
                     "positive_fraction": POSITIVE_FRACTION},
        "data": "spinetumor.phantom synthetic cases; phantom tumors inserted into real scans (--extra); "
                "tumor-free real scans (--negatives)",
        "extra_datasets": extra_dataset_summaries(config.extra),
        "init_sha256": sha256_of(config.init_from) if config.init_from and Path(config.init_from).exists() else None,
        "validation": {"epoch": int(best["epoch"]), "mean_dice_at_0.5": entry["val_dice"],
                       "tumor_free_clean": entry["val_free_clean"], "phantom_seeds": "forest validation seeds"},
    })


def add_arguments(p) -> None:
    """Options of ``spinetumor train tumor-net``."""
    d = NetTrainConfig()
    p.add_argument("--out", required=True, help="run folder (cache, checkpoints, best.pt, tumor_net.safetensors)")
    p.add_argument("--phantoms", type=int, default=d.phantoms, help=f"training phantoms (default {d.phantoms})")
    p.add_argument("--val-cases", type=int, default=d.val_cases, help=f"validation phantoms (default {d.val_cases})")
    p.add_argument("--extra", action="append", default=[], metavar="DATASET",
                   help="3D augmented dataset (spinetumor augment --mode 3d) to train on; repeatable")
    p.add_argument("--negatives", nargs="+", default=[], metavar="SCAN",
                   help="tumor-free real scans NAME_t2.nii.gz (with NAME_vertebrae.nii.gz beside them)")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--steps", type=int, default=d.steps, help="batches per epoch")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--lr", type=float, default=d.lr, help="peak learning rate (cosine schedule)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--init", default="", metavar="WEIGHTS",
                   help="start from these weights (.safetensors, best.pt or checkpoint.pt) instead of random ones")
    p.add_argument("--hard-negatives", type=float, default=d.hard_negatives, metavar="F",
                   help="fraction of patches centred on the starting network's false positives (needs --init)")
    p.add_argument("--hard-positives", type=float, default=d.hard_positives, metavar="F",
                   help="fraction of patches centred on tumor pixels the starting network misses (needs --init)")
    p.add_argument("--thick-fraction", type=float, default=d.thick_fraction, metavar="F",
                   help="fraction of the patches of thin-slice cases (slices under 2 mm, e.g. the 1 mm Chu scans) "
                        "shown as 3-5 mm thick slabs, as clinical sagittal scans are acquired (default 0)")
    p.add_argument("--appearance", type=float, default=d.appearance, metavar="F",
                   help="fraction of patches given another scanner's look: black background, other tissue "
                        "contrast, textured marrow, sharper or softer edges (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt (only --epochs may change)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps")


def run_from_args(args) -> dict:
    """Train with the parsed options, then write DIR/tumor_net.safetensors and its manifest."""
    from ..cli import UsageError
    from .train import check_tumor_free_scans

    for folder in args.extra:
        if not (Path(folder) / "manifest.csv").exists():
            raise UsageError(f"{folder}: not an augmented dataset (no manifest.csv); write one with spinetumor augment")
    check_tumor_free_scans(args.negatives)
    for option, value in (("--hard-negatives", args.hard_negatives), ("--hard-positives", args.hard_positives)):
        if value and not args.init:
            raise UsageError(f"{option} needs --init: the mistakes are those of the starting weights")
        if not 0.0 <= value < 1.0:
            raise UsageError(f"{option} must be in [0, 1), got {value}")
    if args.hard_negatives + args.hard_positives >= 1.0:
        raise UsageError("--hard-negatives and --hard-positives together must leave some ordinary patches (sum under 1)")
    if not 0.0 <= args.thick_fraction <= 1.0:
        raise UsageError(f"--thick-fraction must be in [0, 1], got {args.thick_fraction}")
    if not 0.0 <= args.appearance <= 1.0:
        raise UsageError(f"--appearance must be in [0, 1], got {args.appearance}")
    if args.init and not Path(args.init).is_file():
        raise UsageError(f"{args.init}: no such weights file")
    config = NetTrainConfig(args.phantoms, args.val_cases, [str(x) for x in args.extra],
                            [str(x) for x in args.negatives], args.epochs, args.steps, args.batch, args.lr, args.seed,
                            str(args.init or ""), float(args.hard_negatives), float(args.thick_fraction),
                            float(args.appearance), float(args.hard_positives))
    result = train(args.out, config, resume=args.resume, device=args.device)
    command = (f"spinetumor train tumor-net --out {args.out} --phantoms {args.phantoms} --val-cases {args.val_cases} "
               f"--epochs {args.epochs} --steps {args.steps} --batch {args.batch} --lr {args.lr} --seed {args.seed}"
               + "".join(f" --extra {x}" for x in args.extra)
               + (f" --init {args.init}" if args.init else "")
               + (f" --hard-negatives {args.hard_negatives}" if args.hard_negatives else "")
               + (f" --hard-positives {args.hard_positives}" if args.hard_positives else "")
               + (f" --thick-fraction {args.thick_fraction}" if args.thick_fraction else "")
               + (f" --appearance {args.appearance}" if args.appearance else "")
               + (" --negatives " + " ".join(args.negatives) if args.negatives else "")
               + (" --resume" if args.resume else ""))
    manifest = ship(args.out, Path(args.out) / "tumor_net.safetensors", command)
    (Path(args.out) / "history.json").write_text(json.dumps(result["history"], indent=1) + "\n", encoding="utf-8")
    return manifest
