"""Metrics: one small module per metric, one registry, one ``evaluate``.

    fid, kid, pr (precision/recall), dc (density/coverage)  on feature-net features
    is, modes                                               on the feature net's class outputs
    nll                                                     VAE likelihood bounds

Every value is printed beside real data and an untrained generator, with its direction and a reading in
words (``reading.py``); slow stages show bars and an up-front estimate on stderr (``progress.py``).

Feature nets (``features.py``) need no download: domain classifiers trained by the
project and shipped as safetensors, and EfficientNet-Lite0 from PyPI packages.
"""

from .evaluate import TrainingEvaluator, evaluate, pick_feature_net
from .registry import METRICS, EvalInputs, Metric, Side
from . import translation  # registers the translation metrics (labels, paired)

__all__ = ["METRICS", "Metric", "EvalInputs", "Side", "evaluate", "pick_feature_net", "TrainingEvaluator"]
