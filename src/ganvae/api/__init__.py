"""The library surface: the one module that wires the packages together and reads and writes run folders.

``train``, ``load``, ``info``, ``evaluate``, ``audit``, ``report``, ``sample``, ``traverse``,
``interpolate``; the CLI and the explorer call only these (and the registries re-exported here).
Below this module every package takes objects: models, tensors, data splits, configs.
"""

from __future__ import annotations

from ..data import SOURCES
from ..images import make_grid
from ..latent import decode, load_image, prior_code, slerp
from ..metrics import METRICS
from ..models import MODELS
from ..objectives import GAN_OBJECTIVES
from ..privacy import summary_lines as privacy_lines
from ..report import write_report as report
from ..runfolder import OPTIONS, RunConfig, info
from ..training import TrainConfig
from ..util.device import resolve_device
from .augment import augment
from .cas import cas, classifier_config, conditional_models
from .data import data_info, prepare_data
from .featnet import feature_net_info, train_feature_net
from .runs import audit, check_seed, evaluate, interpolate, load, sample, sample_labels, traverse
from .score import ANOMALY_SCORES, score
from .training import RESUMABLE_KEYS, Run, check_model_size, export, train
from .translate import translate

__all__ = ["train", "load", "info", "evaluate", "audit", "report", "export", "sample", "traverse", "interpolate", "Run",
           "RunConfig", "MODELS", "SOURCES", "GAN_OBJECTIVES", "METRICS", "OPTIONS", "TrainConfig",
           "resolve_device", "privacy_lines", "prior_code", "decode", "slerp", "load_image", "make_grid",
           "sample_labels", "check_seed", "check_model_size", "RESUMABLE_KEYS"]
__all__ += ["train_feature_net", "feature_net_info"]  # domain feature nets (featnet.py)
__all__ += ["prepare_data", "data_info"]  # data caches (data.py)
__all__ += ["score", "ANOMALY_SCORES"]  # anomaly scores (score.py)
__all__ += ["augment", "cas", "classifier_config", "conditional_models"]  # downstream: augmentation, CAS
__all__ += ["translate"]  # image-to-image translation runs (translate.py)
