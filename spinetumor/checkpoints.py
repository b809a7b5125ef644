"""Training checkpoints shared by every trainer: written atomically, read without unpickling.

A checkpoint holds the model and optimizer state, the epoch, the training configuration and
history (as JSON text) and any extra plain values a trainer needs to resume exactly (e.g. RNG
states). ``torch.load(..., weights_only=True)`` reads it back, so nothing is unpickled.
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
