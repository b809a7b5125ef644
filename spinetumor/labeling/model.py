"""Shipping and loading the labeling network: safetensors weights plus a JSON manifest.

The manifest (``vertebra_labeling.json`` beside the weights) records the sha256 of the
weights file, the architecture, the input spacing, the training data and split, the
command that produced the model, its validation metrics and the date. :func:`load_model`
refuses weights whose sha256 differs from the manifest's. Nothing is ever unpickled.

A manifest with ``"composition": "found_and_named"`` describes two networks of the same
architecture in one file (tensors ``finder.*`` and ``namer.*``), joined by :func:`found_and_named`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from . import SPACING_MM, TILE

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_WEIGHTS = MODELS_DIR / "vertebra_labeling.safetensors"
FOUND_AND_NAMED = "found_and_named"     # manifest composition: two networks, see found_and_named


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
    config = NetConfig.from_dict(manifest["architecture"])
    composition = manifest.get("composition", "single")
    if composition == "single":
        model = build_unet(config)
    elif composition == FOUND_AND_NAMED:
        model = found_and_named(build_unet(config), build_unet(config))
    else:
        raise ModelError(f"{weights}: unknown model composition {composition!r} in the manifest")
    model.load_state_dict(load_file(str(weights)))
    device = torch.device(device) if device is not None else torch.device("cpu")
    return for_inference(model, device), manifest


def export_model(state_dict, net_config: dict, out_weights, manifest_extra: dict, composition: str = "single") -> dict:
    """Write ``state_dict`` as safetensors and its manifest (sha256, architecture, spacing, extras).

    ``composition``: ``"single"`` (one U-Net) or ``"found_and_named"`` (the state dict of
    :func:`found_and_named`, two U-Nets of architecture ``net_config``).
    """
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
        "composition": composition,
        "input_spacing_mm": SPACING_MM,
        "tile": TILE,
        "labels": {"0": "background", **{str(lab.value): lab.key for lab in VERTEBRAE}},
        **manifest_extra,
    }
    manifest_path(out_weights).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def found_and_named(finder, namer):
    """One labeling network made of two: a voxel is vertebral body where either network finds
    one, and ``namer`` decides which level.

    Its output is the log of: the smaller of the two background probabilities, and the namer's
    level probabilities (renormalized over the levels) times one minus that background, so
    :func:`~spinetumor.labeling.infer.predict_probabilities`' softmax gives those back. Meant for
    a finder fine-tuned on other scanners' looks (``train labeling --appearance``), which finds
    more of a body but names less steadily, paired with a namer that names steadily; each finds
    bodies (or patches of one) that the other misses on some scanners. The two are its
    submodules, so ``.to(device)`` and ``.eval()`` on it reach both.
    """
    import torch
    from torch import nn

    class FoundAndNamed(nn.Module):
        def __init__(self):
            super().__init__()
            self.finder, self.namer = finder, namer

        def forward(self, x):
            named = torch.softmax(self.namer(x), dim=1)
            background = torch.minimum(torch.softmax(self.finder(x), dim=1)[:, :1], named[:, :1])
            levels = named[:, 1:] / named[:, 1:].sum(dim=1, keepdim=True).clamp_min(1e-6) * (1.0 - background)
            return torch.log(torch.cat([background, levels], dim=1).clamp_min(1e-8))

    return FoundAndNamed()
