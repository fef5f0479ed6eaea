"""Review sentiment: an L2-regularized logistic regression on MiniLM review embeddings and lexicon scores.

The head reads :func:`sentiment_features`: the text's 384-float MiniLM embedding and its three VADER
lexicon scores (:mod:`pricewave.reviews.lexicon`). On human-rated review sentences the embedding
alone ranked below the lexicon alone, and both together rank above each (docs/EVALUATION.md,
"Review sentiment"). The head is trained on 4,000 real Amazon Fine Foods reviews
(:func:`pricewave.data.datasets.load_reviews`, label 1 = 'great') with Newton's method (full batch,
float64, numpy), evaluated on a stratified held-out split, and saved as JSON next to its metrics and
the embedding model's fingerprint. :meth:`SentimentHead.score` maps the probability of a great
review to ``2p - 1`` in ``[-1, 1]``.

Example:
    >>> import numpy as np
    >>> from pricewave.reviews.sentiment import SentimentHead, roc_auc
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(200, 4)); y = (x[:, 0] > 0).astype(int)
    >>> head = SentimentHead(l2=0.1).fit(x, y)
    >>> roc_auc(y, head.predict_proba(x)) > 0.99
    True
    >>> bool(np.all(np.abs(head.score(x)) <= 1))
    True

    With the real model and data (embeds 4,000 reviews on first use, then cached)::

        from pricewave.config import load_settings
        from pricewave.reviews.embedding import embedder_from_settings
        settings = load_settings()
        head = load_or_train_sentiment_head(settings, embedder_from_settings(settings))
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from pricewave.errors import ConfigError, PricewaveError
from pricewave.reviews.lexicon import LEXICON_FEATURES, lexicon_scores

if TYPE_CHECKING:
    from pricewave.config import Settings
    from pricewave.reviews.embedding import ReviewEmbedder

HEAD_FORMAT = "pricewave.sentiment_head/2"
"""Version 2 reads :func:`sentiment_features` (embedding and lexicon scores); version 1 read the embedding only."""
DEFAULT_L2 = 1.0
L2_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
MIN_SAMPLE_REVIEWS = 40
"""The smallest review sample :func:`train_sentiment_head` accepts (a held-out split and 5 folds)."""
_EMBED_CHUNK = 256


class SentimentModelError(PricewaveError):
    """A saved sentiment head is missing, malformed, or belongs to another embedding model."""


def roc_auc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U); tied scores share their mean rank.

    Raises:
        ValueError: Lengths differ or only one class is present.

    Example:
        >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
        0.75
    """
    y = np.asarray(labels).astype(bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC AUC needs both classes among the labels")
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = np.empty(s.size, dtype=np.float64)
    # Average the 1-based ranks over each run of equal scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [s.size]))
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def accuracy(labels: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray) -> float:
    """Share of predictions equal to the labels.

    Example:
        >>> accuracy([1, 0, 1, 1], [1, 0, 0, 1])
        0.75
    """
    y = np.asarray(labels).astype(int).ravel()
    p = np.asarray(predicted).astype(int).ravel()
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"need equally long, non-empty labels and predictions ({y.size} vs {p.size})")
    return float(np.mean(y == p))


def stratified_split(
    labels: Sequence[int] | np.ndarray, test_size: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a train and a test split with each class's share kept.

    Args:
        labels: Class per row.
        test_size: Share of each class that goes to the test split, in (0, 1).
        seed: Seed of the shuffle.

    Returns:
        ``(train_idx, test_idx)``, each sorted.
    """
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), not {test_size}")
    y = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        n_test = round(test_size * rows.size)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def stratified_sample(labels: Sequence[int] | np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Row indices of a seeded sample of ``size`` rows with each class's share kept.

    Each class gets its share of ``size`` (largest remainders round the counts so they add up to
    ``size``); its rows are drawn at random without replacement. The same ``(labels, size, seed)``
    always gives the same rows, returned in their original order, so texts taken in that order
    hash to the same :func:`texts_fingerprint` and share the on-disk embedding cache.

    Args:
        labels: Class per row.
        size: Number of rows to draw, from :data:`MIN_SAMPLE_REVIEWS` to ``len(labels)``.
        seed: Seed of the draw.

    Returns:
        ``size`` distinct row indices, sorted.

    Raises:
        ConfigError: ``size`` is below :data:`MIN_SAMPLE_REVIEWS` or above the number of rows.

    Example:
        >>> rows = stratified_sample([1] * 60 + [0] * 40, 50, seed=1)
        >>> len(rows), int((rows < 60).sum())
        (50, 30)
    """
    y = np.asarray(labels).ravel()
    if not MIN_SAMPLE_REVIEWS <= size <= y.size:
        raise ConfigError(
            f"a review sample needs {MIN_SAMPLE_REVIEWS} to {y.size} reviews ({y.size} is all of them), not {size}"
        )
    values, counts = np.unique(y, return_counts=True)
    exact = counts * size / y.size
    quota = np.floor(exact).astype(np.int64)
    # Hand the rows lost to rounding down to the classes with the largest remainders.
    short = size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    rng = np.random.default_rng(seed)
    picked = [rng.permutation(np.flatnonzero(y == value))[:take] for value, take in zip(values, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def sentiment_features(texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
    """The head's input per text: its embedding (``vectors``, ``(n, 384)``) then its lexicon scores, ``(n, 387)``.

    Example:
        >>> sentiment_features(["Great!"], np.zeros((1, 384), dtype=np.float32)).shape
        (1, 387)
    """
    embedded = np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)
    return np.hstack([embedded, lexicon_scores(texts)])


def sentiment_input_width(embedding_dim: int) -> int:
    """How many inputs the head reads: the embedding and the lexicon scores."""
    return embedding_dim + len(LEXICON_FEATURES)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable for large |z|
    return out


class SentimentHead:
    """Binary logistic regression ``P(great | embedding)`` with an L2 penalty on the weights.

    Minimizes ``sum_i logloss_i + l2/2 * ||w||^2`` (the intercept is not penalized) with
    Newton's method, which converges in a handful of full-batch steps at 384 features.

    Attributes:
        weights: ``(d,)`` float64 weights (``None`` before :meth:`fit`).
        bias: Intercept.
        metrics: Free-form metrics stored with the head (accuracy, AUC, sizes, model fingerprint).
    """

    def __init__(self, l2: float = DEFAULT_L2, max_iter: int = 50, tol: float = 1e-8) -> None:
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, not {l2}")
        self.l2 = float(l2)
        self.max_iter = max_iter
        self.tol = tol
        self.weights: np.ndarray | None = None
        self.bias = 0.0
        self.metrics: dict[str, Any] = {}

    def fit(self, features: np.ndarray, labels: Sequence[int] | np.ndarray) -> SentimentHead:
        """Fit on ``(n, d)`` features and 0/1 labels; returns ``self``."""
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(labels, dtype=np.float64).ravel()
        if x.ndim != 2 or x.shape[0] != y.size or y.size == 0:
            raise ValueError(f"need (n, d) features and n labels, got {x.shape} and {y.size}")
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("labels must be 0 or 1")
        n, d = x.shape
        design = np.hstack([x, np.ones((n, 1))])
        theta = np.zeros(d + 1)
        penalty = np.full(d + 1, self.l2)
        penalty[-1] = 1e-10  # the intercept is not penalized (tiny ridge keeps H invertible)
        for _ in range(self.max_iter):
            p = _sigmoid(design @ theta)
            gradient = design.T @ (p - y) + penalty * theta
            hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
            step = np.linalg.solve(hessian, gradient)
            theta -= step
            if float(np.max(np.abs(step))) < self.tol:
                break
        self.weights = theta[:-1]
        self.bias = float(theta[-1])
        return self

    def _require_fitted(self) -> np.ndarray:
        if self.weights is None:
            raise SentimentModelError("the sentiment head is not trained: call fit() or load a saved head")
        return self.weights

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """The logit ``w·x + b`` per row."""
        weights = self._require_fitted()
        x = np.asarray(features, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != weights.size:
            raise ValueError(f"features have {x.shape[1]} columns, the head expects {weights.size}")
        logits: np.ndarray = x @ weights + self.bias
        return logits

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """``P(great review)`` per row, in [0, 1]."""
        return _sigmoid(self.decision_function(features))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """1 where ``P(great) >= 0.5``, else 0."""
        return (self.predict_proba(features) >= 0.5).astype(np.int64)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Sentiment ``2p - 1`` in [-1, 1]: -1 surely not great, +1 surely great."""
        return np.clip(2.0 * self.predict_proba(features) - 1.0, -1.0, 1.0)

    def score_reviews(self, texts: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """The sentiment of review texts in ``[-1, 1]``, from their embeddings (``vectors``) and lexicon scores."""
        return self.score(sentiment_features(texts, vectors))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description of the head (weights, bias, l2, metrics)."""
        weights = self._require_fitted()
        return {
            "format": HEAD_FORMAT,
            "l2": self.l2,
            "bias": self.bias,
            "weights": weights.tolist(),
            "metrics": self.metrics,
        }

    def save(self, path: str | Path) -> Path:
        """Write the head as JSON (atomically: write, then rename); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(self.to_dict(), handle, indent=1)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
        return target

    @classmethod
    def load(cls, path: str | Path) -> SentimentHead:
        """Read a head written by :meth:`save`.

        Raises:
            SentimentModelError: The file is missing or not a sentiment head.
        """
        source = Path(path)
        try:
            data = json.loads(source.read_text())
        except FileNotFoundError:
            raise SentimentModelError(
                f"no sentiment head at {source}: train one with 'pricewave reviews train-sentiment'"
            ) from None
        except (OSError, json.JSONDecodeError) as exc:
            raise SentimentModelError(
                f"{source} is not a readable sentiment head ({exc}): delete it and retrain"
            ) from None
        if not isinstance(data, dict) or data.get("format") != HEAD_FORMAT:
            raise SentimentModelError(f"{source} is not a {HEAD_FORMAT} file: delete it and retrain")
        try:
            head = cls(l2=float(data["l2"]))
            head.weights = np.asarray(data["weights"], dtype=np.float64)
            head.bias = float(data["bias"])
            head.metrics = dict(data.get("metrics") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise SentimentModelError(
                f"{source} is a malformed sentiment head ({exc}): delete it and retrain"
            ) from None
        if head.weights.ndim != 1:
            raise SentimentModelError(f"{source} has malformed weights: delete it and retrain")
        return head


def choose_l2(
    features: np.ndarray, labels: np.ndarray, grid: Sequence[float] = L2_GRID, folds: int = 5, seed: int = 0
) -> tuple[float, dict[float, float]]:
    """The L2 penalty with the best mean ROC AUC over stratified k-fold cross-validation.

    Args:
        features: ``(n, d)`` training features (never the held-out test rows).
        labels: 0/1 labels.
        grid: Candidate penalties.
        folds: Number of folds.
        seed: Seed of the fold assignment.

    Returns:
        ``(best_l2, {l2: mean_auc})``.
    """
    y = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    fold_of = np.empty(y.size, dtype=np.int64)
    for value in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == value))
        fold_of[rows] = np.arange(rows.size) % folds
    scores: dict[float, float] = {}
    for l2 in grid:
        aucs = []
        for fold in range(folds):
            test = fold_of == fold
            head = SentimentHead(l2=l2).fit(features[~test], y[~test])
            aucs.append(roc_auc(y[test], head.predict_proba(features[test])))
        scores[float(l2)] = float(np.mean(aucs))
    best = max(scores, key=lambda key: scores[key])
    return best, scores


def sentiment_head_path(settings: Settings) -> Path:
    """Where the trained head lives: ``<state>/<models.model_dir>/sentiment/head.json``."""
    return settings.path(settings.models.model_dir, "sentiment", "head.json")


def texts_fingerprint(embedder: ReviewEmbedder, texts: Sequence[str]) -> str:
    """A hash of the embedding model and the texts, in order (keys the on-disk embedding cache)."""
    digest = hashlib.sha256(embedder.fingerprint.encode())
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    return digest.hexdigest()[:24]


def embed_with_disk_cache(
    embedder: ReviewEmbedder,
    texts: Sequence[str],
    cache_dir: str | Path | None = None,
    *,
    progress: bool = True,
) -> np.ndarray:
    """Embed texts, reusing a ``.npy`` under ``cache_dir`` keyed by model and texts when present.

    Args:
        embedder: The embedder.
        texts: Texts to embed.
        cache_dir: Directory of cached arrays; ``None`` disables the disk cache.
        progress: Show a progress bar while embedding.

    Returns:
        An ``(n, 384)`` float32 array.
    """
    target: Path | None = None
    if cache_dir is not None:
        target = Path(cache_dir) / f"embeddings-{texts_fingerprint(embedder, texts)}.npy"
        if target.is_file():
            try:
                cached = np.load(target)
                if cached.shape == (len(texts), embedder.embedding_dim):
                    return cached.astype(np.float32, copy=False)
            except (OSError, ValueError):
                pass  # a damaged cache file is recomputed and overwritten
    parts: list[np.ndarray] = []
    with tqdm(total=len(texts), desc="embedding", unit="review", disable=not progress, leave=False) as bar:
        for start in range(0, len(texts), _EMBED_CHUNK):
            chunk = list(texts[start : start + _EMBED_CHUNK])
            parts.append(embedder.embed(chunk))
            bar.update(len(chunk))
    vectors = np.concatenate(parts) if parts else np.empty((0, embedder.embedding_dim), dtype=np.float32)
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".embeddings-", suffix=".npy")
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vectors)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    return vectors


def train_sentiment_head(
    embedder: ReviewEmbedder,
    *,
    test_size: float = 0.25,
    seed: int = 0,
    l2: float | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    reviews: int | None = None,
) -> tuple[SentimentHead, dict[str, Any]]:
    """Train the head on the 4,000 real reviews' :func:`sentiment_features`; evaluate it on a stratified held-out split.

    The head is then refit on all reviews used (same ``l2``) so the shipped model uses every
    label; the reported metrics are those of the held-out evaluation. With ``reviews``, only a
    stratified sample of that many reviews (:func:`stratified_sample`) is embedded, split and
    fitted: a quicker check, whose embeddings are cached apart from those of the full set.

    Args:
        embedder: Embeds the review texts.
        test_size: Held-out share of each class.
        seed: Seed of the split (and of the sample).
        l2: L2 penalty on the weights; ``None`` picks it from :data:`L2_GRID` by 5-fold
            cross-validation on the training split.
        cache_dir: Where review embeddings are cached between runs (``None``: no disk cache).
        progress: Show a progress bar while embedding.
        reviews: Train and evaluate on a stratified sample of this many reviews, the same for
            the same ``(reviews, seed)``; ``None`` uses all of them.

    Returns:
        ``(head, metrics)``; metrics hold ``accuracy``, ``roc_auc`` (held out), ``n_train``,
        ``n_test``, ``n_reviews`` (reviews used), ``positive_share``, ``l2``, ``cv_auc`` (mean
        AUC per candidate penalty when chosen by cross-validation), ``seed``, ``test_size``,
        ``embedding_fingerprint`` and ``trained_at`` (Unix time).

    Raises:
        ConfigError: ``reviews`` is below :data:`MIN_SAMPLE_REVIEWS` or above the number of reviews.
    """
    from pricewave.data.datasets import load_reviews

    frame = load_reviews()
    if reviews is not None:
        frame = frame.iloc[stratified_sample(frame["label"].to_numpy(), reviews, seed=seed)]
    texts = frame["text"].tolist()
    labels = frame["label"].to_numpy(dtype=np.int64)
    features = sentiment_features(texts, embed_with_disk_cache(embedder, texts, cache_dir, progress=progress))
    train_idx, test_idx = stratified_split(labels, test_size=test_size, seed=seed)
    cv_auc: dict[float, float] = {}
    if l2 is None:
        l2, cv_auc = choose_l2(features[train_idx], labels[train_idx], seed=seed)
    evaluated = SentimentHead(l2=l2).fit(features[train_idx], labels[train_idx])
    probabilities = evaluated.predict_proba(features[test_idx])
    metrics: dict[str, Any] = {
        "accuracy": accuracy(labels[test_idx], probabilities >= 0.5),
        "roc_auc": roc_auc(labels[test_idx], probabilities),
        "n_train": int(train_idx.size),
        "n_test": int(test_idx.size),
        "n_reviews": len(texts),
        "positive_share": float(labels.mean()),
        "l2": float(l2),
        "cv_auc": {str(key): value for key, value in cv_auc.items()},
        "seed": seed,
        "test_size": test_size,
        "embedding_fingerprint": embedder.fingerprint,
        "trained_at": time.time(),
    }
    head = SentimentHead(l2=l2).fit(features, labels)
    head.metrics = metrics
    return head, metrics


PACKAGED_HEAD_PATH = Path(__file__).resolve().parents[1] / "models" / "sentiment_head.json"
"""A head trained on the packaged real reviews, shipped so that scoring works out of the box."""


def load_or_train_sentiment_head(
    settings: Settings, embedder: ReviewEmbedder, *, progress: bool = True
) -> SentimentHead:
    """Load the saved head for this embedding model, or train, save and return a new one.

    A saved head trained on another embedding model (different fingerprint) or on other inputs (an
    older format) is retrained.

    Args:
        settings: Where the head (:func:`sentiment_head_path`) and the embedding cache live.
        embedder: The embedder the head scores.
        progress: Show a progress bar if training embeds the reviews.
    """
    path = sentiment_head_path(settings)
    # The state directory's head first, then the one shipped with the package (trained by
    # `pricewave reviews train-sentiment` on the same real reviews), so a fresh install does not
    # spend minutes embedding 4,000 reviews before it can score one.
    for candidate in (path, PACKAGED_HEAD_PATH):
        if not candidate.is_file():
            continue
        try:
            head = SentimentHead.load(candidate)
        except SentimentModelError:
            continue  # unreadable: try the next, else retrain and overwrite
        same_inputs = head.weights is not None and head.weights.size == sentiment_input_width(embedder.embedding_dim)
        if head.metrics.get("embedding_fingerprint") == embedder.fingerprint and same_inputs:
            return head
    head, _ = train_sentiment_head(embedder, cache_dir=settings.path("cache", "embeddings"), progress=progress)
    head.save(path)
    return head
