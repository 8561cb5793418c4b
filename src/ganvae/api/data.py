"""``prepare_data`` and ``data_info``: a data source's on-disk cache, built ahead of time; what a source holds.

    ganvae.prepare_data("~/photos", image_size=128)            # the cache training will find
    ganvae.prepare_data("~/photos", image_size=128, out="/fast/photos-128")  # then data.cache=/fast/photos-128
    ganvae.data_info("~/photos")
"""

from __future__ import annotations

from ..data import DataConfig
from ..data.cache_info import info_text, prepare, prepare_text, source_info


def _config(source: str, image_size, channels, **kw) -> DataConfig:
    return DataConfig(source=str(source), image_size=image_size, channels=channels,
                      **{k: v for k, v in kw.items() if v is not None})


def prepare_data(source: str, *, image_size: int | None = None, channels: int | None = None, out=None,
                 workers: int | None = None, skip_bad_images: bool = False, cache_dir: str | None = None,
                 progress: bool = True, log=print) -> dict:
    """Decode ``source`` (a folder of images, ``idx:PATH``, ``npz:PATH``) into its cache now.

    ``out``: the cache folder (train with ``--set data.cache=OUT``); default: the place under the cache root
    (``cache_dir``, ``$GANVAE_CACHE``, ``~/.cache/ganvae``) where training with the same source, image size and
    channels finds it. ``workers``: decoding processes (default ``min(CPUs, 8)``). Returns the cache folder
    (``cache_dir``), ``status`` (``written`` or ``hit``: already up to date), ``count``, ``shape`` (C, H, W),
    ``bytes``, ``classes`` ([name, count] pairs or None), ``n_skipped``, ``seconds``; ``log`` gets a summary.
    """
    cfg = _config(source, image_size, channels, cache=None if out is None else str(out), workers=workers,
                  skip_bad_images=skip_bad_images, cache_dir=cache_dir)
    result = prepare(cfg, progress=progress)
    if log:
        log(prepare_text(result, cfg))
    return result


def data_info(source: str, *, image_size: int | None = None, channels: int | None = None, holdout: float = 0.1,
              cache: str | None = None, cache_dir: str | None = None, workers: int | None = None, log=print) -> dict:
    """What ``source`` holds, without training or decoding: ``count``, ``shape`` (C, H, W at ``image_size``),
    ``classes`` ([name, count] pairs or None), the split sizes for ``holdout``, and its ``cache`` (``state``:
    complete, none or memory; ``path``; ``bytes``). A folder's channels come from its files' headers."""
    cfg = _config(source, image_size, channels, holdout=holdout, cache=cache, cache_dir=cache_dir, workers=workers)
    result = source_info(cfg)
    if log:
        log(info_text(result))
    return result
