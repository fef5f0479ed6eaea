"""Review sentiment against human ratings: the shipped head, the embedding-only head and the lexicon, one run.

Every scorer is scored on the same texts in the same run, on two public human-rated sets that
pricewave never trains on:

* ``fine_foods_held_out``: the Amazon Fine Foods reviews of ``modeldata::testing_data``
  (:func:`pricewave.data.datasets.load_reviews` ``("testing")``), rated 'great' or 'other', less the
  7 whose text is also a training review (:func:`held_out_reviews`: 993);
* ``amazon_sentences``: 3,708 sentences of Amazon reviews, each the mean of 20 human ratings on
  −4 … +4 (the VADER paper's ground truth, :func:`pricewave.data.datasets.load_rated_review_snippets`).

The scorers: ``lexicon`` (VADER's compound score, the classic baseline), ``embedding_head`` (a
logistic head on the MiniLM embedding alone, trained in this run on the 4,000 training reviews with
the penalty chosen by cross-validation, as the head was before 2026-12-06) and ``shipped_head`` (the
head the job scores reviews with: embedding and lexicon scores,
:func:`pricewave.reviews.sentiment.sentiment_features`). The figure of merit is Spearman's rank
correlation with the human ratings, with a 95 % bootstrap interval; ROC AUC too where the rating is
two-level.

Example:
    >>> rho, low, high = spearman_with_interval([1, 2, 3, 4, 5], [1.0, 2.5, 2.0, 4.0, 5.0], resamples=200)
    >>> round(rho, 2), low <= rho <= high
    (0.9, True)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pricewave.reviews.lexicon import LEXICON_FEATURES
from pricewave.reviews.sentiment import (
    SentimentHead,
    choose_l2,
    embed_with_disk_cache,
    roc_auc,
    sentiment_features,
    stratified_sample,
)

if TYPE_CHECKING:
    from pricewave.config import Settings
    from pricewave.reviews.embedding import ReviewEmbedder

SCORERS: dict[str, str] = {
    "lexicon": "lexicon (VADER compound)",
    "embedding_head": "MiniLM head, embedding only",
    "shipped_head": "MiniLM + lexicon head (shipped)",
}
"""Each scorer's key and its name in reports."""

DATA_SETS: dict[str, str] = {
    "fine_foods_held_out": "Fine Foods reviews, held out (great / other)",
    "amazon_sentences": "Amazon review sentences (mean of 20 human ratings)",
}
"""Each human-rated set's key and its name in reports."""


@dataclass(frozen=True)
class SentimentScore:
    """How one scorer ranks one human-rated set.

    Attributes:
        data: A key of :data:`DATA_SETS`.
        scorer: A key of :data:`SCORERS`.
        n: Texts scored.
        spearman: Spearman's rank correlation of the scores with the human ratings.
        low: Lower end of its 95 % bootstrap interval.
        high: Upper end.
        roc_auc: ROC AUC where the ratings are two-level, else None.
        over_lexicon: Its Spearman minus the lexicon's on the same texts, and the 95 % bootstrap
            interval of that gap (the same resamples for both): ``(gap, low, high)``.
    """

    data: str
    scorer: str
    n: int
    spearman: float
    low: float
    high: float
    roc_auc: float | None
    over_lexicon: tuple[float, float, float]


def _ranks(values: np.ndarray) -> np.ndarray:
    return pd.Series(values).rank(method="average").to_numpy(dtype=np.float64)


def spearman(scores: Sequence[float] | np.ndarray, ratings: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (ties share their mean rank); NaN when either side is constant."""
    x, y = _ranks(np.asarray(scores, dtype=np.float64)), _ranks(np.asarray(ratings, dtype=np.float64))
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, resamples: int, seed: int
) -> tuple[float, float, float]:
    """``statistic`` of all rows and the 95 % percentile interval over ``resamples`` resamples of the rows."""
    rng = np.random.default_rng(seed)
    draws = [statistic(rows) for rows in rng.integers(0, n, size=(resamples, n))]
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return statistic(np.arange(n)), float(low), float(high)


def spearman_with_interval(
    scores: Sequence[float] | np.ndarray,
    ratings: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Spearman's rho and its 95 % percentile bootstrap interval (texts resampled with replacement)."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(ratings, dtype=np.float64)
    return _bootstrap(lambda rows: spearman(x[rows], y[rows]), x.size, resamples, seed)


def spearman_gap_with_interval(
    scores: Sequence[float] | np.ndarray,
    baseline: Sequence[float] | np.ndarray,
    ratings: Sequence[float] | np.ndarray,
    *,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Spearman of ``scores`` minus that of ``baseline`` on the same texts, with a paired bootstrap interval.

    Example:
        >>> gap, low, high = spearman_gap_with_interval([1, 2, 3, 4], [1, 2, 4, 3], [1, 2, 3, 4], resamples=100)
        >>> round(gap, 2)
        0.2
    """
    x, b, y = (np.asarray(values, dtype=np.float64) for values in (scores, baseline, ratings))
    return _bootstrap(lambda rows: spearman(x[rows], y[rows]) - spearman(b[rows], y[rows]), x.size, resamples, seed)


def embedding_only_head(
    embedder: ReviewEmbedder, cache_dir: Path | None, *, reviews: int | None = None, progress: bool = True
) -> SentimentHead:
    """The baseline head: MiniLM embedding only, on the training reviews (or a stratified sample), CV penalty."""
    from pricewave.data.datasets import load_reviews

    frame = load_reviews("training")
    if reviews is not None:
        frame = frame.iloc[stratified_sample(frame["label"].to_numpy(), reviews, seed=0)]
    labels = frame["label"].to_numpy(dtype=np.int64)
    vectors = embed_with_disk_cache(embedder, frame["text"].tolist(), cache_dir, progress=progress)
    l2, _ = choose_l2(vectors, labels)
    return SentimentHead(l2=l2).fit(vectors, labels)


def held_out_reviews() -> pd.DataFrame:
    """The held-out Fine Foods reviews whose text is not also a training review (993 of 1,000: 7 recur)."""
    from pricewave.data.datasets import load_reviews

    held_out = load_reviews("testing")
    return held_out[~held_out["text"].isin(set(load_reviews("training")["text"]))].reset_index(drop=True)


def human_rated_sets(settings: Settings, *, sample: int | None = None, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The human-rated sets (:data:`DATA_SETS`) as ``text`` and ``rating`` columns; ``sample`` texts of each."""
    from pricewave.data.datasets import load_rated_review_snippets

    held_out = held_out_reviews()
    sets = {
        "fine_foods_held_out": pd.DataFrame({"text": held_out["text"], "rating": held_out["label"].astype(float)}),
        "amazon_sentences": load_rated_review_snippets(settings)[["text", "rating"]],
    }
    if sample is not None:
        sets = {key: frame.sample(n=min(sample, len(frame)), random_state=seed) for key, frame in sets.items()}
    return {key: frame.reset_index(drop=True) for key, frame in sets.items()}


def evaluate_sentiment(
    settings: Settings,
    embedder: ReviewEmbedder,
    shipped: SentimentHead,
    *,
    sample: int | None = None,
    training_reviews: int | None = None,
    resamples: int = 1000,
    progress: bool = True,
) -> list[SentimentScore]:
    """Score every scorer of :data:`SCORERS` on every set of :data:`DATA_SETS`, in this one run.

    Args:
        settings: Where the data sets and the embedding cache live.
        embedder: The MiniLM embedder (the job's model).
        shipped: The head the job uses (:func:`pricewave.reviews.sentiment.load_or_train_sentiment_head`).
        sample: Score only this many texts of each set (a quicker check), drawn with a fixed seed.
        training_reviews: Train the embedding-only head on a stratified sample of this many reviews.
        resamples: Bootstrap resamples per interval.
        progress: Progress bars while embedding.
    """
    cache_dir = settings.path("cache", "embeddings")
    baseline = embedding_only_head(embedder, cache_dir, reviews=training_reviews, progress=progress)
    results: list[SentimentScore] = []
    for data, frame in human_rated_sets(settings, sample=sample).items():
        texts = frame["text"].tolist()
        ratings = frame["rating"].to_numpy(dtype=np.float64)
        vectors = embed_with_disk_cache(embedder, texts, cache_dir, progress=progress)
        features = sentiment_features(texts, vectors)  # the lexicon scores once, for two scorers
        scores = {
            "lexicon": features[:, vectors.shape[1] + LEXICON_FEATURES.index("lexicon_compound")],
            "embedding_head": baseline.score(vectors),
            "shipped_head": shipped.score(features),
        }
        two_level = np.unique(ratings).size == 2
        for scorer, values in scores.items():
            rho, low, high = spearman_with_interval(values, ratings, resamples=resamples)
            auc = roc_auc(ratings > ratings.min(), values) if two_level else None
            gap = spearman_gap_with_interval(values, scores["lexicon"], ratings, resamples=resamples)
            results.append(SentimentScore(data, scorer, len(texts), rho, low, high, auc, gap))
    return results


def sentiment_table(results: Sequence[SentimentScore]) -> str:
    """A Markdown table of the results, one row per (set, scorer)."""
    lines = [
        "| human-rated set | n | scorer | Spearman (95 % interval) | minus the lexicon's (95 % interval) | ROC AUC |",
        "| --- | ---: | --- | --- | --- | ---: |",
    ]
    for result in results:
        auc = "–" if result.roc_auc is None else f"{result.roc_auc:.3f}"
        gap, gap_low, gap_high = result.over_lexicon
        versus = "–" if result.scorer == "lexicon" else f"{gap:+.3f} ({gap_low:+.3f} – {gap_high:+.3f})"
        lines.append(
            f"| {DATA_SETS[result.data]} | {result.n:,} | {SCORERS[result.scorer]} | "
            f"{result.spearman:.3f} ({result.low:.3f} – {result.high:.3f}) | {versus} | {auc} |"
        )
    return "\n".join(lines)


def write_sentiment_report(results: Sequence[SentimentScore], out_dir: Path) -> list[Path]:
    """``sentiment.json``, ``sentiment.md`` and ``sentiment.png`` (Spearman per set and scorer) in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "sentiment.json"
    json_path.write_text(json.dumps([asdict(result) for result in results], indent=1))
    md_path = out_dir / "sentiment.md"
    md_path.write_text("# Review sentiment against human ratings\n\n" + sentiment_table(results) + "\n")
    figure, axis = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(SCORERS)
    for index, scorer in enumerate(SCORERS):
        rows = [next(r for r in results if r.data == data and r.scorer == scorer) for data in DATA_SETS]
        positions = np.arange(len(DATA_SETS)) + (index - (len(SCORERS) - 1) / 2) * width
        errors = np.array([[r.spearman - r.low for r in rows], [r.high - r.spearman for r in rows]])
        axis.bar(positions, [r.spearman for r in rows], width, yerr=errors, capsize=3, label=SCORERS[scorer])
    axis.set_xticks(np.arange(len(DATA_SETS)), [DATA_SETS[data] for data in DATA_SETS], fontsize=8)
    axis.set_ylabel("Spearman with human ratings")
    axis.set_ylim(0, 0.9)
    axis.legend(fontsize=8, loc="upper center", ncol=len(SCORERS))
    figure.tight_layout()
    png_path = out_dir / "sentiment.png"
    figure.savefig(png_path, dpi=110)
    plt.close(figure)
    return [json_path, md_path, png_path]
