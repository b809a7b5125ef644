"""Tumor probability network: a small 2D attention U-Net whose output is one forest feature.

Why a network in front of the forest: with hand-made local features (intensities,
filters, distances, fuzzy c-means memberships) the per-voxel random forest reached a
tumor Dice of about 0.2 on held-out phantoms (``docs/benchmarks.md``). Phantom and real
tumors are close in intensity to CSF, cord and epidural fat; what marks them is context
-- a focal mass where the sac, the cord or the fat should run smoothly -- which a
convolutional network learns from examples and a forest on local features does not.
The forest still makes the per-voxel decision (the paper's method); the network's
probability is one of its features (``net_probability``), next to the fuzzy c-means
memberships, so the paper's ablation (forest alone vs FCM + forest, with and without
denoising) is still measured the same way.

Input, per sagittal slice of the canal box on the working grid (:mod:`.features`),
resampled in-plane to :data:`NET_MM`: the slice and its two neighbours, divided by the
CSF median (the features' normalisation, clipped to [0, :data:`CLIP`]), and the thecal sac
mask -- four channels. Output: tumor probability per pixel, resampled back to the
working grid. The architecture is the labeling network's (:func:`~spinetumor.labeling.network.build_unet`)
with :data:`NET_CONFIG`.

The weights ship as ``spinetumor/models/tumor_net.safetensors`` beside a JSON manifest
(sha256, architecture, input spacing, training data, command, validation metrics);
:func:`load_tumor_net` refuses a file whose sha256 differs from its manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labeling.model import ModelError, manifest_path, sha256_of, verified_manifest

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_NET = MODELS_DIR / "tumor_net.safetensors"
#: In-plane spacing (mm) the network sees.
NET_MM = 1.0
#: Normalised intensities (CSF median = 1) are clipped to [0, CLIP].
CLIP = 2.0
#: Input channels: previous, current and next sagittal slice, and the sac mask.
IN_CHANNELS = 4
#: Network shape: five levels (a 16-pixel bottleneck cell sees about 14 cm of spine, several
#: vertebral levels above and below a mass), 12 channels at the first level (about 1 s per
#: batch of 16 patches of 128 x 96 on two CPU cores).
NET_CONFIG = {"in_channels": IN_CHANNELS, "num_classes": 2, "depth": 5, "base": 12, "max_channels": 128,
              "attention": True}


@dataclass
class TumorNet:
    """The network in eval mode on ``device``, with its manifest and file path."""

    net: object
    manifest: dict
    device: object
    path: str

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("sha256", ""))


def load_tumor_net(path=None, device=None) -> TumorNet:
    """Load the tumor network (default: the shipped one) after checking its sha256 against the manifest.

    ``device``: a torch device or a name (``auto``, ``cpu``, ``cuda``, ``mps``); None means
    ``auto`` (:func:`spinetumor.device.select_device`: the GPU when there is one).
    Raises :class:`~spinetumor.labeling.model.ModelError` when the weights or manifest are
    missing, the checksum differs, or the input spacing or channels are not this engine's.
    """
    import torch
    from safetensors.torch import load_file

    from ..device import select_device
    from ..labeling.network import NetConfig, build_unet, for_inference

    weights = Path(path) if path else DEFAULT_NET
    manifest = verified_manifest(weights, "tumor network")
    config = NetConfig.from_dict(manifest.get("architecture", {}))
    if abs(float(manifest.get("input_spacing_mm", -1)) - NET_MM) > 1e-6 or config.in_channels != IN_CHANNELS:
        raise ModelError(f"{weights}: trained for another input (spacing or channels) than this engine uses")
    net = build_unet(config)
    net.load_state_dict(load_file(str(weights)))
    device = device if isinstance(device, torch.device) else select_device(device)
    return TumorNet(for_inference(net, device), manifest, device, str(weights))


def export_tumor_net(state_dict, out_weights, manifest_extra: dict) -> dict:
    """Write ``state_dict`` as safetensors and its manifest (sha256, architecture, spacing, extras)."""
    from safetensors.torch import save_file

    from ..io import atomic_path, write_json

    out_weights = Path(out_weights)
    out_weights.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_weights) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(tmp))
    manifest = {"name": "tumor_net", "sha256": sha256_of(out_weights), "size_bytes": out_weights.stat().st_size,
                "architecture": dict(NET_CONFIG), "input_spacing_mm": NET_MM, "clip": CLIP,
                "channels": ["slice above", "slice", "slice below", "thecal sac"], **manifest_extra}
    write_json(manifest, manifest_path(out_weights))
    return manifest


# --------------------------------------------------------------------------- input and output

def to_net_grid(array: np.ndarray, spacing, order: int = 1) -> np.ndarray:
    """An [s, r, c] working-grid array resampled in-plane to :data:`NET_MM` (slices unchanged)."""
    from scipy import ndimage

    zoom = (1.0, float(spacing[1]) / NET_MM, float(spacing[2]) / NET_MM)
    if abs(zoom[1] - 1) < 1e-3 and abs(zoom[2] - 1) < 1e-3:
        return np.asarray(array, np.float32)
    return ndimage.zoom(np.asarray(array, np.float32), zoom, order=order, mode="nearest", grid_mode=True)


def from_net_grid(array: np.ndarray, shape) -> np.ndarray:
    """A network-grid [s, r, c] array resampled back to the working grid's ``shape``."""
    from scipy import ndimage

    if tuple(array.shape) == tuple(shape):
        return np.asarray(array, np.float32)
    zoom = (1.0, shape[1] / array.shape[1], shape[2] / array.shape[2])
    out = ndimage.zoom(np.asarray(array, np.float32), zoom, order=1, mode="nearest", grid_mode=True)
    return out[:, :shape[1], :shape[2]]


def net_channels(norm: np.ndarray, sac: np.ndarray) -> np.ndarray:
    """The four input channels [s, 4, r, c] (float32) of every slice of a network-grid stack."""
    x = np.clip(norm, 0.0, CLIP).astype(np.float32)
    above = np.concatenate([x[:1], x[:-1]])
    below = np.concatenate([x[1:], x[-1:]])
    return np.stack([above, x, below, (sac > 0.5).astype(np.float32)], axis=1)


def channel_probability(net, x: np.ndarray, device, multiple: int, batch: int = 8, cancel=None) -> np.ndarray:
    """Tumor probability [n, r, c] of a network on input channels ``x`` [n, 4, r, c] (network grid).

    Rows and columns are zero-padded to a multiple of the network's pooling factor
    (``multiple``) and cropped back; ``batch`` slices go through the network at a time.
    """
    import torch

    from ..device import exact_inference
    from ..progress import check_cancel

    n, _, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (0, -h % multiple), (0, -w % multiple)))
    out = np.empty((n, h, w), np.float32)
    net.eval()
    with exact_inference():
        for start in range(0, n, batch):
            check_cancel(cancel)
            logits = net(torch.from_numpy(np.ascontiguousarray(x[start:start + batch])).to(device))
            out[start:start + batch] = torch.softmax(logits.float(), dim=1)[:, 1, :h, :w].cpu().numpy()
    return out


def slice_probability(net, x: np.ndarray, device, multiple: int, slices=None, batch: int = 8,
                      cancel=None) -> np.ndarray:
    """Tumor probability [n, r, c] of the ``slices`` (indices, default all) of input channels
    ``x`` [n, 4, r, c]; the other slices stay 0.

    Each slice's channels already hold its neighbours, so a slice's probability does not
    depend on which other slices are predicted: skipping slices nobody reads saves time only.
    """
    index = np.arange(len(x)) if slices is None else np.asarray(slices, int)
    out = np.zeros(x[:, 0].shape, np.float32)
    if len(index):
        out[index] = channel_probability(net, x[index], device, multiple, batch, cancel)
    return out


def predict_probability(model: TumorNet, norm: np.ndarray, sac: np.ndarray, spacing, batch: int = 4,
                        cancel=None, slices=None) -> np.ndarray:
    """Tumor probability on the working grid of a normalised [s, r, c] stack with its sac mask.

    ``norm`` is the image divided by the CSF median, ``spacing`` the working grid's (s, r, c)
    spacing in mm, ``slices`` the indices of the slices to predict (default all; the others
    stay 0). Slices are padded to a multiple of the network's pooling factor.
    """
    from ..labeling.network import NetConfig, min_input_multiple

    config = NetConfig.from_dict(model.manifest.get("architecture", NET_CONFIG))
    x = net_channels(to_net_grid(norm, spacing), to_net_grid(sac.astype(np.float32), spacing))
    out = slice_probability(model.net, x, model.device, min_input_multiple(config), slices, batch, cancel)
    return from_net_grid(out, norm.shape)
