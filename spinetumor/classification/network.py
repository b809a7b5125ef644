"""The tumor-type CNN of the paper (Section III.C): six convolutions, four max-poolings, two dense layers.

Layout for a ``[B, C, 64, 64]`` patch (``w`` = ``width``):

====================  ==========================  ===========
block                 layers                      output
====================  ==========================  ===========
1                     conv 3x3 (w), max-pool 2    w x 32 x 32
2                     conv 3x3 (2w), max-pool 2   2w x 16 x 16
3                     conv 3x3 (4w) x 2, pool 2   4w x 8 x 8
4                     conv 3x3 (6w) x 2, pool 2   6w x 4 x 4
head                  dense (hidden), dense (3)   3 logits
====================  ==========================  ===========

Each convolution is followed by batch normalization and ReLU; dropout precedes the
last dense layer. With ``w = 12`` and ``hidden = 64`` (the defaults) the network has
0.19 M parameters (0.75 MB as float32), small enough to train on a CPU in minutes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from . import CLASSES, PATCH


@dataclass(frozen=True)
class CNNConfig:
    """Architecture hyper-parameters (stored in checkpoints and the model manifest)."""

    in_channels: int = 2
    width: int = 12
    hidden: int = 64
    dropout: float = 0.3
    patch: int = PATCH
    classes: int = len(CLASSES)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "CNNConfig":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def build_cnn(config: CNNConfig | None = None):
    """The CNN as a ``torch.nn.Sequential`` returning logits ``[B, classes]``."""
    import torch.nn as nn

    c = config or CNNConfig()
    if c.patch % 16:
        raise ValueError(f"patch size must be a multiple of 16 (four 2x poolings), got {c.patch}")
    w = c.width

    def conv(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    layers = []
    layers += conv(c.in_channels, w) + [nn.MaxPool2d(2)]
    layers += conv(w, 2 * w) + [nn.MaxPool2d(2)]
    layers += conv(2 * w, 4 * w) + conv(4 * w, 4 * w) + [nn.MaxPool2d(2)]
    layers += conv(4 * w, 6 * w) + conv(6 * w, 6 * w) + [nn.MaxPool2d(2)]
    side = c.patch // 16
    layers += [nn.Flatten(), nn.Linear(6 * w * side * side, c.hidden), nn.ReLU(inplace=True),
               nn.Dropout(c.dropout), nn.Linear(c.hidden, c.classes)]
    return nn.Sequential(*layers)


def count_layers(model) -> dict:
    """Number of convolution, max-pooling and dense layers (the paper's 6 / 4 / 2)."""
    import torch.nn as nn

    kinds = {"conv": nn.Conv2d, "maxpool": nn.MaxPool2d, "dense": nn.Linear}
    return {name: sum(isinstance(m, cls) for m in model.modules()) for name, cls in kinds.items()}
