"""Small CNNs used as offline feature extractors for the metrics.

Both take float images in ``[0, 1]`` of shape ``(B, C, H, W)`` at their native
size (the :mod:`ganvae.metrics.features` wrappers resize and convert channels);
they normalise internally, so callers never need to know a mean/std.

* :class:`DigitClassifier`: 1 x 28 x 28 digits -> 10 logits; ``features`` is the
  128-d penultimate layer (after ReLU, before dropout).
* :class:`ShapesNet`: 3 x 32 x 32 ``shapes`` images -> shape logits and factor
  regressions; ``features`` is the 256-d penultimate layer.
* :class:`ConvClassifier`: the digit net's design for any C x S x S labelled data with K
  classes (``ganvae featnet train``); ``features`` is its 128-d penultimate layer.

The shipped two are trained by ``python -m ganvae.metrics.train_feature_net mnist|shapes``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DigitClassifier", "ShapesNet", "ConvClassifier", "SHAPE_SYMMETRY", "ARCHITECTURES"]


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DigitClassifier(nn.Module):
    """conv32-conv32-pool-conv64-conv64-pool-fc128-fc10 with BatchNorm and dropout (~0.47 M parameters)."""

    input_channels = 1
    input_size = 28
    feature_dim = 128
    num_classes = 10

    def __init__(self, dropout: float = 0.3):
        super().__init__()
        self.body = nn.Sequential(
            _conv(1, 32), _conv(32, 32), nn.MaxPool2d(2),  # 14 x 14
            _conv(32, 64), _conv(64, 64), nn.MaxPool2d(2),  # 7 x 7
            nn.Dropout2d(0.1 if dropout > 0 else 0.0),
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 7 * 7, self.feature_dim, bias=False),
            nn.BatchNorm1d(self.feature_dim), nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, self.num_classes)

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.1307) / 0.3081  # MNIST pixel mean / std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [0, 1] -> (B, 128) penultimate activations."""
        return self.fc(self.body(self._normalise(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [0, 1] -> (B, 10) logits."""
        return self.head(self.drop(self.features(x)))


# Rotational symmetry order of each shape class (square, ellipse, triangle): the
# rotation factor is only identifiable modulo 2*pi/k, so the net predicts
# (cos k*theta, sin k*theta) with a separate head per shape.
SHAPE_SYMMETRY = (4, 2, 3)


class ShapesNet(nn.Module):
    """CNN for 3 x 32 x 32 ``shapes`` images predicting all six generative factors.

    ``forward`` returns a dict:

    * ``shape``: (B, 3) class logits (square, ellipse, triangle);
    * ``scale``, ``x``, ``y``: (B,) regressions in the factor's own units;
    * ``rotation``: (B, 3, 2) per-shape (cos k theta, sin k theta), k = SHAPE_SYMMETRY;
    * ``hue``: (B, 2) (cos 2 pi hue, sin 2 pi hue).
    """

    input_channels = 3
    input_size = 32
    feature_dim = 256
    num_classes = 3

    # regression targets are standardised with these (mean, std) during training
    SCALE_NORM = (0.75, 0.5 / math.sqrt(12))
    XY_NORM = (0.5, 1.0 / math.sqrt(12))

    def __init__(self, dropout: float = 0.2):
        super().__init__()
        self.body = nn.Sequential(
            _conv(3, 32), _conv(32, 32), nn.MaxPool2d(2),  # 16
            _conv(32, 64), _conv(64, 64), nn.MaxPool2d(2),  # 8
            _conv(64, 128), nn.MaxPool2d(2),  # 4
        )
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(128 * 4 * 4, self.feature_dim, bias=False),
            nn.BatchNorm1d(self.feature_dim), nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(dropout)
        # 3 shape logits + scale + x + y + 3x2 rotation + 2 hue = 14
        self.head = nn.Linear(self.feature_dim, 14)

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return (x - 0.1) / 0.3  # images are mostly black; a fixed, rough standardisation

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) in [0, 1] -> (B, 256) penultimate activations."""
        return self.fc(self.body(self._normalise(x)))

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode(self.raw(x))

    @classmethod
    def decode(cls, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split the 14 raw outputs into named factor predictions (in factor units)."""
        return {
            "shape": out[:, 0:3],
            "scale": out[:, 3] * cls.SCALE_NORM[1] + cls.SCALE_NORM[0],
            "x": out[:, 4] * cls.XY_NORM[1] + cls.XY_NORM[0],
            "y": out[:, 5] * cls.XY_NORM[1] + cls.XY_NORM[0],
            "rotation": out[:, 6:12].reshape(-1, 3, 2),
            "hue": out[:, 12:14],
        }

    @classmethod
    def targets(cls, factors: torch.Tensor) -> dict[str, torch.Tensor]:
        """Factor rows (B, 6) -> the training targets in the same layout as :meth:`decode`."""
        shape = factors[:, 0].long()
        k = torch.tensor(SHAPE_SYMMETRY, dtype=factors.dtype, device=factors.device)[shape]
        rot = factors[:, 2] * k
        hue = factors[:, 5] * (2 * math.pi)
        return {
            "shape": shape,
            "scale": factors[:, 1],
            "x": factors[:, 3],
            "y": factors[:, 4],
            "rotation": torch.stack([torch.cos(rot), torch.sin(rot)], 1),  # for the true shape's head
            "hue": torch.stack([torch.cos(hue), torch.sin(hue)], 1),
        }

    @classmethod
    def loss(cls, out: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        p, t = cls.decode(out), cls.targets(factors)
        ce = F.cross_entropy(p["shape"], t["shape"])
        reg = (
            F.mse_loss(out[:, 3], (t["scale"] - cls.SCALE_NORM[0]) / cls.SCALE_NORM[1])
            + F.mse_loss(out[:, 4], (t["x"] - cls.XY_NORM[0]) / cls.XY_NORM[1])
            + F.mse_loss(out[:, 5], (t["y"] - cls.XY_NORM[0]) / cls.XY_NORM[1])
        )
        rot = p["rotation"][torch.arange(out.shape[0], device=out.device), t["shape"]]
        circ = 2 * F.mse_loss(rot, t["rotation"]) + 2 * F.mse_loss(p["hue"], t["hue"])
        return ce + reg + circ


class ConvClassifier(nn.Module):
    """The :class:`DigitClassifier` design for any ``channels x size x size`` data with ``num_classes`` classes.

    Stages of conv-conv-maxpool (widths 32, 64, 128, 128, ...) halve the image until it is at most 7 x 7
    (28 -> 14 -> 7; 32 -> 16 -> 8 -> 4; 64 -> ... -> 4; 8 -> 4), then fc ``feature_dim`` (the features)
    and the class head. Inputs are standardised with the training data's per-channel ``mean``/``std``
    (buffers, saved with the weights), so a saved net needs nothing else to run.
    """

    def __init__(self, channels: int, size: int, num_classes: int, feature_dim: int = 128, dropout: float = 0.3):
        super().__init__()
        self.input_channels, self.input_size = channels, size
        self.num_classes, self.feature_dim = num_classes, feature_dim
        layers, cin, s, i = [], channels, size, 0
        while s > 7:
            cout = min(32 * 2**i, 128)
            layers += [_conv(cin, cout), _conv(cout, cout), nn.MaxPool2d(2)]
            cin, s, i = cout, s // 2, i + 1
        self.body = nn.Sequential(*layers, nn.Dropout2d(0.1 if dropout > 0 else 0.0))
        self.fc = nn.Sequential(
            nn.Flatten(), nn.Linear(cin * s * s, feature_dim, bias=False),
            nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True),
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, num_classes)
        self.register_buffer("mean", torch.zeros(channels))  # per-channel pixel mean of the training images
        self.register_buffer("std", torch.ones(channels))    # and their standard deviation

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> (B, feature_dim) penultimate activations."""
        x = (x - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return self.fc(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [0, 1] -> (B, num_classes) logits."""
        return self.head(self.drop(self.features(x)))


ARCHITECTURES = {"DigitClassifier": DigitClassifier, "ShapesNet": ShapesNet, "ConvClassifier": ConvClassifier}
