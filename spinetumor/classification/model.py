"""Shipping and loading the tumor-type CNN: safetensors weights plus a JSON manifest.

The manifest (``tumor_type_cnn.json`` beside the weights) records the weights' sha256,
the architecture, the patch geometry, the calibration temperature, the training data
and command, the validation metrics (confusion matrix included) and the date.
:func:`load_model` refuses weights whose sha256 differs from the manifest's; nothing is
ever unpickled. The checksum and manifest helpers are those of the labeling model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..labeling.model import ModelError, manifest_path, sha256_of, verified_manifest
from . import CLASSES, PATCH, SPACING_MM

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "tumor_type_cnn.safetensors"

__all__ = ["DEFAULT_WEIGHTS", "ModelError", "TumorTypeModel", "export_model", "load_model"]


@dataclass
class TumorTypeModel:
    """The network in eval mode, with its calibration temperature, input channels and manifest."""

    net: object
    temperature: float
    channels: int
    manifest: dict
    device: object


def load_model(path=None, device=None) -> TumorTypeModel:
    """Load the CNN from safetensors weights (default: the shipped model) after checking their sha256.

    Raises :class:`ModelError` when the weights or the manifest are missing, the checksum
    does not match, or the patch geometry or classes differ from this engine's.
    """
    import torch
    from safetensors.torch import load_file

    from .network import CNNConfig, build_cnn

    weights = Path(path) if path else DEFAULT_WEIGHTS
    manifest = verified_manifest(weights)
    if (abs(float(manifest.get("input_spacing_mm", -1)) - SPACING_MM) > 1e-6 or int(manifest.get("patch", -1)) != PATCH
            or list(manifest.get("classes", [])) != list(CLASSES)):
        raise ModelError(f"{weights}: trained for other patches or classes than this engine uses")
    config = CNNConfig.from_dict(manifest["architecture"])
    net = build_cnn(config)
    net.load_state_dict(load_file(str(weights)))
    device = torch.device(device) if device is not None else torch.device("cpu")
    return TumorTypeModel(net.to(device).eval(), float(manifest["temperature"]), config.in_channels, manifest, device)


def export_model(state_dict, net_config: dict, temperature: float, out_weights, manifest_extra: dict) -> dict:
    """Write ``state_dict`` as safetensors and its manifest (sha256, architecture, patch, temperature, extras)."""
    from safetensors.torch import save_file

    out_weights = Path(out_weights)
    out_weights.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(out_weights))
    manifest = {
        "name": "tumor_type_cnn",
        "sha256": sha256_of(out_weights),
        "size_bytes": out_weights.stat().st_size,
        "architecture": dict(net_config),
        "input_spacing_mm": SPACING_MM,
        "patch": PATCH,
        "classes": list(CLASSES),
        "temperature": float(temperature),
        **manifest_extra,
    }
    manifest_path(out_weights).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
