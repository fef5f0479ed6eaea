"""The review-sentiment pandas UDF, run for real in a PyFlink batch TableEnvironment."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.reviews.embedding import ReviewEmbedder
from pricewave.reviews.sentiment import SentimentHead, sentiment_features, sentiment_head_path

REPO_ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "Best coffee I have ever had, rich and smooth. Will buy again!",
    "Stale crackers, the box arrived crushed. Never again.",
    "",
    "😀🔥👍",
    "Ce thé est délicieux, je le recommande.",
    "这个巧克力太甜了",
    "ok",
    "The dog loves these treats and they are healthy too. " * 40,  # truncated at 128 tokens
    "Terrible taste, threw it away.",
    "Pretty good value for the price.",
]


@pytest.fixture(scope="module")
def embedder() -> ReviewEmbedder:
    import torch

    torch.set_num_threads(1)
    return ReviewEmbedder(device="cpu", batch_size=4)


@pytest.fixture
def udf_settings(tmp_path: Path, embedder: ReviewEmbedder) -> Settings:
    """Settings with a private state dir holding a head fitted for this embedder (no 4,000-review training)."""
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path / "state")})
    vectors = embedder.embed(TEXTS)
    labels = np.array([1, 0, 0, 1, 1, 0, 1, 1, 0, 1])
    head = SentimentHead(l2=0.1).fit(sentiment_features(TEXTS, vectors), labels)
    head.metrics = {"embedding_fingerprint": embedder.fingerprint}
    head.save(sentiment_head_path(settings))
    return settings


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_udf_in_flink_matches_the_embedder(udf_settings: Settings, embedder: ReviewEmbedder) -> None:
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    from udfs.review_embedding import review_sentiment_udf

    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    config = t_env.get_config()
    config.set("python.executable", sys.executable)
    config.set("python.client.executable", sys.executable)
    config.set("parallelism.default", "1")
    config.set("python.fn-execution.arrow.batch.size", "4")  # several Arrow batches per bundle
    t_env.add_python_file(str(REPO_ROOT / "udfs"))

    # One extra row with a NULL text: it must come back as NULL sentiment and NULL embedding.
    frame = pd.DataFrame({"id": list(range(len(TEXTS) + 1)), "text": [*TEXTS, None]})
    source = t_env.from_pandas(
        frame, DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT()), DataTypes.FIELD("text", DataTypes.STRING())])
    )
    t_env.create_temporary_function("review_sentiment", review_sentiment_udf(udf_settings, batch_size=4, device="cpu"))
    t_env.create_temporary_view("reviews", source)
    result = t_env.sql_query(
        "SELECT id, r.sentiment AS sentiment, r.embedding AS embedding "
        "FROM (SELECT id, review_sentiment(text) AS r FROM reviews)"
    ).to_pandas()
    result = result.sort_values("id").reset_index(drop=True)

    assert result["id"].tolist() == list(range(len(TEXTS) + 1))
    null_row = result.iloc[len(TEXTS)]
    assert pd.isna(null_row["sentiment"]) and null_row["embedding"] is None
    result = result.iloc[: len(TEXTS)]
    got = np.stack([np.asarray(vector, dtype=np.float32) for vector in result["embedding"]])
    expected = embedder.embed(TEXTS)
    assert got.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    head = SentimentHead.load(sentiment_head_path(udf_settings))
    np.testing.assert_allclose(result["sentiment"].to_numpy(), head.score_reviews(TEXTS, expected), atol=1e-6)
    assert np.all(np.abs(result["sentiment"].to_numpy()) <= 1.0)


def test_udf_eval_outside_flink_handles_nulls(udf_settings: Settings, embedder: ReviewEmbedder) -> None:
    """The same eval() on a pandas Series, as the Arrow runner calls it: NULL in, NULL out."""
    from udfs.review_embedding import ReviewSentimentUDF

    function = ReviewSentimentUDF(udf_settings, batch_size=4, device="cpu")
    texts = pd.Series(["Great tea", None, "", "Awful"], dtype=object)
    frame = function.eval(texts)
    assert list(frame.columns) == ["sentiment", "embedding"]
    assert np.isnan(frame["sentiment"].iloc[1]) and frame["embedding"].iloc[1] is None
    present = [0, 2, 3]
    expected = embedder.embed(["Great tea", "", "Awful"])
    np.testing.assert_allclose(np.stack(frame["embedding"].iloc[present].tolist()), expected, atol=1e-6)
    assert np.all(np.abs(frame["sentiment"].iloc[present]) <= 1.0)


@pytest.mark.integration
@pytest.mark.isolated  # the UDF's eval() in this process: no shared service
@pytest.mark.timeout(300)
def test_a_review_vector_does_not_depend_on_its_batch(udf_settings: Settings) -> None:
    """A replay batches reviews differently: the job's vector of a text is the text's alone, bit for bit."""
    from pyflink.table.udf import FunctionContext

    from udfs.review_embedding import ReviewSentimentUDF

    texts = [
        f"Box {i} arrived {'crushed' if i % 4 == 0 else 'fine'}, the taste was {'great' if i % 3 else 'awful'}."
        + " Would buy again." * (i % 5)
        for i in range(70)
    ]
    function = ReviewSentimentUDF(udf_settings, device="cpu")  # the job's default batch size
    function.open(FunctionContext(None, {}))
    embedder = function._scorer.embedder  # type: ignore[union-attr]
    one_by_one = np.stack([function.eval(pd.Series([text]))["embedding"].iloc[0] for text in texts])
    embedder.clear_cache()  # the replay: a fresh worker, batched differently
    in_sevens = np.concatenate(
        [np.stack(function.eval(pd.Series(texts[i : i + 7]))["embedding"].tolist()) for i in range(0, 70, 7)]
    )
    assert embedder.cache_info().misses == 2 * len(texts)  # both runs embedded every text
    assert np.array_equal(one_by_one, in_sevens)
