"""The FID Inception-v3 (``--feature-net inception``): layout of pytorch-fid's weights file, the TF pooling
details, pytorch-fid's input protocol, clear one-line errors for bad files, and ``ganvae eval`` with it.

No real ``pt_inception-2015-12-05-6726825d.pth`` is available offline: the nets here carry random
weights saved in that file's layout (key names and shapes taken from pytorch-fid's and torchvision's
public ``inception.py``), so these tests check the plumbing and the architecture, not FID values.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganvae.cli import main
from ganvae.errors import GanvaeError
from ganvae.metrics.features import FEATURE_NETS, InceptionFeatureNet, clear_cache, get_feature_net
from ganvae.metrics.inception import (
    INCEPTION_FILE,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE,
    FIDInceptionV3,
    prepare_inception_input,
)
from helpers import train_tiny

# 94 BasicConv2d = stem 5 + Mixed_5b-d 3 x 7 + Mixed_6a 4 + Mixed_6b-e 4 x 10 + Mixed_7a 6 + Mixed_7b-c 2 x 9
N_CONV = 5 + 3 * 7 + 4 + 4 * 10 + 6 + 2 * 9
# torchvision's inception_v3 has 27,161,264 parameters with the aux classifier and 1000 classes; without the
# aux head (conv0 128x768 + bn 2x128, conv1 768x128x5x5 + bn 2x768, fc 768x1000 + 1000 = 3,326,696) and with
# fc widened to 1008 classes (+ 8 x 2049) this is the FID net's count.
N_SCALARS = 27_161_264 - 3_326_696 + 8 * 2049

KNOWN_SHAPES = {  # from pytorch-fid's fid_inception_v3() (torchvision Inception3 + FID blocks, num_classes=1008)
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_2b_3x3.conv.weight": (64, 32, 3, 3),
    "Conv2d_4a_3x3.bn.running_var": (192,),
    "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
    "Mixed_6e.branch7x7dbl_2.conv.weight": (192, 192, 7, 1),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3dbl_1.conv.weight": (448, 1280, 1, 1),
    "Mixed_7c.branch3x3_2b.conv.weight": (384, 384, 3, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.bias": (192,),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}


def _random_net(seed: int = 0) -> FIDInceptionV3:
    """A FID Inception with random weights that keep activations alive through all 94 layers."""
    torch.manual_seed(seed)
    net = FIDInceptionV3()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A random-init net saved as a plain state_dict, named like the standard file; returns (path, net)."""
    net = _random_net()
    path = tmp_path_factory.mktemp("incep") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="module")
def fnet(weights):
    clear_cache()
    yield get_feature_net("inception", weights_path=weights[0])
    clear_cache()


def _one_line_error(fn, *needles):
    with pytest.raises(GanvaeError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, (n, msg)
    return msg


# -- layout -----------------------------------------------------------------------------------------


def test_state_dict_layout_matches_the_pytorch_fid_file():
    net = FIDInceptionV3()
    sd = net.state_dict()
    for k, shape in KNOWN_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    params = dict(net.named_parameters())
    assert len(params) == 3 * N_CONV + 2 == 284  # conv.weight, bn.weight, bn.bias per conv; fc.weight, fc.bias
    assert sum(p.numel() for p in params.values()) == N_SCALARS == 23_850_960
    required = [k for k in sd if not k.endswith("num_batches_tracked")]
    assert len(required) == 5 * N_CONV + 2 == 472  # + bn.running_mean, bn.running_var
    assert len(sd) == 6 * N_CONV + 2
    assert not any(k.startswith("AuxLogits") for k in sd)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(bns) == len(convs) == N_CONV
    assert all(m.eps == 1e-3 for m in bns) and all(m.bias is None for m in convs)


def test_registered_and_described():
    assert FEATURE_NETS.get("inception") is InceptionFeatureNet
    d = InceptionFeatureNet.description
    assert INCEPTION_FILE in d and "NO antialiasing" in d and "align_corners=False" in d and "1008" in d


# -- the TF pooling details -------------------------------------------------------------------------


def _manual_pool(x: torch.Tensor, op) -> torch.Tensor:
    """3x3 stride-1 pool over the in-bounds neighbours only (TF SAME padding), by loops."""
    out = torch.empty_like(x)
    h, w = x.shape[2:]
    for i in range(h):
        for j in range(w):
            win = x[:, :, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].flatten(2)
            out[:, :, i, j] = op(win)
    return out


def _pool_branch_input(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    h = block.branch_pool.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    with torch.no_grad():
        block.eval()(x)
    h.remove()
    return seen[0]


@pytest.mark.parametrize("make", [
    lambda: FIDInceptionA(2, pool_features=3),
    lambda: FIDInceptionC(2, channels_7x7=4),
    lambda: FIDInceptionE(2, pool="avg"),
])
def test_average_pools_exclude_the_padding(make):
    torch.manual_seed(0)
    x = torch.rand(1, 2, 4, 5) + 0.5  # positive: zeros counted in would pull the border means down
    got = _pool_branch_input(make(), x)
    want = _manual_pool(x, lambda v: v.mean(-1))
    torch.testing.assert_close(got, want)
    # and that differs from torch's default (padding counted), at the corners by a factor 4/9
    torch.testing.assert_close(F.avg_pool2d(x, 3, 1, 1)[..., 0, 0], want[..., 0, 0] * 4 / 9)
    assert not torch.allclose(got, F.avg_pool2d(x, 3, 1, 1))


def test_last_block_max_pools():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 4, 5)  # negative values: a zero-padded max would differ at the border
    got = _pool_branch_input(FIDInceptionE(2, pool="max"), x)
    torch.testing.assert_close(got, _manual_pool(x, lambda v: v.amax(-1)))
    net = FIDInceptionV3()
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"


# -- input protocol and features --------------------------------------------------------------------


def test_input_protocol_is_pytorch_fids(fnet):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 320, 310)  # downscaling: where antialiasing would change the result
    want = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    got = fnet.prepare(x)
    assert got.shape == (2, 3, 299, 299)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, F.interpolate(x, size=(299, 299), mode="bilinear", antialias=True))
    torch.testing.assert_close(prepare_inception_input(x), 2 * want - 1)
    g = torch.rand(1, 1, 28, 28)
    torch.testing.assert_close(fnet.prepare(g), fnet.prepare(g.repeat(1, 3, 1, 1)))
    s = torch.rand(1, 3, 299, 299)
    assert torch.equal(fnet.prepare(s), s)  # already 299: untouched


def test_features_shape_determinism_gray_and_logits(fnet, weights):
    # the 299x299 forward is slow on CPU: five images in all
    torch.manual_seed(1)
    gray = torch.rand(2, 1, 28, 28)
    f1 = fnet.features(gray)
    assert f1.shape == (2, 2048) and f1.dtype == torch.float32 and torch.isfinite(f1).all()
    assert (f1[0] - f1[1]).abs().max() > 1e-3  # alive: different images, different features
    again = fnet.features(gray[:1])  # deterministic, and independent of the batch
    torch.testing.assert_close(again, f1[:1], rtol=1e-5, atol=1e-6)
    # the plain module on pytorch-fid's preprocessing (gray repeated, resized, 2x - 1), loaded weights included
    with torch.no_grad():
        direct = weights[1].features(prepare_inception_input(gray[:1].repeat(1, 3, 1, 1)))
        direct_logits = weights[1].logits(direct)
    torch.testing.assert_close(f1[:1], direct, rtol=1e-4, atol=1e-4)
    # logits: the 1008 fc outputs without the bias (the original IS graph's MatMul)
    assert weights[1].fc.bias.abs().sum() > 0
    lg = fnet.logits(gray[:1])
    assert lg.shape == (1, 1008)
    torch.testing.assert_close(lg, direct_logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(lg, f1[:1] @ weights[1].fc.weight.t(), rtol=1e-4, atol=1e-4)


# -- errors -----------------------------------------------------------------------------------------


def test_no_path_and_missing_file(tmp_path):
    clear_cache()
    msg = _one_line_error(lambda: get_feature_net("inception"), "--inception-weights", INCEPTION_FILE)
    assert msg.startswith("inception features need the standard FID weights")
    missing = tmp_path / INCEPTION_FILE
    _one_line_error(lambda: get_feature_net("inception", weights_path=missing), "not found", missing, INCEPTION_FILE)


def test_garbage_and_wrong_type_files(tmp_path):
    clear_cache()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a torch file\n\x00\x01")
    msg = _one_line_error(lambda: get_feature_net("inception", weights_path=garbage), garbage, "could not be loaded",
                          INCEPTION_FILE)
    assert "weights_only" not in msg  # not torch's advice to unpickle untrusted code
    pickled = tmp_path / "pickled.pth"
    pickled.write_bytes(b"x")  # a pickle opcode the weights-only loader refuses
    msg = _one_line_error(lambda: get_feature_net("inception", weights_path=pickled), pickled,
                          "not a plain file of tensors", INCEPTION_FILE)
    assert "weights_only" not in msg
    truncated = tmp_path / "truncated.pth"
    torch.save({"fc.bias": torch.zeros(1008)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    _one_line_error(lambda: get_feature_net("inception", weights_path=truncated), truncated, "could not be loaded")
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    _one_line_error(lambda: get_feature_net("inception", weights_path=tensor), tensor, "not a state_dict")
    other = tmp_path / "other.pth"
    torch.save(nn.Linear(2, 3).state_dict(), other)
    _one_line_error(lambda: get_feature_net("inception", weights_path=other), other, "missing key(s)",
                    "unexpected key(s)", "Conv2d_1a_3x3.conv.weight", INCEPTION_FILE)


def _cheap_state(fill=None) -> dict:
    """The full layout with zero-stride tensors: right shapes, tiny files (one stored value per key)."""
    with torch.device("meta"):
        sd = FIDInceptionV3().state_dict()
    return {k: torch.tensor(float(i if fill is None else fill), dtype=v.dtype).expand(v.shape)
            for i, (k, v) in enumerate(sd.items())}


def test_layout_mismatches_name_the_file_and_the_key(tmp_path):
    clear_cache()
    sd = _cheap_state()
    short = dict(sd)
    del short["Mixed_6c.branch7x7_2.conv.weight"]
    p = tmp_path / "short.pth"
    torch.save(short, p)
    msg = _one_line_error(lambda: get_feature_net("inception", weights_path=p), p, "1 missing key(s)",
                          "Mixed_6c.branch7x7_2.conv.weight")
    assert "unexpected" not in msg and "wrong shape" not in msg
    tv = dict(sd, **{"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)})  # torchvision's head
    p = tmp_path / "tv1000.pth"
    torch.save(tv, p)
    _one_line_error(lambda: get_feature_net("inception", weights_path=p), p, "2 wrong shape(s)",
                    "fc.weight (1000, 2048) (expected (1008, 2048))")
    extra = dict(sd, **{"AuxLogits.fc.weight": torch.zeros(1008, 768)})
    p = tmp_path / "aux.pth"
    torch.save(extra, p)
    _one_line_error(lambda: get_feature_net("inception", weights_path=p), p, "1 unexpected key(s)", "AuxLogits")
    nan = dict(sd, **{"Mixed_5b.branch1x1.bn.running_var": torch.full((64,), float("nan"))})
    p = tmp_path / "nan.pth"
    torch.save(nan, p)
    _one_line_error(lambda: get_feature_net("inception", weights_path=p), p, "NaN", "Mixed_5b.branch1x1.bn.running_var")


def test_file_without_num_batches_tracked_loads(tmp_path):
    """Older files may lack BatchNorm's num_batches_tracked (unused in eval): they load, values intact."""
    from ganvae.metrics.inception import load_fid_inception

    sd = {k: v for k, v in _cheap_state().items() if not k.endswith("num_batches_tracked")}
    assert len(sd) == 472
    p = tmp_path / INCEPTION_FILE
    torch.save(sd, p)
    assert p.stat().st_size < 1_000_000
    loaded = load_fid_inception(p).state_dict()
    for k, v in sd.items():
        assert torch.equal(loaded[k], v), k
    assert all(v.item() == 0 for k, v in loaded.items() if k.endswith("num_batches_tracked"))


# -- ganvae eval ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("ev") / "gan", steps=4, batch_size=16).path


def test_eval_cli_without_weights_is_one_line_exit_2(gan_run, capsys):
    clear_cache()
    code = main(["eval", str(gan_run), "--feature-net", "inception", "--n", "2", "--no-baselines"])
    err = capsys.readouterr().err
    assert code == 2 and "--inception-weights" in err and len(err.strip().splitlines()) == 1, err


def test_eval_cli_with_bad_weights_is_one_line_exit_2(gan_run, tmp_path, capsys):
    clear_cache()
    bad = tmp_path / INCEPTION_FILE
    bad.write_bytes(b"\x80\x02garbage")
    code = main(["eval", str(gan_run), "--feature-net", "inception", "--inception-weights", str(bad),
                 "--n", "2", "--no-baselines"])
    err = capsys.readouterr().err
    assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1, err


def test_eval_cli_with_weights_scores(gan_run, weights, capsys):
    clear_cache()
    code = main(["eval", str(gan_run), "--feature-net", "inception", "--inception-weights", str(weights[0]),
                 "--metrics", "modes", "--n", "2", "--no-baselines"])  # 4 images through the net
    out = capsys.readouterr().out
    assert code == 0 and "features: inception" in out
    recs = [json.loads(x) for x in (gan_run / "eval.jsonl").read_text().splitlines()]
    assert {r["metric"] for r in recs} == {"modes_covered", "kl_to_uniform", "tv_to_reference"}
    assert all(r["feature_net"] == "inception" and r["n_generated"] == 2 for r in recs)
    clear_cache()
