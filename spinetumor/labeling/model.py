"""Shipping and loading the labeling network: safetensors weights plus a JSON manifest.

The manifest (``vertebra_labeling.json`` beside the weights) records the sha256 of the
weights file, the architecture, the input spacing, the training data and split, the
command that produced the model, its validation metrics and the date. :func:`load_model`
refuses weights whose sha256 differs from the manifest's. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import SPACING_MM, TILE

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "vertebra_labeling.safetensors"


class ModelError(RuntimeError):
    """The model files are missing, altered or inconsistent; the message says which and why."""


def sha256_of(path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_path(weights) -> Path:
    """The manifest beside a weights file (same name, ``.json``)."""
    return Path(weights).with_suffix(".json")


def verified_manifest(weights, what: str = "model") -> dict:
    """The manifest beside ``weights`` after checking that both exist and the sha256 matches.

    Every shipped model is loaded through this (labeling, tumor type, tumor network, tumor forest).
    Raises :class:`ModelError` naming ``what`` and the file.
    """
    weights = Path(weights)
    if not weights.exists():
        raise ModelError(f"{weights}: {what} weights not found")
    mpath = manifest_path(weights)
    if not mpath.exists():
        raise ModelError(f"{mpath}: {what} manifest not found")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ModelError(f"{mpath}: unreadable {what} manifest ({error})") from None
    expected, actual = str(manifest.get("sha256")), sha256_of(weights)
    if expected != actual:
        raise ModelError(f"{weights}: sha256 {actual[:12]}... does not match the manifest's "
                         f"{expected[:12]}...; the weights were altered or belong to another model")
    return manifest


def load_manifest(weights=None) -> dict:
    """The manifest of ``weights`` (default: the shipped model)."""
    path = manifest_path(weights or DEFAULT_WEIGHTS)
    if not path.exists():
        raise ModelError(f"{path}: model manifest not found")
    return json.loads(path.read_text(encoding="utf-8"))


def load_model(path=None, device=None):
    """Load the labeling network from safetensors weights after checking their sha256.

    Returns ``(model, manifest)`` with the model in eval mode on ``device`` (a torch
    device or a name; default CPU). Raises :class:`ModelError` when the weights or the
    manifest are missing or the checksum does not match.
    """
    import torch
    from safetensors.torch import load_file

    from .network import NetConfig, build_unet, for_inference

    weights = Path(path) if path else DEFAULT_WEIGHTS
    manifest = verified_manifest(weights)
    if abs(float(manifest.get("input_spacing_mm", SPACING_MM)) - SPACING_MM) > 1e-6:
        raise ModelError(f"{weights}: trained at {manifest.get('input_spacing_mm')} mm, this engine uses {SPACING_MM} mm")
    model = build_unet(NetConfig.from_dict(manifest["architecture"]))
    model.load_state_dict(load_file(str(weights)))
    device = torch.device(device) if device is not None else torch.device("cpu")
    return for_inference(model, device), manifest


def export_model(state_dict, net_config: dict, out_weights, manifest_extra: dict) -> dict:
    """Write ``state_dict`` as safetensors and its manifest (sha256, architecture, spacing, extras)."""
    from safetensors.torch import save_file

    from ..labels import VERTEBRAE

    out_weights = Path(out_weights)
    out_weights.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(out_weights))
    manifest = {
        "name": "vertebra_labeling",
        "sha256": sha256_of(out_weights),
        "size_bytes": out_weights.stat().st_size,
        "architecture": dict(net_config),
        "input_spacing_mm": SPACING_MM,
        "tile": TILE,
        "labels": {"0": "background", **{str(lab.value): lab.key for lab in VERTEBRAE}},
        **manifest_extra,
    }
    manifest_path(out_weights).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def found_and_named(finder, namer):
    """One labeling network made of two: ``finder`` decides where the vertebral bodies are,
    ``namer`` which level each is.

    Its output is the log of: the finder's background probability, and the namer's level
    probabilities (renormalized over the levels) times the finder's vertebra probability, so
    :func:`~spinetumor.labeling.infer.predict_probabilities`' softmax gives those back. Meant for
    a finder fine-tuned on other scanners' looks (``train labeling --appearance``), which finds
    more of a body but names less steadily, paired with a namer that names steadily. The two are
    its submodules, so ``.to(device)`` and ``.eval()`` on it reach both.
    """
    import torch
    from torch import nn

    class FoundAndNamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.finder, self.namer = finder, namer

        def forward(self, x):
            found = torch.softmax(self.finder(x), dim=1)
            named = torch.softmax(self.namer(x), dim=1)[:, 1:]
            levels = named / named.sum(dim=1, keepdim=True).clamp_min(1e-6) * (1.0 - found[:, :1])
            return torch.log(torch.cat([found[:, :1], levels], dim=1).clamp_min(1e-8))

    return FoundAndNamed()
