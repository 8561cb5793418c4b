"""The shared downstream classifier (ganvae.apps.classifier): augmentation, determinism, accuracy, learning."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ganvae.apps.classifier import (ClassifierConfig, SmallCNN, accuracy, classic_augment, fit_classifier, lr_at,
                                    train_and_test)
from ganvae.data import DataConfig, load_data
from ganvae.errors import GanvaeError


def _dot(h=8, w=8, y=3, x=4):
    img = torch.zeros(1, 1, h, w)
    img[0, 0, y, x] = 1.0
    return img


def test_shift_moves_a_dot_by_at_most_max_shift():
    gen = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(60):
        out = classic_augment(_dot(), 2, False, gen)
        assert out.shape == (1, 1, 8, 8) and out.sum() == 1.0  # the dot stays whole (it is 2+ from the edges)
        y, x = divmod(int(out.flatten().argmax()), 8)
        assert abs(y - 3) <= 2 and abs(x - 4) <= 2
        seen.add((y - 3, x - 4))
    assert len(seen) > 10  # many of the 25 offsets are drawn


def test_no_shift_no_flip_is_identity_and_flip_mirrors():
    x = torch.rand(5, 3, 6, 6)
    assert torch.equal(classic_augment(x, 0, False, torch.Generator().manual_seed(0)), x)
    gen = torch.Generator().manual_seed(1)
    out = classic_augment(x, 0, True, gen)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(5)]
    kept = [torch.equal(out[i], x[i]) for i in range(5)]
    assert all(f or k for f, k in zip(flipped, kept))
    mask = torch.rand(5, generator=torch.Generator().manual_seed(1)) < 0.5  # the same draw, made by hand
    assert flipped == mask.tolist()


def test_network_fits_any_size_channels_and_classes():
    for c, s, k in [(1, 4, 2), (1, 8, 10), (3, 28, 5), (3, 32, 7)]:
        assert SmallCNN(c, s, k, width=4)(torch.rand(2, c, s, s)).shape == (2, k)


def test_accuracy_against_hand_count():
    class Fixed(nn.Module):  # predicts class = the first pixel's value (0..2)
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return nn.functional.one_hot(x.flatten(1)[:, 0].round().long(), 3).float()

    images = torch.tensor([0.0, 1, 2, 2, 1]).view(5, 1, 1, 1)
    labels = torch.tensor([0, 1, 1, 2, 0])
    assert accuracy(Fixed(), images, labels, batch_size=2) == pytest.approx(3 / 5)


def _tiny(n=40):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen), torch.arange(n) % 3


def test_same_seed_same_weights_and_global_rng_untouched():
    x, y = _tiny()
    cfg = ClassifierConfig(width=4, steps=5, batch_size=8, seed=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = fit_classifier(cfg, x, y, 3)
    assert torch.equal(torch.get_rng_state(), before)
    b = fit_classifier(cfg, x, y, 3)
    c = fit_classifier(ClassifierConfig(width=4, steps=5, batch_size=8, seed=4), x, y, 3)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_learns_digits():
    splits = load_data(DataConfig(source="digits"), progress=False)
    tr, te = splits.train, splits.test
    cfg = ClassifierConfig(width=8, steps=120, batch_size=32, lr=1e-2)
    acc = train_and_test(cfg, tr.images, tr.labels, te.images, te.labels, 10)
    assert acc > 0.8, acc  # 10% chance; 0.94 measured (cosine schedule; 0.85-0.94 over seeds 0-3)


def test_bad_config_and_labels_are_one_line_errors():
    x, y = _tiny()
    with pytest.raises(GanvaeError, match="optimizer must be adam or sgd"):
        fit_classifier(ClassifierConfig(optimizer="rmsprop"), x, y, 3)
    with pytest.raises(GanvaeError, match="schedule must be cosine or constant, got 'step'"):
        fit_classifier(ClassifierConfig(schedule="step"), x, y, 3)
    with pytest.raises(GanvaeError, match="steps must be a positive integer"):
        fit_classifier(ClassifierConfig(steps=0), x, y, 3)
    with pytest.raises(GanvaeError, match=r"labels must be 0\.\.1"):
        fit_classifier(ClassifierConfig(steps=1), x, y, 2)


def test_cosine_schedule_by_hand_and_applied_to_every_step(monkeypatch):
    cfg = ClassifierConfig(steps=4, lr=0.2)
    assert [lr_at(cfg, t) for t in range(4)] == pytest.approx([0.2, 0.2 * (1 + 2 ** -0.5) / 2, 0.1,
                                                             0.2 * (1 - 2 ** -0.5) / 2])
    assert lr_at(ClassifierConfig(steps=4, lr=0.2, schedule="constant"), 3) == 0.2
    seen = []
    real_step = torch.optim.AdamW.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    x, y = _tiny()
    fit_classifier(ClassifierConfig(width=4, steps=4, batch_size=8, lr=0.2), x, y, 3)
    assert seen == pytest.approx([lr_at(cfg, t) for t in range(4)])
    seen.clear()
    fit_classifier(ClassifierConfig(width=4, steps=3, batch_size=8, lr=0.2, schedule="constant"), x, y, 3)
    assert seen == [0.2, 0.2, 0.2]
