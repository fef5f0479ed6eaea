"""Vectorized (pandas, Arrow-batched) PyFlink UDF: review text -> (sentiment, embedding).

Each Python worker builds one :class:`pricewave.reviews.embedding.ReviewEmbedder` and loads the trained
sentiment head once, in ``open()``; a module-level cache shares them between every UDF instance
in that worker. Train the head before starting the job (``pricewave reviews train-sentiment``):
a worker that finds none trains it itself, which embeds 4,000 reviews (minutes on a CPU).

PyFlink 2.2 supports ``ROW`` results for pandas scalar UDFs (``eval`` returns a
``pandas.DataFrame`` whose columns are the row's fields), so one UDF returns both values.
A NULL text gives a NULL sentiment and a NULL embedding; an empty text is embedded as such.

Example:
    >>> from pyflink.table import EnvironmentSettings, TableEnvironment
    >>> t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())  # doctest: +SKIP
    >>> t_env.create_temporary_function("review_sentiment", review_sentiment_udf())  # doctest: +SKIP
    >>> t_env.sql_query(  # doctest: +SKIP
    ...     "SELECT sku, r.sentiment, r.embedding FROM ("
    ...     "  SELECT sku, review_sentiment(text) AS r FROM reviews)"
    ... )
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from pricewave.config import Settings, load_settings
from pricewave.reviews.embedding import ReviewEmbedder, embedder_from_settings
from pricewave.reviews.sentiment import SentimentHead, load_or_train_sentiment_head

RESULT_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("sentiment", DataTypes.DOUBLE()),
        DataTypes.FIELD("embedding", DataTypes.ARRAY(DataTypes.FLOAT())),
    ]
)
"""The UDF's result: sentiment in [-1, 1] and the 384-dim unit-length embedding."""


@dataclass
class ReviewScorer:
    """An embedder and the sentiment head trained on its embeddings."""

    embedder: ReviewEmbedder
    head: SentimentHead

    def score(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(sentiment (n,), embeddings (n, 384))`` for the texts."""
        vectors = self.embedder.embed(texts)
        return self.head.score_reviews(texts, vectors), vectors


_SCORERS: dict[tuple[Any, ...], ReviewScorer] = {}
_SCORERS_LOCK = threading.Lock()


def shared_scorer(settings: Settings, *, batch_size: int = 64, device: str | None = None) -> ReviewScorer:
    """The worker-wide scorer for these settings, built on first use (one model per process)."""
    key = (str(settings.state_dir), settings.models.model_dir, settings.models.embedding_path, batch_size, device)
    with _SCORERS_LOCK:
        scorer = _SCORERS.get(key)
        if scorer is None:
            embedder = embedder_from_settings(settings, batch_size=batch_size, device=device)
            head = load_or_train_sentiment_head(settings, embedder, progress=False)
            scorer = _SCORERS[key] = ReviewScorer(embedder, head)
        return scorer


def default_batch_size(device: str) -> int:
    """Texts per forward pass in the job: 1 on the CPU, so a text's vector depends on the text alone.

    In a batch, a float32 vector moves by up to ~1e-7 with the batch's other texts (on this CPU, 3 of
    256 texts embedded 7 at a time differ from the same texts embedded one by one), and a replay
    after a failure batches its reviews differently: a price that rests on a near-tie could then
    differ from the first run's. On one thread, one text per pass is the fastest for full-length
    reviews (no padding) and 0.65x for short ones (BENCHMARKS §6). On CUDA (fp16), 64: a GPU run is
    not bitwise replayable anyway.

    Example:
        >>> default_batch_size("cpu"), default_batch_size("cuda")
        (1, 64)
    """
    return 64 if device.startswith("cuda") else 1


class ReviewSentimentUDF(ScalarFunction):
    """``review_sentiment(text STRING) -> ROW<sentiment DOUBLE, embedding ARRAY<FLOAT>>``.

    Args:
        settings: Settings the worker uses (model path, state directory holding the head);
            default :func:`pricewave.config.load_settings` read in the worker.
        batch_size: Texts per forward pass; default :func:`default_batch_size` of the device.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when the worker has one.
        cpu_threads: torch intra-op threads in the worker on CPU (``None``: torch's default).
            One per worker is the default: Flink runs one Python worker per slot, and more
            threads than free cores make torch spin (2-4x slower on a busy 2-core machine).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        batch_size: int | None = None,
        device: str | None = None,
        cpu_threads: int | None = 1,
    ) -> None:
        # Only plain, picklable state here: the model is built in open(), on the worker.
        self._settings = settings
        self._batch_size = batch_size
        self._device = device
        self._cpu_threads = cpu_threads
        self._scorer: ReviewScorer | None = None

    def open(self, function_context: FunctionContext) -> None:
        """Build (or reuse) the worker's embedder and sentiment head."""
        import torch

        settings = self._settings if self._settings is not None else load_settings()
        device = self._device or ("cuda" if torch.cuda.is_available() else "cpu")
        batch_size = self._batch_size or default_batch_size(device)
        self._scorer = shared_scorer(settings, batch_size=batch_size, device=device)
        if self._scorer.embedder.device == "cpu" and self._cpu_threads:
            torch.set_num_threads(self._cpu_threads)

    def eval(self, text: pd.Series) -> pd.DataFrame:
        """Score one Arrow batch of texts; returns columns ``sentiment`` and ``embedding``."""
        if self._scorer is None:  # eval before open: only outside Flink
            self.open(FunctionContext(None, {}))
        assert self._scorer is not None
        present = text.notna().to_numpy()
        texts = [str(value) for value in text[present]]
        sentiment = np.full(len(text), np.nan)
        embedding: list[np.ndarray | None] = [None] * len(text)
        if texts:
            scores, vectors = self._scorer.score(texts)
            sentiment[present] = scores
            for row, vector in zip(np.flatnonzero(present), vectors, strict=True):
                embedding[row] = vector
        return pd.DataFrame(
            {"sentiment": sentiment, "embedding": pd.Series(embedding, index=text.index, dtype=object)},
            index=text.index,
        )


def review_sentiment_udf(
    settings: Settings | None = None,
    *,
    batch_size: int | None = None,
    device: str | None = None,
    cpu_threads: int | None = 1,
) -> UserDefinedScalarFunctionWrapper:
    """The pandas (vectorized) UDF ``text -> ROW<sentiment DOUBLE, embedding ARRAY<FLOAT>>``.

    Args:
        settings: See :class:`ReviewSentimentUDF`.
        batch_size: Texts per forward pass; default :func:`default_batch_size` of the device.
        device: ``"cpu"`` or ``"cuda"``; default CUDA when available on the worker.
        cpu_threads: See :class:`ReviewSentimentUDF`.
    """
    return udf(
        ReviewSentimentUDF(settings, batch_size=batch_size, device=device, cpu_threads=cpu_threads),
        input_types=[DataTypes.STRING()],
        result_type=RESULT_TYPE,
        func_type="pandas",
    )
