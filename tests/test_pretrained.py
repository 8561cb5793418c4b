"""nets/pretrained.py: the one EfficientNet-Lite0 loader behind the metrics' effnet features and DP-MEPF's
perceptual features."""

from __future__ import annotations

import pytest
import torch

from ganvae.errors import GanvaeError
from ganvae.metrics.features import EffNetFeatureNet
from ganvae.nets.pretrained import EFFNET_LITE0_WIDTHS, PerceptualFeatures, effnet_lite0, perceptual_sizes


def test_metric_features_are_the_perceptual_nets_head_layer():
    x = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    metric = EffNetFeatureNet().features(x)  # grey -> RGB, 224 px, (255 x - 127) / 128, pooled head
    layers = PerceptualFeatures(size=224)(x)
    assert [t.shape[1] for t in layers] == list(EFFNET_LITE0_WIDTHS)
    torch.testing.assert_close(layers[-1], metric, rtol=1e-4, atol=1e-4)


def test_missing_weights_file_is_one_clear_error(tmp_path):
    with pytest.raises(GanvaeError, match="effnet weights file not found"):
        effnet_lite0(tmp_path / "nope.pth")
    for size in (8, 48, 1024):
        with pytest.raises(GanvaeError, match=f"image size {size} is not a multiple of 32 from 32 to 512"):
            PerceptualFeatures(size=size)
    with pytest.raises(GanvaeError, match="pooling grid 0"):
        PerceptualFeatures(size=32, grid=0)


@pytest.mark.parametrize("size", [32, 64])
def test_grid_pooling_keeps_the_layout_and_its_sizes_are_known_without_the_net(size):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, size, size, generator=g)
    whole = PerceptualFeatures(size=size, grid=1)
    gridded = PerceptualFeatures(size=size, grid=4)
    assert [t.shape[1] for t in gridded(x)] == perceptual_sizes(size, 4)
    assert [t.shape[1] for t in whole(x)] == perceptual_sizes(size, 1) == list(EFFNET_LITE0_WIDTHS)
    # the strides behind perceptual_sizes: the full maps (a grid as large as the input) have C_l * (size/s_l)^2
    full = PerceptualFeatures(size=size, grid=size)(x)
    assert [t.shape[1] for t in full] == perceptual_sizes(size, size)
    # each grid cell is the mean of its block of the map: the mean of the cells is the global mean
    for w, a, b in zip(EFFNET_LITE0_WIDTHS, gridded(x), whole(x)):
        torch.testing.assert_close(a.view(2, w, -1).mean(2), b, rtol=1e-4, atol=1e-5)

    # the layout is seen: one bright cell top-left or bottom-right has the same global mean, not the same cells
    h = torch.zeros(2, 1, 8, 8)
    h[0, 0, :2, :2] = 1.0
    h[1, 0, 6:, 6:] = 1.0
    torch.testing.assert_close(whole.pool(h)[0], whole.pool(h)[1])
    cells = gridded.pool(h)  # 4 x 4 cells of 2 x 2 pixels, row-major
    assert cells.shape == (2, 16) and cells[0, 0] == 1.0 and cells[1, 15] == 1.0 and float(cells.sum()) == 2.0


def test_perceptual_sizes_by_hand():
    # stem 32 channels at stride 2: a 32 px input gives a 16 x 16 map, pooled to 4 x 4 -> 32 * 16 numbers;
    # the head (1280 channels, stride 32) is 1 x 1 whatever the grid
    sizes = perceptual_sizes(32, 4)
    assert sizes[0] == 32 * 16 and sizes[-1] == 1280 and sizes[4] == 40 * 16  # a 40-channel block at stride 8: 4 x 4
    assert sizes[6] == 80 * 4  # 2 x 2 map at stride 16: the grid does not upsample
    with pytest.raises(GanvaeError, match="not a multiple of 32"):
        perceptual_sizes(40)
