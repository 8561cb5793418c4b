"""The truncation trick: codes pulled toward the prior's mean, z -> psi z; a conditional model keeps its class."""

from __future__ import annotations

import pytest
import torch

from ganvae.errors import GanvaeError
from helpers import tiny_model


@pytest.mark.parametrize("name", ["dcgan", "vae", "cdcgan"])
def test_psi_one_is_no_truncation_and_small_psi_collapses_to_the_mean(name):
    m = tiny_model(name)
    labels = [1, 1, 1] if m.conditional else None
    assert torch.equal(m.sample(3, seed=5, labels=labels), m.sample(3, seed=5, labels=labels, truncation=1.0))
    a = m.sample(3, seed=5, labels=labels, truncation=1e-6)
    b = m.sample(3, seed=9, labels=labels, truncation=1e-6)
    assert torch.allclose(a, b, atol=1e-4)  # every seed lands on the mean code (per class for conditional)
    assert not torch.allclose(m.sample(3, seed=5, labels=labels), m.sample(3, seed=9, labels=labels), atol=1e-4)


def test_truncated_samples_decode_the_scaled_codes():
    m = tiny_model("dcgan")
    gen = torch.Generator().manual_seed(4)
    z = m.latent(5, gen)
    with torch.no_grad():
        m.eval()
        expected = m.decode_latent(z * 0.7).clamp(0, 1)
    assert torch.allclose(m.sample(5, seed=4, truncation=0.7), expected, atol=1e-6)


def test_conditional_truncation_keeps_the_class_column():
    m = tiny_model("cdcgan")
    code = m.latent(4, torch.Generator().manual_seed(0), labels=torch.tensor([0, 1, 2, 1]))
    t = m.truncate(code, 0.5)
    assert torch.equal(t[:, -1], code[:, -1]) and torch.allclose(t[:, :-1], code[:, :-1] * 0.5)


@pytest.mark.parametrize("psi", [0, -0.5, 1.5])
def test_bad_truncation_is_refused(psi):
    with pytest.raises(GanvaeError, match="truncation"):
        tiny_model("dcgan").sample(2, seed=0, truncation=psi)


def test_cli_and_explorer_take_a_truncation(tmp_path, capsys):
    from starlette.testclient import TestClient

    from ganvae.cli import main
    from ganvae.serve import make_app
    from helpers import train_tiny

    run = train_tiny(tmp_path / "r", steps=2)
    assert main(["sample", str(run.path), "-n", "4", "--truncation", "0.5", "--out", str(tmp_path / "t.png")]) == 0
    assert (tmp_path / "t.png").is_file()
    assert main(["sample", str(run.path), "--truncation", "2"]) == 2
    assert "truncation 2.0: expected a number in (0, 1]" in capsys.readouterr().err
    client = TestClient(make_app([run.path]), base_url="http://127.0.0.1")
    full, trunc = (client.get(f"/api/run/0/grid.png?seed=3&n=4{q}") for q in ("", "&psi=0.5"))
    assert full.status_code == trunc.status_code == 200 and full.content != trunc.content
    assert client.get("/api/run/0/grid.png?seed=3&n=4&psi=1").content == full.content
    bad = client.get("/api/run/0/grid.png?seed=3&n=4&psi=0")
    assert bad.status_code == 400 and "truncation" in bad.json()["error"]
