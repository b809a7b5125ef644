"""Tumor-type classification (paper Section III.C): a small CNN on tumor-centred sagittal patches.

The network (:mod:`.network`) has the paper's six convolution layers, four max-pooling
layers and two dense layers. It sees, for every sagittal slice a tumor appears in, a
patch of :data:`PATCH` x :data:`PATCH` pixels at :data:`SPACING_MM` mm centred on the
tumor's section in that slice, with the tumor mask (and optionally the dural sac and
cord masks) as extra channels, and outputs intramedullary / intradural-extramedullary /
extradural. Per-slice log-probabilities are combined per tumor, weighted by the tumor's
area in each slice, and calibrated by temperature scaling (:mod:`.calibration`).

Modules (heavy imports happen inside functions):

* :mod:`.network` - the CNN (pure torch).
* :mod:`.dataset` - patches from volumes, phantom cases, the cache, augmentation.
* :mod:`.calibration` - slice combination, temperature scaling, ECE, NLL.
* :mod:`.train` - deterministic, resumable training (``spinetumor train classification``).
* :mod:`.model` - shipping and loading the safetensors weights (sha256-checked).
* :mod:`.infer` - :func:`~.infer.classify_tumor`.
* :mod:`.ship` - a training run to the shipped weights and manifest.
* :mod:`.commands` - ``spinetumor classify`` and ``spinetumor train classification``.

The shipped model uses two channels (image, tumor mask): the sac and cord channels did
not help with true masks and hurt with segmented ones (docs/benchmarks.md).
"""

from __future__ import annotations

from ..labels import TUMOR_TYPE_NAMES

#: In-plane pixel spacing (mm) of the patches the network sees.
SPACING_MM = 1.0
#: Network input size (pixels): 64 x 1 mm around the tumor's section.
PATCH = 64
#: Size of the stored crops (pixels): larger than PATCH so augmentation can re-centre and rotate.
CROP = 96
#: Output classes, in the order of the network's outputs.
CLASSES = TUMOR_TYPE_NAMES
