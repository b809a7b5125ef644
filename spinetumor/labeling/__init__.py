"""Vertebra labeling: masks from landmarks, the attention U-Net, its training and inference.

Modules (all heavy imports happen inside functions):

* :mod:`.landmarks` - multi-label masks from centroid + corner landmarks (paper IV.A).
* :mod:`.network` - the 2D attention U-Net (pure torch) and its loss.
* :mod:`.dataset` - canonical sagittal slices at the fixed spacing, cached as .npz.
* :mod:`.train` - training with augmentation, checkpoints and resume.
* :mod:`.model` - shipping and loading the safetensors weights (sha256-checked).
* :mod:`.infer` - :func:`label_vertebrae` on any volume, mapped back to its geometry.
* :mod:`.postprocess` - anatomy constraints in 3D (one component per level, order).
"""

from __future__ import annotations

#: In-plane pixel spacing (mm) of every slice the network sees.
SPACING_MM = 1.5
#: Network input size (pixels) along both in-plane axes: 256 x 1.5 mm = 384 mm field of view.
TILE = 256
#: Output channels: background + the seven vertebral levels T11..L5.
NUM_CLASSES = 8


# One cancellation type for the whole engine (see spinetumor.progress).
from ..progress import Cancelled  # noqa: E402,F401
