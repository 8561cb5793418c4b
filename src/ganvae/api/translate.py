"""``translate``: a translation run (pix2pix, cyclegan) applied to image files or tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.folder import IMAGE_EXTS, decode_file, list_images
from ..errors import GanvaeError
from ..images import save_grid, to_uint8_nhwc
from ..metrics.translation import TranslationEvaluator, translation_view
from ..util.device import resolve_device
from ..util.files import atomic_write_bytes
from .runs import load

DIRECTIONS = ("a2b", "b2a")


def read_images(source: str | Path, channels: int, size: int, what: str = "--images") -> tuple[torch.Tensor, list[str]]:
    """An image file or a folder of them -> ((N, channels, size, size) float in [0, 1], names).

    Each image is resized (shorter side) and centre-cropped to ``size``; one whose channel count is not
    ``channels`` (grey 1, colour 3) is refused in one line.
    """
    p = Path(source).expanduser()
    if p.is_dir():
        rels = [r for r, _, _ in list_images(p)]
        if not rels:
            raise GanvaeError(f"{what} {p}: no image files found (looked for {' '.join(IMAGE_EXTS)})")
        files = [p / r for r in rels]
    elif p.is_file():
        files, rels = [p], [p.name]
    else:
        raise GanvaeError(f"{what} {p}: no such file or folder")
    out = []
    for f in files:
        try:
            arr, _ = decode_file(str(f), size)  # (size, size, C) uint8, C = 1 or 3
        except Exception as e:  # PIL raises many kinds for unreadable files
            raise GanvaeError(f"{what} {f}: not a readable image ({type(e).__name__})") from None
        if arr.shape[-1] != channels:
            kind = {1: "grey (1 channel)", 3: "colour (3 channels)"}
            raise GanvaeError(f"{what} {f}: a {kind[arr.shape[-1]]} image, but the model translates "
                              f"{kind[channels]} images; convert it first")
        out.append(torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1))
    return torch.stack(out).float() / 255, [str(Path(r).with_suffix("")) for r in rels]


def translate(run, images, out: str | Path | None = None, direction: str = "a2b", device: str = "cpu",
              grid: bool = True, log=print) -> torch.Tensor:
    """Translate ``images`` (a file, a folder, or a (N, C, H, W) tensor in [0, 1]) with the run's model.

    ``run``: a run folder or a loaded model. ``direction``: a2b, or b2a for models that go both ways
    (cyclegan). Returns the translated images (N, C', H, W) in [0, 1]; with ``out``, also writes one PNG per
    image (``OUT/<name>.png``, the input's name) and, when ``grid``, ``OUT/grid.png`` (inputs above outputs).
    """
    if direction not in DIRECTIONS:
        raise GanvaeError(f"--direction {direction!r}: expected a2b or b2a")
    model = load(run, device=str(resolve_device(device, "--device"))) if isinstance(run, (str, Path)) else run
    if not model.translation:
        model.translate(torch.zeros(0))  # the model's own one-line refusal
    c = model.config
    names = None
    if isinstance(images, torch.Tensor):
        x = images
    else:
        x, names = read_images(images, model.input_channels(direction), c.image_size)
    y = model.translate(x, direction).cpu()
    if out is not None:
        write_outputs(x.cpu(), y, Path(out), names, grid)
        if log:
            log(f"translated {len(y)} image(s) {direction} -> {out}")
    return y


def write_outputs(x: torch.Tensor, y: torch.Tensor, out: Path, names: list[str] | None, grid: bool) -> None:
    from PIL import Image
    import io

    names = names or [f"image_{i:04d}" for i in range(len(y))]
    for arr, name in zip(to_uint8_nhwc(y), names):
        img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        path = out / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buf.getvalue())
    if grid and len(y):
        k = min(len(y), 16)
        c = max(x.shape[1], y.shape[1])
        save_grid(torch.cat([x[:k].expand(-1, c, -1, -1), y[:k].expand(-1, c, -1, -1)]), out / "grid.png", nrow=k)


def periodic_evaluator(evaluator_class, tc, net, splits, device: str, binarize: bool):
    """The loop's ``--eval-every`` evaluator (``evaluator_class``: :class:`ganvae.metrics.TrainingEvaluator`);
    for a translation model, on its translations of the source test images against the target domain."""
    kw = dict(seed=tc.seed, device=device, feature_net=tc.eval_feature_net, binarize=binarize)
    if not net.translation:
        return evaluator_class(tc.eval_metric, net, splits, tc.eval_n, **kw)
    view, target, _ = translation_view(net, splits)
    return TranslationEvaluator(evaluator_class(tc.eval_metric, view, target, tc.eval_n, **kw), view)
