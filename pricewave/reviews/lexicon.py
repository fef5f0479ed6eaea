"""The lexicon side of review sentiment: VADER (Hutto & Gilbert, 2014), a classic rule-based scorer.

Two uses: its compound score is the baseline every sentiment model is compared with
(:mod:`pricewave.reviews.evaluation`), and its three scores join the MiniLM embedding as inputs of
the sentiment head (:func:`pricewave.reviews.sentiment.sentiment_features`): the embedding knows
the topic and the phrasing, the lexicon the polarity of single words, negations and intensifiers.
Pure Python and deterministic: a text's scores depend on the text alone.

Example:
    >>> scores = lexicon_scores(["Great coffee, would buy again!", "Stale and crushed. Never again."])
    >>> scores.shape, bool(scores[0, 0] > 0 > scores[1, 0])
    ((2, 3), True)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

LEXICON_FEATURES: tuple[str, ...] = ("lexicon_compound", "lexicon_positive", "lexicon_negative")
"""What :func:`lexicon_scores` returns per text: VADER's compound score in [−1, 1] and its positive and
negative shares of the text in [0, 1]."""

_ANALYZER: Any = None
_LOCK = threading.Lock()


def _analyzer() -> Any:
    global _ANALYZER
    with _LOCK:
        if _ANALYZER is None:
            from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

            _ANALYZER = SentimentIntensityAnalyzer()  # reads its lexicon files once per process
        return _ANALYZER


def lexicon_scores(texts: Sequence[str]) -> np.ndarray:
    """VADER's scores of each text, an ``(n, 3)`` float64 array in the order of :data:`LEXICON_FEATURES`."""
    analyzer = _analyzer()
    out = np.zeros((len(texts), len(LEXICON_FEATURES)), dtype=np.float64)
    for row, text in enumerate(texts):
        polarity = analyzer.polarity_scores("" if text is None else str(text))
        out[row] = (polarity["compound"], polarity["pos"], polarity["neg"])
    return out
