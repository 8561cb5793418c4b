"""Image data for ganvae: built-in data sets, image folders, IDX and npz files.

``load_data(DataConfig(...))`` returns :class:`DataSplits` with uint8
``(N, C, H, W)`` train/test images, optional labels/factors and JSON-able meta.
A folder of images (and a large idx/npz source) goes through an on-disk cache
(:mod:`.cache`, :mod:`.cache_folder`, :mod:`.cache_arrays`): its images are then a
:class:`~.cache_view.CachedImages` view, read a batch at a time.
"""

from .config import DataConfig, DataSplits, ImageData, SourceData
from .load import config_from_meta, describe, load_data, members_and_heldout
from .sources import PREFIXES, SOURCES

__all__ = [
    "DataConfig",
    "DataSplits",
    "ImageData",
    "SourceData",
    "SOURCES",
    "PREFIXES",
    "load_data",
    "describe",
    "members_and_heldout",
    "config_from_meta",
]
