"""``pricewave reviews`` through the real CLI in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pricewave.config import Settings, load_settings
from pricewave.reviews.embedding import EMBEDDING_DIM, model_fingerprint, packaged_model_path
from pricewave.reviews.sentiment import SentimentHead, sentiment_head_path, sentiment_input_width
from pricewave.stack.process import child_environment
from tests.conftest import SENTIMENT_SAMPLE_MIN_AUC, SENTIMENT_SAMPLE_REVIEWS


def _run(args: list[str], state_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = child_environment({"PRICEWAVE_STATE_DIR": str(state_dir), "OMP_NUM_THREADS": "1"})
    return subprocess.run(
        [sys.executable, "-m", "pricewave", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A private state dir holding a head for the packaged model (so `score` does not train one)."""
    state = tmp_path / "state"
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(state)})
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, sentiment_input_width(EMBEDDING_DIM)))
    head = SentimentHead(l2=1.0).fit(x, (x[:, 0] > 0).astype(int))
    head.metrics = {"embedding_fingerprint": model_fingerprint(packaged_model_path(), 128)}
    head.save(sentiment_head_path(settings))
    return state


@pytest.fixture
def reviews_csv(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.csv"
    pd.DataFrame(
        {
            "sku": ["a", "b", "c", "d", "e"],
            "review": ["Lovely tea!", "", "😀😀", "Stale, would not buy again.", "Lovely tea!"],
        }
    ).to_csv(path, index=False)
    return path


def test_score_adds_sentiment_and_embedding(tmp_path: Path, state_dir: Path, reviews_csv: Path) -> None:
    out = tmp_path / "out" / "scored.csv"
    result = _run(
        [
            "reviews",
            "score",
            "--input",
            str(reviews_csv),
            "--text-column",
            "review",
            "--out",
            str(out),
            "--with-embedding",
            "--batch-size",
            "2",
            "--no-progress",
        ],
        state_dir,
    )
    assert result.returncode == 0, result.stderr
    assert "scored 5 reviews" in result.stdout and "1 repeated" in result.stdout
    scored = pd.read_csv(out, keep_default_na=False)
    assert list(scored.columns) == ["sku", "review", "sentiment", "embedding"]
    assert scored["sku"].tolist() == ["a", "b", "c", "d", "e"]
    assert scored["sentiment"].between(-1, 1).all()
    vectors = np.array([json.loads(cell) for cell in scored["embedding"]])
    assert vectors.shape == (5, EMBEDDING_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # The sentiment column is the saved head applied to the written embedding.
    head = SentimentHead.load(sentiment_head_path(load_settings(env={"PRICEWAVE_STATE_DIR": str(state_dir)})))
    np.testing.assert_allclose(scored["sentiment"], head.score_reviews(scored["review"].tolist(), vectors), atol=1e-5)
    # A repeated text gets the cached embedding; its score may differ in the last bit when the head
    # scores it in a batch of another size (BLAS), never more.
    assert scored["sentiment"][0] == pytest.approx(scored["sentiment"][4], abs=1e-12)


@pytest.mark.parametrize(
    ("column", "input_name", "message"),
    [
        ("text", "reviews.csv", "has no column 'text'"),
        ("review", "missing.csv", "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(
    tmp_path: Path, state_dir: Path, reviews_csv: Path, column: str, input_name: str, message: str
) -> None:
    source = reviews_csv.parent / input_name
    result = _run(
        ["reviews", "score", "--input", str(source), "--text-column", column, "--out", str(tmp_path / "o.csv")],
        state_dir,
        timeout=120,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pricewave: error:") and message in lines[0]
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("value", ["5", "lots"])
def test_bad_review_count_is_one_line_and_exit_2(tmp_path: Path, value: str) -> None:
    state = tmp_path / "state"
    result = _run(["reviews", "train-sentiment", "--reviews", value, "--no-progress"], state, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pricewave: error: argument --reviews:") and repr(value) in lines[0]
    assert not (state / "models").exists()


@pytest.mark.slow
def test_train_sentiment_prints_metrics(tmp_path: Path, settings: Settings) -> None:
    """Trains on a sample of the real reviews; shares the sample's embedding cache with the session."""
    state = tmp_path / "state"
    cached = settings.path("cache", "embeddings")
    if cached.is_dir():
        shutil.copytree(cached, state / "cache" / "embeddings")
    result = _run(
        ["reviews", "train-sentiment", "--reviews", str(SENTIMENT_SAMPLE_REVIEWS), "--no-progress"],
        state,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    # Hand the arrays embedded here to the session (test_sentiment's held-out test reuses them).
    for array in sorted((state / "cache" / "embeddings").glob("embeddings-*.npy")):
        if not (cached / array.name).exists():
            cached.mkdir(parents=True, exist_ok=True)
            shutil.copy2(array, cached / array.name)
    assert "held-out accuracy" in result.stdout and "ROC AUC" in result.stdout
    assert "(750 train / 250 test reviews" in result.stdout
    auc = float(result.stdout.split("ROC AUC ")[1].split()[0])
    assert auc > SENTIMENT_SAMPLE_MIN_AUC
    assert (state / "models" / "sentiment" / "head.json").is_file()


@pytest.mark.integration  # downloads the vaderSentiment source archive (the rated sentences) once per state dir
@pytest.mark.isolated  # no shared service: the CLI, the models and the data
@pytest.mark.timeout(600)
def test_evaluate_ranks_the_shipped_head_and_the_lexicon_against_human_ratings_in_one_run(
    settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "report"
    result = _run(
        ["reviews", "evaluate", "--sample", "400", "--reviews", "400", "--out", str(out), "--no-progress"],
        settings.state_dir,
        timeout=580,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.name for path in out.iterdir()) == ["sentiment.json", "sentiment.md", "sentiment.png"]
    rows = json.loads((out / "sentiment.json").read_text())
    by_key = {(row["data"], row["scorer"]): row for row in rows}
    data_sets = ("fine_foods_held_out", "amazon_sentences")
    scorers = ("lexicon", "embedding_head", "shipped_head")
    assert set(by_key) == {(data, scorer) for data in data_sets for scorer in scorers}
    for row in rows:
        assert row["n"] == 400 and row["low"] <= row["spearman"] <= row["high"]
    assert by_key[("fine_foods_held_out", "lexicon")]["roc_auc"] is not None
    assert by_key[("amazon_sentences", "lexicon")]["roc_auc"] is None  # ratings of many levels: Spearman only
    # The shipped head (embedding and lexicon) ranks both human-rated sets at least as well as the lexicon.
    for data in data_sets:
        assert by_key[(data, "shipped_head")]["spearman"] >= by_key[(data, "lexicon")]["spearman"], data
    assert "MiniLM + lexicon head (shipped)" in result.stdout
