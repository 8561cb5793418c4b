"""ganvae: train, evaluate, control and audit image generators (GANs and VAEs).

    import ganvae
    run = ganvae.train(model="dcgan", data="mnist", steps=2000, out="runs/x")
    g = ganvae.load("runs/x")
    imgs = g.sample(16, seed=0)        # (16, C, H, W) float in [0, 1]
"""

__version__ = "0.1.0"

from .api import Run, load, train  # noqa: E402
from .data import SOURCES, DataConfig, load_data  # noqa: E402
from .errors import GanvaeError  # noqa: E402
from .models import MODELS  # noqa: E402
from .objectives import GAN_OBJECTIVES, LIKELIHOODS  # noqa: E402

__all__ = ["train", "load", "Run", "MODELS", "GAN_OBJECTIVES", "LIKELIHOODS", "SOURCES", "DataConfig",
           "load_data", "GanvaeError", "__version__"]
