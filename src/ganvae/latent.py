"""Latent-space tools for a loaded model: slerp, traversals, interpolations, image -> code.

    model = ganvae.load("runs/x")
    grid = traverse(model, dims=range(10), span=3.0, steps=9, seed=0)   # (10 * 9, C, H, W): 9 columns
    frames = interpolate(model, seeds=(1, 2), steps=10)                 # (10, C, H, W): 10 frames

Codes live in the prior's units (N(0, I): one unit = one prior standard deviation).
Traversals and seed interpolations work for GANs and VAEs; codes of real images
(``image_code``) need a VAE's encoder (its posterior mean).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .errors import GanvaeError
from .util.modes import eval_mode


def slerp(a: torch.Tensor, b: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation between codes ``a`` and ``b`` (D,) at ``t`` (a number or (T,)) -> (D,) or (T, D).

    Follows the great circle between the directions of a and b (White 2016):
    sin((1-t) w) / sin(w) a + sin(t w) / sin(w) b, w the angle between a and b;
    t = 0 gives a, t = 1 gives b. Nearly parallel (or zero) vectors fall back to
    linear interpolation.
    """
    a, b = a.reshape(-1), b.reshape(-1)
    scalar = not isinstance(t, torch.Tensor) and np.ndim(t) == 0
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device).reshape(-1, 1)
    na, nb = a.norm(), b.norm()
    if na == 0 or nb == 0:
        out = (1 - t) * a + t * b
    else:
        cos = ((a / na) @ (b / nb)).clamp(-1.0, 1.0)
        omega = torch.arccos(cos)
        so = torch.sin(omega)
        if so.abs() < 1e-6:
            out = (1 - t) * a + t * b
        else:
            out = torch.sin((1 - t) * omega) / so * a + torch.sin(t * omega) / so * b
    return out[0] if scalar else out


def parse_dims(spec: str | Iterable[int] | None, latent_dim: int) -> list[int]:
    """``"0-9"``, ``"0,3,5"``, ``"0-3,7"`` or a list of ints -> dimension indices, each checked against latent_dim.

    ``None`` = every dimension.
    """
    if spec is None:
        return list(range(latent_dim))
    dims: list[int] = []
    if isinstance(spec, str):
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                if hi < lo:
                    raise GanvaeError(f"--dims {spec}: range {part} runs backwards")
                dims += list(range(lo, hi + 1))
                continue
            try:
                dims.append(int(part))
            except ValueError:
                raise GanvaeError(f"--dims {spec}: expected indices like 0-9 or 0,3,5") from None
    else:
        dims = [int(d) for d in spec]
    if not dims:
        raise GanvaeError(f"--dims {spec!r}: no dimensions given")
    bad = [d for d in dims if not 0 <= d < latent_dim]
    if bad:
        raise GanvaeError(f"--dims: dimension {bad[0]} is out of range; the model's latent_dim is {latent_dim} "
                          f"(valid: 0-{latent_dim - 1})")
    return dims


def traversal_codes(base: torch.Tensor, dims: Sequence[int], values: torch.Tensor,
                    relative: bool = False) -> torch.Tensor:
    """(len(dims) * len(values), D) codes, row-major: row r, column c is ``base`` with
    dimension ``dims[r]`` set to ``values[c]`` (``relative``: ``base[dims[r]] + values[c]``)."""
    base = base.reshape(-1)
    values = values.to(base)
    rows = []
    for d in dims:
        z = base.repeat(values.shape[0], 1)
        z[:, d] = values + (base[d] if relative else 0.0)
        rows.append(z)
    return torch.cat(rows) if rows else base.new_zeros((0, base.shape[0]))


def prior_code(model, seed: int, cls: int | None = None) -> torch.Tensor:
    """One code (D,) from the model's prior, the same one ``model.sample(1, seed, labels=cls)`` decodes."""
    gen = torch.Generator(device=model.device)
    gen.manual_seed(int(seed))
    if cls is None:
        return model.latent(1, gen)[0]
    return model.latent(1, gen, labels=torch.tensor([cls], device=model.device))[0]


def load_image(source: str | Path | bytes, channels: int, size: int, what: str = "--images") -> torch.Tensor:
    """An image file (a path, or its bytes) -> (1, channels, size, size) float in [0, 1], prepared as
    folder data is (any mode to 8-bit L/RGB, shorter side to ``size`` and centre crop, then grey/RGB
    conversion). ``what`` names the input in errors."""
    from .data.folder import decode_file
    from .data.transform import convert_channels

    if isinstance(source, (bytes, bytearray)):
        name, handle = "the upload", io.BytesIO(source)
    else:
        p = Path(source)
        if not p.is_file():
            raise GanvaeError(f"{what} {p}: no such file")
        name, handle = f"{what} {p}", str(p)
    try:
        arr, _ = decode_file(handle, size)
    except Exception as e:  # PIL raises many kinds for unreadable files
        raise GanvaeError(f"{name}: not a readable image ({type(e).__name__})") from None
    x = torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).unsqueeze(0)
    return convert_channels(x, channels).float() / 255


@torch.no_grad()
def image_code(model, image) -> torch.Tensor:
    """The VAE posterior mean (D,) of an image: a path, or a (C, H, W) / (1, C, H, W) tensor in [0, 1]."""
    if not model.has_encoder:
        raise GanvaeError("codes of real images (--image/--images) need a VAE's encoder; this run is a "
                          f"{model.family or 'model without one'}: use prior codes (--seed/--seeds)")
    if model.conditional:
        raise GanvaeError("codes of real images are not supported for class-conditional models (the encoder "
                          "needs each image's class); use prior codes (--seed/--seeds)")
    c = model.config
    x = load_image(image, c.channels, c.image_size) if isinstance(image, (str, Path)) else image
    x = x.reshape(1, *x.shape[-3:]) if x.ndim == 3 else x
    if tuple(x.shape[1:]) != (c.channels, c.image_size, c.image_size):
        raise GanvaeError(f"image of shape {tuple(x.shape[1:])}: the model takes "
                          f"({c.channels}, {c.image_size}, {c.image_size})")
    with eval_mode(model):
        return model.encode(x.to(model.device)).mean[0]


@torch.no_grad()
def decode(model, z: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Codes (N, D) -> images (N, C, H, W) in [0, 1] on the CPU, decoded in eval mode."""
    net = model.generator_net()
    with eval_mode(model, net):
        out = [model.decode_latent(z[i:i + batch_size].to(model.device), net).clamp(0, 1).cpu()
               for i in range(0, z.shape[0], batch_size)]
    return torch.cat(out)


def _check_steps(steps: int, what: str) -> None:
    if steps < 2 or steps > 1000:
        raise GanvaeError(f"{what} {steps}: expected 2 to 1000")


def traverse(model, dims: str | Iterable[int] | None = None, span: float = 3.0, steps: int = 9,
             seed: int = 0, image=None, relative: bool = False) -> torch.Tensor:
    """Latent traversal images (len(dims) * steps, C, H, W), row-major: one row per dimension, ``steps``
    columns (``ganvae traverse --columns``).

    The base code is the posterior mean of ``image`` (VAEs only) or else a prior sample from
    ``seed``; along row r, dimension dims[r] takes the values linspace(-span, span, steps)
    (prior sd units; ``relative``: offsets added to the base value) while the others keep the base code.
    """
    _check_steps(steps, "--columns")
    if not (span > 0 and math.isfinite(span)):
        raise GanvaeError(f"--range {span}: expected a positive number (prior standard deviations)")
    d = parse_dims(dims, model.config.latent_dim)
    base = image_code(model, image) if image is not None else prior_code(model, seed)
    values = torch.linspace(-span, span, steps)
    return decode(model, traversal_codes(base, d, values, relative))


def interpolate(model, seeds: tuple[int, int] = (0, 1), steps: int = 10, images=None) -> torch.Tensor:
    """``steps`` frames (steps, C, H, W; ``ganvae interpolate --frames``) along the slerp between two codes,
    endpoints included:
    prior samples from ``seeds``, or (VAEs) the posterior means of the two ``images``.
    Class-conditional models keep the first code's class throughout."""
    _check_steps(steps, "--frames")
    if images is not None:
        if len(images) != 2:
            raise GanvaeError(f"--images: expected two images, got {len(images)}")
        a, b = (image_code(model, im) for im in images)
    else:
        if len(seeds) != 2:
            raise GanvaeError(f"--seeds: expected two seeds, got {len(seeds)}")
        a, b = (prior_code(model, s) for s in seeds)
    k = model.config.latent_dim
    path = slerp(a[:k], b[:k], torch.linspace(0, 1, steps, dtype=a.dtype, device=a.device))
    if a.shape[0] > k:  # conditional models append the class: it stays the first code's
        path = torch.cat([path, a[k:].expand(steps, -1)], 1)
    return decode(model, path)


def save_gif(frames: torch.Tensor, path: str | Path, ms: int = 120, min_tile: int = 64) -> Path:
    """An animated GIF of ``frames`` (T, C, H, W) in [0, 1], looping; small frames are enlarged (nearest).

    Pillow merges identical consecutive frames (adding up their durations).
    """
    from .images import make_grid
    from .util.files import atomic_write_bytes

    pics = [make_grid(f[None], nrow=1, pad=0, min_tile=min_tile) for f in frames]
    buf = io.BytesIO()
    pics[0].save(buf, format="GIF", save_all=True, append_images=pics[1:], duration=ms, loop=0)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path
