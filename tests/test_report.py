"""`ganvae report`: a self-contained page from the run folder; written at the end of training; bad input."""

from __future__ import annotations

import re

from ganvae.cli import main
from helpers import train_tiny

LOOP = dict(sample_every=4, log_every=2)


def test_training_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "run"
    train_tiny(out, steps=40, report=True, **LOOP)
    page = (out / "report.html").read_text()
    assert "<h1>ganvae run: run</h1>" in page and "dcgan" in page and "digits" in page
    # self-contained: every image is embedded, nothing is fetched
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    imgs = re.findall(r"<img [^>]*src='data:image/png;base64,", page)
    grids = len(list((out / "samples").glob("step_*.png")))
    assert grids == 10  # steps 4, 8, ..., 40
    assert len(imgs) == 1 + 8  # the curves, and 8 grids out of 10 (evenly spaced, first and last kept)
    assert "step 4<" in page and "step 40<" in page
    assert "latent_dim: 8" in page  # the config

    assert main(["eval", str(out), "--metrics", "fid", "--n", "60"]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "<h2>Scores</h2>" in page and ">fid<" in page and "floor" in page


def test_report_can_be_switched_off(tmp_path):
    out = tmp_path / "run"
    train_tiny(out, "mlp-vae", steps=3, latent_dim=4, enc_hidden=[16], dec_hidden=[16], report=False)
    assert not (out / "report.html").exists() and (out / "model").is_dir()


def test_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "run"
    train_tiny(out, "mlp-vae", steps=3, latent_dim=4, enc_hidden=[16], dec_hidden=[16])
    with (out / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    assert main(["report", str(out)]) == 0  # a damaged log line is skipped and counted, not fatal
    err = capsys.readouterr().err
    assert "metrics.jsonl: skipped 1 damaged line" in err and len(err.strip().splitlines()) == 1
    assert "1 damaged lines of metrics.jsonl were skipped" in (out / "report.html").read_text()


def test_tensorboard_event_files_hold_losses_and_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_tiny(out, steps=10, tensorboard=True, **LOOP)
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/D", "loss/G/adv", "D/real_prob", "img_per_s"} <= set(tags["scalars"])
    d = acc.Scalars("loss/D")
    assert [e.step for e in d] == [32 * i for i in range(1, 6)]  # x axis: images seen (2 steps of 16 per log)
    lines = [__import__("json").loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert abs(d[-1].value - lines[-1]["loss/D"]) < 1e-6
    assert [e.step for e in acc.Images("samples")] == [64, 128, 160]  # the grids at steps 4, 8 and the last
