"""Accuracy engines, chosen by `SORIFLOW_SCORING_ACCURACY_ENGINE` and the request's language."""

from __future__ import annotations

from soriflow.scoring.engines.base import AccuracyEngine, PhoneAccuracy, WordAccuracy, WordToAssess
from soriflow.scoring.settings import Settings

__all__ = ["AccuracyEngine", "PhoneAccuracy", "WordAccuracy", "WordToAssess", "build_engines"]


def build_engines(settings: Settings) -> dict[str, AccuracyEngine]:
    """Engines by language: "en" (when pocketsphinx applies) and "*" for every other language."""
    from soriflow.scoring.engines.confidence import ConfidenceEngine

    confidence = ConfidenceEngine()
    if settings.scoring_accuracy_engine == "confidence":
        return {"*": confidence}
    from soriflow.scoring.engines.pocketsphinx import PocketsphinxEngine

    phones = PocketsphinxEngine(
        acoustic_model=settings.scoring_acoustic_model,
        dictionary=settings.scoring_pronunciation_dict,
        gop_midpoint=settings.scoring_gop_midpoint,
        gop_scale=settings.scoring_gop_scale,
        max_decoders=settings.scoring_max_concurrency,
    )
    if settings.scoring_accuracy_engine == "pocketsphinx":
        # forced for every language: for deployments that configured their own language's model
        return {"*": phones}
    return {"en": phones, "*": confidence}  # auto: the bundled model is English
