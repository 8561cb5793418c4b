"""Two-domain data for the translation models (pix2pix, CycleGAN).

Paired data is one :class:`ImageData` whose ``b`` holds each image's partner (row i of ``images`` is A,
row i of ``b`` is B); splits, ``data.limit`` and ``data.classes`` keep the rows together. Unpaired data is
two sources: ``data.source`` (A) and ``data.source_b`` (B), loaded independently, B at A's image size, and
returned as ``DataSplits.b``.

Sources:

* ``pairs:A_DIR,B_DIR``: two folders of image files matched by name without extension (``A_DIR/cat.png``
  with ``B_DIR/cat.jpg``); every file must have its partner. Without ``data.image_size`` all images of both
  folders must have one size (else one line asks for ``--image-size``); with it, each is resized and
  centre-cropped like ``folder:``. Channels: 3 when any image of that folder is colour, else 1 (per folder;
  ``data.channels`` converts A only).
* ``npz:PATH`` / ``pairs:PATH`` with arrays ``a`` and ``b`` (same N; optional ``labels``, and ``test_a``,
  ``test_b``, ``test_labels`` for a test split of its own).
* ``shapes-edges`` (built in, paired): the outline of each ``shapes`` image, drawn in the shape's colour
  (A) -> the filled shape (B).
* ``digits2mnist`` (built in, unpaired): scikit-learn's 8x8 digits upscaled to 28 px (A) and MNIST (B),
  labels on both sides.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import GanvaeError
from .config import DataConfig, DataSplits, ImageData, SourceData
from .files import _npz_images, _npz_labels
from .folder import _decode_all, error_text, open_root
from .shapes import load_shapes
from .transform import conform, convert_channels, resize_images


# --------------------------------------------------------------------------- built-in tasks
def edges_of(images: torch.Tensor, threshold: int = 24) -> torch.Tensor:
    """Outlines of shapes on black: (N, C, H, W) uint8 -> (N, 1, H, W) uint8, 255 on the shape's inner edge.

    A pixel is an edge when it is covered (mean over channels > ``threshold``) and one of its 8 neighbours
    is not (covered minus its 3x3 erosion).
    """
    out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
    for s in range(0, images.shape[0], 2048):
        cover = (images[s:s + 2048].float().mean(1, keepdim=True) > threshold).float()  # (b, 1, H, W)
        eroded = -F.max_pool2d(-cover, 3, 1, 1)
        out[s:s + 2048] = ((cover - eroded) * 255).to(torch.uint8)
    return out


def load_shapes_edges(cfg: DataConfig, progress: bool = True) -> SourceData:
    """Paired translation task: outlines of ``shapes`` images, in the shape's colour (A) -> the filled shapes (B)."""
    raw = load_shapes(cfg, progress)
    t = raw.train
    outline = t.images * (edges_of(t.images) > 0)  # (N, 3, H, W): the colour on the edge, black elsewhere
    train = ImageData(images=outline, labels=t.labels, factors=t.factors, b=t.images)
    return SourceData(train=train, class_names=raw.class_names, factor_names=raw.factor_names,
                      notes={**raw.notes, "task": "shapes-edges"})


def upscaled_with_b(raw: SourceData, cfg: DataConfig, source_b: str, size: int = 28) -> SourceData:
    """``raw`` (small images) resized to ``data.image_size`` or ``size`` px, noting ``source_b`` as domain B."""
    size = cfg.image_size or size

    def up(d: ImageData | None) -> ImageData | None:
        return None if d is None else dataclasses.replace(d, images=resize_images(d.images, size))
    return dataclasses.replace(raw, train=up(raw.train), test=up(raw.test),
                               notes={**raw.notes, "source_b": source_b})


# --------------------------------------------------------------------------- pairs:A_DIR,B_DIR
def _by_stem(spec: str, root: Path, files) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel, _, _ in files:
        stem = rel.rsplit(".", 1)[0]
        if stem in out:
            raise GanvaeError(f"{spec}: {root} has two files named {stem!r} ({out[stem]}, {rel}); pairs are matched "
                              "by name without extension, so each name must be unique")
        out[stem] = rel
    return out


def _some(names, k: int = 5) -> str:
    names = sorted(names)
    return ", ".join(names[:k]) + (f" (+{len(names) - k} more)" if len(names) > k else "")


def match_names(spec: str, a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The names (without extension) in both folders; one line naming the unmatched ones otherwise."""
    common = sorted(set(a) & set(b))
    if not common:
        raise GanvaeError(f"{spec}: no file names in common (A has {_some(a)}; B has {_some(b)}); pairs are matched "
                          "by file name without extension")
    only_a, only_b = set(a) - set(b), set(b) - set(a)
    if only_a or only_b:
        parts = [f"{len(s)} in {w} only: {_some(s)}" for s, w in ((only_a, "A"), (only_b, "B")) if s]
        raise GanvaeError(f"{spec}: unmatched file names, {'; '.join(parts)}; every image needs its partner of the "
                          "same name")
    return common


def _one_size(spec: str, root: Path, rels: list[str]) -> int:
    """The side of the (square, centre-cropped) images of a folder, when all have one size."""
    sizes: dict[tuple[int, int], str] = {}
    for rel in rels:
        try:
            with Image.open(root / rel) as img:
                sizes.setdefault(img.size, rel)
        except Exception as e:  # unreadable: reported with its name
            raise GanvaeError(f"{spec}: cannot read {root / rel} ({error_text(e)})") from None
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h} ({rel})" for (w, h), rel in list(sizes.items())[:3])
        raise GanvaeError(f"{spec}: images in {root} have different sizes ({shown}); set --image-size S to resize "
                          "them all to S x S")
    (w, h), = sizes
    return min(w, h)


def _decode(spec: str, root: Path, rels: list[str], size: int, progress: bool) -> torch.Tensor:
    got = _decode_all(root, rels, size, progress)
    bad = [(r, g) for r, g in zip(rels, got) if isinstance(g, BaseException)]
    if bad:
        raise GanvaeError(f"{spec}: {len(bad)} unreadable file(s) in {root}, e.g. {bad[0][0]} "
                          f"({error_text(bad[0][1])})")
    colour = any(c for _, c in got)
    arrs = [convert_channels(torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None], 3 if colour else 1)
            for a, _ in got]
    return torch.cat(arrs)  # (N, C, S, S) uint8


def load_pair_folders(a_dir: str, b_dir: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    spec = f"pairs:{a_dir},{b_dir}"
    _, ra, fa = open_root(a_dir)
    _, rb, fb = open_root(b_dir)
    a, b = _by_stem(spec, ra, fa), _by_stem(spec, rb, fb)
    names = match_names(spec, a, b)
    ra_rels, rb_rels = [a[n] for n in names], [b[n] for n in names]
    size = cfg.image_size
    if size is None:
        sa, sb = _one_size(spec, ra, ra_rels), _one_size(spec, rb, rb_rels)
        if sa != sb:
            raise GanvaeError(f"{spec}: A's images are {sa} px and B's {sb} px; set --image-size S to resize both")
        size = sa
    images = _decode(spec, ra, ra_rels, size, progress)
    partners = _decode(spec, rb, rb_rels, size, progress)
    return SourceData(train=ImageData(images=images, b=partners), notes={"pair_names": len(names)})


# --------------------------------------------------------------------------- npz with a and b
def is_pairs_npz(path: str) -> bool:
    """Whether ``path`` is an .npz holding arrays ``a`` and ``b`` (and no ``images``)."""
    try:
        with np.load(Path(os.path.expanduser(path)), allow_pickle=False) as z:
            return {"a", "b"} <= set(z.files) and "images" not in z.files
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def load_pairs_npz(path: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    spec = f"npz:{path}"
    try:
        with np.load(Path(os.path.expanduser(path)), allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("a", "b", "labels", "test_a", "test_b", "test_labels") if k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GanvaeError(f"{spec}: cannot read as .npz: {' '.join(str(e).split())}") from None
    if "a" not in arrays or "b" not in arrays:
        raise GanvaeError(f"{spec}: a paired .npz needs arrays 'a' and 'b'; the file has: {', '.join(arrays)}")

    def part(ka: str, kb: str, kl: str) -> ImageData:
        a, b = _npz_images(arrays[ka], f"{spec} [{ka}]"), _npz_images(arrays[kb], f"{spec} [{kb}]")
        if len(a) != len(b):
            raise GanvaeError(f"{spec}: '{ka}' has {len(a)} images but '{kb}' has {len(b)}; pairs need equal counts")
        labels = _npz_labels(arrays[kl], len(a), f"{spec} [{kl}]") if kl in arrays else None
        return ImageData(images=a, labels=labels, b=b)

    test = part("test_a", "test_b", "test_labels") if "test_a" in arrays and "test_b" in arrays else None
    return SourceData(train=part("a", "b", "labels"), test=test)


def load_pairs_source(spec: str, cfg: DataConfig, progress: bool = True) -> SourceData:
    """``pairs:A_DIR,B_DIR`` (two folders) or ``pairs:FILE.npz`` (arrays a and b)."""
    if spec.lower().endswith(".npz") and "," not in spec:
        return load_pairs_npz(spec, cfg, progress)
    dirs = [p.strip() for p in spec.split(",")]
    if len(dirs) != 2 or not all(dirs):
        raise GanvaeError(f"pairs:{spec}: expected two folders, pairs:A_DIR,B_DIR (or an .npz with arrays a and b)")
    return load_pair_folders(dirs[0], dirs[1], cfg, progress)


# --------------------------------------------------------------------------- inside load_data
def fit_partners(d: ImageData, resize: bool, source: str) -> ImageData:
    """``d.b`` at the size of ``d.images`` (square): resized when ``resize`` (data.image_size was given), else an
    error when the sizes differ."""
    if d.b is None:
        return d
    s = d.images.shape[-1]
    if d.b.shape[-2:] == (s, s):
        return d
    if not resize:
        raise GanvaeError(f"data source {source!r}: A images are {s}x{s} but B images "
                          f"{d.b.shape[-2]}x{d.b.shape[-1]}; set --image-size S to resize both")
    return dataclasses.replace(d, b=conform(d.b, s, None))


def load_domain_b(cfg: DataConfig, source_b: str, size: int, train: ImageData, load_data) -> DataSplits:
    """The unpaired domain B (``data.source_b``, or the one a built-in task names), at A's ``size`` px."""
    if train.b is not None:
        raise GanvaeError(f"data.source_b {source_b!r}: data source {cfg.source!r} is already paired (it holds A and "
                          "B); leave out --data-b")
    sub = dataclasses.replace(cfg, source=source_b, source_b=None, image_size=size, channels=None, n=None,
                              **({"classes": None} if hasattr(cfg, "classes") else {}))
    b = load_data(sub, progress=False)
    if b.b is not None or b.train.b is not None:
        raise GanvaeError(f"data.source_b {source_b!r}: a paired source cannot be domain B; give it as --data")
    return b


def pair_meta(train: ImageData, b: DataSplits | None) -> dict:
    """What the data meta says about domain B: channels_b, paired, and B's own meta when unpaired."""
    if train.b is not None:
        return {"paired": True, "channels_b": int(train.b.shape[1])}
    if b is not None:
        return {"paired": False, "channels_b": int(b.meta["channels"]), "source_b": b.meta["source"],
                "b": {k: b.meta[k] for k in ("n_train", "n_test", "num_classes", "domain", "split") if k in b.meta}}
    return {}
