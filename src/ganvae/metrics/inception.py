"""The FID Inception-v3: the network behind the standard FID (and the reference Inception Score).

This is ganvae's own implementation of the graph that pytorch-fid ports from TensorFlow's
``inception-2015-12-05`` model, laid out so that pytorch-fid's weights file
``pt_inception-2015-12-05-6726825d.pth`` (a plain torch state_dict) loads into it key for key:
``Conv2d_1a_3x3.conv.weight``, ``Conv2d_1a_3x3.bn.running_mean``, ...,
``Mixed_5b.branch1x1.conv.weight``, ..., ``Mixed_7c.branch_pool.bn.running_var``,
``fc.weight`` (1008 x 2048), ``fc.bias`` (1008).

Architecture (torchvision's Inception-v3 without the auxiliary classifier, 1008 classes, with the
TensorFlow graph's differences that pytorch-fid patches in):

* every convolution is a :class:`BasicConv2d`: conv without bias, BatchNorm (eps 0.001), ReLU;
* the 3x3/stride-1 average pools in the pool branches of Mixed_5b-d (:class:`FIDInceptionA`),
  Mixed_6b-e (:class:`FIDInceptionC`) and Mixed_7b (:class:`FIDInceptionE` with ``pool="avg"``,
  pytorch-fid's ``FIDInceptionE_1``) do **not** count the zero padding in the average
  (``count_include_pad=False``, as TensorFlow's ``SAME`` average pooling);
* Mixed_7c (:class:`FIDInceptionE` with ``pool="max"``, pytorch-fid's ``FIDInceptionE_2``) uses a
  3x3/stride-1 *max* pool in its pool branch, as the TensorFlow graph does.

:meth:`FIDInceptionV3.features` gives the 2048-d global average pool after Mixed_7c ("pool3",
the FID features); :meth:`FIDInceptionV3.logits` gives the 1008 outputs of ``fc`` applied to
them *without* the bias: the TensorFlow graph's ``softmax/logits/MatMul`` that the original
Inception Score code (Salimans et al. 2016) takes its softmax over (all 1008 classes, the 8
unused ones included), and what torch-fidelity calls ``logits_unbiased``.

Inputs are prepared as pytorch-fid does (see :func:`prepare_inception_input`): images in
``[0, 1]``, resized to 299x299 by bilinear interpolation with ``align_corners=False`` and *no*
antialiasing, then scaled to ``[-1, 1]``. This is the pytorch-fid protocol, not the original
TensorFlow resize, so FID values are comparable with pytorch-fid (and with each other), not
bit-identical to the TensorFlow code's.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import GanvaeError

__all__ = [
    "INCEPTION_FILE",
    "INCEPTION_SIZE",
    "BasicConv2d",
    "FIDInceptionA",
    "InceptionB",
    "FIDInceptionC",
    "InceptionD",
    "FIDInceptionE",
    "FIDInceptionV3",
    "prepare_inception_input",
    "load_fid_inception",
]

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_SIZE = 299
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d (eps 0.001) -> ReLU; state keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_same(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average pool, padding 1, averaging only the real (unpadded) inputs (TF ``SAME``)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block (Mixed_5b/c/d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(no pad count)-1x1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], 1)


class FIDInceptionC(nn.Module):
    """17x17 block (Mixed_6b/c/d/e) with factorised 7x7 convolutions and a no-pad-count avg pool branch."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        c = self.branch7x7dbl_3(self.branch7x7dbl_2(c))
        c = self.branch7x7dbl_5(self.branch7x7dbl_4(c))
        d = self.branch_pool(_avg_pool_same(x))
        return torch.cat([a, b, c, d], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_2(self.branch7x7x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(b))
        c = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([a, b, c], 1)


class FIDInceptionE(nn.Module):
    """8x8 block (Mixed_7b with ``pool="avg"``, Mixed_7c with ``pool="max"``).

    ``pool="avg"``: 3x3/1 average pool not counting the padding (pytorch-fid's FIDInceptionE_1);
    ``pool="max"``: 3x3/1 max pool (pytorch-fid's FIDInceptionE_2, as in the TF graph).
    """

    def __init__(self, in_channels: int, pool: str = "avg"):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        if self.pool == "avg":
            p = _avg_pool_same(x)
        else:
            p = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        d = self.branch_pool(p)
        return torch.cat([a, b, c, d], 1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 graph; inputs ``(B, 3, 299, 299)`` already scaled to ``[-1, 1]``."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(2048, NUM_CLASSES)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 299, 299)`` in [-1, 1] -> ``(B, 2048)`` pool3 features."""
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 64 x 73 x 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 192 x 35 x 35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))  # 288 x 35 x 35
        x = self.Mixed_6a(x)  # 768 x 17 x 17
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7a(x)  # 1280 x 8 x 8
        x = self.Mixed_7c(self.Mixed_7b(x))  # 2048 x 8 x 8
        return x.mean((2, 3))

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        """pool3 features -> 1008 unbiased logits (``feats @ fc.weight.T``, the TF IS graph's MatMul)."""
        return feats @ self.fc.weight.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def prepare_inception_input(x: torch.Tensor) -> torch.Tensor:
    """pytorch-fid's input protocol: ``(B, 1 or 3, H, W)`` float in [0, 1] -> ``(B, 3, 299, 299)`` in [-1, 1].

    Gray is repeated to three channels; other sizes are resized by bilinear interpolation with
    ``align_corners=False`` and no antialiasing (exactly ``F.interpolate(x, (299, 299),
    mode="bilinear", align_corners=False)``), then ``2 x - 1``.
    """
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if tuple(x.shape[2:]) != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return 2.0 * x - 1.0


# -- loading ----------------------------------------------------------------------------------------

_OPTIONAL = "num_batches_tracked"  # BatchNorm bookkeeping; unused in eval, older files may lack it


def _one_line(e: BaseException, limit: int = 200) -> str:
    """The exception as one short line; torch's long weights-only refusal cut down to its reason."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", " ".join(str(e).split()))
    if isinstance(e, pickle.UnpicklingError) and "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1]
        detail = detail.split(" Check the documentation", 1)[0].split(" Please use", 1)[0].strip()
        text = f"not a plain file of tensors, refused by torch's weights-only loader: {detail}"
        return text if len(text) <= limit else text[: limit - 3] + "..."
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _layout_problems(state: Mapping, expected: Mapping[str, torch.Tensor]) -> str | None:
    """What differs between ``state`` and the expected layout, in one short phrase, or None."""
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL)]
    unexpected = [k for k in state if k not in expected]
    bad_type = [k for k in expected if k in state and not isinstance(state[k], torch.Tensor)]
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and isinstance(state[k], torch.Tensor) and not k.endswith(_OPTIONAL)
        and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []

    def show(label: str, items: list[str]) -> None:
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            parts.append(f"{len(items)} {label} ({', '.join(map(str, items[:3]))}{more})")

    show("missing key(s)", missing)
    show("unexpected key(s)", [repr(k) if not isinstance(k, str) else k for k in unexpected])
    show("non-tensor value(s)", bad_type)
    show("wrong shape(s)", wrong)
    return "; ".join(parts) or None


def load_fid_inception(path: str | Path, device: str | torch.device = "cpu") -> FIDInceptionV3:
    """Build :class:`FIDInceptionV3` and load the state_dict at ``path`` (strict: every parameter and
    BatchNorm statistic present with the right shape, nothing extra; ``num_batches_tracked`` optional).

    Loads with ``torch.load(path, map_location="cpu", weights_only=True)``. Every problem (missing
    file, unreadable file, wrong layout) is a one-line :class:`GanvaeError` naming the file.
    """
    path = Path(path)
    expect = f"expected pytorch-fid's {INCEPTION_FILE} (a torch state_dict of the FID Inception-v3)"
    if not path.is_file():
        raise GanvaeError(f"inception weights file not found: {path} ({expect})")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt, truncated or not a torch file: one clear line
        raise GanvaeError(f"inception weights at {path} could not be loaded ({_one_line(e)}); {expect}") from None
    if not isinstance(state, Mapping):
        raise GanvaeError(f"inception weights at {path} hold a {type(state).__name__}, not a state_dict; {expect}")
    with torch.device("meta"):  # the layout first: no memory, no (slow, overwritten anyway) init
        net = FIDInceptionV3()
    expected = net.state_dict()
    problems = _layout_problems(state, expected)
    if problems:
        raise GanvaeError(f"inception weights at {path} do not match the FID Inception-v3 layout: {problems}; {expect}")
    # every tensor is overwritten below; num_batches_tracked (a training counter, unused in eval, absent or
    # shaped differently in files from older torch versions) is not taken from the file
    full = {k: (torch.zeros((), dtype=torch.long) if k.endswith(_OPTIONAL) else state[k]) for k in expected}
    net = net.to_empty(device="cpu")
    try:
        net.load_state_dict(full, strict=True)
    except Exception as e:  # noqa: BLE001 - e.g. an unconvertible dtype
        raise GanvaeError(f"inception weights at {path} could not be loaded ({_one_line(e)}); {expect}") from None
    for k, v in net.state_dict().items():  # one pass each: a NaN or inf anywhere makes the sum non-finite
        if v.is_floating_point() and not torch.isfinite(v.sum()):
            raise GanvaeError(f"inception weights at {path} contain NaN or inf values (in {k}); {expect}")
    net.to(torch.device(device), memory_format=torch.channels_last).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
