"""A data set of colour photo patches from scikit-image's sample photos, written as an .npz.

    .venv/bin/python benchmarks/photos.py /tmp/bench/photos.npz              # 6000 train, 1000 test, 32 px
    .venv/bin/ganvae train --model resgan --data npz:/tmp/bench/photos.npz   # like any user's .npz

The quality issue's first complaint was made on "a folder of 32x32 colour photo patches": the data no
built-in source covers (colour, natural image statistics, no labels). This builds such a set offline:
each of seven photos shipped inside scikit-image (astronaut, coffee, chelsea, rocket, the
immunohistochemistry slide, the retina and the Hubble deep field) is resized so that its short side is
160 and 320 pixels (two scales), and random ``size x size`` crops are taken. The training crops come from
the left 75% of each resized photo and the test crops from the right 25% (columns), so no test patch
overlaps a training patch. Every photo and scale gives the same number of crops. Arrays: ``images``
and ``test_images``, uint8 (N, H, W, 3); no labels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "hubble_deep_field")
SHORT_SIDES = (160, 320)
TRAIN_SHARE = 0.75


def _resized(img: np.ndarray, short: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = short / min(h, w)
    return np.asarray(Image.fromarray(img).resize((round(w * s), round(h * s)), Image.LANCZOS))


def _crops(img: np.ndarray, n: int, size: int, lo: int, hi: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random crops whose columns lie in [lo, hi)."""
    ys = rng.integers(0, img.shape[0] - size + 1, n)
    xs = rng.integers(lo, hi - size + 1, n)
    return np.stack([img[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def make_photo_patches(path: str | Path, n_train: int = 6000, n_test: int = 1000, size: int = 32,
                       seed: int = 0) -> Path:
    """Write the patch set to ``path`` (an .npz) and return it; an existing file with the same settings is kept."""
    import skimage.data

    path = Path(path)
    meta = np.array([n_train, n_test, size, seed])
    if path.is_file():
        with np.load(path) as f:
            if "settings" in f and np.array_equal(f["settings"], meta):
                return path
    rng = np.random.default_rng(seed)
    parts = [_resized(getattr(skimage.data, name)()[..., :3], short) for name in PHOTOS for short in SHORT_SIDES]
    train, test = [], []
    for i, img in enumerate(parts):
        cut = int(img.shape[1] * TRAIN_SHARE)
        train.append(_crops(img, n_train // len(parts) + (i < n_train % len(parts)), size, 0, cut, rng))
        test.append(_crops(img, n_test // len(parts) + (i < n_test % len(parts)), size, cut, img.shape[1], rng))
    train_a, test_a = np.concatenate(train), np.concatenate(test)
    rng.shuffle(train_a)
    rng.shuffle(test_a)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=train_a, test_images=test_a, settings=meta)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="the .npz to write")
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    print(make_photo_patches(a.out, a.n_train, a.n_test, a.size, a.seed))


if __name__ == "__main__":
    main()
