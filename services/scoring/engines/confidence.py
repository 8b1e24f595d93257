"""Word accuracy from the recogniser's confidence: any language, no phone model."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from soriflow.scoring.engines.base import PhoneAccuracy, WordAccuracy, WordToAssess, confidence_result


class ConfidenceEngine:
    """`accuracy = 100 * confidence`: coarse, but language-independent (Whisper's word probability)."""

    name = "confidence"

    def load(self) -> None:
        """Nothing to load."""

    def assess(
        self, samples: npt.NDArray[np.float32], words: Sequence[WordToAssess], cancel: threading.Event
    ) -> list[WordAccuracy]:
        return [confidence_result(item) for item in words]

    def relative(self, learner: WordAccuracy, reference: Sequence[PhoneAccuracy]) -> WordAccuracy:
        """Confidence has no phones to compare: unchanged."""
        return learner
