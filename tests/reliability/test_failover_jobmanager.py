"""The JobManager dies under the running job; the same input is replayed twice.

A PRIVATE stack (own broker, standalone Flink cluster with 2 TaskManagers and no HA, free ports,
temporary state directory: the shared stack is never touched) holds a fixed input: the ``small``
scenario of the simulator, seed fixed, every fault share 0, single-partition topics. The pricing
job prices with the session's demand model (``trained_model_dir``). Its settings are PRICEWAVE_*
variables, as for ``pricewave submit``; the resubmission after the failure goes through
``pricewave submit`` itself (Flink's ``flink run --detached -s``), the other submissions from this
process with the same job options (a ``flink run`` client JVM per job costs minutes on a busy
2-core machine):

1. **JobManager killed.** A fault-free bounded reference run; then the same run on fresh outputs
   (prices and dead-letter topics, online store, decision log) during which the JobManager gets
   ``kill -9`` once the job has completed a checkpoint and written a third of the reference's
   prices. Without HA the cluster forgets the job and the TaskManagers lose their tasks. A new
   JobManager is started (same configuration) and the job resubmitted with ``pricewave submit
   --from-checkpoint latest``: the newest checkpoint that the job retained
   (``execution.checkpointing.externalized-checkpoint-retention``). This job runs live (unbounded),
   as in production; once it has consumed its input it is stopped with ``pricewave stop --drain``,
   which ends its windows as the end of the reference's bounded input does. The ``prices`` topic, read
   with read_committed, must then hold every decision of the reference once (none lost, none
   twice, none extra) at the same price, and the store and the decision log must match too.
2. **The same input replayed twice.** A live (unbounded) job on own, empty input topics, watched by
   the monitor (:class:`pricewave.monitor.Monitor`); ``pricewave replay ta-feng --limit N`` runs,
   the job settles (every click consumed, no new committed price over three checkpoints), the
   counts are taken; the same replay runs again. The replayed clicks are behind the watermark:
   dead-lettered as ``late`` (or dropped as duplicates by ``event_id`` when still ahead of it), so
   the decisions in ``prices`` (by id and as records), the online store and the monitor's
   decision and offer counts must not change.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from pricewave import cli
from pricewave import flink as flink_jobs
from pricewave.config import Settings, load_settings
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import FaultsSpec, load_scenario
from pricewave.stack.process import running_pid
from tests.conftest import restored_from
from tests.reliability.harness import (
    PrivateStack,
    decision_log_rows,
    kill_process_tree,
    offer_prices,
    private_settings,
    read_topic,
    sku_prices,
    wait_ready,
)

# On a private stack (free ports), isolated: make test runs it beside the shared-stack tests (deploy/local/test.sh).
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

SEED = 20251205
N_EVENTS = 6_000
CHECKPOINT_INTERVAL_S = 2
JOB_TIMEOUT_S = 240
LIVE_IDLE_TIMEOUT_S = 3600


@dataclass
class FailoverEnv:
    """The private stack and what every run of the module shares."""

    stack: PrivateStack
    base: Path
    applied_repo: Path
    catalog: list[dict[str, Any]]
    skus: list[str]
    model_dir: Path


@dataclass
class RunResult:
    """What one run left behind: committed prices, dead letters, store and decision log."""

    name: str
    job_ids: list[str]
    wall_s: float
    prices: list[dict[str, Any]]
    dead_letters: int
    store: dict[str, float | None]
    offer_store: dict[tuple[str, str], float | None]
    decision_log_ids: Counter[str]

    def price_set(self) -> set[tuple[str, str, str | None, int, float]]:
        return {(d["kind"], d["sku"], d["user_key"], int(d["event_time"]), float(d["price"])) for d in self.prices}


@pytest.fixture(scope="module")
def failover_env(
    settings: Settings, applied_feature_repo: Path, trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FailoverEnv]:
    base = tmp_path_factory.mktemp("failover")
    private = private_settings(base / "stack", taskmanagers=2)
    stack = PrivateStack(private, settings.path("jars").resolve())
    try:
        stack.start()
        faults = FaultsSpec(malformed_share=0, late_share=0, out_of_order_share=0, duplicate_share=0)
        simulator = Simulator(load_scenario("small"), private, seed=SEED, faults=faults, review_texts=["fine"])
        simulator.run_to_kafka(rate=None, max_events=N_EVENTS, closed_loop=False, progress=False)
        catalog = simulator.catalog_records()
        skus = [row["sku"] for row in catalog]
        yield FailoverEnv(stack, base, applied_feature_repo, catalog, skus, trained_model_dir)
    finally:
        stack.close()


def use_run_settings(env: FailoverEnv, name: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point PRICEWAVE_* (which ``pricewave submit`` hands to the job) at the private stack and
    at this run's own outputs: prices and dead-letter topics, feature repo (holding the catalog)."""
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.kafka_io import ensure_topics

    stack = env.stack.settings
    repo = env.base / f"repo-{name}"
    shutil.copytree(env.applied_repo, repo)
    variables = {
        "PRICEWAVE_STATE_DIR": str(stack.state_dir),
        "PRICEWAVE_KAFKA__PORT": str(stack.kafka.port),
        "PRICEWAVE_KAFKA__CONTROLLER_PORT": str(stack.kafka.controller_port),
        "PRICEWAVE_REDIS__PORT": str(stack.redis.port),
        "PRICEWAVE_FLINK__REST_PORT": str(stack.flink.rest_port),
        "PRICEWAVE_FLINK__RPC_PORT": str(stack.flink.rpc_port),
        "PRICEWAVE_FLINK__TASKMANAGERS": str(stack.flink.taskmanagers),
        "PRICEWAVE_TOPICS__PARTITIONS": "1",
        "PRICEWAVE_TOPICS__PRICES": f"prices-{name}",
        "PRICEWAVE_TOPICS__DLQ": f"dlq-{name}",
        "PRICEWAVE_FEATURE_REPO": str(repo),
        "PRICEWAVE_MODELS__MODEL_DIR": str(env.model_dir),
    }
    for variable, value in variables.items():
        monkeypatch.setenv(variable, value)
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == stack.kafka.bootstrap_servers
    assert settings.flink.rest_url == stack.flink.rest_url
    ensure_topics(settings, [settings.topics.prices, settings.topics.dlq], partitions=1)
    FeatureWriter(open_store(settings)).write("sku_catalog", env.catalog)
    return settings


def job_args(name: str, settings: Settings, *, bounded: bool = True) -> list[str]:
    """The job's flags: bounded over the whole input (or live, as in production), own consumer group
    (hence own transactional ids), own decision log."""
    return [
        "--group-id",
        f"failover-{name}",
        "--starting-offsets",
        "earliest-offset",
        # Live: no source may go idle before the draining stop. Flink 2.2 drops the final watermark at
        # a source that is idle then (FLINK-40499), and the last windows, which the bounded reference
        # fires at the end of its input, would stay unfired. Every topic here has data in its partition.
        *(["--bounded"] if bounded else ["--idle-timeout", str(LIVE_IDLE_TIMEOUT_S)]),
        "--checkpoint-interval",
        str(CHECKPOINT_INTERVAL_S),
        "--parallelism",
        "1",
        "--decision-log-dir",
        str(settings.path(f"decision-log-{name}")),
    ]


def pricewave(*argv: str) -> str:
    """Run the ``pricewave`` CLI in this process; returns its output (fails on a non-zero exit)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    assert code == 0, f"pricewave {' '.join(argv)} exited {code}: {out.getvalue()}{err.getvalue()}"
    return out.getvalue()


def submit_direct(args: list[str]) -> str:
    """Submit the job from this process (no ``flink run`` client JVM to start: minutes on a loaded
    2-core machine), with the options ``pricewave submit -- ARGS`` would give it; returns its id.

    The job's own argument parser and pipeline, what ``pricewave submit`` ships (the code zip,
    PyFlink's jar) and the cluster's address, through its REST endpoint, as test_crash_recovery does.
    """
    from pricewave.job import build_pipeline, create_table_environment, parse_args

    settings, options, _duration, _plan = parse_args(args)
    cluster = settings.flink
    options = replace(
        options,
        extra_config={
            "execution.target": "remote",
            "rest.address": cluster.rest_host,
            "rest.port": str(cluster.rest_port),
            "python.files": str(flink_jobs.build_job_archive(settings)),
            "pipeline.classpaths": flink_jobs.flink_python_jar().as_uri(),
        },
    )
    t_env = create_table_environment(settings, options)
    client = build_pipeline(t_env, settings, options).execute().get_job_client()
    assert client is not None
    return str(client.get_job_id())


def submitted_id(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if line.startswith("submitted job "))


def wait_ended(cluster: flink_jobs.Cluster, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = str(flink_jobs.job_details(cluster, job_id).get("state"))
        if state in ("FINISHED", "FAILED", "CANCELED"):
            return state
        time.sleep(0.5)
    flink_jobs.cancel_job(cluster, job_id)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s} s")


def collect(env: FailoverEnv, name: str, settings: Settings, job_ids: list[str], wall_s: float) -> RunResult:
    prices = [json.loads(r.value) for r in read_topic(settings, settings.topics.prices)]
    offers = {(d["user_key"], d["sku"]) for d in prices if d["kind"] == "offer"}
    return RunResult(
        name=name,
        job_ids=job_ids,
        wall_s=wall_s,
        prices=prices,
        dead_letters=len(read_topic(settings, settings.topics.dlq, read_committed=False)),
        store=sku_prices(settings, env.skus),
        offer_store=offer_prices(settings, offers),
        decision_log_ids=Counter(
            row["decision_id"] for row in decision_log_rows(settings.path(f"decision-log-{name}"))
        ),
    )


@pytest.fixture(scope="module")
def reference(failover_env: FailoverEnv) -> RunResult:
    """The fault-free run the failover run is compared with."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        settings = use_run_settings(failover_env, "reference", monkeypatch)
        cluster = flink_jobs.cluster_for(settings)
        started = time.monotonic()
        job_id = submit_direct(job_args("reference", settings))
        state = wait_ended(cluster, job_id)
        run = collect(failover_env, "reference", settings, [job_id], time.monotonic() - started)
    assert state == "FINISHED"
    assert run.prices, "the reference run published no price"
    by_model = sum(1 for d in run.prices if d["model_version"] != "none")
    print(f"\n[failover] reference: {len(run.prices)} decisions ({by_model} by the model) in {run.wall_s:.1f} s")
    assert by_model >= 0.9 * len(run.prices)
    return run


def kill_jobmanager(stack: PrivateStack) -> int:
    """``kill -9`` the JobManager JVM (and anything it started), as a lost host would."""
    flink = stack.flink
    pid = running_pid(flink.pid_file("flink-jobmanager"), flink.marker)
    assert pid is not None, "the JobManager is not running"
    return kill_process_tree(pid)


def wait_checkpoint_and_output(
    stack: PrivateStack, settings: Settings, job_id: str, records: int, timeout_s: float = JOB_TIMEOUT_S
) -> int:
    """Wait until the job completed a checkpoint and wrote ``records`` prices (committed or not);
    returns the completed checkpoints. Fails when the job ends first: the kill must come mid-run."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = stack.rest(f"/jobs/{job_id}")["state"]
        assert state not in ("FINISHED", "FAILED", "CANCELED"), f"job {job_id} ended ({state}) before the kill"
        if state == "RUNNING":
            completed = stack.completed_checkpoints(job_id)
            written = stack.written_records(settings.topics.prices)
            if completed >= 1 and written is not None and written >= records:
                return completed
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not checkpoint and write {records} prices within {timeout_s} s")


def wait_consumed(stack: PrivateStack, settings: Settings, group: str, job_id: str, timeout_s: float = 300) -> None:
    """Wait until the job's consumer group has committed the end of every input topic (the source
    commits its offsets on checkpoints) and three more checkpoints completed after that."""
    from kafka import TopicPartition

    from pricewave.kafka_io import make_admin, make_consumer

    topics = (settings.topics.clicks, settings.topics.competitor_prices, settings.topics.reviews)
    admin, consumer = make_admin(settings), make_consumer(settings, [], read_committed=True)
    try:
        partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        ends = consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        consumed_at: int | None = None
        while time.monotonic() < deadline:
            state = stack.rest(f"/jobs/{job_id}")["state"]
            assert state == "RUNNING", f"job {job_id} is {state}, not RUNNING"
            committed = admin.list_consumer_group_offsets(group)
            done = all(tp in committed and committed[tp].offset >= ends[tp] for tp in partitions if ends[tp] > 0)
            checkpoints = stack.completed_checkpoints(job_id)
            if done and consumed_at is None:
                consumed_at = checkpoints
            if consumed_at is not None and checkpoints >= consumed_at + 3:
                return
            time.sleep(0.5)
        raise AssertionError(f"job {job_id} did not consume its input within {timeout_s} s")
    finally:
        admin.close()
        consumer.close()


def test_jobmanager_killed_and_job_resumed_from_latest_checkpoint(
    failover_env: FailoverEnv,
    reference: RunResult,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stack = failover_env.stack
    settings = use_run_settings(failover_env, "jmkill", monkeypatch)
    cluster = flink_jobs.cluster_for(settings)
    # Live, as in production. (A bounded job is no model of this: the TaskManagers run its tasks on
    # after the JobManager is gone, and a task that reaches the end of its input commits the decision
    # log's part files at once, Flink's file sink ``endInput``, renaming the in-progress file that the
    # retained checkpoint resumes: the restore then fails with FileNotFoundException, over and over.)
    args = job_args("jmkill", settings, bounded=False)
    started = time.monotonic()
    first = submit_direct(args)
    job_ids = [first]
    try:
        checkpoints = wait_checkpoint_and_output(stack, settings, first, len(reference.prices) // 3)
        committed_before = len(read_topic(settings, settings.topics.prices, quiet_s=0))
        kill_jobmanager(stack)
        killed_at = time.monotonic() - started
        # Without HA nothing survives: a new JobManager (same configuration) knows no job.
        stack.flink.start()
        wait_ready(stack.flink)
        assert all(job.job_id != first for job in flink_jobs.list_jobs(cluster))
        back_at = time.monotonic() - started

        out = pricewave("submit", "--from-checkpoint", "latest", "--", *args)
        checkpoint = next(line.split()[-1] for line in out.splitlines() if line.startswith("resuming from checkpoint"))
        second = submitted_id(out)
        job_ids.append(second)
        assert Path(checkpoint).parent.name == first, f"resumed from {checkpoint}, not from job {first}"
        restored = restored_from(cluster, second)
        assert str(restored["external_path"]).removeprefix("file:") == checkpoint
        # Every input consumed and committed; then the operator's stop: a draining savepoint ends the
        # event-time windows as the end of a bounded input does (the reference), and commits.
        wait_consumed(stack, settings, "failover-jmkill", second)
        pricewave("stop", second, "--drain", "--savepoint", str(failover_env.base / "savepoints-jmkill"))
        state = wait_ended(cluster, second)
    except BaseException:
        with contextlib.suppress(Exception):
            for job_id in job_ids:
                if flink_jobs.job_details(cluster, job_id).get("state") in flink_jobs.ACTIVE_STATES:
                    flink_jobs.cancel_job(cluster, job_id)
        raise
    run = collect(failover_env, "jmkill", settings, job_ids, time.monotonic() - started)

    ids = Counter(d["decision_id"] for d in run.prices)
    duplicated = {key: n for key, n in ids.items() if n > 1}
    reference_ids = {d["decision_id"] for d in reference.prices}
    lost, extra = reference_ids - set(ids), set(ids) - reference_ids
    differing = len(run.price_set() ^ reference.price_set()) // 2
    print(
        f"\n[failover] jmkill: JobManager killed at {killed_at:.1f} s after {checkpoints} checkpoint(s) with "
        f"{committed_before} of {len(reference.prices)} decisions committed; new JobManager up at {back_at:.1f} s; "
        f"resumed from {Path(checkpoint).name} (restored checkpoint id {restored.get('id')}); {len(run.prices)} "
        f"decisions, lost {len(lost)}, duplicated {len(duplicated)}, extra {len(extra)}, prices differing "
        f"{differing}, wall {run.wall_s:.1f} s"
    )
    assert state == "FINISHED"
    assert committed_before < len(reference.prices), "the job had committed everything before the kill"
    assert not duplicated, f"{len(duplicated)} decisions published twice"
    if lost:
        # Which decisions: their kinds and event times, against the last the run did publish.
        missing = [d for d in reference.prices if d["decision_id"] in lost]
        kinds = Counter(d["kind"] for d in missing)
        times = sorted(int(d["event_time"]) for d in missing)
        newest = max((int(d["event_time"]) for d in run.prices), default=None)
        raise AssertionError(
            f"{len(lost)} decisions lost: {dict(kinds)}, event times {times[0]}..{times[-1]} "
            f"(the newest published: {newest}; wall clock at the end {int(time.time() * 1000)})"
        )
    assert not extra, f"{len(extra)} decisions the fault-free run did not make"
    assert run.price_set() == reference.price_set(), f"{differing} prices differ from the fault-free run"
    assert run.store == reference.store
    assert run.offer_store == reference.offer_store
    assert run.dead_letters == reference.dead_letters == 0
    assert max(run.decision_log_ids.values()) == 1, "the decision log holds a decision twice"
    assert set(run.decision_log_ids) == set(reference.decision_log_ids)


# --- the same input replayed twice ----------------------------------------------------------

REPLAY_ROWS = 150


def ta_feng_catalog(settings: Settings, rows: int) -> list[dict[str, Any]]:
    """Catalog rows for the skus of the first ``rows`` Ta Feng rows (the pricers need a base price)."""
    from pricewave.data.datasets import load_ta_feng
    from pricewave.data.replay import ta_feng_event_frame

    events = ta_feng_event_frame(load_ta_feng(settings, limit=rows, progress=False), settings.user_key_secret)
    first = int(events["event_time"].min())
    catalog = []
    for sku, prices in events.groupby("sku")["price_seen"]:
        base = round(float(prices.mean()), 2)
        catalog.append(
            {
                "sku": sku,
                "base_price": base,
                "cost": round(base * 0.7, 2),
                "map_price": None,
                "ceiling_price": round(base * 1.5, 2),
                "category": "ta-feng",
                "event_time": first - 1,
            }
        )
    return catalog


@dataclass
class Counts:
    """What the downstream sees after a replay."""

    price_records: int
    decision_ids: set[str]
    prices: set[tuple[str, str, str | None, int, float]]
    store: dict[str, float | None]
    dead_letters: list[dict[str, Any]]
    monitor_prices: dict[str, Any]
    monitor_dead_letters: int


def settle(monitor: Any, settings: Settings, stack: PrivateStack, job_id: str, timeout_s: float = 300) -> int:
    """Wait until the job has consumed every click (committed offsets = end offsets) and the committed
    prices stopped growing over three checkpoints; returns the committed prices."""
    deadline = time.monotonic() + timeout_s
    last, stable_since, lag, checkpoints = -1, 0, None, 0
    while time.monotonic() < deadline:
        topics = {row["topic"]: row for row in monitor.snapshot()["kafka"].get("topics", [])}
        lag = topics.get(settings.topics.clicks, {}).get("lag_total")
        checkpoints = stack.completed_checkpoints(job_id)
        committed = len(read_topic(settings, settings.topics.prices))
        if lag == 0 and committed == last:
            if checkpoints >= stable_since + 3:
                return committed
        else:
            last, stable_since = committed, checkpoints
        time.sleep(1.0)
    history = stack.rest(f"/jobs/{job_id}/checkpoints").get("history", [])
    failure = next((h.get("failure_message") for h in history if h.get("status") == "FAILED"), None)
    raise AssertionError(
        f"the job did not settle within {timeout_s} s: click lag {lag}, {last} prices committed, "
        f"{checkpoints} checkpoints completed (last failure: {failure})"
    )


def counts(env: FailoverEnv, monitor: Any, settings: Settings, skus: list[str]) -> Counts:
    prices = [json.loads(r.value) for r in read_topic(settings, settings.topics.prices)]
    letters = [json.loads(r.value) for r in read_topic(settings, settings.topics.dlq, read_committed=False)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the monitor's feed catches up with the topics
        snapshot = monitor.snapshot()
        if snapshot["dead_letters"]["total"] == len(letters) and snapshot["feed"].get("error") is None:
            break
        time.sleep(0.5)
    return Counts(
        price_records=len(prices),
        decision_ids={d["decision_id"] for d in prices},
        prices={(d["kind"], d["sku"], d["user_key"], int(d["event_time"]), float(d["price"])) for d in prices},
        store=sku_prices(settings, skus),
        dead_letters=letters,
        monitor_prices=snapshot["prices"],
        monitor_dead_letters=snapshot["dead_letters"]["total"],
    )


def test_replaying_the_same_input_twice_leaves_the_downstream_counts_unchanged(
    failover_env: FailoverEnv, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricewave.data.datasets import ta_feng_zip
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.kafka_io import ensure_topics
    from pricewave.monitor import Monitor

    for role in ("clicks", "competitor_prices", "reviews"):  # own, empty input topics
        monkeypatch.setenv(f"PRICEWAVE_TOPICS__{role.upper()}", f"{role.replace('_', '-')}-replay")
    run_settings = use_run_settings(failover_env, "replay", monkeypatch)
    topics = run_settings.topics
    ensure_topics(run_settings, [topics.clicks, topics.competitor_prices, topics.reviews], partitions=1)
    data = run_settings.path("data", "ta_feng.csv.zip")
    if not data.exists():
        data.parent.mkdir(parents=True, exist_ok=True)
        data.symlink_to(ta_feng_zip(settings))  # the shared copy (downloaded once)
    catalog = ta_feng_catalog(run_settings, REPLAY_ROWS)
    FeatureWriter(open_store(run_settings)).write("sku_catalog", catalog)
    skus = [row["sku"] for row in catalog]

    group = "failover-replay"
    args = ["--group-id", group, "--starting-offsets", "earliest-offset", "--checkpoint-interval", "2",
            "--parallelism", "1", "--decision-log-dir", str(run_settings.path("decision-log-replay"))]  # fmt: skip
    cluster = flink_jobs.cluster_for(run_settings)
    job_id = submit_direct(args)
    monitor = Monitor(run_settings, group_id=group, job_id=job_id, backfill=None, refresh_s=0.5).start()
    try:
        flink_jobs.wait_for_state(cluster, job_id, ["RUNNING"], timeout_s=180)
        started = time.monotonic()
        pricewave("replay", "ta-feng", "--limit", str(REPLAY_ROWS), "--no-progress")
        settle(monitor, run_settings, failover_env.stack, job_id)
        first = counts(failover_env, monitor, run_settings, skus)
        first_s = time.monotonic() - started

        started = time.monotonic()
        pricewave("replay", "ta-feng", "--limit", str(REPLAY_ROWS), "--no-progress")
        settle(monitor, run_settings, failover_env.stack, job_id)
        second = counts(failover_env, monitor, run_settings, skus)
        second_s = time.monotonic() - started
        state = flink_jobs.job_details(cluster, job_id)["state"]
    finally:
        monitor.stop()
        with contextlib.suppress(Exception):
            flink_jobs.cancel_job(cluster, job_id)

    new_letters = second.dead_letters[len(first.dead_letters) :]
    reasons = Counter(letter["reason"].split(":", 1)[0] for letter in new_letters)
    print(
        f"\n[failover] replay x2 ({REPLAY_ROWS} Ta Feng rows, {len(skus)} skus): after the first "
        f"{first.price_records} price records ({len(first.decision_ids)} decisions), monitor "
        f"{first.monitor_prices['total']} {first.monitor_prices['by_kind']}, {len(first.dead_letters)} dead "
        f"letters in {first_s:.1f} s; after the second {second.price_records} records "
        f"({len(second.decision_ids)} decisions), monitor {second.monitor_prices['total']} "
        f"{second.monitor_prices['by_kind']}, dead letters +{len(new_letters)} {dict(reasons)} in {second_s:.1f} s"
    )
    assert state == "RUNNING"
    assert first.decision_ids and first.price_records == len(first.decision_ids)
    assert sum(price is not None for price in first.store.values()) > 0
    # The second replay changes nothing downstream ...
    assert second.decision_ids == first.decision_ids
    assert second.price_records == first.price_records, "decisions published again"
    assert second.prices == first.prices
    assert second.store == first.store
    assert second.monitor_prices["total"] == first.monitor_prices["total"] == len(first.decision_ids)
    assert second.monitor_prices["by_kind"] == first.monitor_prices["by_kind"]
    # ... but is accounted for: every replayed click was dead-lettered as a late duplicate or dropped
    # as a duplicate within the deduplication window (those still ahead of the watermark).
    assert set(reasons) <= {"late"}
    assert len(new_letters) <= REPLAY_ROWS
    assert second.monitor_dead_letters == len(second.dead_letters)
