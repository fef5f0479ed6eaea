"""``pricewave reviews``: score review texts for sentiment, train the sentiment head, evaluate it.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="pricewave")
    >>> register(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["reviews", "score", "--input", "in.csv", "--text-column", "review",
    ...                           "--out", "out.csv", "--with-embedding"])
    >>> args.action, args.text_column, args.with_embedding, args.batch_size
    ('score', 'review', True, 64)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pricewave.commands.arguments import int_at_least, non_negative_float, open_share, positive_int
from pricewave.config import Settings
from pricewave.errors import ConfigError, DataError

_CHUNK_ROWS = 256


def _read_input(path: Path, column: str) -> Any:
    import pandas as pd

    if not path.is_file():
        raise DataError(f"input file {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype={column: "string"}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path} is not a readable CSV file ({reason})") from None
    if column not in frame.columns:
        raise ConfigError(
            f"{path} has no column {column!r} (columns: {', '.join(map(str, frame.columns)) or 'none'}): "
            "pass the review text column with --text-column"
        )
    return frame


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _score(args: argparse.Namespace, settings: Settings) -> int:
    # Heavy imports here so `pricewave --help` stays fast.
    import numpy as np
    from tqdm import tqdm

    from pricewave.reviews.embedding import embedder_from_settings
    from pricewave.reviews.sentiment import load_or_train_sentiment_head

    source = Path(args.input)
    target = Path(args.out)
    frame = _read_input(source, args.text_column)
    _set_threads(args.threads)
    embedder = embedder_from_settings(settings, batch_size=args.batch_size)
    head = load_or_train_sentiment_head(settings, embedder, progress=not args.no_progress)
    texts = frame[args.text_column].fillna("").astype(str).tolist()
    sentiments: list[np.ndarray] = []
    embeddings: list[str] = []
    with tqdm(total=len(texts), desc="scoring", unit="review", disable=args.no_progress) as bar:
        for start in range(0, len(texts), _CHUNK_ROWS):
            chunk = texts[start : start + _CHUNK_ROWS]
            vectors = embedder.embed(chunk)
            sentiments.append(head.score_reviews(chunk, vectors))
            if args.with_embedding:
                embeddings.extend(json.dumps([round(float(v), 7) for v in row]) for row in vectors)
            bar.update(len(chunk))
    frame["sentiment"] = np.concatenate(sentiments) if sentiments else np.empty(0)
    if args.with_embedding:
        frame["embedding"] = embeddings
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        frame.to_csv(target, index=False)
    except OSError as exc:
        raise DataError(f"cannot write {target}: {exc.strerror or exc}") from None
    info = embedder.cache_info()
    print(
        f"scored {len(texts)} reviews into {target} (mean sentiment {frame['sentiment'].mean():+.3f}; "
        f"{info.hits} repeated texts served from the cache, device {embedder.device})"
        if texts
        else f"no reviews in {source}; wrote {target}",
        flush=True,
    )
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from pricewave.reviews.embedding import embedder_from_settings
    from pricewave.reviews.sentiment import sentiment_head_path, train_sentiment_head

    _set_threads(args.threads)
    embedder = embedder_from_settings(settings, batch_size=args.batch_size)
    head, metrics = train_sentiment_head(
        embedder,
        test_size=args.test_size,
        seed=args.seed,
        l2=args.l2,
        cache_dir=settings.path("cache", "embeddings"),
        progress=not args.no_progress,
        reviews=args.reviews,
    )
    path = head.save(sentiment_head_path(settings))
    print(
        f"sentiment head: held-out accuracy {metrics['accuracy']:.3f}, ROC AUC {metrics['roc_auc']:.3f} "
        f"({metrics['n_train']} train / {metrics['n_test']} test reviews, l2 {metrics['l2']:g}); saved to {path}",
        flush=True,
    )
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from pricewave.reviews.embedding import embedder_from_settings
    from pricewave.reviews.evaluation import evaluate_sentiment, sentiment_table, write_sentiment_report
    from pricewave.reviews.sentiment import load_or_train_sentiment_head

    _set_threads(args.threads)
    embedder = embedder_from_settings(settings, batch_size=args.batch_size)
    head = load_or_train_sentiment_head(settings, embedder, progress=not args.no_progress)
    results = evaluate_sentiment(
        settings,
        embedder,
        head,
        sample=args.sample,
        training_reviews=args.reviews,
        progress=not args.no_progress,
    )
    out_dir = Path(args.out) if args.out else settings.path("reports", "sentiment")
    written = write_sentiment_report(results, out_dir)
    print(sentiment_table(results), flush=True)
    print(f"wrote {', '.join(str(path) for path in written)}", flush=True)
    return 0


def _review_count(text: str) -> int:
    from pricewave.reviews.sentiment import MIN_SAMPLE_REVIEWS  # here: `pricewave --help` does not load torch

    return int_at_least(MIN_SAMPLE_REVIEWS)(text)


def register(subparsers: Any) -> None:
    """Add ``reviews score``, ``reviews train-sentiment`` and ``reviews evaluate`` to the CLI."""
    parser = subparsers.add_parser(
        "reviews",
        help="score review sentiment (MiniLM embedding and lexicon), train and evaluate the sentiment head",
        description=(
            "Review sentiment from all-MiniLM-L6-v2 embeddings and VADER lexicon scores through a "
            "logistic-regression head."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    score = actions.add_parser(
        "score",
        help="add a sentiment column in [-1, 1] to a CSV of reviews",
        description=(
            "Read a CSV, embed the text column, and write it back with a 'sentiment' column in [-1, 1] "
            "(2 P(great) - 1). Trains the sentiment head first if none is saved."
        ),
    )
    score.add_argument("--input", required=True, metavar="FILE", help="CSV file with a review text column")
    score.add_argument("--text-column", required=True, metavar="COL", help="name of the text column")
    score.add_argument("--out", required=True, metavar="FILE", help="CSV file to write")
    score.add_argument("--with-embedding", action="store_true", help="also write the 384-dim embedding as JSON")
    score.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="texts per forward pass")
    score.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="CPU threads for torch (default: all cores)"
    )
    score.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    score.set_defaults(handler=_score)

    train = actions.add_parser(
        "train-sentiment",
        help="train the sentiment head on 4,000 real reviews and print held-out accuracy and AUC",
        description=(
            "Embed the 4,000 Amazon Fine Foods reviews (cached after the first run), fit the logistic-regression "
            "head on a stratified split, print held-out accuracy and ROC AUC, refit on all reviews and save it. "
            "--reviews N does the same on a stratified sample of N reviews."
        ),
    )
    train.add_argument("--test-size", type=open_share, default=0.25, help="held-out share (default 0.25)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split and of the --reviews sample (default 0)")
    train.add_argument(
        "--l2", type=non_negative_float, default=None, help="L2 penalty (default: chosen by 5-fold cross-validation)"
    )
    train.add_argument(
        "--reviews",
        type=_review_count,
        default=None,
        metavar="N",
        help="train and evaluate on a stratified sample of N of the 4,000 reviews (default: all); for a quick check",
    )
    train.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="texts per forward pass")
    train.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="CPU threads for torch (default: all cores)"
    )
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    train.set_defaults(handler=_train)

    evaluate = actions.add_parser(
        "evaluate",
        help="rank-correlate the sentiment models and a lexicon baseline with human ratings, in one run",
        description=(
            "Score two public human-rated sets that pricewave never trains on (993 held-out Fine Foods "
            "reviews, and 3,708 Amazon review sentences each rated by 20 people, downloaded once with the "
            "vaderSentiment source archive) with the shipped head (embedding and lexicon), a head on the "
            "embedding alone (trained in this run) and the VADER lexicon. Prints Spearman's rho with 95 % "
            "bootstrap intervals and writes sentiment.json, sentiment.md and sentiment.png."
        ),
    )
    evaluate.add_argument(
        "--sample", type=positive_int, default=None, metavar="N", help="score N texts of each set (default: all)"
    )
    evaluate.add_argument(
        "--reviews",
        type=_review_count,
        default=None,
        metavar="N",
        help="train the embedding-only head on a stratified sample of N training reviews (default: all 4,000)",
    )
    evaluate.add_argument(
        "--out", default=None, metavar="DIR", help="report folder (default: <state>/reports/sentiment)"
    )
    evaluate.add_argument("--batch-size", type=positive_int, default=64, metavar="N", help="texts per forward pass")
    evaluate.add_argument(
        "--threads", type=positive_int, default=None, metavar="N", help="CPU threads for torch (default: all cores)"
    )
    evaluate.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    evaluate.set_defaults(handler=_evaluate)
