"""Classifying one tumor: :func:`classify_tumor` (type and calibrated probabilities)."""

from __future__ import annotations

import numpy as np

from ..volume import Volume
from . import CLASSES


def slice_logits_of(model, volume: Volume, tumor_mask: Volume, canal: Volume | None = None,
                    cord: Volume | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-slice logits ``[n, 3]`` and tumor areas ``[n]`` (mm^2) of a tumor, before calibration."""
    import torch

    from ..device import exact_inference
    from .dataset import network_input, tumor_patches

    patches = tumor_patches(volume, tumor_mask, canal, cord)
    x = torch.from_numpy(network_input(patches, model.channels)).to(model.device)
    with exact_inference():
        logits = model.net(x).float().cpu().numpy()
    return logits, patches.area_mm2


def classify_tumor(volume: Volume, tumor_mask: Volume, canal: Volume | None = None, cord: Volume | None = None,
                   model=None, device=None) -> tuple[str, dict]:
    """The compartment of the tumor in ``tumor_mask`` (every non-zero voxel) and its probabilities.

    ``canal`` (dural sac) and ``cord`` masks are used by 4-channel models only (without
    them such a model sees blank channels, as in part of its training); the shipped
    2-channel model needs the image and the tumor mask alone. ``model`` is a loaded
    :class:`~.model.TumorTypeModel`, a weights path, or None for the shipped model;
    ``device`` as :func:`spinetumor.device.select_device`. Masks on other grids are
    resampled onto ``volume``'s. Returns ``(type, {type: probability})``, the
    probabilities calibrated by the model's temperature and summing to 1.
    """
    from ..device import select_device
    from .calibration import combine_slices
    from .model import TumorTypeModel, load_model

    if not isinstance(model, TumorTypeModel):
        model = load_model(model, device=select_device(device))
    logits, areas = slice_logits_of(model, volume, tumor_mask, canal, cord)
    probs = np.exp(combine_slices(logits, areas, model.temperature))
    probs = probs / probs.sum()
    result = {name: float(p) for name, p in zip(CLASSES, probs)}
    return CLASSES[int(np.argmax(probs))], result
