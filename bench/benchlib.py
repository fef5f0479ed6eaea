"""Shared plumbing of the benchmark scripts: machine and version banner, tables, JSON line, and
private fixtures (an applied feature-repo copy, a redis-server, fresh topics, a MiniCluster's REST).

Scripts import it as ``import benchlib`` (``python bench/<name>.py`` puts ``bench/`` on the path).

Example:
    >>> import benchlib                                   # doctest: +SKIP
    >>> benchlib.banner("online_store")                   # doctest: +SKIP
    >>> benchlib.table(["what", "rows/s"], [["batch", 1234.5]])  # doctest: +SKIP
    >>> benchlib.emit({"bench": "online_store", "rows_per_s": 1234.5})  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pricewave.config import Settings

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # jobs/, udfs/ and pricewave/ import from the repository root
    sys.path.insert(0, str(ROOT))

PACKAGES = ("apache-flink", "feast", "kafka-python", "redis", "pandas", "pyarrow", "numpy", "torch")


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo (falls back to platform)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def gpu_name() -> str:
    """The first NVIDIA GPU's name, or ``none``."""
    smi = shutil.which("nvidia-smi")
    if smi:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=10, check=False).stdout.strip()  # fmt: skip
            if out:
                return out.splitlines()[0]
    return "none"


def load_average() -> float:
    """The 1-minute load average (the machine is shared: every figure carries it)."""
    return round(os.getloadavg()[0], 2)


def busy_cpu_seconds() -> float:
    """CPU-seconds this machine spent busy since boot, over every core and process (``/proc/stat``:
    all but idle and iowait): the difference of two readings is what a span of work cost."""
    fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def versions() -> dict[str, str]:
    """Versions of Python, Java, the Kafka broker jar and the packages that matter."""
    found = {"python": platform.python_version()}
    for package in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    java = shutil.which("java")
    if java:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            first = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=10).stderr.splitlines()
            found["java"] = first[0].split('"')[1] if first and '"' in first[0] else "?"
    jars = sorted((ROOT / ".pricewave" / "jars" / "kafka").glob("kafka_2.13-*.jar"))
    if jars:
        found["kafka-broker"] = jars[0].stem.split("-", 1)[1]
    return found


def machine() -> dict[str, Any]:
    """Cores, CPU model, GPU, memory."""
    memory_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "gpu": gpu_name(), "memory_gb": memory_gb}


def model_state(settings: Settings) -> str:
    """Whether the pricers ran the pricing network: a missing or stale model trips the kill switch."""
    from pricewave.pricing.artifact import artifact_age_s

    age, limit = artifact_age_s(settings.model_dir), settings.models.max_age_s
    if age is None:
        return f"none in {settings.model_dir}: the kill switch priced every row (no network inference)"
    if age > limit:
        return f"{settings.model_dir}, {age:,.0f} s old > {limit:,.0f} s: stale, the kill switch priced every row"
    return f"{settings.model_dir}, {age:,.0f} s old: fresh, the pricing network priced the rows"


def model_is_fresh(settings: Settings) -> bool:
    """Whether the pricers would price with the network: a model young enough for the kill switch."""
    from pricewave.pricing.artifact import artifact_age_s

    age = artifact_age_s(settings.model_dir)
    return age is not None and age <= settings.models.max_age_s


def banner(name: str) -> dict[str, Any]:
    """Print (and return) the machine, versions, date and load average heading every benchmark."""
    m, installed = machine(), versions()
    info: dict[str, Any] = {"bench": name, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": m,
                            "versions": installed}  # fmt: skip
    print(f"== {name} ==  {info['date']}")
    print(f"machine: {m['cores']} cores, {m['cpu']}, {m['memory_gb']} GiB RAM, GPU: {m['gpu']}; "
          f"load average {load_average()}")  # fmt: skip
    print("versions: " + ", ".join(f"{k} {v}" for k, v in installed.items()))
    sys.stdout.flush()
    return info


def fmt(value: Any) -> str:
    """A table cell: thousands separators for big numbers, 3 significant places for small ones."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Print a fixed-width table (first column left-aligned) and return it."""
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [
        "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    ]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def emit(report: dict[str, Any]) -> None:
    """The final JSON line of a benchmark (machine and versions included)."""
    report.setdefault("machine", machine())
    report.setdefault("versions", versions())
    report.setdefault("load_average_end", load_average())
    print(json.dumps(report, default=float), flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return float(ordered[rank])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- private fixtures ------------------------------------------------------------------------


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()


def applied_feature_repo(workdir: Path) -> Path:
    """A copy of feature_repo/ (without data/) under ``workdir`` on which ``feast apply`` ran (SQLite)."""
    from pricewave.config import load_settings
    from pricewave.feature_store.store import apply_repo

    repo = workdir / "feature_repo"
    shutil.copytree(ROOT / "feature_repo", repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return apply_repo(repo, load_settings(), "sqlite", timeout_s=300)


@contextlib.contextmanager
def redis_server(password: str = "bench-pw") -> Iterator[tuple[str, int, str]]:
    """A private redis-server on a free port (no persistence); yields (host, port, password)."""
    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as workdir:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--dir", workdir,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    redis.Redis(host="127.0.0.1", port=port, password=password).ping()
                    break
                except redis.exceptions.ConnectionError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"redis-server did not start on port {port}") from None
                    time.sleep(0.05)
            yield "127.0.0.1", port, password
        finally:
            stop_process(process, timeout_s=10)


def start_feast_serve(repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """``feast serve`` on ``repo`` (a subprocess on a free port), once healthy: (process, base url)."""
    import requests

    port = free_port()
    feast = str(Path(sys.executable).with_name("feast"))
    process = subprocess.Popen(
        [feast, "serve", "-h", "127.0.0.1", "-p", str(port), "--no-access-log", "-r", "3600"],
        cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("feast serve did not become healthy")
        time.sleep(0.25)


def fresh_topics(settings: Any, roles: Sequence[str], partitions: int, stem: str = "bench") -> Any:
    """Settings whose topics for ``roles`` are new, uniquely named topics (created now)."""
    from pricewave.kafka_io import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    names = {role: f"{stem}-{role.replace('_', '-')}-{suffix}" for role in roles}
    ensure_topics(settings, names.values(), partitions=partitions)
    return settings.model_copy(update={"topics": settings.topics.model_copy(update=names)})


def delete_topics(settings: Any, names: Iterable[str]) -> None:
    """Best-effort removal of the topics a benchmark created."""
    from pricewave.kafka_io import make_admin

    admin = make_admin(settings)
    try:
        with contextlib.suppress(Exception):
            admin.delete_topics(list(names))
    finally:
        admin.close()


# -- Flink REST ------------------------------------------------------------------------------


class FlinkRest:
    """Minimal Flink REST client for a running job (MiniCluster or standalone)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/")

    def get(self, path: str) -> Any:
        import requests

        response = requests.get(self.base + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def vertices(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/jobs/{job_id}").get("vertices", []))

    def state(self, job_id: str) -> str:
        return str(self.get(f"/jobs/{job_id}").get("state", "?"))

    def subtask_metrics(self, job_id: str, vertex_id: str, names: Sequence[str], agg: str = "avg") -> dict[str, float]:
        """Aggregated subtask metrics of a vertex (``agg`` over its subtasks)."""
        rows = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics?get={','.join(names)}&agg={agg}")
        return {row["id"]: float(row.get(agg, 0.0)) for row in rows}

    def input_watermark(self, job_id: str, vertex_id: str) -> float | None:
        """The lowest current input watermark (epoch ms) over a vertex's subtasks, None before any."""
        values = [float(row["value"]) for row in self.get(f"/jobs/{job_id}/vertices/{vertex_id}/watermarks")]
        return min(values) if values else None

    def vertex_metric_names(self, job_id: str, vertex_id: str) -> list[str]:
        return [row["id"] for row in self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics")]

    def vertex_metrics(self, job_id: str, vertex_id: str, names: Sequence[str]) -> dict[str, float]:
        if not names:
            return {}
        rows = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics?get={','.join(names)}")
        out = {}
        for row in rows:
            with contextlib.suppress(TypeError, ValueError):
                out[row["id"]] = float(row["value"])
        return out


def minicluster_rest_config(port: int, metrics_update_ms: int = 500) -> dict[str, str]:
    """Configuration that serves an embedded MiniCluster's REST API on ``port`` (loopback only)."""
    return {
        "rest.bind-port": str(port),
        "rest.port": str(port),
        "rest.bind-address": "127.0.0.1",
        "rest.address": "127.0.0.1",
        # The REST API serves metrics the JobManager fetched at most this long ago (default 10 s).
        "metrics.fetcher.update-interval": str(metrics_update_ms),
    }


def short_vertex_name(name: str, width: int = 70) -> str:
    """A vertex name without Flink's long operator descriptions."""
    text = " ".join(name.replace("<br/>", " ").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- a synthetic workload with wall-clock-consistent event time --------------------------------

EVENT_MIX = (("view", 0.70), ("click", 0.12), ("search", 0.05), ("add_to_cart", 0.09), ("purchase", 0.04))


class SyntheticMarket:
    """Valid clicks / competitor prices / reviews whose event time advances at a chosen rate.

    The market simulator compresses event time when produced "as fast as possible" (its default
    scenario makes ~6 events per simulated second, so a 5,000/s stream covers 800 simulated seconds
    per wall second and fires ~13 window slides per second). A live stream at R events/s advances
    event time by 1 s per R events; this generator reproduces that, so a pre-filled topic replays
    the load the job sees live.
    """

    def __init__(self, n_skus: int = 500, n_users: int = 20_000, seed: int = 0, run_id: str | None = None) -> None:
        import numpy as np

        from pricewave.privacy import pseudonymize_user

        self.rng = np.random.default_rng(seed)
        self.run_id = run_id or uuid.uuid4().hex[:10]
        self.skus = [f"SKU-{i:05d}" for i in range(n_skus)]
        weights = 1.0 / np.arange(1, n_skus + 1) ** 0.8  # popularity skew like the simulator's
        self.sku_p = weights / weights.sum()
        self.users = [pseudonymize_user(f"bench-user-{i}", b"bench-secret") for i in range(n_users)]
        self.base_price = {sku: float(round(self.rng.uniform(5, 120), 0) - 0.01) for sku in self.skus}
        self.serial = 0

    def catalog_rows(self, event_time_ms: int) -> list[dict[str, Any]]:
        rows = []
        for sku, base in self.base_price.items():
            cost = round(base * 0.6, 2)
            ceiling = round(base * 1.5, 2)
            rows.append({"sku": sku, "base_price": base, "cost": cost, "map_price": None,
                         "ceiling_price": ceiling, "category": "bench", "event_time": event_time_ms})  # fmt: skip
        return rows

    def clicks(self, n: int, t0_ms: int, events_per_s: float) -> list[tuple[bytes, bytes, int]]:
        """``n`` click events as (key, value, event_time_ms), event time advancing at ``events_per_s``."""
        kinds = [k for k, _ in EVENT_MIX]
        kind_idx = self.rng.choice(len(kinds), size=n, p=[p for _, p in EVENT_MIX])
        sku_idx = self.rng.choice(len(self.skus), size=n, p=self.sku_p)
        user_idx = self.rng.integers(0, len(self.users), size=n)
        out = []
        step = 1000.0 / events_per_s
        for i in range(n):
            sku = self.skus[sku_idx[i]]
            t = int(t0_ms + i * step)
            out.append((sku.encode(), self._click_value(kinds[kind_idx[i]], self.users[user_idx[i]], sku, t), t))
        return out

    def _click_value(self, kind: str, user: str, sku: str, event_time_ms: int) -> bytes:
        """One click's JSON (built as text: this generator must outpace the producer it feeds)."""
        self.serial += 1
        return (
            f'{{"event_id":"b-{self.run_id}-{self.serial}","event_type":"{kind}",'
            f'"user_key":"{user}","session_id":"s-{user[:12]}","sku":"{sku}",'
            f'"price_seen":{self.base_price[sku]},"channel":"web","event_time":{event_time_ms}}}'
        ).encode()

    def views_of_every_sku(self, start_ms: int, end_ms: int) -> list[tuple[bytes, bytes, int]]:
        """One view of each sku, event times spread over ``[start_ms, end_ms)``: a pre-fill that gives
        every sku a window (and so a published price) before the clicks that follow."""
        step = (end_ms - start_ms) / len(self.skus)
        out = []
        for i, sku in enumerate(self.skus):
            t = int(start_ms + i * step)
            out.append((sku.encode(), self._click_value("view", self.users[i % len(self.users)], sku, t), t))
        return out

    def _on_popular_skus(self, n: int, t0_ms: int, events_per_s: float) -> Iterator[tuple[int, str, int]]:
        """(i, sku, event time ms) of ``n`` events on skus drawn by popularity, time as for clicks."""
        sku_idx = self.rng.choice(len(self.skus), size=n, p=self.sku_p)
        step = 1000.0 / events_per_s
        for i in range(n):
            self.serial += 1
            yield i, self.skus[sku_idx[i]], int(t0_ms + i * step)

    def competitor_prices(self, n: int, t0_ms: int, events_per_s: float) -> list[tuple[bytes, bytes, int]]:
        out = []
        for i, sku, t in self._on_popular_skus(n, t0_ms, events_per_s):
            price = round(self.base_price[sku] * float(self.rng.uniform(0.85, 1.15)), 2)
            competitor = ("acme", "globex", "initech")[i % 3]
            value = (f'{{"event_id":"p-{self.run_id}-{self.serial}","sku":"{sku}","competitor":"{competitor}",'
                     f'"price":{price},"in_stock":true,"event_time":{t}}}')  # fmt: skip
            out.append((sku.encode(), value.encode(), t))
        return out

    def reviews(self, n: int, t0_ms: int, events_per_s: float) -> list[tuple[bytes, bytes, int]]:
        """``n`` reviews (rating 1-5, a short text) of popular skus, event time as for clicks."""
        ratings = self.rng.integers(1, 6, size=n)
        out = []
        for i, sku, t in self._on_popular_skus(n, t0_ms, events_per_s):
            text = REVIEW_TEXTS[int(ratings[i]) - 1]
            value = (f'{{"review_id":"r-{self.run_id}-{self.serial}","sku":"{sku}","rating":{ratings[i]},'
                     f'"text":"{text}","event_time":{t}}}')  # fmt: skip
            out.append((sku.encode(), value.encode(), t))
        return out


REVIEW_TEXTS = (
    "Broke after two days, do not buy.",
    "Not what the photos showed.",
    "Does the job, nothing special.",
    "Good value, arrived quickly.",
    "Excellent, would buy again.",
)


def produce(settings: Any, topic: str, messages: Sequence[tuple[bytes, bytes, int]], **overrides: Any) -> float:
    """Send (key, value, _) messages with the project's producer; returns seconds taken (flushed)."""
    from pricewave.kafka_io import make_producer

    producer = make_producer(settings, **overrides)
    start = time.perf_counter()
    try:
        for key, value, _ in messages:
            producer.send(topic, value=value, key=key)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return time.perf_counter() - start
