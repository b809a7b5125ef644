"""Training the tumor-type CNN on phantom tumors: deterministic, resumable, then calibrated.

Data: phantoms of the three types (seeds ``TRAIN_SEED0...`` train, ``VAL_SEED0...``
validate; the benchmark uses ``TEST_SEED0...``), packed once into ``.npz`` caches
(:mod:`.dataset`). Extra cases -- e.g. tumors inserted into real scans -- enter through
``train(..., extra_cases=[(image, tumor_mask, canal, cord, type), ...])``.

Each step draws a class uniformly, a tumor of that class uniformly, and one of its
slices with probability proportional to the tumor's area there; the batch is augmented
(:func:`.dataset.augment`: perturbed masks as from an imperfect segmentation, re-centring,
rotation, intensity). Every epoch's draws come from ``numpy.random.default_rng([seed,
epoch])`` and torch is reseeded per epoch, so a resumed run reproduces an uninterrupted
one exactly. After each epoch: validation on whole tumors (area-weighted slice
combination) with the ground-truth masks and with fixed perturbations of them, a
checkpoint ``out/checkpoint.pt`` (tensors and plain values only, read with
``weights_only=True``) and ``out/best.pt`` at the lowest perturbed-mask validation NLL.
At the end the temperature is fitted with the best weights on the validation tumors with
perturbed tumor masks and, by default, sac and cord masks segmented from the image as the
pipeline will (:func:`calibrate`), and ``out/summary.json`` records the validation
metrics before and after calibration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoints import read_checkpoint, restore, save_checkpoint, start_epoch
from . import CLASSES
from .dataset import TRAIN_SEED0, VAL_SEED0, augment, build_cache, load_cache, merge_samples, samples_from_cases, \
    tumor_inputs
from .network import CNNConfig


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in checkpoints and the model manifest)."""

    epochs: int = 16
    steps_per_epoch: int = 50
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    train_phantoms: int = 420
    val_phantoms: int = 90
    extra_cases: int = 0
    calibration: str = "segmented"          # sac/cord of the temperature-fitting set: "segmented" or "truth"
    net: dict = field(default_factory=lambda: CNNConfig().to_dict())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    @property
    def channels(self) -> int:
        return int(self.net["in_channels"])


def cache_paths(cache_dir, config: TrainConfig) -> tuple[Path, Path]:
    """The training and validation cache files of ``config`` (named by seed range, so runs share them)."""
    cache_dir = Path(cache_dir)
    return (cache_dir / f"train_{TRAIN_SEED0}_{config.train_phantoms}.npz",
            cache_dir / f"val_{VAL_SEED0}_{config.val_phantoms}.npz")


def draw_batch(data: dict, n: int, rng) -> np.ndarray:
    """``n`` slice indices: class uniform, tumor uniform within it, slice proportional to tumor area."""
    targets, owner, areas = data["targets"], data["owner"], data["areas"]
    by_class = [np.nonzero(targets == k)[0] for k in range(len(CLASSES))]
    by_class = [t for t in by_class if len(t)]
    slices_of = data.setdefault("_slices_of", {})
    picks = []
    for _ in range(n):
        tumors = by_class[int(rng.integers(len(by_class)))]
        t = int(tumors[int(rng.integers(len(tumors)))])
        if t not in slices_of:
            slices_of[t] = np.nonzero(owner == t)[0]
        idx = slices_of[t]
        w = areas[idx] / areas[idx].sum()
        picks.append(int(idx[rng.choice(len(idx), p=w)]))
    return np.asarray(picks)


# --- evaluation ------------------------------------------------------------------------------

#: Seed of the fixed perturbations of the validation tumors' masks.
PERTURB_SEED = 7


def slice_logits(model, data: dict, channels: int, device, perturbed: bool = False, batch: int = 256) -> list:
    """``(logits [n, K], areas [n])`` of every tumor of packed samples.

    ``perturbed``: the masks are perturbed (and the image augmented) as in training, with
    fixed seeds per tumor -- the classifier will meet imperfect segmentations, and a
    validation set it gets entirely right cannot calibrate anything.
    """
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for t in range(len(data["targets"])):
            if perturbed:
                idx = np.nonzero(data["owner"] == t)[0]
                x = augment(data["images"][idx].astype(np.float32), data["masks"][idx],
                            np.random.default_rng([PERTURB_SEED, t]), channels).numpy()
                areas = data["areas"][idx]
            else:
                x, areas = tumor_inputs(data, t, channels)
            logits = [model(torch.from_numpy(x[i:i + batch]).to(device)).float().cpu().numpy()
                      for i in range(0, len(x), batch)]
            out.append((np.concatenate(logits), areas))
    return out


def evaluate(model, data: dict, channels: int, device, temperature: float = 1.0, perturbed: bool = False) -> dict:
    """Per-tumor metrics (accuracy, recall, confusion, NLL, ECE) at ``temperature``."""
    from .calibration import summary, tumor_log_probs

    logits = slice_logits(model, data, channels, device, perturbed)
    return summary(tumor_log_probs(logits, temperature), data["targets"], CLASSES)


# --- checkpoints -----------------------------------------------------------------------------

def load_checkpoint(path) -> dict:
    """A checkpoint of this trainer (see :mod:`spinetumor.checkpoints`)."""
    return read_checkpoint(path, TrainConfig)


# --- the run ---------------------------------------------------------------------------------

def load_data(config: TrainConfig, cache_dir, extra_cases=None, log=print) -> tuple[dict, dict]:
    """Training and validation samples (caches built when missing), extra cases appended to training."""
    train_path, val_path = cache_paths(cache_dir, config)
    log(f"phantom caches: {train_path.name}, {val_path.name}")
    build_cache(val_path, range(VAL_SEED0, VAL_SEED0 + config.val_phantoms))
    build_cache(train_path, range(TRAIN_SEED0, TRAIN_SEED0 + config.train_phantoms))
    train_data, val_data = load_cache(train_path), load_cache(val_path)
    if extra_cases:
        train_data = merge_samples(train_data, samples_from_cases(extra_cases))
    return train_data, val_data


def train(out, config: TrainConfig | None = None, *, resume: bool = False, device=None, cache_dir=None,
          extra_cases=None, stop_after: int | None = None, log=print) -> dict:
    """Train (or resume) the CNN in ``out``; fit the temperature; return history and summary.

    ``cache_dir`` holds the phantom caches (default ``out/cache``); ``extra_cases`` is a list
    of ``(image, tumor_mask, canal, cord, type)`` added to the training data. ``stop_after``
    ends this invocation after that many epochs in all (an interruption: resume later to
    finish the same schedule); the calibration then waits for the last epoch.
    """
    import torch

    from ..device import select_device
    from .network import build_cnn

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if resume and ckpt is None:
        raise FileNotFoundError(f"{ckpt_path}: no checkpoint to resume from")
    if ckpt and config is not None and config.epochs:
        ckpt["config"].epochs = config.epochs          # a resumed run may be extended
    config = ckpt["config"] if ckpt else (config or TrainConfig())
    if ckpt and config.extra_cases != len(extra_cases or ()):
        raise ValueError(f"{ckpt_path}: the run was trained with {config.extra_cases} extra tumors, not "
                         f"{len(extra_cases or ())}: resume with the same --extra datasets")
    if extra_cases:
        config.extra_cases = len(extra_cases)
    device = select_device(device) if not hasattr(device, "type") else device
    train_data, val_data = load_data(config, cache_dir or out / "cache", extra_cases, log)
    log(f"training tumors {len(train_data['targets'])} ({len(train_data['images'])} slices), "
        f"validation tumors {len(val_data['targets'])}; device {device}")

    torch.manual_seed(config.seed)
    model = build_cnn(CNNConfig.from_dict(config.net)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history, start = restore(ckpt, model, optimizer, log)
    loss_fn = torch.nn.CrossEntropyLoss()
    last = config.epochs if stop_after is None else min(config.epochs, stop_after)
    for epoch in range(start, last):
        t0 = time.time()
        rng, lr = start_epoch(optimizer, config.lr, epoch, config.epochs, config.seed)
        model.train()
        losses = []
        for _ in range(config.steps_per_epoch):
            idx = draw_batch(train_data, config.batch_size, rng)
            x = augment(train_data["images"][idx].astype(np.float32), train_data["masks"][idx], rng, config.channels)
            y = torch.from_numpy(train_data["targets"][train_data["owner"][idx]])
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x.to(device)), y.to(device))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val = evaluate(model, val_data, config.channels, device)
        val_p = evaluate(model, val_data, config.channels, device, perturbed=True)
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": lr, "val_accuracy": val["accuracy"],
                 "val_nll": val["nll"], "val_perturbed_accuracy": val_p["accuracy"],
                 "val_perturbed_nll": val_p["nll"], "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        save_checkpoint(ckpt_path, model, optimizer, epoch, config, history)
        if entry["val_perturbed_nll"] <= min(h["val_perturbed_nll"] for h in history):
            torch.save({"model": model.state_dict(), "epoch": epoch, "config": json.dumps(config.to_dict())},
                       out / "best.pt.part")
            (out / "best.pt.part").replace(out / "best.pt")
        log(f"epoch {epoch + 1}/{config.epochs} loss {entry['loss']:.4f} val acc {entry['val_accuracy']:.3f} "
            f"nll {entry['val_nll']:.4f}; perturbed masks: acc {entry['val_perturbed_accuracy']:.3f} "
            f"nll {entry['val_perturbed_nll']:.4f} ({entry['seconds']} s)")
    if last < config.epochs:
        return {"config": config.to_dict(), "history": history}
    calib_data = load_cache(calibration_cache(cache_dir or out / "cache", config, log))
    result = calibrate(model, out, config, val_data, calib_data, device)
    result["history"] = history
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _log_summary(result, log)
    return result


def calibration_cache(cache_dir, config: TrainConfig, log=print) -> Path:
    """The cache the temperature is fitted on: the validation phantoms with ``config.calibration`` sac/cord masks."""
    _, val_path = cache_paths(cache_dir, config)
    if config.calibration == "truth":
        return val_path
    path = val_path.with_name(val_path.name.replace("val_", "val_segmented_"))
    if not path.exists():
        log(f"building {path.name}: sac and cord segmented on the validation phantoms")
    return build_cache(path, range(VAL_SEED0, VAL_SEED0 + config.val_phantoms), anatomy="segmented")


def calibrate(model, out, config: TrainConfig, val_data: dict, calib_data: dict, device) -> dict:
    """Load ``out/best.pt``; fit the temperature on ``calib_data`` with perturbed tumor masks; score.

    The classifier will meet imperfect tumor masks and, by default, sac and cord masks
    segmented from the image, so the temperature is fitted there (``config.calibration``);
    the clean-mask and truth-anatomy scores are recorded too.
    """
    import torch

    from .calibration import fit_temperature, summary, tumor_log_probs

    best = torch.load(Path(out) / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    logits = slice_logits(model, calib_data, config.channels, device, perturbed=True)
    temperature = fit_temperature(logits, calib_data["targets"])
    clean = slice_logits(model, val_data, config.channels, device)
    perturbed_truth = slice_logits(model, val_data, config.channels, device, perturbed=True)

    def both(name, lg, targets):
        return {f"{name}_uncalibrated": summary(tumor_log_probs(lg, 1.0), targets, CLASSES),
                f"{name}_calibrated": summary(tumor_log_probs(lg, temperature), targets, CLASSES)}

    anatomy = "segmented by segment_canal_and_cord" if config.calibration == "segmented" else "from the phantom"
    return {"config": config.to_dict(), "best_epoch": int(best["epoch"]), "temperature": temperature,
            "temperature_fitted_on": f"validation tumors, perturbed tumor masks, sac/cord {anatomy}",
            **both("validation", logits, calib_data["targets"]),
            **both("validation_perturbed_truth_anatomy", perturbed_truth, val_data["targets"]),
            **both("validation_clean_masks", clean, val_data["targets"])}


def calibrate_run(out, device=None, cache_dir=None, log=print) -> dict:
    """Refit the temperature of the best weights of the finished run in ``out``; rewrite its summary."""
    from ..device import select_device
    from .network import build_cnn

    out = Path(out)
    ckpt = load_checkpoint(out / "checkpoint.pt")
    config = ckpt["config"]
    device = select_device(device) if not hasattr(device, "type") else device
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    _, val_path = cache_paths(cache_dir, config)
    model = build_cnn(CNNConfig.from_dict(config.net)).to(device)
    result = calibrate(model, out, config, load_cache(val_path), load_cache(calibration_cache(cache_dir, config, log)),
                       device)
    result["history"] = ckpt["history"]
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _log_summary(result, log)
    return result


def _log_summary(result: dict, log) -> None:
    after, before = result["validation_calibrated"], result["validation_uncalibrated"]
    log(f"best epoch {result['best_epoch'] + 1}: calibration-set accuracy {after['accuracy']:.3f}; "
        f"temperature {result['temperature']:.3f}; ECE {before['ece']:.4f} -> {after['ece']:.4f}; "
        f"NLL {before['nll']:.4f} -> {after['nll']:.4f}")


def add_arguments(p) -> None:
    """Options of ``spinetumor train classification``."""
    p.add_argument("--out", required=True, help="run folder (checkpoints, caches, summary)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs in all (default {TrainConfig.epochs}; with --resume, the checkpoint's)")
    p.add_argument("--steps-per-epoch", type=int, default=TrainConfig.steps_per_epoch)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.pt (only --epochs may change)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    p.add_argument("--channels", type=int, choices=(2, 4), default=2,
                   help="2: image and tumor mask (default, the shipped model); 4: plus sac and cord masks "
                        "(no better with true masks, worse with segmented ones: docs/benchmarks.md)")
    p.add_argument("--train-phantoms", type=int, default=TrainConfig.train_phantoms)
    p.add_argument("--val-phantoms", type=int, default=TrainConfig.val_phantoms)
    p.add_argument("--cache-dir", default=None, help="folder of the phantom caches (default DIR/cache)")
    p.add_argument("--calibration", choices=("segmented", "truth"), default=TrainConfig.calibration,
                   help="sac/cord masks of the validation tumors the temperature is fitted on: segmented from "
                        "the image (default, as in the pipeline) or the phantom's")
    p.add_argument("--calibrate-only", action="store_true",
                   help="refit the temperature of DIR's finished run (no training)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--extra", action="append", default=[], metavar="DATASET",
                   help="also train on the tumors of this augmented dataset (spinetumor augment --mode 3d: real "
                        "anatomy with inserted tumors); repeatable")


def config_from_args(args) -> TrainConfig:
    """The training configuration of parsed options (validated)."""
    for name in ("steps_per_epoch", "batch_size", "train_phantoms", "val_phantoms"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    if args.epochs is not None and args.epochs < 1:
        raise ValueError("--epochs must be at least 1")
    net = CNNConfig(in_channels=args.channels).to_dict()
    return TrainConfig(epochs=args.epochs or (0 if args.resume else TrainConfig.epochs),
                       steps_per_epoch=args.steps_per_epoch, batch_size=args.batch_size, seed=args.seed,
                       train_phantoms=args.train_phantoms, val_phantoms=args.val_phantoms, net=net,
                       calibration=args.calibration)


def run_from_args(args) -> dict:
    """Train with the options of ``spinetumor train classification`` (or only recalibrate)."""
    if args.calibrate_only:
        return calibrate_run(args.out, device=args.device, cache_dir=args.cache_dir)
    extra = augmented_tumors(args.extra) if getattr(args, "extra", None) else None
    return train(args.out, config_from_args(args), resume=args.resume, device=args.device, cache_dir=args.cache_dir,
                 extra_cases=extra)


def augmented_tumors(folders) -> list[tuple]:
    """``extra_cases`` for :func:`train` from augmented datasets: (image, tumor, canal, cord, type, id)."""
    from ..augmentation.dataset import read_training_cases

    return [(c.image, c.tumor, c.canal, c.cord, c.tumor_type, c.id) for c in read_training_cases(folders)]
