"""Training checkpoints shared by every trainer: written atomically, read without unpickling.

A checkpoint holds the model and optimizer state, the epoch, the training configuration and
history (as JSON text) and any extra plain values a trainer needs to resume exactly (e.g. RNG
states). ``torch.load(..., weights_only=True)`` reads it back, so nothing is unpickled.
:func:`start_epoch` makes every epoch's random draws and learning rate depend on (seed, epoch)
only, so a resumed run is the run that was not interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path


def save_checkpoint(path, model, optimizer, epoch: int, config, history: list, **extra) -> Path:
    """Write model, optimizer, epoch, ``config.to_dict()``, history and ``extra`` to ``path`` atomically."""
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                "config": json.dumps(config.to_dict()), "history": json.dumps(history), **extra}, tmp)
    tmp.replace(path)
    return path


def read_checkpoint(path, config_class) -> dict:
    """A checkpoint with its config rebuilt by ``config_class.from_dict`` and its history as a list."""
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["config"] = config_class.from_dict(json.loads(ckpt["config"]))
    ckpt["history"] = json.loads(ckpt["history"])
    return ckpt


def start_epoch(optimizer, peak_lr: float, epoch: int, epochs: int, seed: int):
    """Seed torch and set the cosine learning rate for ``epoch``; returns ``(numpy Generator, lr)``."""
    import math

    import numpy as np
    import torch

    torch.manual_seed(seed * 100003 + epoch)
    lr = peak_lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return np.random.default_rng([seed, epoch]), lr


def restore(ckpt: dict | None, model, optimizer, log=print) -> tuple[list, int]:
    """Load a checkpoint's model and optimizer state; returns ``(history, first epoch to run)``
    (``([], 0)`` without a checkpoint)."""
    if not ckpt:
        return [], 0
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    start = int(ckpt["epoch"]) + 1
    log(f"resumed after epoch {start}")
    return ckpt["history"], start
