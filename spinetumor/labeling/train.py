"""Training the vertebra-labeling U-Net: cached slices, augmentation, checkpoints, resume.

One epoch draws a fixed number of slices (seeded by ``(seed, epoch)``, so a resumed
run draws exactly what an uninterrupted one would), augments them, and ends with a
validation pass over the held-out cases and a checkpoint (model, optimizer, epoch,
RNG states, history) in ``out/checkpoint.pt``; the best validation Dice so far is also
kept as ``out/best.pt``. Checkpoints hold tensors and plain values only and are read
with ``torch.load(weights_only=True)``: nothing is unpickled.

Split (fixed, by case id): Chu cases chu_17, chu_18, chu_19 validate; the other nine
train, together with tumor-free phantoms when :mod:`spinetumor.phantom` is available.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..checkpoints import read_checkpoint, save_checkpoint, start_epoch
from . import NUM_CLASSES, TILE
from .dataset import CHU_TRAINING, CHU_VALIDATION, build_cache, load_cache, phantom_available
from .network import NetConfig


@dataclass
class TrainConfig:
    """Everything that determines a training run (stored in checkpoints and the model manifest)."""

    epochs: int = 40
    samples_per_epoch: int = 400
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    phantoms: int = 0                       # number of tumor-free phantoms added to training
    train_cases: tuple = CHU_TRAINING
    val_cases: tuple = CHU_VALIDATION
    empty_slice_weight: float = 0.15        # sampling weight of slices without any vertebra
    val_stride: int = 2                     # validate on every n-th sagittal slice during training
    ordinal_weight: float = 0.0             # weight of the ordinal level term of the loss
    stages: list = field(default_factory=list)  # changes made on resume: [{"from_epoch", "ordinal_weight"}]
    init_from: str = ""                     # weights this run started from (fine-tuning), "" = random
    fov_crop: float = 0.15                  # probability of a partial field of view per slice
    low_resolution: float = 0.0             # probability of an in-plane blur (a coarser acquisition)
    appearance: float = 0.0                 # probability of another scanner's look (vary_appearance)
    average: float = 0.0                    # decay of the weight average per step (0 = off; see WeightAverage)
    net: dict = field(default_factory=lambda: NetConfig().to_dict())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["train_cases"], d["val_cases"] = list(self.train_cases), list(self.val_cases)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        d = dict(d)
        d["train_cases"], d["val_cases"] = tuple(d["train_cases"]), tuple(d["val_cases"])
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


# --- batches and augmentation --------------------------------------------------------------

def fit_canvas(image: np.ndarray, label: np.ndarray, rng: np.random.Generator | None, size: int = TILE):
    """Pad (centred) or crop (random, or centred without ``rng``) a slice to ``size`` x ``size``."""
    out_img = np.zeros((size, size), np.float32)
    out_lab = np.zeros((size, size), np.int64)
    src, dst = [], []
    for n in image.shape:
        if n <= size:
            off = (size - n) // 2
            src.append(slice(0, n))
            dst.append(slice(off, off + n))
        else:
            off = int(rng.integers(0, n - size + 1)) if rng is not None else (n - size) // 2
            src.append(slice(off, off + size))
            dst.append(slice(0, size))
    out_img[dst[0], dst[1]] = image[src[0], src[1]]
    out_lab[dst[0], dst[1]] = label[src[0], src[1]]
    return out_img, out_lab


def sample_slice(stack_img, stack_lab, s, rng):
    """One training slice, sometimes averaged with its neighbours to mimic thick sagittal slices."""
    img = stack_img[s].astype(np.float32)
    if rng.random() < 0.3:
        half = int(rng.integers(1, 3))
        lo, hi = max(0, s - half), min(len(stack_img), s + half + 1)
        img = stack_img[lo:hi].astype(np.float32).mean(axis=0)
    return img, stack_lab[s]


def crop_field_of_view(image, label, rng) -> None:
    """Blank (in place) the rows above or below a random row of a slice and its labels.

    A partial field of view: scans that end below T11, or above the sacrum, which the
    network must still label from what is visible (the canvas is zero beyond a real field).
    """
    h = image.shape[0]
    cut = int(rng.integers(20, h // 2))
    rows = slice(0, cut) if rng.random() < 0.5 else slice(h - cut, h)
    image[rows] = 0
    label[rows] = 0


def gaussian_blur(img, sigma: float):
    """Images ([..., H, W] tensor) each smoothed with a Gaussian of ``sigma`` pixels (edges replicated)."""
    import torch
    import torch.nn.functional as F

    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    flat = img.reshape(-1, 1, *img.shape[-2:])
    out = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1))
    return F.conv2d(out, k.view(1, 1, -1, 1)).reshape(img.shape)


def vary_appearance(img, rng):
    """The same anatomy as another scanner and protocol would show it ([..., H, W] tensor, normalized
    so that bright fluid is about 1).

    The Chu training scans are smooth 8-bit images with a grey background and homogeneous
    vertebral bodies; other scanners give a black background, textured bone marrow, sharper
    or softer edges and other tissue contrasts. All four changes are applied, each with a
    random strength: a floor subtracted (black background), a monotone piecewise-linear
    intensity curve fixing 0 and 1 (other relative contrasts of bone, disc, CSF and fat), a
    multiplicative texture of 0.7-2 pixel grain (marrow), and unsharp masking or blurring.
    Neighbouring slices given as a stack share the strengths; each gets its own grain.
    """
    import torch

    floor = rng.uniform(0.0, 0.25)
    img = ((img - floor) / (1.0 - floor)).clamp(min=0)
    knots = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0])
    values = torch.from_numpy(np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.full(4, 4.0)))]).astype(np.float32))
    segment = torch.clamp((img / 0.25).long(), max=3)
    slope = (values[1:] - values[:-1]) / 0.25
    img = values[segment] + slope[segment] * (img - knots[segment])
    grain = gaussian_blur(torch.from_numpy(rng.normal(0, 1, img.shape).astype(np.float32)), rng.uniform(0.7, 2.0))
    grain = grain / grain.std().clamp(min=1e-6)
    img = img * (1 + rng.uniform(0.0, 0.2) * grain).clamp(min=0.3)
    smooth = gaussian_blur(img, rng.uniform(0.7, 2.0))
    return (img + rng.uniform(-0.6, 1.5) * (img - smooth)).clamp(min=0)


def augment_batch(images, labels, rng, fov_crop: float = 0.15, low_resolution: float = 0.0, appearance: float = 0.0):
    """Geometric and intensity augmentation of a batch (torch tensors [B,1,H,W], [B,H,W]).

    Rotation +-10 degrees, scale 0.85..1.15, shift +-24 px; thick in-plane rows
    (downsample rows by 2-4 and back, as in an axial acquisition); partial field of view
    with probability ``fov_crop`` (top or bottom blanked: scans that end below T11 or
    above the sacrum); coarser in-plane resolution with probability ``low_resolution``;
    another scanner's look (:func:`vary_appearance`) with probability ``appearance``;
    intensity scale, gamma, multiplicative smooth bias field, noise.
    """
    import torch
    import torch.nn.functional as F

    b, _, h, w = images.shape
    theta = torch.zeros(b, 2, 3)
    for n in range(b):
        angle = math.radians(rng.uniform(-10, 10))
        scale = rng.uniform(0.85, 1.15)
        tx, ty = rng.uniform(-24, 24) * 2 / w, rng.uniform(-24, 24) * 2 / h
        c, s = math.cos(angle) / scale, math.sin(angle) / scale
        theta[n] = torch.tensor([[c, -s, tx], [s, c, ty]], dtype=torch.float32)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)[:, 0].long()
    yy = torch.linspace(-1, 1, h)[:, None].expand(h, w)
    xx = torch.linspace(-1, 1, w)[None, :].expand(h, w)
    for n in range(b):
        img = images[n, 0]
        if rng.random() < 0.2:                       # thick rows: axial acquisition seen sagittally
            f = int(rng.integers(2, 5))
            img = F.interpolate(F.avg_pool2d(img[None, None], (f, 1), ceil_mode=True),
                                size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        if rng.random() < fov_crop:
            crop_field_of_view(img, labels[n], rng)
        if rng.random() < low_resolution:            # coarser in-plane resolution, then upsampled
            f = float(rng.uniform(1.3, 2.5))
            small = (max(8, int(h / f)), max(8, int(w / f)))
            img = F.interpolate(F.interpolate(img[None, None], size=small, mode="area"),
                                size=(h, w), mode="bilinear", align_corners=False)[0, 0]
        if appearance > 0 and rng.random() < appearance:
            img = vary_appearance(img, rng)
        img = img.clamp(min=0) * rng.uniform(0.8, 1.2)
        img = img.clamp(min=0) ** rng.uniform(0.7, 1.5)
        coeffs = rng.uniform(-0.3, 0.3, 5)
        bias = torch.exp(coeffs[0] * xx + coeffs[1] * yy + coeffs[2] * xx * yy
                         + coeffs[3] * (xx ** 2 - 0.33) + coeffs[4] * (yy ** 2 - 0.33))
        img = img * bias
        sigma = rng.uniform(0.0, 0.05)
        if sigma > 0:
            noise = torch.from_numpy(rng.normal(0, sigma, (2, h, w)).astype(np.float32))
            img = torch.sqrt((img + noise[0]) ** 2 + noise[1] ** 2)   # Rician, as magnitude MR
        images[n, 0] = img
    return images, labels


def draw_epoch(cases: dict, names: list[str], n: int, rng, empty_weight: float):
    """``n`` (case, slice) pairs, slices with vertebrae favoured over empty ones."""
    pairs, weights = [], []
    for name in names:
        lab = cases[name][1]
        has = lab.reshape(len(lab), -1).max(axis=1) > 0
        for s in range(len(lab)):
            pairs.append((name, s))
            weights.append(1.0 if has[s] else empty_weight)
    weights = np.asarray(weights) / np.sum(weights)
    picks = rng.choice(len(pairs), size=n, replace=True, p=weights)
    return [pairs[i] for i in picks]


# --- checkpoints ----------------------------------------------------------------------------

def _rng_state() -> dict:
    import torch

    return {"python": json.dumps(random.getstate()), "numpy": json.dumps(np.random.get_state()[1].tolist()
                                                                           + list(np.random.get_state()[2:])),
            "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    import torch

    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    values = json.loads(state["numpy"])
    keys = np.asarray(values[:624], dtype=np.uint32)
    np.random.set_state(("MT19937", keys, int(values[624]), int(values[625]), float(values[626])))
    torch.set_rng_state(state["torch"])


def load_checkpoint(path) -> dict:
    """A checkpoint of this trainer (see :mod:`spinetumor.checkpoints`)."""
    return read_checkpoint(path, TrainConfig)


def initial_weights(path) -> dict:
    """Model weights to fine-tune from: a ``best.pt``/``checkpoint.pt`` of this trainer or shipped safetensors.

    Safetensors holding two networks (a found-and-named pair, see
    :func:`~spinetumor.labeling.model.found_and_named`) must be given with the part to start
    from: ``FILE:finder`` or ``FILE:namer``. Checkpoints are read with ``weights_only=True`` and
    safetensors hold tensors only, so nothing is unpickled.
    """
    import torch

    from .model import ModelError

    name, _, part = str(path).rpartition(":")
    path, part = (Path(name), part) if name and part in ("finder", "namer") else (Path(path), "")
    if not path.is_file():
        raise ModelError(f"{path}: weights to start from not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
    else:
        tensors = torch.load(path, map_location="cpu", weights_only=True)["model"]
    pair = {key.split(".", 1)[0] for key in tensors} == {"finder", "namer"}
    if part and not pair:
        raise ModelError(f"{path}: holds one network; give it without ':{part}'")
    if pair and not part:
        raise ModelError(f"{path}: holds two networks (a found-and-named pair); "
                         f"give {path}:finder or {path}:namer")
    if not part:
        return tensors
    return {key.split(".", 1)[1]: value for key, value in tensors.items() if key.startswith(part + ".")}


class WeightAverage:
    """Exponential moving average of a model's weights and batch-norm statistics.

    Fine-tuning on nine scans moves the level naming from epoch to epoch; the average over about
    the last ``1 / (1 - decay)`` steps smooths that out, so it is what a run with ``average`` > 0
    validates and keeps as ``best.pt`` (the optimizer keeps training the raw weights). It does
    not stop a steady drift (docs/benchmarks.md, "Another scanner": labeling e1 and e2).
    """

    def __init__(self, model, decay: float, state: dict | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be in (0, 1), got {decay}")
        self.decay = decay
        source = state if state is not None else model.state_dict()
        self.state = {k: v.detach().clone() for k, v in source.items()}

    def update(self, model) -> None:
        """Move the average towards the model's current weights (counters are copied)."""
        import torch

        with torch.no_grad():
            for key, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    self.state[key].mul_(self.decay).add_(value.detach(), alpha=1.0 - self.decay)
                else:
                    self.state[key].copy_(value)

    def model_like(self, model):
        """A copy of ``model`` holding the averaged weights."""
        import copy

        averaged = copy.deepcopy(model)
        averaged.load_state_dict(self.state)
        return averaged


# --- validation -----------------------------------------------------------------------------

def predict_stack(model, stack: np.ndarray, device, batch: int = 16) -> np.ndarray:
    """Argmax labels of every slice of a cached case (slices fitted to the canvas, centred)."""
    import torch

    model.eval()
    out = np.zeros(stack.shape, np.uint8)
    dummy = np.zeros(stack.shape[1:], np.uint8)
    with torch.inference_mode():
        for start in range(0, len(stack), batch):
            imgs = [fit_canvas(stack[s].astype(np.float32), dummy, None)[0] for s in range(start, min(start + batch, len(stack)))]
            logits = model(torch.from_numpy(np.stack(imgs)[:, None]).to(device))
            pred = logits.argmax(1).cpu().numpy().astype(np.uint8)
            for n, s in enumerate(range(start, start + len(imgs))):
                out[s] = _uncanvas(pred[n], stack.shape[1:])
    return out


def _uncanvas(canvas: np.ndarray, shape) -> np.ndarray:
    """Inverse of the centred :func:`fit_canvas` for one slice (zeros where the slice was cropped)."""
    out = np.zeros(shape, canvas.dtype)
    src, dst = [], []
    size = canvas.shape[0]
    for n in shape:
        if n <= size:
            off = (size - n) // 2
            src.append(slice(off, off + n))
            dst.append(slice(0, n))
        else:
            off = (n - size) // 2
            src.append(slice(0, size))
            dst.append(slice(off, off + size))
    out[dst[0], dst[1]] = canvas[src[0], src[1]]
    return out


def validate(model, cases: dict, names, device, stride: int = 1) -> dict:
    """Per-level 3D Dice on the cached grid (no post-processing) and its mean over levels and cases.

    ``stride`` > 1 scores every stride-th sagittal slice only (a cheaper estimate during training).
    """
    per_case = {}
    for name in names:
        img, lab = cases[name]
        img, lab = img[::stride], lab[::stride]
        pred = predict_stack(model, img, device)
        dices = {}
        for level in range(1, NUM_CLASSES):
            p, t = pred == level, lab == level
            denom = p.sum() + t.sum()
            if t.any():
                dices[level] = float(2 * (p & t).sum() / denom)
        per_case[name] = dices
    all_d = [d for c in per_case.values() for d in c.values()]
    return {"mean_dice": float(np.mean(all_d)) if all_d else 0.0, "per_case": per_case}


# --- the run --------------------------------------------------------------------------------

def train(out, config: TrainConfig | None = None, *, chu_dir=None, resume: bool = False, device=None,
          log=print, cache=None, stop_after: int | None = None) -> dict:
    """Train (or resume) a labeling network in ``out``; returns the history.

    ``chu_dir`` is the folder of the Chu cases (default ../shared/data/chu_lumbar_t2);
    ``cache`` overrides the prepared-slices file (default ``out/slices.npz``);
    ``stop_after`` ends the run after that (1-based) epoch without changing the learning-rate
    schedule, so a run interrupted there and resumed can be reproduced exactly.
    """
    import torch

    from ..device import select_device
    from .network import build_unet, segmentation_loss

    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    ckpt = load_checkpoint(ckpt_path) if resume and ckpt_path.exists() else None
    if resume and ckpt is None:
        log(f"no checkpoint in {out}; starting a new run")
    if ckpt and config is not None and config.epochs:
        ckpt["config"].epochs = config.epochs      # a resumed run may be extended or shortened
    if ckpt and config is not None and config.ordinal_weight is not None \
            and config.ordinal_weight != ckpt["config"].ordinal_weight:
        log(f"ordinal loss weight {ckpt['config'].ordinal_weight} -> {config.ordinal_weight} from epoch "
            f"{int(ckpt['epoch']) + 2}")
        ckpt["config"].stages = list(getattr(ckpt["config"], "stages", None) or []) + [
            {"from_epoch": int(ckpt["epoch"]) + 2, "ordinal_weight": config.ordinal_weight}]
        ckpt["config"].ordinal_weight = config.ordinal_weight
    config = ckpt["config"] if ckpt else (config or TrainConfig())
    if not config.epochs:
        config.epochs = TrainConfig.epochs
    if config.ordinal_weight is None:
        config.ordinal_weight = 0.0
    device = select_device(device) if not hasattr(device, "type") else device
    start_weights = initial_weights(config.init_from) if config.init_from and not ckpt else None  # fail early
    out.mkdir(parents=True, exist_ok=True)
    chu_dir = Path(chu_dir) if chu_dir else Path(__file__).resolve().parents[3] / "shared" / "data" / "chu_lumbar_t2"
    if cache is not None and Path(cache).exists():
        cache_path = Path(cache)                  # prepared by the caller (tests, experiments)
    else:
        seeds = range(1000, 1000 + config.phantoms) if config.phantoms and phantom_available() else ()
        if config.phantoms and not seeds:
            log("spinetumor.phantom is not available: training on the real cases only")
        cache_path = build_cache(cache or out / "slices.npz", chu_dir,
                                 tuple(config.train_cases) + tuple(config.val_cases), seeds, progress=log)
    cases = load_cache(cache_path)
    train_names = [n for n in cases if n in config.train_cases or n.startswith("phantom_")]
    val_names = [n for n in config.val_cases if n in cases]

    torch.manual_seed(config.seed)
    model = build_unet(NetConfig.from_dict(config.net)).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history, start = [], 0
    if start_weights is not None:
        model.load_state_dict(start_weights)
        log(f"initialized from {config.init_from}")
    if ckpt:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        _set_rng_state(ckpt["rng"])
        history, start = ckpt["history"], int(ckpt["epoch"]) + 1
        log(f"resumed from epoch {start - 1}")
    average = None
    if config.average:
        average = WeightAverage(model, config.average, ckpt.get("average") if ckpt else None)
    steps = max(1, config.samples_per_epoch // config.batch_size)
    for epoch in range(start, config.epochs):
        if stop_after is not None and epoch >= stop_after:
            break
        t0 = time.time()
        rng, lr = start_epoch(optimizer, config.lr, epoch, config.epochs, config.seed)
        picks = draw_epoch(cases, train_names, steps * config.batch_size, rng, config.empty_slice_weight)
        model.train()
        losses = []
        for step in range(steps):
            imgs, labs = [], []
            for name, s in picks[step * config.batch_size:(step + 1) * config.batch_size]:
                img, lab = sample_slice(*cases[name], s, rng)
                img, lab = fit_canvas(img, lab, rng)
                imgs.append(img)
                labs.append(lab)
            x, y = augment_batch(torch.from_numpy(np.stack(imgs)[:, None]), torch.from_numpy(np.stack(labs)), rng,
                                 config.fov_crop, config.low_resolution, config.appearance)
            optimizer.zero_grad(set_to_none=True)
            loss = segmentation_loss(model(x.to(device)), y.to(device), ordinal_weight=config.ordinal_weight)
            loss.backward()
            optimizer.step()
            if average is not None:
                average.update(model)
            losses.append(loss.item())
        kept = average.model_like(model) if average is not None else model
        val = validate(kept, cases, val_names, device, config.val_stride) if val_names else {"mean_dice": float("nan"), "per_case": {}}
        entry = {"epoch": epoch, "loss": float(np.mean(losses)), "lr": lr, "val_dice": val["mean_dice"],
                 "val_per_case": val["per_case"], "seconds": round(time.time() - t0, 1)}
        history.append(entry)
        best = max((h["val_dice"] for h in history[:-1]), default=-1.0)
        extra = {"average": average.state} if average is not None else {}
        save_checkpoint(ckpt_path, model, optimizer, epoch, config, history, rng=_rng_state(), **extra)
        if not val_names or entry["val_dice"] > best:
            torch.save({"model": kept.state_dict(), "epoch": epoch, "val_dice": entry["val_dice"],
                        "config": json.dumps(config.to_dict())}, out / "best.pt.part")
            (out / "best.pt.part").replace(out / "best.pt")
        log(f"epoch {epoch + 1}/{config.epochs} loss {entry['loss']:.4f} val dice {entry['val_dice']:.4f} "
            f"lr {lr:.2e} ({entry['seconds']} s)")
    return {"history": history, "config": config.to_dict()}


def add_arguments(p) -> None:
    """Options of ``spinetumor train labeling``."""
    p.add_argument("--out", required=True, help="run folder (checkpoints, cache, log)")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs in all (default {TrainConfig.epochs}; with --resume, the checkpoint's)")
    p.add_argument("--samples-per-epoch", type=int, default=TrainConfig.samples_per_epoch)
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak learning rate (cosine schedule)")
    p.add_argument("--resume", action="store_true",
                   help="continue from DIR/checkpoint.pt (its data and architecture; only --epochs and --ordinal-weight may change)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or mps")
    p.add_argument("--phantoms", type=int, default=0, help="tumor-free phantoms added to training")
    p.add_argument("--depth", type=int, default=6, help="U-Net levels (6, or 4 for the ablation)")
    p.add_argument("--base", type=int, default=8, help="channels of the first level")
    p.add_argument("--no-attention", action="store_true", help="plain skip connections (ablation)")
    p.add_argument("--ordinal-weight", type=float, default=None,
                   help="weight of the ordinal level loss term (default 0; may change on --resume)")
    p.add_argument("--chu-dir", default=None, help="folder of the Chu cases")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    p.add_argument("--init", default="",
                   help="start from these weights (best.pt, checkpoint.pt or .safetensors; FILE:finder or "
                        "FILE:namer for one network of a pair) instead of random ones")
    p.add_argument("--fov-crop", type=float, default=TrainConfig.fov_crop,
                   help="probability of simulating a partial field of view (top or bottom cut)")
    p.add_argument("--low-resolution", type=float, default=TrainConfig.low_resolution,
                   help="probability of simulating a coarser in-plane resolution")
    p.add_argument("--appearance", type=float, default=TrainConfig.appearance,
                   help="probability of giving a slice another scanner's look (background, contrast, texture, sharpness)")
    p.add_argument("--average", type=float, default=TrainConfig.average,
                   help="keep an exponential moving average of the weights with this decay per step "
                        "(e.g. 0.995) and validate and keep that average (default 0: off)")
    p.add_argument("--stop-after", type=int, default=None,
                   help="stop after this epoch (1-based) without changing the schedule; resume later")


def run_from_args(args) -> dict:
    """Build the config from parsed options and train."""
    net = NetConfig(depth=args.depth, base=args.base, attention=not args.no_attention).to_dict()
    config = TrainConfig(epochs=args.epochs or 0, samples_per_epoch=args.samples_per_epoch, batch_size=args.batch_size,
                         lr=args.lr,
                         seed=args.seed, phantoms=args.phantoms, net=net, init_from=str(args.init or ""),
                         fov_crop=args.fov_crop, low_resolution=args.low_resolution, appearance=args.appearance,
                         average=args.average,
                         ordinal_weight=args.ordinal_weight if args.ordinal_weight is not None else
                         (None if args.resume else 0.0))
    if not args.resume and not config.epochs:
        config.epochs = TrainConfig.epochs
    return train(args.out, config, chu_dir=args.chu_dir, resume=args.resume, device=args.device,
                 stop_after=args.stop_after)
