"""nets/pretrained.py: the one EfficientNet-Lite0 loader behind the metrics' effnet features and DP-MEPF's
perceptual features."""

from __future__ import annotations

import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.metrics.features import EffNetFeatureNet
from ganvae.nets.pretrained import EFFNET_LITE0_WIDTHS, PerceptualFeatures, effnet_lite0


def test_metric_features_are_the_perceptual_nets_head_layer():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    metric = EffNetFeatureNet().features(x)  # grey -> RGB, 224 px, (255 x - 127) / 128, pooled head
    layers = PerceptualFeatures(size=224)(x)
    assert [t.shape[1] for t in layers] == list(EFFNET_LITE0_WIDTHS)
    torch.testing.assert_close(layers[-1], metric, rtol=1e-4, atol=1e-4)


def test_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(GanvaeError, match="effnet weights file not found"):
        effnet_lite0(tmp_path / "nope.pth")
    with pytest.raises(GanvaeError, match="image size 8 out of range"):
        PerceptualFeatures(size=8)
