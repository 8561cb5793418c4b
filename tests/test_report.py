"""`ganvae report`: a self-contained page from the run folder; written at the end of training; bad input."""

from __future__ import annotations

import re

import ganvae
from ganvae.cli import main

TINY = ["model.latent_dim=8", "model.g_width=8", "model.d_width=8", "train.sample_every=4", "train.log_every=2"]


def test_training_writes_a_self_contained_report(tmp_path, capsys):
    out = tmp_path / "run"
    ganvae.train("dcgan", "digits", out=out, steps=40, batch_size=16, progress=False, set=TINY)
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
    ganvae.train("mlp-vae", "digits", out=out, steps=3, batch_size=16, progress=False,
                 set=["model.latent_dim=4", "model.enc_hidden=[16]", "model.dec_hidden=[16]", "train.report=false"])
    assert not (out / "report.html").exists() and (out / "model").is_dir()


def test_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a run folder" in err and len(err.strip().splitlines()) == 1
    out = tmp_path / "run"
    ganvae.train("mlp-vae", "digits", out=out, steps=3, batch_size=16, progress=False,
                 set=["model.latent_dim=4", "model.enc_hidden=[16]", "model.dec_hidden=[16]", "train.report=false"])
    with (out / "metrics.jsonl").open("a") as f:
        f.write("{not json\n")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl:" in err and "damaged" in err and len(err.strip().splitlines()) == 1


def test_tensorboard_event_files_hold_losses_and_grids(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    ganvae.train("dcgan", "digits", out=out, steps=10, batch_size=16, progress=False,
                 set=TINY + ["train.report=false"])
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"loss/D", "loss/G/adv", "D/real_prob", "img_per_s"} <= set(tags["scalars"])
    d = acc.Scalars("loss/D")
    assert [e.step for e in d] == [32 * i for i in range(1, 6)]  # x axis: images seen (2 steps of 16 per log)
    lines = [__import__("json").loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert abs(d[-1].value - lines[-1]["loss/D"]) < 1e-6
    assert [e.step for e in acc.Images("samples")] == [64, 128, 160]  # the grids at steps 4, 8 and the last
