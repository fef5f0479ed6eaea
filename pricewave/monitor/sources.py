"""Where the dashboard's pipeline figures come from: Flink's REST API, Kafka offsets, the online store.

Each source returns a plain dict (JSON-ready) and never raises for an unreachable service: it
reports ``"available": false`` with the reason instead, so one part down leaves the rest visible.

Example:
    >>> watermark_ms([{"id": "0.currentInputWatermark", "value": "-9223372036854775808"}])
    >>> watermark_ms([{"id": "0.currentInputWatermark", "value": "1700000000000"},
    ...               {"id": "1.currentInputWatermark", "value": "1699999999000"}])
    1699999999000
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from pricewave.config import Settings

LONG_MIN = -(2**63)
BACKPRESSURE_LEVELS = {"ok": 0, "low": 1, "high": 2}
JOB_NAME = "pricewave-pricing"
ACTIVE_STATES = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "FAILING", "CANCELLING", "RECONCILING")


def watermark_ms(metrics: Sequence[dict[str, Any]]) -> int | None:
    """The operator's watermark: the lowest current input watermark over its subtasks (None: none yet)."""
    values = []
    for metric in metrics:
        try:
            value = int(float(metric.get("value", LONG_MIN)))
        except (TypeError, ValueError):
            continue
        if value <= LONG_MIN + 1:
            return None  # a subtask without a watermark holds the operator's back
        values.append(value)
    return min(values) if values else None


# The job's own metrics (udfs/metrics.py) that summarize a level, not a count: the worst subtask counts.
GAUGES_BY_MAX = {
    "event_to_decision_ms_p50",
    "event_to_decision_ms_p99",
    "event_to_decision_ms_max",
    "model_age_s",
    "store_down",
}
JOB_METRIC_GROUP = ".pricewave."


def job_metrics(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The job's ``pricewave.<what>.<name>`` metrics from Flink's aggregated subtask metrics.

    ``rows`` is what ``/jobs/<job>/vertices/<vertex>/subtasks/metrics?get=...&agg=sum,max`` returns.
    Counters sum over subtasks; the level gauges in ``GAUGES_BY_MAX`` take the highest subtask.

    Example:
        >>> job_metrics([{"id": "PythonCalc[9].pricewave.SkuPricer.decisions", "sum": 7.0, "max": 4.0},
        ...              {"id": "PythonCalc[9].pricewave.SkuPricer.rule.floor.guardrail_hits", "sum": 2.0},
        ...              {"id": "PythonCalc[9].pricewave.SkuPricer.model_age_s", "sum": 20.0, "max": 11.0}])
        {'SkuPricer': {'decisions': 7.0, 'rule.floor.guardrail_hits': 2.0, 'model_age_s': 11.0}}
    """
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        metric_id = str(row.get("id", ""))
        if JOB_METRIC_GROUP not in metric_id:
            continue
        what, _, name = metric_id.split(JOB_METRIC_GROUP, 1)[1].partition(".")
        value = row.get("max" if name in GAUGES_BY_MAX else "sum")
        if not name or value is None:
            continue
        found.setdefault(what, {})[name] = float(value)
    return found


def pricer_metrics(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, Mapping[str, float]]:
    """The pricers' part of :func:`job_metrics` (the groups that count ``decisions``)."""
    return {what: values for what, values in metrics.items() if "decisions" in values}


def guardrail_rule(name: str) -> str | None:
    """The rule of a ``rule.<rule>.guardrail_hits`` metric name, else None.

    Example:
        >>> guardrail_rule("rule.floor.guardrail_hits"), guardrail_rule("decisions")
        ('floor', None)
    """
    if name.startswith("rule.") and name.endswith(".guardrail_hits"):
        return name.removeprefix("rule.").removesuffix(".guardrail_hits")
    return None


def pricing_figures(metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The pricers' business figures (all pricers together) from :func:`job_metrics`.

    Example:
        >>> figures = pricing_figures({"SkuPricer": {"decisions": 8, "kill_switch": 2, "explored": 0,
        ...                                          "personalized": 0, "rule.floor.guardrail_hits": 3}})
        >>> figures["decisions"], figures["kill_switch_share"], figures["guardrail_hits"]
        (8, 0.25, {'floor': 3})
    """
    pricers = pricer_metrics(metrics)
    decisions = int(sum(values["decisions"] for values in pricers.values()))

    def total(name: str) -> int:
        return int(sum(values.get(name, 0) for values in pricers.values()))

    def share(name: str) -> float | None:
        return None if decisions == 0 else round(total(name) / decisions, 4)

    hits: dict[str, int] = {}
    for values in pricers.values():
        for name, value in values.items():
            rule = guardrail_rule(name)
            if rule is not None and value:
                hits[rule] = hits.get(rule, 0) + int(value)
    ages = [values["model_age_s"] for values in pricers.values() if values.get("model_age_s", -1) >= 0]
    lags = [values["event_to_decision_ms_p99"] for values in pricers.values() if "event_to_decision_ms_p99" in values]
    return {
        "decisions": decisions,
        "by_pricer": {what: int(values["decisions"]) for what, values in sorted(pricers.items())},
        "kill_switch_share": share("kill_switch"),
        "exploration_share": share("explored"),
        "personalized_share": share("personalized"),
        "guardrail_hits": dict(sorted(hits.items(), key=lambda item: -item[1])),
        "model_age_s": max(ages) if ages else None,
        "event_to_decision_p99_ms": max(lags) if lags else None,
        "model_load_failures": total("model_load_failures"),
    }


class FlinkHealth:
    """Job state, restarts, checkpoints, backpressure, records and watermarks from Flink's REST API.

    Args:
        rest_url: The JobManager's REST URL.
        job_id: A job to follow; default the newest active ``pricewave-pricing`` job (else the newest one).
    """

    def __init__(self, rest_url: str, job_id: str | None = None, timeout_s: float = 3.0) -> None:
        self.rest_url = rest_url.rstrip("/")
        self.job_id = job_id
        self.timeout_s = timeout_s
        self._previous: dict[str, tuple[float, int, int]] = {}

    def _get(self, path: str) -> Any:
        response = requests.get(f"{self.rest_url}{path}", timeout=self.timeout_s)
        response.raise_for_status()
        return response.json()

    def _pick_job(self) -> dict[str, Any] | None:
        jobs = self._get("/jobs/overview").get("jobs", [])
        if self.job_id:
            return next((job for job in jobs if job["jid"] == self.job_id), None)
        ours = sorted((job for job in jobs if job.get("name") == JOB_NAME), key=lambda job: -job.get("start-time", 0))
        active = [job for job in ours if job.get("state") in ACTIVE_STATES]
        return (active or ours or [None])[0]

    def collect(self) -> dict[str, Any]:
        """The pipeline-health panel (``available: false`` with ``error`` when Flink does not answer)."""
        base: dict[str, Any] = {"rest_url": self.rest_url, "available": False, "error": None, "job": None}
        try:
            job = self._pick_job()
            base["available"] = True
            if job is None:
                base["error"] = "no pricewave-pricing job on the cluster: run 'pricewave submit'"
                return base
            return {**base, **self._job_figures(str(job["jid"]))}
        except (requests.RequestException, ValueError, KeyError) as exc:
            base["error"] = f"Flink REST at {self.rest_url} did not answer: {type(exc).__name__}"
            return base

    def _job_figures(self, job_id: str) -> dict[str, Any]:
        details = self._get(f"/jobs/{job_id}")
        now = time.time()
        restarts = None
        try:
            metrics = self._get(f"/jobs/{job_id}/metrics?get=numRestarts")
            restarts = int(float(metrics[0]["value"])) if metrics else None
        except (requests.RequestException, ValueError, KeyError, IndexError):
            pass
        operators = []
        running = details.get("state") == "RUNNING"
        own_metrics: dict[str, dict[str, float]] = {}
        for vertex in details.get("vertices", []):
            operators.append(self._operator(job_id, vertex, now, running=running))
            if running:
                for what, values in self._job_metrics(job_id, str(vertex["id"])).items():
                    own_metrics.setdefault(what, {}).update(values)
        return {
            "job": {
                "id": job_id,
                "name": details.get("name"),
                "state": details.get("state"),
                "start_time": details.get("start-time"),
                "duration_ms": details.get("duration"),
                "restarts": restarts,
                "web_url": f"{self.rest_url}/#/job/{job_id}/overview",
            },
            "checkpoints": self._checkpoints(job_id),
            "operators": operators,
            # The job's own metrics, as Flink reports them (REST here; the Prometheus reporter too).
            "job_metrics": own_metrics,
            "pricing": pricing_figures(own_metrics) if own_metrics else None,
        }

    def _job_metrics(self, job_id: str, vertex_id: str) -> dict[str, dict[str, float]]:
        """One vertex's ``pricewave.*`` metrics, aggregated over its subtasks ({} when there are none)."""
        path = f"/jobs/{job_id}/vertices/{vertex_id}/subtasks/metrics"
        try:
            ids = [str(row["id"]) for row in self._get(path) if JOB_METRIC_GROUP in str(row.get("id", ""))]
            if not ids:
                return {}
            return job_metrics(self._get(f"{path}?get={','.join(ids)}&agg=sum,max"))
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return {}

    def _checkpoints(self, job_id: str) -> dict[str, Any]:
        try:
            stats = self._get(f"/jobs/{job_id}/checkpoints")
        except (requests.RequestException, ValueError):
            return {"available": False}
        counts = stats.get("counts", {})
        latest = stats.get("latest") or {}
        completed = latest.get("completed") or {}
        failed = latest.get("failed") or {}
        restored = latest.get("restored") or {}
        return {
            "available": True,
            "completed": counts.get("completed", 0),
            "failed": counts.get("failed", 0),
            "in_progress": counts.get("in_progress", 0),
            "restored": counts.get("restored", 0),
            "last": {
                "id": completed.get("id"),
                "time": completed.get("latest_ack_timestamp"),
                "duration_ms": completed.get("end_to_end_duration"),
                "state_size": completed.get("state_size", completed.get("checkpointed_size")),
            }
            if completed
            else None,
            "last_failure": {
                "id": failed.get("id"),
                "time": failed.get("failure_timestamp"),
                "message": failed.get("failure_message"),
            }
            if failed
            else None,
            "restored_from": restored.get("external_path"),
        }

    def _operator(self, job_id: str, vertex: dict[str, Any], now: float, *, running: bool) -> dict[str, Any]:
        vertex_id = str(vertex["id"])
        metrics = vertex.get("metrics", {})
        records_in, records_out = int(metrics.get("read-records", 0)), int(metrics.get("write-records", 0))
        rate_in = rate_out = None
        previous = self._previous.get(vertex_id)
        if previous is not None and now > previous[0]:
            rate_in = max(records_in - previous[1], 0) / (now - previous[0])
            rate_out = max(records_out - previous[2], 0) / (now - previous[0])
        self._previous[vertex_id] = (now, records_in, records_out)
        backpressure = watermark = None
        if running:
            with contextlib.suppress(requests.RequestException, ValueError):
                level = self._get(f"/jobs/{job_id}/vertices/{vertex_id}/backpressure").get("backpressureLevel")
                backpressure = str(level) if level else None
            with contextlib.suppress(requests.RequestException, ValueError):
                watermark = watermark_ms(self._get(f"/jobs/{job_id}/vertices/{vertex_id}/watermarks"))
        return {
            "id": vertex_id,
            "name": str(vertex.get("name", ""))[:160],
            "parallelism": vertex.get("parallelism"),
            "status": vertex.get("status"),
            "records_in": records_in,
            "records_out": records_out,
            "records_in_per_s": None if rate_in is None else round(rate_in, 2),
            "records_out_per_s": None if rate_out is None else round(rate_out, 2),
            "backpressure": backpressure,
            "watermark": watermark,
            "watermark_lag_ms": None if watermark is None else int(now * 1000) - watermark,
        }


class KafkaOffsets:
    """End offsets, topic rates and the job's consumer lag per topic and partition.

    Lag = end offset (the last stable offset: ``read_committed``) − the offset the job's consumer
    group committed (Flink commits on each checkpoint). Uses its own consumer and admin clients.
    """

    def __init__(self, settings: Settings, group_id: str) -> None:
        self.settings = settings
        self.group_id = group_id
        self._consumer: Any = None
        self._admin: Any = None
        self._previous: dict[str, tuple[float, int]] = {}

    def _clients(self) -> tuple[Any, Any]:
        from pricewave.kafka_io import make_admin, make_consumer

        if self._consumer is None:
            self._consumer = make_consumer(self.settings, [], read_committed=True, client_id="pricewave-monitor-lag")
        if self._admin is None:
            self._admin = make_admin(self.settings)
        return self._consumer, self._admin

    def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):  # closing a broken client must not mask the real error
                    client.close()
        self._consumer = self._admin = None

    def collect(self) -> dict[str, Any]:
        """The consumer-lag panel (``available: false`` with ``error`` when the broker does not answer)."""
        from kafka import TopicPartition
        from kafka.errors import KafkaError

        topics = self.settings.topics
        roles = {
            topics.clicks: "clicks",
            topics.competitor_prices: "competitor_prices",
            topics.reviews: "reviews",
            topics.prices: "prices",
            topics.dlq: "dlq",
        }
        inputs = set(topics.input_names())
        result: dict[str, Any] = {"available": False, "error": None, "group_id": self.group_id, "topics": []}
        try:
            consumer, admin = self._clients()
            partitions = [
                TopicPartition(name, partition)
                for name in roles
                for partition in sorted(consumer.partitions_for_topic(name) or [])
            ]
            ends = consumer.end_offsets(partitions) if partitions else {}
            committed = admin.list_consumer_group_offsets(self.group_id)
        except (KafkaError, OSError, ValueError) as exc:
            self.close()
            result["error"] = f"Kafka at {self.settings.kafka.bootstrap_servers}: {type(exc).__name__}: {exc}"[:300]
            return result
        except Exception as exc:  # a broker-down StackError from kafka_io
            self.close()
            result["error"] = str(exc)[:300]
            return result
        now = time.monotonic()
        result["available"] = True
        for name, role in roles.items():
            rows = []
            for tp in (tp for tp in partitions if tp.topic == name):
                end = int(ends.get(tp, 0))
                meta = committed.get(tp)
                offset = int(meta.offset) if meta is not None and meta.offset is not None and meta.offset >= 0 else None
                lag = None if offset is None or name not in inputs else max(end - offset, 0)
                rows.append({"partition": tp.partition, "end_offset": end, "committed": offset, "lag": lag})
            total = sum(row["end_offset"] for row in rows)
            previous = self._previous.get(name)
            rate = None
            if previous is not None and now > previous[0]:
                rate = round(max(total - previous[1], 0) / (now - previous[0]), 2)
            self._previous[name] = (now, total)
            lags = [row["lag"] for row in rows if row["lag"] is not None]
            result["topics"].append(
                {
                    "topic": name,
                    "role": role,
                    "input": name in inputs,
                    "exists": bool(rows),
                    "end_offset_total": total,
                    "records_per_s": rate,
                    "lag_total": sum(lags) if lags else None,
                    "partitions": rows,
                }
            )
        return result


class FeatureFreshness:
    """Age of the newest value per feature view in the online store (via :mod:`pricewave.feature_store`).

    SQLite: exact (the writer's event-time side table, else Feast's own ``event_ts``). Redis: the
    newest ``_ts:<view>`` over a bounded sample of keys (``sampled: true``).
    """

    def __init__(self, settings: Settings, *, redis_sample: int = 2000) -> None:
        self.settings = settings
        self.redis_sample = redis_sample
        self._store: Any = None

    def collect(self) -> dict[str, Any]:
        """The freshness panel; ``available: false`` with a reason when there is no store."""
        try:
            from pricewave.feature_store import open_store
            from pricewave.feature_store.store import online_store_type
        except ImportError:
            return {"available": False, "reason": "unavailable: pricewave.feature_store is not installed", "views": []}
        try:
            if self._store is None:
                self._store = open_store(self.settings)
            store = self._store
            kind = online_store_type(store)
            names = sorted(view.name for view in store.list_feature_views())
            newest = self._sqlite(store, names) if kind == "sqlite" else self._redis(store, names)
        except Exception as exc:  # any store problem shows as 'unavailable' with its reason
            self._store = None
            return {"available": False, "reason": f"unavailable: {str(exc).splitlines()[0][:200]}", "views": []}
        now_ms = int(time.time() * 1000)
        views = [
            {
                "view": name,
                "newest_event_time": newest.get(name),
                "age_s": None if newest.get(name) is None else round((now_ms - int(newest[name])) / 1000, 1),
            }
            for name in names
        ]
        return {"available": True, "store": kind, "sampled": kind != "sqlite", "views": views}

    @staticmethod
    def _sqlite(store: Any, names: list[str]) -> dict[str, int]:
        import sqlite3
        from contextlib import closing

        from pricewave.feature_store.stores.sqlite import SIDE_TABLE, database_path

        newest: dict[str, int] = {}
        path = database_path(store)
        if not path.exists():
            return newest
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as connection:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if SIDE_TABLE in tables:
                for view, event_ms in connection.execute(
                    f"SELECT feature_view, MAX(event_ms) FROM {SIDE_TABLE} GROUP BY feature_view"
                ):
                    newest[str(view)] = int(event_ms)
            for name in names:
                table = f"{store.config.project}_{name}"
                if name in newest or table not in tables:
                    continue
                (value,) = connection.execute(f'SELECT MAX(event_ts) FROM "{table}"').fetchone()
                if value is not None:
                    newest[name] = _to_millis(value)
        return newest

    def _redis(self, store: Any, names: list[str]) -> dict[str, int]:
        from google.protobuf.timestamp_pb2 import Timestamp

        from pricewave.feature_store.stores.redis import client

        redis_client = client(store)
        newest: dict[str, int] = {}
        fields = [f"_ts:{name}" for name in names]
        for count, key in enumerate(redis_client.scan_iter(count=500)):
            if count >= self.redis_sample:
                break
            try:
                values = redis_client.hmget(key, fields)
            except Exception:  # not a hash (another app's key)
                continue
            for name, raw in zip(names, values, strict=True):
                if raw:
                    stamp = Timestamp()
                    stamp.ParseFromString(raw)
                    millis = stamp.seconds * 1000 + stamp.nanos // 1_000_000
                    newest[name] = max(newest.get(name, 0), millis)
        return newest


def _to_millis(value: Any) -> int:
    """Feast's SQLite ``event_ts`` (whole seconds, or a datetime string) as epoch milliseconds."""
    if isinstance(value, int | float):
        return int(value * 1000)
    from datetime import UTC, datetime

    parsed = datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
