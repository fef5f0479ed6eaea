"""kill -9 TaskManagers (and bounce the broker) under the running pricing job: nothing lost, nothing twice.

A PRIVATE stack (own broker, standalone Flink cluster with 2 TaskManagers and a Redis server, free
ports, temporary state directory: the shared stack is never touched) holds a fixed input: the
``small`` scenario of the simulator, seed fixed, with the scenario's transport faults (malformed,
late, out-of-order and duplicated events), in two-partition topics. Every run prices with the same
demand model, the session's (``trained_model_dir``: trained when the session starts, so it stays
far younger than the kill switch's age limit of a week): the network, not the kill switch, sets
nearly every price. The pricing job is submitted with what ``pricewave submit`` ships (the job
zip, PyFlink's jar) through the cluster's REST endpoint, bounded, parallelism 2, watermarks emitted
per record, with a 2 s checkpoint interval:

1. a fault-free reference run;
2. a run on the same input with fresh outputs (prices and dead-letter topics, online store, decision
   log) during which the TaskManager that runs the job is killed with SIGKILL three times, each a
   random fraction of a checkpoint interval after the run's output passed another sixth of
   the reference's (progress, not wall time: the same spread on a fast machine as on a slow one),
   and restarted as an operator would (same configuration); the broker is also stopped and
   restarted once mid-stream;
3. a run during which the broker is down three idle timeouts, twice, while the job runs, with the
   Redis online store (the reference and the kill run use SQLite: both stores must end in the same
   state, :mod:`pricewave.feature_store.writer`).

Each faulty run must equal the reference: the same decision ids in ``prices`` read with
read_committed, none twice, none extra; the same (sku, user, event_time, price) set of sku
decisions and of personalized offers; the same final ``sku_price`` per sku and ``user_offer`` per
(user, sku) in the online store; the same decision log ids, none twice; the same dead letters
(reason, source topic, partition, offset and raw bytes), none twice, and so the same counts on the
monitor's dead-letter panel. Prices are comparable
because nothing a pricer reads depends on timing: an offer meets its sku's price, window features
and review summary as of the click's event time (temporal joins), a sku window meets the review
summary as of its end, and the rate limit compares with the sku's price history as of the window
(:mod:`pricewave.feature_store.price_history`), not with whatever the store held at that moment.

The reference run's leftovers also feed the privacy scan: no raw user id of the simulator in any
topic, the broker's files, the online store, the decision log or any log.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import Settings
from pricewave.flink import cancel_job, cluster_for, job_details
from pricewave.job import JobOptions
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import load_scenario
from tests.conftest import job_progress
from tests.reliability.harness import (
    PrivateStack,
    decision_log_rows,
    find_raw_ids,
    offer_prices,
    private_settings,
    read_topic,
    run_directory,
    sku_prices,
    wait_ready,
)

# On a private stack (free ports), isolated: make test runs it beside the shared-stack tests (deploy/local/test.sh).
pytestmark = [pytest.mark.integration, pytest.mark.isolated]

SEED = 20251128
N_EVENTS = 8_000  # 18,000, then 12,000 until 2026-12-07: less CI time, the same faults and kills
# Two partitions read by two source subtasks, every operator at parallelism 2: the watermark is a
# minimum over channels there, and a run is a function of its input only if no verdict depends on
# which channel is ahead (RELIABILITY.md rows 5a, 5a').
PARTITIONS = 2
PARALLELISM = 2
CHECKPOINT_INTERVAL_S = 2
JOB_TIMEOUT_S = 420


@dataclass
class JobRun:
    """What one run of the job left behind."""

    name: str
    settings: Settings
    job_id: str
    state: str
    wall_s: float
    prices: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    decisions: list[dict[str, Any]]
    store: dict[str, float | None]
    offer_store: dict[tuple[str, str], float | None]
    restarts: int
    kills: list[float] = field(default_factory=list)
    broker_restarts: int = 0  # while the job was running

    def price_set(self, kind: str) -> set[tuple[str, str | None, int, float]]:
        return {
            (d["sku"], d["user_key"], int(d["event_time"]), float(d["price"])) for d in self.prices if d["kind"] == kind
        }

    def letters(self) -> Counter[tuple[str, str, int, int, str]]:
        """Each dead letter as (reason, source topic, partition, offset, raw bytes), with its count."""
        return Counter(
            (d["reason"], d["source_topic"], int(d["partition"]), int(d["offset"]), d["raw_b64"])
            for d in self.dead_letters
        )

    def monitor_figures(self) -> dict[str, Any]:
        """What the monitor's dashboard shows of this run's dead letters and prices."""
        from pricewave.monitor.tally import StreamTally

        topics = self.settings.topics
        tally = StreamTally(topics)
        for letter in self.dead_letters:
            tally.add(topics.dlq, json.dumps(letter).encode())
        for decision in self.prices:
            tally.add(topics.prices, json.dumps(decision).encode())
        figures = tally.dead_letter_figures()
        return {
            "total": figures["total"],
            "late": figures["late"],
            "by_reason": dict(figures["by_reason"]),
            "prices_by_kind": dict(tally.price_by_kind),
        }


@dataclass
class CrashEnv:
    stack: PrivateStack
    applied_repo: Path
    base: Path
    skus: list[str]
    catalog: list[dict[str, Any]]
    raw_user_ids: list[str]
    model_dir: Path
    faults: dict[str, int]  # what the simulator injected: malformed, late, duplicates, out_of_order
    redis: Any  # the private RedisService (the outage run's online store)
    reference: JobRun | None = None


def run_settings(env: CrashEnv, name: str, store: str = "sqlite") -> Settings:
    """Settings of one run: the shared input topics, own outputs, own state dir and feature repo.

    ``store`` is the online store's profile: ``sqlite`` (a file in the run's feature repo) or
    ``redis`` (the module's private Redis server, used by one run only).
    """
    stack = env.stack.settings
    state, repo = run_directory(stack, env.base, name, env.applied_repo)
    topics = stack.topics.model_copy(update={"prices": f"prices-{name}", "dlq": f"dlq-{name}"})
    from pricewave.kafka_io import ensure_topics

    ensure_topics(stack, [topics.prices, topics.dlq], partitions=PARTITIONS)
    models = stack.models.model_copy(update={"model_dir": str(env.model_dir)})
    settings = stack.model_copy(
        update={
            "state_dir": state,
            "feature_repo": str(repo),
            "topics": topics,
            "models": models,
            "store_profile": store,
        }
    )
    from pricewave.feature_store import FeatureWriter, open_store

    FeatureWriter(open_store(settings)).write("sku_catalog", env.catalog)
    return settings


def submit_run(env: CrashEnv, settings: Settings, name: str) -> str:
    """Submit the job to the private cluster: the job's own pipeline with the cluster's address.

    What ``pricewave submit`` ships (the job zip, PyFlink's runtime jar on the classpath), through
    the REST endpoint; ``flink run`` itself was not used because it could not start the job when this
    was written (RELIABILITY.md: ``pipeline.jars`` under ``flink run -py``, since fixed).
    """
    from pricewave.flink import build_job_archive, flink_python_jar
    from pricewave.job import build_pipeline, create_table_environment

    cluster = env.stack.settings.flink
    options = JobOptions(
        group_id=f"reliability-{name}",
        starting_offsets="earliest-offset",
        bounded=True,
        checkpoint_interval_s=CHECKPOINT_INTERVAL_S,
        parallelism=PARALLELISM,
        # A watermark after every record, as the job's other bounded tests run it (the job judges
        # lateness per partition from the records before it, whatever the emit strategy).
        watermark_emit_strategy="on-event",
        transactional_id_prefix=f"prices-{name}",
        decision_log_dir=str(settings.path("decision_log")),
        extra_config={
            "execution.target": "remote",
            "rest.address": cluster.rest_host,
            "rest.port": str(cluster.rest_port),
            "python.files": str(build_job_archive(settings)),
            "pipeline.classpaths": flink_python_jar().as_uri(),
        },
    )
    t_env = create_table_environment(settings, options)
    client = build_pipeline(t_env, settings, options).execute().get_job_client()
    assert client is not None
    return str(client.get_job_id())


def wait_running(env: CrashEnv, job_id: str, timeout_s: float = 120) -> bool:
    """Wait until every task of the job runs (or has finished its part); False when the job ended first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        details = env.stack.rest(f"/jobs/{job_id}")
        if details["state"] in ("FINISHED", "FAILED", "CANCELED"):
            return False
        statuses = {v["status"] for v in details.get("vertices", [])}
        # A bounded source that has read all its input is FINISHED while the rest still runs.
        if details["state"] == "RUNNING" and "RUNNING" in statuses and statuses <= {"RUNNING", "FINISHED"}:
            return True
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not get all its tasks running in {timeout_s} s")


def wait_restarted(env: CrashEnv, job_id: str, before: int, timeout_s: float = 60) -> bool:
    """Wait until the job noticed the failure (one more entry in its exception history)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if env.stack.num_restarts(job_id) > before:
            return True
        if env.stack.rest(f"/jobs/{job_id}")["state"] in ("FINISHED", "FAILED", "CANCELED"):
            return False
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not notice a killed TaskManager within {timeout_s} s")


def wait_ended(env: CrashEnv, job_id: str, timeout_s: float = JOB_TIMEOUT_S) -> str:
    deadline = time.monotonic() + timeout_s
    cluster = cluster_for(env.stack.settings, env.stack.settings.flink.rest_url)
    while time.monotonic() < deadline:
        state = str(job_details(cluster, job_id).get("state"))
        if state in ("FINISHED", "FAILED", "CANCELED"):
            return state
        time.sleep(0.5)
    stalled = stall_report(env, job_id)  # before the cancel: where the job stood
    cancel_job(cluster, job_id)
    raise AssertionError(f"job {job_id} did not finish within {timeout_s} s\n{stalled}")


def stall_report(env: CrashEnv, job_id: str) -> str:
    """Where a job that should have ended stands: its operators' records and watermarks, its
    checkpoints (the latest failure's cause), its restarts (the latest root cause) and the tails of
    the JobManager's and the broker's logs: a bounded job waits for a final checkpoint, so a stall
    can be a checkpoint that never completes as well as a record or a watermark held back."""
    lines = [job_progress(env.stack.settings.flink.rest_url, job_id)]
    with contextlib.suppress(Exception):
        checkpoints = env.stack.rest(f"/jobs/{job_id}/checkpoints")
        failed = (checkpoints.get("latest") or {}).get("failed") or {}
        lines.append(f"checkpoints {checkpoints.get('counts')}; latest failure: {failed.get('failure_message')}")
    with contextlib.suppress(Exception):
        history = env.stack.rest(f"/jobs/{job_id}/exceptions?maxExceptions=3").get("exceptionHistory", {})
        for entry in history.get("entries", [])[:3]:
            lines.append(f"restart cause: {str(entry.get('stacktrace', '')).splitlines()[:1]}")
    for name, log in env.stack.log_tails().items():
        lines.append(f"--- {name} (last lines) ---\n{log}")
    return "\n".join(lines)


def collect(
    env: CrashEnv, name: str, settings: Settings, job_id: str, state: str, wall_s: float, kills: list[float]
) -> JobRun:
    prices = [json.loads(r.value) for r in read_topic(settings, settings.topics.prices)]
    offer_keys = {(d["user_key"], d["sku"]) for d in prices if d["kind"] == "offer"}
    return JobRun(
        name=name,
        settings=settings,
        job_id=job_id,
        state=state,
        wall_s=wall_s,
        prices=prices,
        dead_letters=[json.loads(r.value) for r in read_topic(settings, settings.topics.dlq)],
        decisions=decision_log_rows(settings.path("decision_log")),
        store=sku_prices(settings, env.skus),
        offer_store=offer_prices(settings, offer_keys),
        restarts=env.stack.num_restarts(job_id),
        kills=kills,
    )


def wait_output(env: CrashEnv, settings: Settings, job_id: str, records: int) -> bool:
    """Wait until ``records`` were written to the run's ``prices`` topic; False when the job ended first."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        written = env.stack.written_records(settings.topics.prices)
        if written is not None and written >= records:
            return True
        if env.stack.rest(f"/jobs/{job_id}")["state"] in ("FINISHED", "FAILED", "CANCELED"):
            return False
        time.sleep(0.2)
    stalled = stall_report(env, job_id)
    raise AssertionError(f"job {job_id} did not write {records} prices within {JOB_TIMEOUT_S} s\n{stalled}")


def faulty_run(
    env: CrashEnv, reference: JobRun, name: str, *, kills: int, broker_restart_after: int | None, seed: int
) -> JobRun:
    """A run during which ``kills`` TaskManagers die (and the broker bounces once).

    Kill ``n`` (of ``k``) comes once the run has written ``n / (2 k)`` as many prices as the
    reference published, plus a random delay: spread over the stream on a fast machine as on a slow
    one, with output left after the last (a replay's aborted writes count too, so kills come early
    rather than late). The last kill comes at half the output because a bounded run writes a third
    of it or more at its very end: offers wait for the sku side's watermark, which the end of the
    input releases at once (RELIABILITY.md).
    """
    rng = random.Random(seed)
    settings = run_settings(env, name)
    started = time.monotonic()
    job_id = submit_run(env, settings, name)
    kill_times: list[float] = []
    broker_restarts = 0
    try:
        for n in range(kills):
            threshold = round(len(reference.prices) * (n + 1) / (2 * kills))
            if not wait_running(env, job_id) or not wait_output(env, settings, job_id, threshold):
                break
            # A random moment after the threshold: before or after the next checkpoint, so that
            # recovery from a fresh and from an older checkpoint are both hit.
            time.sleep(rng.uniform(0.0, CHECKPOINT_INTERVAL_S))
            victims = sorted(env.stack.taskmanagers_of(job_id))
            if not victims:
                break
            restarts_before = env.stack.num_restarts(job_id)
            env.stack.kill_taskmanager(rng.choice(victims))
            kill_times.append(round(time.monotonic() - started, 1))
            if not wait_restarted(env, job_id, restarts_before):
                break
            time.sleep(rng.uniform(0.5, 2.0))
            env.stack.restart_taskmanager()  # as an operator would: same command, same configuration
            if broker_restart_after is not None and n + 1 == broker_restart_after:
                # At once, while the job recovers: it must come back through a broker outage too.
                if env.stack.rest(f"/jobs/{job_id}")["state"] not in ("FINISHED", "FAILED", "CANCELED"):
                    broker_restarts += 1
                env.stack.restart_broker(down_s=5.0)
        state = wait_ended(env, job_id)
    except BaseException:
        cancel_job(cluster_for(env.stack.settings, env.stack.settings.flink.rest_url), job_id)
        raise
    run = collect(env, name, settings, job_id, state, time.monotonic() - started, kill_times)
    run.broker_restarts = broker_restarts
    return run


def outage_run(
    env: CrashEnv, reference: JobRun, name: str, *, at: tuple[float, ...], down_s: float, store: str = "sqlite"
) -> JobRun:
    """A run during which the broker stops (clean shutdown) for ``down_s`` at each fraction ``at``
    of the reference's output, while the job runs."""
    settings = run_settings(env, name, store)
    started = time.monotonic()
    job_id = submit_run(env, settings, name)
    broker_restarts = 0
    try:
        for fraction in at:
            threshold = round(len(reference.prices) * fraction)
            if not wait_running(env, job_id) or not wait_output(env, settings, job_id, threshold):
                break
            env.stack.restart_broker(down_s=down_s)
            broker_restarts += 1
        state = wait_ended(env, job_id)
    except BaseException:
        cancel_job(cluster_for(env.stack.settings, env.stack.settings.flink.rest_url), job_id)
        raise
    run = collect(env, name, settings, job_id, state, time.monotonic() - started, [])
    run.broker_restarts = broker_restarts
    return run


@pytest.fixture(scope="module")
def crash_env(
    settings: Settings, applied_feature_repo: Path, trained_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CrashEnv]:
    from pricewave.stack.redis import RedisService

    base = tmp_path_factory.mktemp("crash")
    private = private_settings(base / "stack", taskmanagers=2)
    private = private.model_copy(update={"topics": private.topics.model_copy(update={"partitions": PARTITIONS})})
    stack = PrivateStack(private, settings.path("jars").resolve())
    redis = RedisService(private)  # on the free port private_settings chose, under the private state dir
    try:
        stack.start()
        redis.install()
        redis.start()
        wait_ready(redis)
        scenario = load_scenario("small")
        faults = scenario.faults
        assert faults.malformed_share > 0 and faults.late_share > 0 and faults.duplicate_share > 0, faults
        simulator = Simulator(scenario, private, seed=SEED, faults=faults, review_texts=["fine"])
        summary = simulator.run_to_kafka(rate=None, max_events=N_EVENTS, closed_loop=False, progress=False)
        injected = {
            "malformed": summary.malformed,
            "late": summary.late,
            "duplicates": summary.duplicates,
            "out_of_order": summary.out_of_order,
        }
        print(f"\n[reliability] input: {summary.messages} messages, injected {injected}")
        catalog = simulator.catalog_records()
        raw_ids = [simulator.market.user(i).raw_id for i in range(simulator.scenario.users.n_users)]
        model_dir = trained_model_dir
        skus = [row["sku"] for row in catalog]
        yield CrashEnv(stack, applied_feature_repo, base, skus, catalog, raw_ids, model_dir, injected, redis)
    finally:
        redis.stop()
        stack.close()


@pytest.fixture(scope="module")
def reference(crash_env: CrashEnv) -> JobRun:
    """The fault-free run every faulty run is compared with."""
    settings = run_settings(crash_env, "reference")
    started = time.monotonic()
    job_id = submit_run(crash_env, settings, "reference")
    state = wait_ended(crash_env, job_id)
    run = collect(crash_env, "reference", settings, job_id, state, time.monotonic() - started, [])
    assert run.state == "FINISHED"
    assert run.restarts == 0
    assert run.prices, "the reference run published no price"
    by_model = sum(1 for d in run.prices if d["model_version"] != "none")
    assert by_model >= 0.9 * len(run.prices), f"only {by_model} of {len(run.prices)} prices came from the model"
    # The job ran as claimed: every source read every partition with PARALLELISM subtasks.
    vertices = crash_env.stack.rest(f"/jobs/{job_id}")["vertices"]
    sources = {v["name"][:60]: v["parallelism"] for v in vertices if "Source" in v["name"]}
    assert len(sources) == 3 and set(sources.values()) == {PARALLELISM}, sources
    # The faults reached the dead-letter topic: every malformed event, late events, from every partition.
    letters = run.letters()
    positions = Counter((topic, partition, offset) for _, topic, partition, offset, _ in letters.elements())
    assert max(positions.values()) == 1, "the reference dead-lettered a record twice"
    figures = run.monitor_figures()
    print(
        f"\n[reliability] reference: {len(run.prices)} decisions ({by_model} by the model, "
        f"{figures['prices_by_kind']}), dead letters {figures['total']} {figures['by_reason']}, "
        f"vertex parallelism {sorted({v['parallelism'] for v in vertices})}, {run.wall_s:.1f} s"
    )
    injected = crash_env.faults
    assert figures["total"] - figures["late"] >= injected["malformed"], (figures, injected)
    assert figures["late"] > 0, f"no late dead letter although {injected['late']} late events were sent"
    assert {partition for _, partition, _ in positions} == set(range(PARTITIONS))
    crash_env.reference = run
    return run


def assert_same_as_reference(run: JobRun, reference: JobRun) -> None:
    ids = Counter(d["decision_id"] for d in run.prices)
    duplicated = {key: n for key, n in ids.items() if n > 1}
    reference_ids = {d["decision_id"] for d in reference.prices}
    lost = reference_ids - set(ids)
    extra = set(ids) - reference_ids
    print(
        f"\n[reliability] {run.name}: kills at {run.kills} s, restarts {run.restarts}, {len(run.prices)} decisions "
        f"(reference {len(reference.prices)}), lost {len(lost)}, duplicated {len(duplicated)}, extra {len(extra)}, "
        f"broker restarts {run.broker_restarts}, wall {run.wall_s:.1f} s"
    )
    assert run.state == "FINISHED"
    assert not duplicated, f"{len(duplicated)} decisions published twice"
    assert not lost, f"{len(lost)} decisions lost"
    assert not extra, f"{len(extra)} decisions that the fault-free run did not make"
    # Prices are a function of the input: exactly the same sets, for skus and for offers.
    skus = run.price_set("sku")
    print(f"[reliability] {run.name}: {len(skus ^ reference.price_set('sku')) // 2} of {len(skus)} sku prices differ")
    assert skus == reference.price_set("sku")
    offers = run.price_set("offer")
    differing = len(offers ^ reference.price_set("offer"))
    print(f"[reliability] {run.name}: {differing} of {len(offers)} offer prices differ from the reference")
    if differing:
        print_differing_offers(run, reference)
    assert differing == 0, f"{differing} offer prices differ from the fault-free run"
    assert run.store == reference.store
    assert run.offer_store == reference.offer_store
    # Dead letters: exactly the reference's (reason, source record, raw bytes), none twice.
    letters, expected = run.letters(), reference.letters()
    positions = Counter((topic, partition, offset) for _, topic, partition, offset, _ in letters.elements())
    twice = sum(1 for n in positions.values() if n > 1)
    missing, extra_letters = expected - letters, letters - expected
    figures = run.monitor_figures()
    print(
        f"[reliability] {run.name}: dead letters {figures['total']} {figures['by_reason']} (reference "
        f"{len(reference.dead_letters)}), twice {twice}, missing {sum(missing.values())}, "
        f"extra {sum(extra_letters.values())}"
    )
    for letter in [*missing, *extra_letters][:6]:
        print(f"[reliability]   {'missing' if letter in missing else 'extra'}: {letter[:4]}")
    assert not twice, f"{twice} records dead-lettered more than once"
    assert not missing and not extra_letters, (
        f"{sum(missing.values())} dead letters missing, {sum(extra_letters.values())} extra"
    )
    assert figures == reference.monitor_figures()
    log_ids = Counter(row["decision_id"] for row in run.decisions)
    assert max(log_ids.values()) == 1, "the decision log holds a decision twice"
    assert set(log_ids) == {row["decision_id"] for row in reference.decisions}


def print_differing_offers(run: JobRun, reference: JobRun, limit: int = 6) -> None:
    """Show a few offers the two runs priced differently, side by side: what to look at first."""
    by_id = {d["decision_id"]: d for d in reference.prices if d["kind"] == "offer"}
    shown = 0
    for decision in run.prices:
        before = by_id.get(decision["decision_id"])
        if before is None or before["price"] == decision["price"]:
            continue
        changed = {
            key: (before.get(key), decision.get(key))
            for key in sorted(set(before) | set(decision))
            if key not in ("decision_time", "decision_id") and before.get(key) != decision.get(key)
        }
        print(f"[reliability]   {decision['sku']} at {decision['event_time']}: {changed}")
        shown += 1
        if shown == limit:
            break


def test_reference_run_is_deterministic_and_complete(crash_env: CrashEnv, reference: JobRun) -> None:
    # Every decision is one (sku, window) and every sku with demand got a price in the store.
    assert len({d["decision_id"] for d in reference.prices}) == len(reference.prices)
    assert {sku for sku, price in reference.store.items() if price is not None} == {d["sku"] for d in reference.prices}
    # Every (user, sku) offered to holds an offer in the store: the store comparison is not vacuous.
    assert reference.offer_store and all(price is not None for price in reference.offer_store.values())


@pytest.mark.slow
def test_taskmanager_killed_three_times_and_broker_restarted(crash_env: CrashEnv, reference: JobRun) -> None:
    # The broker bounce comes right after the second kill, while the job recovers (a bounce while it
    # runs lets it finish what it already read before the remaining kill). Three kills, not five
    # as before 2026-12-07: the same claim (repeated failures, each recovered exactly once) in
    # two recoveries less of CI time.
    run = faulty_run(crash_env, reference, "kill3", kills=3, broker_restart_after=2, seed=5)
    assert_same_as_reference(run, reference)
    assert len(run.kills) == 3, "the job finished before every kill happened: make the input larger"
    assert run.restarts >= 3
    assert run.broker_restarts == 1, "the job finished before the broker restart"


@pytest.mark.slow
def test_broker_down_longer_than_the_idle_timeout_while_the_job_runs(crash_env: CrashEnv, reference: JobRun) -> None:
    # Down three idle timeouts, twice: every source gets no record for that long. With idleness on,
    # a source then stops holding the watermark back and operators with an input that has already
    # ended (the small competitor topic) jump to the final watermark; measured before bounded runs
    # turned idleness off: 5,923 of 12,874 offers lost without an error in one run, 78 priced
    # against another sku price in the next (RELIABILITY.md §1).
    # On the Redis online store: the reference ran on SQLite, and both must end in the same state.
    down_s = 3 * JobOptions().idle_timeout_s
    run = outage_run(crash_env, reference, "outage", at=(0.1, 0.3), down_s=down_s, store="redis")
    assert run.broker_restarts == 2, "the job finished before both outages: make the input larger"
    assert_same_as_reference(run, reference)


# --- privacy: the reference run's leftovers hold no raw user id ---------------------------------


def raw_id_pattern(scenario_name: str) -> re.Pattern[bytes]:
    """The simulator's raw user ids (:meth:`pricewave.simulator.market.Market.user`): ``<scenario>-user-<n>``."""
    return re.compile(re.escape(scenario_name).encode() + rb"-user-\d+")


def test_no_raw_user_id_in_topics_store_decision_log_or_logs(crash_env: CrashEnv, reference: JobRun) -> None:
    pattern = raw_id_pattern("small")
    # The scan finds what it looks for: the simulator's users do have such raw ids.
    assert all(pattern.fullmatch(raw.encode()) for raw in crash_env.raw_user_ids)
    from pricewave.kafka_io import make_admin

    stack = crash_env.stack.settings
    admin = make_admin(stack)
    try:
        topics = sorted(t for t in admin.list_topics() if not t.startswith("__"))
    finally:
        admin.close()
    assert {"clicks", "competitor-prices", "reviews", "prices-reference", "dlq-reference"} <= set(topics)
    scanned_records = 0
    for topic in topics:
        for record in read_topic(stack, topic, read_committed=False):
            scanned_records += 1
            for part in (record.key or b"", record.value or b""):
                assert not find_raw_ids(pattern, part), f"raw user id in topic {topic} at offset {record.offset}"
    assert scanned_records > 0
    # Everything on disk: broker segments, the SQLite online store, the decision log, every log,
    # and the Redis server's append-only file (the outage run's store, when it ran).
    roots = [stack.path("kafka"), stack.path("logs"), reference.settings.state_dir, crash_env.redis.home]
    scanned_files = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and "jars" not in path.parts:
                scanned_files += 1
                assert not find_raw_ids(pattern, path.read_bytes()), f"raw user id in {path}"
    store_file = Path(reference.settings.feature_repo) / "data" / "online_store.db"
    assert store_file.stat().st_size > 0
    assert scanned_files > 10
