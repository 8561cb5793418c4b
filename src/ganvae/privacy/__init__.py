"""Privacy: differentially private training (``dp``, a plugin of the training loop) and the leakage audit."""

from .config import PrivacyConfig, prepare


def plugins(privacy: PrivacyConfig, model=None, images=None, labels=None) -> list:
    """The trainer plugins a run's ``privacy:`` section asks for (none when DP is off); a model that trains on
    one release of its data (``needs_release``: ``dp-merf``) gets the release, private or not."""
    if getattr(model, "needs_release", False):
        from .merf import EmbeddingRelease
        return [EmbeddingRelease(privacy, images, labels)]
    if not privacy.enabled:
        return []
    from .dp import DPPlugin
    return [DPPlugin(privacy)]


def summary_lines(s: dict) -> list[str]:
    """``ganvae info`` lines for a run.json ``privacy`` record (DP-SGD, or a dp-merf model's one release)."""
    from .merf import MECHANISM, summary_text as release_text
    from .dp import summary_text

    return release_text(s) if s.get("mechanism") == MECHANISM else summary_text(s)


__all__ = ["PrivacyConfig", "prepare", "plugins", "summary_lines"]
