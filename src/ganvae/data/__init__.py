"""Image data for ganvae: built-in data sets, image folders, IDX and npz files.

``load_data(DataConfig(...))`` returns :class:`DataSplits` with uint8
``(N, C, H, W)`` train/test images, optional labels/factors and JSON-able meta.
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
