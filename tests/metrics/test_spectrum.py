"""The pixel-spectrum metrics against hand-computed spectra (cosines, a checkerboard) and through `ganvae eval`."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ganvae.cli import main
from ganvae.metrics.spectrum import checkerboard, mean_power, period2_share, radial_profile, spectral_distance


def _grid(h: int, w: int):
    return torch.arange(h, dtype=torch.float64)[:, None], torch.arange(w, dtype=torch.float64)[None, :]


def cosine(h: int, w: int, k: int) -> torch.Tensor:
    """cos(2 pi k x / W): all its power at the frequencies (0, +-k)."""
    _, x = _grid(h, w)
    return torch.cos(2 * math.pi * k * x / w).expand(h, w)


def checker(h: int, w: int) -> torch.Tensor:
    y, x = _grid(h, w)
    return (-1.0) ** (y + x)


def batch(*images: torch.Tensor) -> torch.Tensor:
    return torch.stack(images)[:, None]  # (N, 1, H, W)


def test_power_of_a_cosine_is_hw_over_4_at_its_two_frequencies():
    p = mean_power(batch(cosine(8, 8, 2)))
    assert p[0, 2].item() == pytest.approx(16.0) and p[0, 6].item() == pytest.approx(16.0)  # H*W/4
    assert p.sum().item() == pytest.approx(32.0)  # Parseval: sum of squares / 1 = 64 * mean(cos^2) = 32


def test_mean_power_removes_each_channels_mean_and_averages_channels_and_images():
    a = batch(cosine(8, 8, 1) + 5.0, torch.zeros(8, 8))  # the offset is removed; the zero image has no power
    p = mean_power(a)
    assert p[0, 0].item() == pytest.approx(0.0, abs=1e-9)
    assert p[0, 1].item() == pytest.approx(16.0 / 2)  # the mean of 16 and 0


def test_radial_profile_is_the_mean_power_of_each_ring():
    h = w = 8
    p = mean_power(batch(cosine(h, w, 2)))
    # ring 2: every frequency (fy, fx) in -4..3 whose radius rounds to 2, counted by hand
    members = [(a, b) for a in range(-4, 4) for b in range(-4, 4) if round(math.hypot(a, b)) == 2]
    prof = radial_profile(p)
    assert prof.shape == (4,)
    assert prof[1].item() == pytest.approx(2 * 16.0 / len(members))
    assert prof[[0, 2, 3]].abs().max().item() < 1e-9


def test_spectral_distance_zero_for_the_same_spectrum_and_one_per_factor_of_ten_in_power():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 16, 16, generator=g)
    assert spectral_distance(x, x) == 0.0
    assert spectral_distance(x * math.sqrt(10), x) == pytest.approx(1.0)  # power x10 in every ring
    assert spectral_distance(x * 10, x) == pytest.approx(2.0)
    assert spectral_distance(x / 10, x) == pytest.approx(2.0)  # too little power counts as much as too much


def test_spectral_distance_sees_blur():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 16, 16, generator=g)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    y = torch.rand(64, 1, 16, 16, generator=g)
    assert spectral_distance(blurred, x) > 5 * spectral_distance(y, x)


def test_period2_share_of_a_checkerboard_plus_a_cosine():
    # checker * a has power a^2 * H * W at (H/2, W/2); the cosine H*W/4 at each of two frequencies
    for a, share in ((1.0, 1 / 1.5), (0.5, 0.25 / 0.75)):
        p = mean_power(batch(cosine(8, 8, 1) + a * checker(8, 8)))
        assert period2_share(p) == pytest.approx(share)
    assert period2_share(mean_power(batch(checker(6, 6)))) == pytest.approx(1.0)
    assert period2_share(mean_power(batch(torch.zeros(4, 4)))) == 0.0


def test_checkerboard_is_the_ratio_of_shares():
    ref = batch(cosine(8, 8, 1) + 0.5 * checker(8, 8))
    gen = batch(cosine(8, 8, 1) + checker(8, 8))
    assert checkerboard(gen, ref) == pytest.approx((1 / 1.5) / (1 / 3))
    assert checkerboard(ref, ref) == pytest.approx(1.0)
    assert checkerboard(batch(cosine(8, 8, 1)), ref) == pytest.approx(0.0, abs=1e-12)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="different image shapes"):
        spectral_distance(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="non-empty"):
        mean_power(torch.rand(0, 1, 8, 8))


def test_eval_spectrum_scores_without_a_feature_net(tiny_gan_run, capsys):
    code = main(["eval", str(tiny_gan_run), "--metrics", "spectrum", "--n", "64"])
    out = capsys.readouterr().out
    assert code == 0 and "spectral_distance" in out and "checkerboard" in out
    recs = [json.loads(x) for x in (tiny_gan_run / "eval.jsonl").read_text().splitlines()]
    by = {r["metric"]: r for r in recs}
    assert by["spectral_distance"]["feature_net"] is None and by["spectral_distance"]["n_generated"] == 64
    # real training images against the test split: nearly the same spectrum, no extra period-2 power
    assert by["spectral_distance"]["real_data"] < 0.2
    assert 0.5 < by["checkerboard"]["real_data"] < 2.0
    assert by["spectral_distance"]["value"] >= 0


@pytest.fixture(scope="module")
def tiny_gan_run(tmp_path_factory):
    from helpers import train_tiny
    return train_tiny(tmp_path_factory.mktemp("spec") / "gan", steps=5, batch_size=32).path
