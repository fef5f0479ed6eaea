"""Failover faults of the live pricing job: a broker outage longer than the transaction timeout, a full disk.

A PRIVATE stack (own Kafka 4 broker, standalone Flink cluster with one TaskManager, free ports,
temporary state directory; the shared stack is never touched). Each test feeds its own fresh
topics with the ``small`` simulator scenario on the wall clock (a live market, every fault share 0)
and runs the pricing job live (unbounded), as in production, submitted to the cluster with what
``pricewave submit`` ships.

1. **Broker down longer than the transaction timeout.** The job writes ``prices`` exactly-once:
   Kafka transactions committed when a checkpoint completes. The broker aborts a transaction older
   than its timeout; when that happens after the checkpoint that covers it, Flink's Kafka committer
   logs "... most likely signals data loss ..." and moves on (``KafkaCommitter.commit``:
   ``ProducerFencedException`` / ``InvalidTxnStateException`` are "known reasons", no failover),
   while the decision log (committed on the same checkpoint) keeps the rows. Here the broker allows
   transactions of at most 300 s and aborts expired ones every 0.5 s, the job's transaction timeout
   is 10 s, and the broker hangs mid-run (SIGSTOP) for 15 s, then resumes (repeated, at most 3 times,
   until the committer reports a failed commit: whether the commit or the abort comes first is
   timing; see :func:`frozen_broker` for why not a clean stop). ``pricewave audit reconcile``
   must find the decisions the decision log holds and the committed topic lacks, print the count
   in one line and exit 1; the TaskManager's log must hold the connector's line too. A run whose
   hangs lost nothing (timing) checks that the audit says ok and is reported as skipped. Marked slow.
2. **A full checkpoint disk.** Checkpoints go to a 24 MiB ext4 image loop-mounted for the test
   (a real ENOSPC; we run as root), the decision log to its own directory elsewhere. Once the job has
   completed checkpoints, the image is filled to the last block for 20 s, then freed. The job must
   stay RUNNING without a restart (tolerable failed checkpoints), keep writing prices (the topic's
   end offset grows, in open transactions: a read_committed consumer sees nothing new until the
   next completed checkpoint), report the failures (REST checkpoint stats through the monitor's
   :class:`~pricewave.monitor.sources.FlinkHealth`), complete checkpoints again once space returns,
   and then every decision logged is committed (audit exit 0); ``pricewave audit prune`` bounds the log.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import Settings
from pricewave.flink import cancel_job, cluster_for
from pricewave.job import JobOptions
from pricewave.simulator.runner import Simulator, live_clock_start
from pricewave.simulator.scenario import FaultsSpec, load_scenario
from pricewave.stack.kafka import KafkaService
from tests.reliability.harness import (
    PrivateStack,
    decision_log_rows,
    fresh_topics,
    private_settings,
    read_topic,
    run_directory,
    wait_ready,
)

# On a private stack (free ports), isolated: make test runs it beside the shared-stack tests (deploy/local/test.sh).
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

CHECKPOINT_S = 2.0
BROKER_MAX_TRANSACTION_MS = 300_000
OUTAGE_TRANSACTION_TIMEOUT_S = 10
# Hung this long: above the transaction timeout, and below the producers' max.block.ms (60 s), beyond
# which the sink's InitProducerId times out and the job fails over instead (a restart from the last
# checkpoint re-produces the open transactions: no loss; measured with an 80 s outage).
DOWN_S = 15.0
MAX_OUTAGES = 3
DISK_FULL_S = 20.0
FEED_RATE = 60.0  # events per second (cap), simulated clock on the wall clock
LOG_ROLLOVER_S = 4.0
ROOT = Path(__file__).resolve().parents[2]


class ExpiringKafka(KafkaService):
    """The stack's broker, aborting expired transactions every 0.5 s (default every 10 s)."""

    def server_properties(self) -> str:
        return super().server_properties() + "transaction.abort.timed.out.transaction.cleanup.interval.ms=500\n"


@dataclass
class FailoverEnv:
    stack: PrivateStack
    base: Path
    applied_repo: Path
    catalog: list[dict[str, Any]]


@pytest.fixture(scope="module")
def failover_env(
    settings: Settings, applied_feature_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FailoverEnv]:
    base = tmp_path_factory.mktemp("failover")
    private = private_settings(base / "stack", taskmanagers=1)
    kafka = private.kafka.model_copy(update={"transaction_max_timeout_ms": BROKER_MAX_TRANSACTION_MS})
    private = private.model_copy(update={"kafka": kafka})
    stack = PrivateStack(private, settings.path("jars").resolve())
    stack.kafka = ExpiringKafka(private)
    try:
        stack.start()
        catalog = Simulator(load_scenario("small"), private, seed=3).catalog_records()
        yield FailoverEnv(stack, base, applied_feature_repo, catalog)
    finally:
        stack.close()


def run_settings(env: FailoverEnv, name: str) -> Settings:
    """One run's settings: fresh topics, own state dir, feature repo (catalog written) and empty model dir."""

    from pricewave.feature_store import FeatureWriter, open_store

    stack = env.stack.settings
    state, repo = run_directory(stack, env.base, name, env.applied_repo)
    (state / "models").mkdir()
    models = stack.models.model_copy(update={"model_dir": str(state / "models")})  # no model: kill-switch prices
    run = fresh_topics(stack).model_copy(update={"state_dir": state, "feature_repo": str(repo), "models": models})
    FeatureWriter(open_store(run)).write("sku_catalog", env.catalog)
    return run


class Feeder:
    """A live market on the wall clock, fed to the run's input topics from a thread; survives outages."""

    def __init__(self, settings: Settings, rate: float = FEED_RATE) -> None:
        self.settings = settings
        self.rate = rate
        self.failures = 0
        self._stop = threading.Event()
        faults = FaultsSpec(malformed_share=0, late_share=0, out_of_order_share=0, duplicate_share=0)
        self.simulator = Simulator(
            load_scenario("small"),
            settings,
            seed=11,
            faults=faults,
            review_texts=["fine"],
            track_oracle=False,
            clock_start_ms=live_clock_start(),
        )
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.simulator.run_to_kafka(
                    rate=self.rate, duration_s=2.0, closed_loop=False, progress=False, speedup=1.0
                )
            except Exception:  # the broker is down: try again in a second
                self.failures += 1
                self._stop.wait(1.0)

    @property
    def sent(self) -> int:
        return int(self.simulator.summary.messages)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def submit(env: FailoverEnv, settings: Settings, name: str, **changes: Any) -> str:
    """Submit the live job to the private cluster (the job zip and PyFlink's jar, through REST)."""
    from pricewave.flink import build_job_archive, flink_python_jar
    from pricewave.job import build_pipeline, create_table_environment

    cluster = env.stack.settings.flink
    fields: dict[str, Any] = dict(
        group_id=f"failover-{name}",
        starting_offsets="earliest-offset",
        checkpoint_interval_s=CHECKPOINT_S,
        parallelism=1,
        transactional_id_prefix=f"prices-{name}-{uuid.uuid4().hex[:6]}",
        decision_log_dir=str(settings.path("decision_log")),
        decision_log_rollover_s=LOG_ROLLOVER_S,
        extra_config={
            "execution.target": "remote",
            "rest.address": cluster.rest_host,
            "rest.port": str(cluster.rest_port),
            "python.files": str(build_job_archive(settings)),
            "pipeline.classpaths": flink_python_jar().as_uri(),
        },
    )
    options = JobOptions(**{**fields, **changes})
    t_env = create_table_environment(settings, options)
    client = build_pipeline(t_env, settings, options).execute().get_job_client()
    assert client is not None
    return str(client.get_job_id())


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``condition`` every 0.5 s; the seconds it took, or fail naming ``what``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):
            if condition():
                return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s")


def end_offset(settings: Settings, topic: str, *, committed: bool) -> int | None:
    """The topic's end offset: the last stable offset under read_committed (None while unreachable)."""
    from kafka import TopicPartition

    from pricewave.kafka_io import make_consumer

    try:
        consumer = make_consumer(settings, [], read_committed=committed)
        try:
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            return sum(consumer.end_offsets(partitions).values())
        finally:
            consumer.close()
    except Exception:
        return None


def checkpoint_counts(stack: PrivateStack, job_id: str) -> dict[str, int]:
    counts = stack.rest(f"/jobs/{job_id}/checkpoints").get("counts", {})
    return {key: int(counts.get(key, 0)) for key in ("completed", "failed", "in_progress")}


def publishable_ids(log_dir: Path) -> set[str]:
    return {
        str(row["decision_id"])
        for row in decision_log_rows(log_dir)
        if row.get("price") is not None and not str(row.get("guardrail") or "").startswith("invalid_decision")
    }


def committed_ids(settings: Settings) -> set[str]:
    import json

    return {str(json.loads(record.value)["decision_id"]) for record in read_topic(settings, settings.topics.prices)}


def audit(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """``pricewave audit ...`` as an operator runs it, against the private broker."""
    env = {
        **os.environ,
        "PRICEWAVE_KAFKA__PORT": str(settings.kafka.port),
        "PRICEWAVE_STATE_DIR": str(settings.state_dir),
        "PRICEWAVE_TOPICS__PRICES": settings.topics.prices,
    }
    command = [sys.executable, "-m", "pricewave", "audit", *args]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def loss_lines(stack: PrivateStack) -> list[str]:
    """The Kafka committer's data-loss lines in the cluster's logs."""
    lines = []
    for path in stack.settings.path("logs").rglob("*"):
        if path.is_file():
            for line in path.read_text(errors="replace").splitlines():
                if "most likely signals data loss" in line or "Unable to commit transaction" in line:
                    lines.append(line.strip())
    return lines


@contextlib.contextmanager
def frozen_broker(stack: PrivateStack) -> Iterator[None]:
    """The broker hangs (SIGSTOP: no answer, connections stay open) for the block, then resumes (SIGCONT).

    A clean stop/restart (measured twice, 80 s each under load) instead made the job fail over: the
    broker's shutdown answered in-flight sends with errors, the producer retried them after the restart
    into the transaction the broker had aborted meanwhile, got fenced and failed the job, and the
    restart from the last checkpoint produced those decisions again: nothing lost. A hung broker (long
    GC pause, network partition) lets the sink's sends complete first and the commit come too late.
    """
    import signal

    pids = list(stack.kafka.running_pids().values())
    assert pids, "the broker is not running"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    wait_ready(stack.kafka)


def stop_job(env: FailoverEnv, job_id: str | None) -> None:
    if job_id is not None:
        with contextlib.suppress(Exception):
            cancel_job(cluster_for(env.stack.settings, env.stack.settings.flink.rest_url), job_id)


def settle(env: FailoverEnv, job_id: str, feeder: Feeder) -> None:
    """Stop the input, then let the decision log roll over and two more checkpoints commit it and the prices."""
    feeder.stop()
    time.sleep(LOG_ROLLOVER_S + 1)
    done = checkpoint_counts(env.stack, job_id)["completed"]
    wait_for(
        lambda: checkpoint_counts(env.stack, job_id)["completed"] >= done + 2, 60, "two checkpoints after the input"
    )


# --- 1. broker down longer than the transaction timeout ------------------------------------------


@pytest.mark.slow
def test_broker_outage_longer_than_the_transaction_timeout_is_detected_and_reported(failover_env: FailoverEnv) -> None:
    env = failover_env
    settings = run_settings(env, "outage")
    prices = settings.topics.prices
    feeder = Feeder(settings).start()
    job_id: str | None = None
    started = time.monotonic()
    try:
        job_id = submit(
            env, settings, "outage", transaction_timeout_s=OUTAGE_TRANSACTION_TIMEOUT_S, tolerable_failed_checkpoints=3
        )
        jid = job_id
        wait_for(
            lambda: (
                (end_offset(settings, prices, committed=True) or 0) >= 100
                and checkpoint_counts(env.stack, jid)["completed"] >= 2
            ),
            180,
            "100 committed prices and 2 checkpoints before the outage",
        )
        before = checkpoint_counts(env.stack, jid)
        outages: list[float] = []
        # Whether the commit loses the race with the broker's abort depends on timing (a restart
        # slower than max.block.ms fails the job over instead): repeat until the committer reports it.
        while len(outages) < MAX_OUTAGES and not loss_lines(env.stack):
            stopped_at = time.monotonic()
            with frozen_broker(env.stack):
                time.sleep(DOWN_S)
            outages.append(round(time.monotonic() - stopped_at, 1))
            back = checkpoint_counts(env.stack, jid)
            # The job prices on after the outage: checkpoints complete again.
            wait_for(
                lambda: checkpoint_counts(env.stack, jid)["completed"] >= back["completed"] + 3,  # noqa: B023
                180,
                "3 checkpoints after the broker came back",
            )
        settle(env, jid, feeder)
        details = env.stack.rest(f"/jobs/{jid}")
        restarts = env.stack.num_restarts(jid)
        after = checkpoint_counts(env.stack, jid)
        log_dir = settings.path("decision_log")
        # The job runs on (decisions still roll into the log): the audit first, the independent count after.
        result = audit(settings, "reconcile", "--decision-log-dir", str(log_dir), "--grace", "0", "--show", "3")
        logged, committed = publishable_ids(log_dir), committed_ids(settings)
        lost = logged - committed
        lines = loss_lines(env.stack)
        print(
            f"\n[failover] outages {outages} s (transaction timeout {OUTAGE_TRANSACTION_TIMEOUT_S} s): fed "
            f"{feeder.sent} events ({feeder.failures} feeder retries); job {details['state']}, {restarts} restarts; "
            f"checkpoints {before} before, {after} after; logged {len(logged)}, committed {len(committed)}, "
            f"lost {len(lost)}; audit exit {result.returncode}: {result.stdout.strip()}; "
            f"{len(lines)} connector loss lines, first: {lines[:1]}; wall {time.monotonic() - started:.1f} s"
        )
        if not lost:
            # Timing decides whether an aborted transaction held records (measured: 18 lost after one
            # 15 s hang in one run, none after three in another): the audit must then say so, and the
            # run did not exercise detection, which the skip reports instead of passing silently.
            assert result.returncode == 0 and result.stdout.startswith("audit: ok: "), result.stdout + result.stderr
            assert not any("most likely signals data loss" in line for line in lines), lines
            pytest.skip(f"{len(outages)} broker hangs lost no decision this run (audit agreed: 0 missing)")
        assert result.returncode == 1, result.stdout + result.stderr
        first = result.stdout.splitlines()[0]
        verdict = re.match(
            rf"audit: LOST: (\d+) of (\d+) logged decisions are missing from the committed '{prices}'", first
        )
        assert verdict, first
        assert int(verdict[1]) == len(lost) and int(verdict[2]) <= len(logged), first
        assert {line.removeprefix("missing ") for line in result.stdout.splitlines()[1:]} <= lost
        assert lines, "no line of the Kafka committer about the failed commit in the cluster's logs"
    finally:
        feeder.stop()
        stop_job(env, job_id)


# --- 2. a full checkpoint disk ---------------------------------------------------------------


@contextlib.contextmanager
def loop_mounted(image: Path, mount: Path, size_mb: int) -> Iterator[Path]:
    """A small ext4 filesystem, loop-mounted at ``mount`` for the block (needs root)."""
    image.parent.mkdir(parents=True, exist_ok=True)
    mount.mkdir(parents=True, exist_ok=True)
    with image.open("wb") as handle:
        handle.truncate(size_mb * 1024 * 1024)
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot loop-mount a filesystem here (needs root and loop devices): {exc}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)
        image.unlink(missing_ok=True)


def fill(directory: Path) -> Path:
    """Write zeros into ``directory`` until the filesystem has no block left (ENOSPC)."""
    filler = directory / "filler.bin"
    chunk = b"\0" * (256 * 1024)
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
        with contextlib.suppress(OSError):
            while True:
                handle.write(b"\0" * 1024)
        with contextlib.suppress(OSError):
            os.fsync(handle.fileno())
    return filler


def test_full_checkpoint_disk_keeps_the_job_pricing_and_recovers(failover_env: FailoverEnv, tmp_path: Path) -> None:
    from pricewave.monitor.sources import FlinkHealth

    env = failover_env
    settings = run_settings(env, "disk")
    prices = settings.topics.prices
    log_dir = tmp_path / "decision_log"  # its own directory, not on the checkpoint disk
    with loop_mounted(tmp_path / "checkpoints.img", tmp_path / "checkpoint_disk", 24) as disk:
        feeder = Feeder(settings).start()
        job_id: str | None = None
        started = time.monotonic()
        try:
            job_id = submit(
                env,
                settings,
                "disk",
                checkpoint_dir=str(disk / "checkpoints"),
                decision_log_dir=str(log_dir),
                # Room for a slow recovery on a loaded machine: 100 tolerated failures x 2 s < 240 s.
                transaction_timeout_s=240,
                tolerable_failed_checkpoints=100,
            )
            jid = job_id
            wait_for(
                lambda: (
                    (end_offset(settings, prices, committed=True) or 0) >= 100
                    and checkpoint_counts(env.stack, jid)["completed"] >= 2
                ),
                180,
                "100 committed prices and 2 checkpoints before the disk fills",
            )
            restarts_before = env.stack.num_restarts(jid)
            filler = fill(disk)
            full_at, full_wall_ms = time.monotonic(), time.time() * 1000
            at_full = checkpoint_counts(env.stack, jid)
            written_full = end_offset(settings, prices, committed=False) or 0
            committed_full = end_offset(settings, prices, committed=True) or 0
            states = set()
            time.sleep(CHECKPOINT_S)  # the checkpoint running when the disk filled may still complete
            completed_early = checkpoint_counts(env.stack, jid)["completed"]
            while time.monotonic() - full_at < DISK_FULL_S:
                states.add(env.stack.rest(f"/jobs/{jid}")["state"])
                time.sleep(1.0)
            during = checkpoint_counts(env.stack, jid)
            # Triggered once the disk was full, yet completed: what must not happen. A checkpoint
            # triggered before may still complete, however long it takes on a loaded machine (CI once
            # saw one complete more than CHECKPOINT_S after the fill: 21 completed, 20 expected).
            completed_on_full = [
                entry["id"]
                for entry in env.stack.rest(f"/jobs/{jid}/checkpoints").get("history", [])
                if entry.get("status") == "COMPLETED" and int(entry.get("trigger_timestamp", 0)) > full_wall_ms
            ]
            written_end = end_offset(settings, prices, committed=False) or 0
            committed_end = end_offset(settings, prices, committed=True) or 0
            health = FlinkHealth(env.stack.settings.flink.rest_url, jid).collect()["checkpoints"]
            restarts_full = env.stack.num_restarts(jid)
            filler.unlink()
            freed_at = time.monotonic()
            recovery_s = wait_for(
                lambda: checkpoint_counts(env.stack, jid)["completed"] > during["completed"],
                60,
                "a completed checkpoint after the space came back",
            )
            # Its commit makes everything written while the disk was full visible to read_committed.
            visible_s = wait_for(
                lambda: (end_offset(settings, prices, committed=True) or 0) >= written_end,
                30,
                "the prices written during the full disk committed after it",
            )
            committed_after = end_offset(settings, prices, committed=True) or 0
            settle(env, jid, feeder)
            state = env.stack.rest(f"/jobs/{jid}")["state"]
            restarts = env.stack.num_restarts(jid)
            logged, committed = publishable_ids(log_dir), committed_ids(settings)
            result = audit(settings, "reconcile", "--decision-log-dir", str(log_dir), "--grace", "0")
            log_bytes = sum(p.stat().st_size for p in log_dir.rglob("*") if p.is_file())
            cap_mb = 0.5 * log_bytes / (1024 * 1024)
            pruned = audit(settings, "prune", "--decision-log-dir", str(log_dir), "--max-mb", f"{cap_mb:.6f}")
            kept_bytes = sum(p.stat().st_size for p in log_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
            print(
                f"\n[failover] disk full {DISK_FULL_S:.0f} s: states {sorted(states)}, restarts {restarts_before} -> "
                f"{restarts_full} -> {restarts}; checkpoints {at_full} at full, {during} after {DISK_FULL_S:.0f} s "
                f"(completed {completed_early} after the first {CHECKPOINT_S:.0f} s); prices end offset "
                f"{written_full} -> {written_end} written, read_committed {committed_full} -> {committed_end}, "
                f"{committed_after} (checkpoint {recovery_s:.1f} s, visible {visible_s:.1f} s after freeing, "
                f"{time.monotonic() - freed_at:.1f} s to settle); "
                f"monitor: failed {health.get('failed')}, last failure {health.get('last_failure')}; logged "
                f"{len(logged)}, committed {len(committed)}; audit exit {result.returncode}: {result.stdout.strip()}; "
                f"prune: {pruned.stdout.strip()}; fed {feeder.sent}; wall {time.monotonic() - started:.1f} s"
            )
            assert states == {"RUNNING"} and state == "RUNNING"
            assert restarts == restarts_full == restarts_before, "the full disk restarted the job"
            assert during["failed"] - at_full["failed"] >= 3, "checkpoints did not fail on the full disk"
            assert not completed_on_full, f"checkpoints {completed_on_full} were triggered and completed on a full disk"
            assert written_end > written_full, "the job stopped writing prices while checkpoints failed"
            # Open transactions: read_committed readers see nothing new until a checkpoint completes.
            assert committed_end <= written_full
            assert health["failed"] >= during["failed"] and health["last_failure"], health
            assert result.returncode == 0, result.stdout + result.stderr
            assert logged and logged <= committed
            assert pruned.returncode == 0 and kept_bytes <= cap_mb * 1024 * 1024
            assert not list(disk.rglob("part-*")), "decision log files on the checkpoint disk"
        finally:
            feeder.stop()
            stop_job(env, job_id)
            time.sleep(2)  # let the cluster let go of files on the disk before it is unmounted
