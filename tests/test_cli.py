"""The CLI end to end on tiny runs, and its errors: one line, exit code 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ganvae.cli import main
from helpers import set_args, tiny_set


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gan"
    code = main(["train", "--model", "dcgan", "--data", "digits", "--steps", "4", "--batch-size", "16",
                 "--out", str(out), "--quiet", *set_args(tiny_set("dcgan"))])
    assert code == 0
    return out


def test_train_writes_a_run_and_prints_where(tmp_path, capsys):
    out = tmp_path / "v"
    code, stdout, err = run_cli(capsys, "train", "--model", "mlp-vae", "--data", "digits", "--steps", "3",
                                "--batch-size", "8", "--out", out, *set_args(tiny_set("mlp-vae")))
    assert code == 0
    assert f"model {out / 'model'}" in stdout and "samples" in stdout
    assert (out / "model" / "model.safetensors").is_file()


def test_sample_grid_folder_and_npz(trained, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "sample", trained, "-n", "6", "--seed", "1", "--out", tmp_path / "g.png")
    assert code == 0 and (tmp_path / "g.png").is_file()
    code, _, _ = run_cli(capsys, "sample", trained, "-n", "5", "--out", f"{tmp_path / 'each'}/")
    files = sorted((tmp_path / "each").glob("*.png"))
    assert code == 0 and len(files) == 5 and Image.open(files[0]).size == (8, 8)
    code, _, _ = run_cli(capsys, "sample", trained, "-n", "7", "--seed", "1", "--out", tmp_path / "a.npz")
    arr = np.load(tmp_path / "a.npz")["images"]
    assert code == 0 and arr.shape == (7, 1, 8, 8) and arr.dtype == np.uint8
    # same seed, same images, whichever way they are written
    run_cli(capsys, "sample", trained, "-n", "7", "--seed", "1", "--out", tmp_path / "b.npz")
    assert np.array_equal(arr, np.load(tmp_path / "b.npz")["images"])


def test_info(trained, capsys):
    code, out, _ = run_cli(capsys, "info", trained)
    assert code == 0 and "dcgan" in out and "digits" in out and "loss/D" in out
    code, out, _ = run_cli(capsys, "info", trained, "--json")
    d = json.loads(out)
    assert d["step"] == 4 and d["images_seen"] == 64 and d["paths"]["model"].endswith("model")


def test_dry_run_prints_config_and_writes_nothing(tmp_path, capsys):
    code, out, err = run_cli(capsys, "train", "--model", "vae", "--data", "digits", "--out", tmp_path / "x",
                             "--dry-run", "--set", "model.beta=4")
    assert code == 0
    assert "beta: 4.0" in out and "name: vae" in out and "1617" in err  # the data summary goes to stderr
    assert not (tmp_path / "x").exists()
    # `--dry-run > my.yaml` is a valid config that gives the same run
    (tmp_path / "my.yaml").write_text(out)
    code, out2, _ = run_cli(capsys, "train", "--config", tmp_path / "my.yaml", "--dry-run")
    assert code == 0 and out2 == out


def test_dry_run_refuses_what_the_real_run_refuses(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "three").mkdir()
    for i in range(3):
        Image.new("L", (8, 8), i * 80).save(tmp_path / "three" / f"{i}.png")
    for args, needle in ((["--image-size", "100"], "image_size"),
                         (["--data", tmp_path / "three", "--set", "data.holdout=0"], "larger than the 3 training images")):
        for dry in (["--dry-run"], []):
            base = ["train", "--model", "dcgan", "--out", tmp_path / "r", "--quiet"]
            if "--data" not in args:
                base += ["--data", "digits"]
            code, _, err = run_cli(capsys, *base, *args, *dry)
            assert code == 2 and needle in err, (args, dry, err)
            assert not (tmp_path / "r").exists()  # a refused run leaves no empty folder


def test_config_of_another_model_with_model_option(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "train", "--model", "dcgan", "--data", "digits", "--dry-run")
    (tmp_path / "gan.yaml").write_text(out)
    code, out, err = run_cli(capsys, "train", "--config", tmp_path / "gan.yaml", "--model", "vae", "--dry-run")
    assert code == 0 and "name: vae" in out and "objective" not in out
    assert "ganvae: warning: --model vae: the config's model: section (options of dcgan) is not used" in err


def test_wgan_gp_alone_chooses_layer_norm_and_says_so(capsys):
    code, out, err = run_cli(capsys, "train", "--model", "dcgan", "--data", "digits", "--objective", "wgan-gp",
                             "--dry-run")
    assert code == 0 and "d_norm: layer" in out and "model.objective=wgan-gp: using model.d_norm=layer" in err
    import yaml
    assert yaml.safe_load(out)["model"]["d_norm"] == "layer"  # stdout stays pure YAML
    code, _, err = run_cli(capsys, "train", "--model", "dcgan", "--data", "digits", "--objective", "wgan-gp",
                           "--set", "model.d_norm=batch", "--dry-run")
    assert code == 2 and "model.d_norm=batch" in err  # an explicit conflicting choice is still refused


def test_keep_best_alone_chooses_an_eval_interval(capsys):
    code, out, _ = run_cli(capsys, "train", "--model", "dcgan", "--data", "digits", "--keep-best", "fid",
                           "--steps", "200", "--batch-size", "50", "--dry-run")
    assert code == 0 and "eval_every_kimg: 1.0" in out and "keep_best: true" in out


def test_default_run_folder_of_a_path_source_is_one_flat_name(tmp_path, monkeypatch):
    from ganvae.runfolder import source_slug

    assert source_slug("./my pics/") == "my-pics" and source_slug("/abs/path") == "path"
    assert source_slug("folder:~/photos") == "photos" and source_slug("npz:data/x.npz") == "x"
    assert source_slug("mnist") == "mnist"


def test_resume_continues(trained, capsys):
    code, out, _ = run_cli(capsys, "train", "--resume", trained, "--steps", "6", "--quiet")
    assert code == 0
    assert json.loads((trained / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 6


@pytest.mark.parametrize("args, needle", [
    (["train", "--model", "nope", "--data", "digits"], "unknown model 'nope'; valid names: beta-vae, cdcgan"),
    (["train", "--data", "nosuch"], "unknown data source 'nosuch'"),
    (["train", "--data", "folder:/does/not/exist"], "/does/not/exist"),
    (["train", "--objective", "wat", "--data", "digits"], "unknown GAN objective 'wat'"),
    (["train", "--model", "vae", "--objective", "minimax", "--data", "digits"], "applies to GAN models"),
    (["train", "--data", "digits", "--set", "model.nope=1"], "unknown key nope"),
    (["train", "--data", "digits", "--set", "train.steps=abc"], "train.steps: expected an integer"),
    (["train", "--data", "digits", "--set", "nosection"], "expected KEY=VALUE"),
    (["train", "--data", "digits", "--batch-size", "5000"], "larger than the 1617 training images"),
    (["train", "--data", "digits", "--image-size", "11"], "image_size 11"),
    (["sample", "/does/not/exist"], "/does/not/exist"),
    (["info", "/does/not/exist"], "/does/not/exist"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    extra = ["--out", tmp_path / "o", "--steps", "2", "--quiet"] if args[0] == "train" else []
    code, out, err = run_cli(capsys, *args, *extra)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ganvae: error: ") and needle in lines[0], err


def test_existing_out_is_not_overwritten(trained, capsys):
    before = (trained / "model" / "model.safetensors").read_bytes()
    code, _, err = run_cli(capsys, "train", "--data", "digits", "--out", trained, "--steps", "1")
    assert code == 2 and "--resume" in err
    assert (trained / "model" / "model.safetensors").read_bytes() == before


def test_sample_rejects_bad_out_and_n(trained, tmp_path, capsys):
    code, _, err = run_cli(capsys, "sample", trained, "--out", tmp_path / "x.jpeg")
    assert code == 2 and "expected a .png grid" in err
    code, _, err = run_cli(capsys, "sample", trained, "-n", "0")
    assert code == 2 and "-n 0" in err


def test_options_are_not_abbreviated(trained, tmp_path, capsys):
    """`--n 3` is the image count (not a prefix of --nrow); an abbreviation is refused, not guessed."""
    code, _, _ = run_cli(capsys, "sample", trained, "--n", "3", "--out", tmp_path / "a.npz")
    assert code == 0 and np.load(tmp_path / "a.npz")["images"].shape[0] == 3
    with pytest.raises(SystemExit) as e:
        main(["sample", str(trained), "--nr", "4"])
    assert e.value.code == 2 and "unrecognized arguments: --nr 4" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--mod", "vae", "--data", "digits"])


def test_console_script_errors_without_traceback(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"")
    r = subprocess.run([sys.executable, "-m", "ganvae", "train", "--data", f"folder:{tmp_path}", "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and str(tmp_path) in r.stderr
    lines = r.stderr.strip().splitlines()  # a progress bar may come first; the error is one last line
    assert lines[-1].startswith("ganvae: error: ") and sum(ln.startswith("ganvae: error") for ln in lines) == 1


def test_help_lists_models_sources_and_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    for word in ("dcgan", "mlp-gan", "vae", "mlp-vae", "mnist", "folder:PATH", "default: 2000", "nonsaturating"):
        assert word in out
