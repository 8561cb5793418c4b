"""Privacy: differentially private training (``dp``, a plugin of the training loop) and the leakage audit."""

from .config import PrivacyConfig, prepare


def plugins(privacy: PrivacyConfig) -> list:
    """The trainer plugins a run's ``privacy:`` section asks for (none when DP is off)."""
    if not privacy.enabled:
        return []
    from .dp import DPPlugin
    return [DPPlugin(privacy)]


__all__ = ["PrivacyConfig", "prepare", "plugins"]
