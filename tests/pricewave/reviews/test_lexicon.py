"""The VADER lexicon scores: the sentiment baseline and inputs of the sentiment head."""

from __future__ import annotations

import numpy as np

from pricewave.reviews.lexicon import LEXICON_FEATURES, lexicon_scores


def test_scores_are_per_text_in_range_and_ordered_like_the_features() -> None:
    texts = ["I love it, absolutely wonderful!", "Terrible. I hate it.", "", "The box is blue."]
    scores = lexicon_scores(texts)
    assert scores.shape == (4, len(LEXICON_FEATURES)) and scores.dtype == np.float64
    compound, positive, negative = scores.T
    assert compound[0] > 0.5 and compound[1] < -0.5 and compound[2] == 0 and compound[3] == 0
    assert positive[0] > negative[0] and negative[1] > positive[1]
    assert np.abs(compound).max() <= 1 and scores[:, 1:].min() >= 0 and scores[:, 1:].max() <= 1


def test_negation_and_intensity_move_the_score() -> None:
    good, not_good, very_good = lexicon_scores(["good", "not good", "very good!!"])[:, 0]
    assert not_good < 0 < good < very_good


def test_a_text_scores_the_same_alone_or_among_others() -> None:
    texts = ["Great value.", "Awful smell, returned it.", "ok"]
    together = lexicon_scores(texts)
    alone = np.vstack([lexicon_scores([text]) for text in texts])
    assert np.array_equal(together, alone)
