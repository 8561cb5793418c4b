"""Translation metrics against hand-computed values: SSIM (identical images, constant images in closed form),
PSNR, L1; label preservation; and `evaluate` on a translation run (target-domain FID, paired scores)."""

from __future__ import annotations

import math

import pytest
import torch

import ganvae
from ganvae.errors import GanvaeError
from ganvae.metrics.evaluate import subset
from ganvae.metrics.registry import METRICS, EvalInputs, Side
from ganvae.metrics.translation import gaussian_window, mean_l1, psnr, seeded_rows, ssim
from helpers import train_tiny


def test_ssim_of_identical_images_is_one():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_the_luminance_term():
    # no variance anywhere: SSIM = (2 a b + C1) / (a^2 + b^2 + C1) * (0 + C2) / (0 + C2), C1 = 0.01^2
    a, b, c1 = 0.2, 0.5, 1e-4
    got = ssim(torch.full((1, 1, 12, 12), a, dtype=torch.float64),
               torch.full((1, 1, 12, 12), b, dtype=torch.float64)).item()
    assert got == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def test_ssim_of_a_shift_keeps_structure():
    """y = x + c: sigma_x = sigma_y = sigma_xy, so the contrast-structure factor is exactly 1 and SSIM is the
    window-mean of the luminance term, which a constant-mean image makes a closed form."""
    x = torch.zeros(1, 1, 11, 11, dtype=torch.float64)
    x[..., ::2, :] = 0.4  # rows alternate 0.4, 0: in an 11x11 window, mean mu = 0.4 * sum of even-row weights
    y = x + 0.3
    w = gaussian_window()
    mu = 0.4 * w[::2].sum().item()
    c1 = 1e-4
    want = (2 * mu * (mu + 0.3) + c1) / (mu ** 2 + (mu + 0.3) ** 2 + c1)
    assert ssim(x, y).item() == pytest.approx(want, rel=1e-9)


def test_gaussian_window():
    w = gaussian_window(11, 1.5)
    assert w.shape == (11, 11) and w.sum().item() == pytest.approx(1.0)
    assert w[5, 5] == w.max() and w[5, 4].item() / w[5, 5].item() == pytest.approx(math.exp(-1 / (2 * 1.5 ** 2)))


def test_psnr_and_l1_by_hand():
    x, y = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.1)
    assert psnr(x, y) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(100)
    assert mean_l1(x, y) == pytest.approx(0.1)
    assert psnr(x, x) == math.inf


def test_seeded_rows_are_the_rows_evaluate_keeps():
    x = torch.arange(50)
    assert torch.equal(x[seeded_rows(50, 7, 3)], subset(x, 7, 3))
    assert torch.equal(seeded_rows(5, 7, 3), torch.arange(5))


class _Net:
    name, num_classes = "stub", 3


class _View:
    translation, config = True, type("C", (), {"num_classes": 3})()

    def source_labels(self, n, seed):
        return torch.tensor([0, 1, 2, 2])


def test_label_preservation_is_the_share_given_the_source_label():
    gen = Side(torch.zeros(4, 1, 2, 2), _Net())
    gen._logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])  # right, right, wrong, right
    x = EvalInputs(gen, Side(torch.zeros(4, 1, 2, 2), _Net()), _View())
    assert METRICS.get("labels").compute(x) == {"label_preservation": 0.75}
    gen._logits = torch.zeros(4, 10)
    with pytest.raises(GanvaeError, match="3 classes"):
        METRICS.get("labels").compute(x)


def test_evaluate_a_paired_run_scores_the_target_domain(tmp_path):
    run = train_tiny(tmp_path / "p", "pix2pix", "shapes-edges", steps=1, batch_size=4,
                     more=["data.n=40", "data.image_size=16"]).path
    recs = {r["metric"]: r for r in ganvae.evaluate(run, metrics="fid,paired", n=8, feature_net="shapes",
                                                    log=None, write=False)}
    assert recs["fid"]["n_generated"] == 4 and recs["fid"]["n_reference"] == 4  # 10% of 40 held out
    assert recs["input_l1"]["value"] == recs["input_l1"]["untrained"]  # the input does not depend on the model
    assert 0 < recs["ssim"]["value"] < 1 and recs["l1"]["real_data"] is None


def test_paired_metric_refuses_unpaired_and_non_translation_runs(tmp_path):
    run = train_tiny(tmp_path / "g", "dcgan", "digits", steps=1, batch_size=8).path
    with pytest.raises(GanvaeError, match="needs a translation run"):
        ganvae.evaluate(run, metrics="paired", n=8, log=None, write=False, baselines=False)


def test_periodic_evaluation_scores_translations(tmp_path):
    import json
    run = train_tiny(tmp_path / "p", "pix2pix", "shapes-edges", steps=2, batch_size=4, eval_every_kimg=0.004,
                     eval_n=8, eval_feature_net="shapes", log_every=1, more=["data.n=40", "data.image_size=16"]).path
    recs = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/fid" in r and math.isfinite(r["eval/fid"]) for r in recs)
