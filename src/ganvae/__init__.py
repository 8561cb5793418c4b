"""ganvae: train, evaluate, control and audit image generators (GANs and VAEs).

    import ganvae
    run = ganvae.train(model="dcgan", data="mnist", steps=2000, out="runs/x")
    g = ganvae.load("runs/x")
    imgs = g.sample(16, seed=0)        # (16, C, H, W) float in [0, 1]
"""

from .api import Run, audit, evaluate, info, load, report, train
from .data import SOURCES, DataConfig, load_data
from .errors import GanvaeError
from .models import MODELS
from .objectives import GAN_OBJECTIVES, LIKELIHOODS
from .version import __version__

__all__ = ["train", "load", "info", "evaluate", "audit", "report", "Run", "MODELS", "GAN_OBJECTIVES", "LIKELIHOODS",
           "SOURCES", "DataConfig", "load_data", "GanvaeError", "__version__"]
