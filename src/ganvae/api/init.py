"""``--init RUN`` (``train.init``): start a new run from the networks of an earlier one.

The use it is made for: public pretraining, then private fine-tuning. Train on public images (``shapes``,
``digits``, the user's own public pictures), then ``ganvae train --init PUBLIC_RUN --dp-epsilon 8`` on the
sensitive images. The new run's privacy accounting counts its own steps on its own data only; the starting
weights are public (their data is not protected by this run's guarantee, and must not contain the private
images: a RUN trained on the same source, or a built-in source that shares its images, is refused), and run.json,
the report and the model card say so.

Every network of RUN's latest training checkpoint is loaded (a GAN's D as well as G), not its optimizer
state, step or EMA: the new run starts at step 0 with fresh optimizers, its EMA a copy of the loaded G. RUN
must be the same registered model with the same image shape and networks; anything else is one clear error.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import GanvaeError
from ..runfolder import read_config
from ..training import checkpoint as ckpt


def _shape(m, conditional: bool) -> str:
    return f"{m.channels}x{m.image_size}x{m.image_size}" + (f", {m.num_classes} classes" if conditional else "")


# Built-in sources that share images: a run on one has seen images of the other
SHARED_IMAGES = ({"mnist", "mnist-5k", "digits2mnist"}, {"digits", "digits2mnist"}, {"shapes", "shapes-edges"})
PATH_KINDS = ("folder", "idx", "npz")  # source prefixes before a path


def _same_images(a: str, b: str) -> bool:
    """Whether data sources ``a`` and ``b`` hold (some of) the same images: the same name, a built-in pair that
    shares images, or the same file or folder."""
    if a == b or any(a in s and b in s for s in SHARED_IMAGES):
        return True
    pa, pb = (Path(x.split(":", 1)[1] if x.split(":", 1)[0] in PATH_KINDS else x).expanduser() for x in (a, b))
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


def load_init(net, run: str | Path, model_name: str, model_cfg, private_data: str | None = None) -> dict:
    """Load RUN's networks into ``net`` (built from ``model_name`` / ``model_cfg``); return the record for
    run.json: ``{"run", "step", "model", "data"}``. ``private_data``: the source a private run protects; RUN
    must not have been trained on it (its weights would carry what the guarantee claims to protect)."""
    run = Path(run)
    where = f"--init {run}"
    if not (run / "config.yaml").is_file():
        raise GanvaeError(f"{where}: not a run folder (no config.yaml); expected a folder made by `ganvae train`")
    theirs = read_config(run)
    if private_data is not None and _same_images(theirs.data.source, private_data):
        raise GanvaeError(f"{where}: it was trained on {theirs.data.source}, which holds the images this private run "
                          f"protects ({private_data}); the guarantee would not cover what its weights learnt from "
                          "them: start from a run on other (public) images")
    if theirs.model_name != model_name:
        raise GanvaeError(f"{where}: a {theirs.model_name} run, and this run trains {model_name}: expected a run "
                          "of the same model")
    c = net.conditional
    if _shape(theirs.model, c) != _shape(model_cfg, c):
        raise GanvaeError(f"{where}: its images are {_shape(theirs.model, c)}, this run's are "
                          f"{_shape(model_cfg, c)}; train the public run at the same --image-size and --channels "
                          "(and classes, for a conditional model)")
    path = run / "checkpoints" / "latest.pt"
    if not path.is_file():
        raise GanvaeError(f"{where}: no training checkpoint ({path}); it needs the networks of a run's "
                          "checkpoints/latest.pt")
    state = ckpt.load_state(path)
    ours = net.state_dict()
    skip = tuple(f"{p}." for p in getattr(net, "init_skip", ()))  # model state that is not a network's (dp-merf's
    ours = {k: v for k, v in ours.items() if not k.startswith(skip)}  # released target: never another run's)
    theirs_state = {k: v for k, v in state["model"].items() if not k.startswith(skip)}
    want = {k: v for k, v in theirs_state.items() if k in ours}
    missing = sorted(set(ours) - set(want))
    wrong = sorted(k for k, v in want.items() if v.shape != ours[k].shape)
    if missing or wrong or set(theirs_state) - set(ours):
        first = (missing or wrong or sorted(set(theirs_state) - set(ours)))[0]
        raise GanvaeError(f"{where}: its {model_name} networks differ from this run's (first: {first}); train the "
                          "public run with the same model settings (a private GAN's D uses model.d_norm=group: "
                          "give the public run --set model.d_norm=group)")
    net.load_state_dict(want, strict=False)
    return {"run": str(run.resolve()), "step": int(state["step"]), "model": theirs.model_name,
            "data": theirs.data.source}
