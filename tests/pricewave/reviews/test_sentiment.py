"""Sentiment head: logistic regression, metrics, persistence, and held-out AUC on real reviews."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest

from pricewave.config import Settings, load_settings
from pricewave.data.datasets import load_reviews
from pricewave.errors import ConfigError
from pricewave.reviews.embedding import ReviewEmbedder
from pricewave.reviews.sentiment import (
    MIN_SAMPLE_REVIEWS,
    SentimentHead,
    SentimentModelError,
    accuracy,
    choose_l2,
    load_or_train_sentiment_head,
    roc_auc,
    sentiment_head_path,
    sentiment_input_width,
    stratified_sample,
    stratified_split,
    texts_fingerprint,
    train_sentiment_head,
)
from tests.conftest import SENTIMENT_SAMPLE_MIN_AUC, SENTIMENT_SAMPLE_REVIEWS


def _pairwise_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The AUC's definition: P(score_pos > score_neg) + 1/2 P(tie), over all pairs."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@pytest.mark.parametrize("seed", range(5))
def test_rank_auc_equals_the_pairwise_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=200)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounding makes many ties
    assert roc_auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores), abs=1e-12)


def test_metric_edge_cases() -> None:
    assert roc_auc([0, 1], [0.2, 0.9]) == 1.0
    assert roc_auc([0, 1], [0.9, 0.2]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.1, 0.2])
    assert accuracy([1, 0, 1], [True, False, False]) == pytest.approx(2 / 3)


def _synthetic(n: int = 400, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    true_w = rng.normal(size=d)
    y = (x @ true_w + 0.3 > 0).astype(int)
    return x, y


def test_logistic_regression_separates_separable_data() -> None:
    x, y = _synthetic()
    head = SentimentHead(l2=0.01).fit(x, y)
    assert accuracy(y, head.predict(x)) >= 0.99
    assert roc_auc(y, head.predict_proba(x)) >= 0.999


def test_fit_reaches_the_penalized_optimum() -> None:
    """At the optimum the gradient of sum(logloss) + l2/2 ||w||^2 is zero."""
    x, y = _synthetic(n=300, d=8, seed=1)
    y = np.where(np.random.default_rng(2).random(300) < 0.1, 1 - y, y)  # label noise: finite optimum
    head = SentimentHead(l2=2.0).fit(x, y)
    assert head.weights is not None
    p = head.predict_proba(x)
    grad_w = x.T @ (p - y) + 2.0 * head.weights
    grad_b = float(np.sum(p - y))
    assert np.abs(grad_w).max() < 1e-6 and abs(grad_b) < 1e-6
    # A stronger penalty shrinks the weights.
    strong = SentimentHead(l2=50.0).fit(x, y).weights
    assert strong is not None and np.linalg.norm(strong) < np.linalg.norm(head.weights)


def test_score_is_2p_minus_1_within_bounds() -> None:
    x, y = _synthetic()
    head = SentimentHead(l2=0.0001).fit(x, y)
    extreme = np.vstack([x * 1000, x])
    scores = head.score(extreme)
    assert np.all(scores >= -1.0) and np.all(scores <= 1.0)
    np.testing.assert_allclose(head.score(x), 2 * head.predict_proba(x) - 1)
    assert scores.min() == -1.0 and scores.max() == 1.0


def test_unfitted_head_and_wrong_width_are_errors() -> None:
    with pytest.raises(SentimentModelError, match="not trained"):
        SentimentHead().score(np.zeros((1, 4)))
    x, y = _synthetic(d=4)
    with pytest.raises(ValueError, match="columns"):
        SentimentHead().fit(x, y).score(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="0 or 1"):
        SentimentHead().fit(x, y * 2)


def test_save_load_round_trip(tmp_path: Path) -> None:
    x, y = _synthetic()
    head = SentimentHead(l2=0.5).fit(x, y)
    head.metrics = {"roc_auc": 0.9, "embedding_fingerprint": "abc"}
    path = head.save(tmp_path / "deep" / "head.json")
    loaded = SentimentHead.load(path)
    np.testing.assert_array_equal(loaded.score(x), head.score(x))
    assert loaded.metrics == head.metrics and loaded.l2 == 0.5
    assert not list(path.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SentimentModelError, match="train-sentiment"):
        SentimentHead.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SentimentModelError, match="retrain"):
        SentimentHead.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(SentimentModelError, match="retrain"):
        SentimentHead.load(bad)


def test_stratified_split_keeps_class_shares() -> None:
    labels = np.array([1] * 300 + [0] * 100)
    train, test = stratified_split(labels, test_size=0.25, seed=3)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 400
    assert (labels[test] == 1).sum() == 75 and (labels[test] == 0).sum() == 25
    again, _ = stratified_split(labels, test_size=0.25, seed=3)
    np.testing.assert_array_equal(train, again)
    with pytest.raises(ValueError):
        stratified_split(labels, test_size=1.0)


def test_stratified_sample_keeps_class_shares_and_is_deterministic() -> None:
    labels = np.random.default_rng(7).permutation([1] * 2600 + [0] * 1400)
    rows = stratified_sample(labels, 1000, seed=0)
    assert rows.size == 1000 and np.all(np.diff(rows) > 0)  # distinct, in the original order
    assert (labels[rows] == 1).sum() == 650 and (labels[rows] == 0).sum() == 350
    np.testing.assert_array_equal(rows, stratified_sample(labels, 1000, seed=0))
    assert not np.array_equal(rows, stratified_sample(labels, 1000, seed=1))
    np.testing.assert_array_equal(stratified_sample(labels, 4000, seed=3), np.arange(4000))
    # Counts rounded by largest remainder still add up: 41 of (5, 20, 75) -> 2.05, 8.2, 30.75.
    three = np.array([0] * 5 + [1] * 20 + [2] * 75)
    assert np.bincount(three[stratified_sample(three, 41, seed=2)]).tolist() == [2, 8, 31]


@pytest.mark.parametrize("size", [0, MIN_SAMPLE_REVIEWS - 1, 4001])
def test_stratified_sample_rejects_a_size_out_of_range(size: int) -> None:
    with pytest.raises(ConfigError, match=f"needs {MIN_SAMPLE_REVIEWS} to 4000 reviews .*not {size}$"):
        stratified_sample(np.array([1] * 2600 + [0] * 1400), size)


def test_review_sample_is_checked_before_embedding_and_has_a_stable_fingerprint() -> None:
    """A bad size fails before any embedding; the same sample always hashes to the same cache key."""
    no_embedder = cast(ReviewEmbedder, object())  # any use of it would raise AttributeError
    for size in (5, 4001):
        with pytest.raises(ConfigError, match="review sample"):
            train_sentiment_head(no_embedder, reviews=size, cache_dir=None, progress=False)
    frame = load_reviews()
    labels = frame["label"].to_numpy()
    model = cast(ReviewEmbedder, SimpleNamespace(fingerprint="model"))

    def sample_key(seed: int) -> str:
        rows = stratified_sample(labels, SENTIMENT_SAMPLE_REVIEWS, seed=seed)
        return texts_fingerprint(model, frame["text"].iloc[rows].tolist())

    assert sample_key(0) == sample_key(0) != sample_key(1)
    rows = stratified_sample(labels, SENTIMENT_SAMPLE_REVIEWS, seed=0)
    train, test = stratified_split(labels[rows], test_size=0.25, seed=0)
    assert (train.size, test.size) == (750, 250)


@pytest.fixture(scope="module")
def embedder() -> ReviewEmbedder:
    import torch

    torch.set_num_threads(1)
    return ReviewEmbedder(device="cpu")


def test_load_or_train_reuses_a_head_for_the_same_model(tmp_path: Path, embedder: ReviewEmbedder) -> None:
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    x, y = _synthetic(d=sentiment_input_width(embedder.embedding_dim))
    saved = SentimentHead(l2=1.0).fit(x, y)
    saved.metrics = {"embedding_fingerprint": embedder.fingerprint}
    saved.save(sentiment_head_path(settings))
    calls = embedder.model_calls
    loaded = load_or_train_sentiment_head(settings, embedder)
    assert embedder.model_calls == calls  # loaded, not retrained
    np.testing.assert_array_equal(loaded.score(x), saved.score(x))
    assert sentiment_head_path(settings) == tmp_path / "models" / "sentiment" / "head.json"


@pytest.mark.slow
def test_held_out_auc_on_real_reviews(settings: Settings, embedder: ReviewEmbedder) -> None:
    """Trains on the CLI test's sample of 1,000 reviews, reusing its embeddings when they are cached."""
    cache_dir = settings.path("cache", "embeddings")
    reviews = load_reviews()
    sample = reviews["text"].iloc[stratified_sample(reviews["label"].to_numpy(), SENTIMENT_SAMPLE_REVIEWS)]
    was_cached = (cache_dir / f"embeddings-{texts_fingerprint(embedder, sample.tolist())}.npy").is_file()
    calls = embedder.model_calls
    head, metrics = train_sentiment_head(
        embedder, test_size=0.25, seed=0, cache_dir=cache_dir, progress=False, reviews=SENTIMENT_SAMPLE_REVIEWS
    )
    if was_cached:
        assert embedder.model_calls == calls  # read from the cache, not embedded again
    assert metrics["n_reviews"] == SENTIMENT_SAMPLE_REVIEWS
    assert metrics["n_test"] == 250 and metrics["n_train"] == 750
    assert metrics["roc_auc"] > SENTIMENT_SAMPLE_MIN_AUC
    assert metrics["accuracy"] > 0.7
    assert metrics["embedding_fingerprint"] == embedder.fingerprint
    texts = ["Absolutely delicious, my favourite snack.", "Disgusting. Stale and overpriced."]
    good, bad = head.score_reviews(texts, embedder.embed(texts))
    assert good > bad


def test_choose_l2_prefers_a_penalty_that_generalizes() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(120, 60))  # few rows, many noisy features: unpenalized fits overfit
    y = (x[:, 0] + 0.8 * rng.normal(size=120) > 0).astype(int)
    best, scores = choose_l2(x, y, grid=(1e-4, 30.0), folds=4)
    assert set(scores) == {1e-4, 30.0}
    assert best == 30.0 and scores[30.0] > scores[1e-4]


def test_the_shipped_head_reads_the_embedding_and_the_lexicon_scores(tmp_path: Path, embedder: ReviewEmbedder) -> None:
    # A head saved by an older pricewave (embedding only, 384 weights) is not used: the shipped one is.
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    x, y = _synthetic(d=embedder.embedding_dim)
    old = SentimentHead(l2=1.0).fit(x, y)
    old.metrics = {"embedding_fingerprint": embedder.fingerprint}
    old.save(sentiment_head_path(settings))
    calls = embedder.model_calls
    head = load_or_train_sentiment_head(settings, embedder)
    assert embedder.model_calls == calls  # the packaged head, not a retrained one
    assert head.weights is not None and head.weights.size == sentiment_input_width(embedder.embedding_dim) == 387
    assert head.metrics["embedding_fingerprint"] == embedder.fingerprint
    texts = ["Absolutely delicious, my favourite snack.", "Not good. Stale and overpriced, never again."]
    good, bad = head.score_reviews(texts, embedder.embed(texts))
    assert good > 0 > bad
