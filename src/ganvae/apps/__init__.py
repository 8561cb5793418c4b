"""Applications of trained generators, each measured on a downstream task.

- ``classifier``: the one small fixed classifier every downstream measurement trains (augmentation arms,
  the classification accuracy score);
- ``augment``: n-shot augmentation with synthetic data against classic augmentation;
- ``anomaly``: per-image anomaly scores from a trained model, and the one-class protocol.

This layer takes models, data and metrics (never run folders: ``ganvae.api`` loads runs and calls in).
"""
