"""``pricewave submit | jobs | stop | upgrade`` against the real standalone Flink cluster and broker.

The pricing job is submitted with Flink's own ``flink run`` at parallelism 2 over fresh topics (the
job's driver reads them from PRICEWAVE_TOPICS__* in its environment). Malformed clicks are the
observable output: each one must reach the fresh dead-letter topic exactly once, before and after an
upgrade that restores the job from its savepoint. Valid clicks must come out as prices
(:func:`test_a_live_job_on_the_cluster_prices_every_view`). One job serves both (the ``live_job``
fixture): the live-pricing test reads its prices first, the upgrade test then upgrades and stops it.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from kafka.consumer.fetcher import ConsumerRecord

from pricewave import cli
from pricewave import flink as flink_jobs
from pricewave.config import Settings, load_settings
from pricewave.kafka_io import encode_json, ensure_topics, make_producer
from tests.conftest import consume_all, delete_topics_quietly, job_progress, restored_from

pytestmark = pytest.mark.integration

ROLES = ("clicks", "competitor_prices", "reviews", "prices", "dlq")
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
CATALOG_ROW = {
    "sku": "A1", "base_price": 20.0, "cost": 10.0, "map_price": None, "ceiling_price": 40.0,
    "category": "snacks", "event_time": T0,
}  # fmt: skip


def good_clicks(settings: Settings, minutes: int) -> None:
    """Valid views of sku A1, one every 10 s of event time over ``minutes``, on every partition."""
    producer = make_producer(settings)
    for n in range(minutes * 6):
        record = {
            "event_id": f"good-{n}", "event_type": "view", "user_key": "a" * 32, "session_id": "s1",
            "sku": "A1", "price_seen": 20.0, "channel": "web", "event_time": T0 + n * 10_000,
        }  # fmt: skip
        producer.send(settings.topics.clicks, encode_json(record), partition=n % 2)
    producer.flush()
    producer.close()


@pytest.fixture(scope="module")
def fresh_taskmanagers(kafka_stack: Settings, flink_cluster: Settings) -> Settings:
    """The stack's Flink restarted once for this module: its jobs start on TaskManagers that ran nothing.

    A TaskManager died of "Metaspace" here after several jobs (metaspace now 768 MB); the jobs of
    this module (about submit, upgrade and stop) should not depend on what ran before them. (The
    stall once blamed on reused TaskManagers was the idle-status defect, RELIABILITY.md row 5g.)
    """
    from pricewave import stack

    # With Flink's Prometheus reporter on (ports 9250-9260), as an operator runs it: the live job's
    # test reads the pricers' own metrics from it.
    reporting = kafka_stack.stack.model_copy(update={"flink_prometheus": True})
    stack.down(kafka_stack, ["flink"])
    stack.up(kafka_stack.model_copy(update={"stack": reporting}), ["flink"])
    return flink_cluster


@dataclass
class LiveJob:
    """The module's pricing job on the cluster, as ``pricewave submit`` started it."""

    settings: Settings
    env: dict[str, str]  # the PRICEWAVE_* variables naming its topics and feature repo (for the CLI)
    job_id: str
    args: list[str]  # the job's own flags, as submitted
    submit_output: str


@pytest.fixture(scope="module")
def live_job(
    kafka_stack: Settings,
    fresh_taskmanagers: Settings,
    applied_feature_repo: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveJob]:
    """One pricing job for the module: ``pricewave submit --parallelism 2`` over five fresh topics and a
    private applied feature repo holding a catalog (the job's driver reads them from PRICEWAVE_*).

    The live-pricing test reads its prices, then the upgrade test upgrades and stops it: one
    ``flink run`` client and one job start less than a job per test (minutes on 2 busy cores).
    Cancelled at the end if still running; its topics are deleted.
    """
    from pricewave.feature_store import FeatureWriter, open_store

    suffix = uuid.uuid4().hex[:8]
    topics = {role: f"test-submit-{role.replace('_', '-')}-{suffix}" for role in ROLES}
    ensure_topics(kafka_stack, topics.values(), partitions=None)
    repo = tmp_path_factory.mktemp("submit") / "feature_repo"
    shutil.copytree(applied_feature_repo, repo)
    env = {f"PRICEWAVE_TOPICS__{role.upper()}": name for role, name in topics.items()}
    env["PRICEWAVE_FEATURE_REPO"] = str(repo)
    job_ids: list[str] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            settings = load_settings()
            FeatureWriter(open_store(settings)).write("sku_catalog", [CATALOG_ROW])
            args = live_job_args()
            job_id, out = submit_running(settings, job_ids, args)
        yield LiveJob(settings, env, job_id, args, out)
    finally:
        cancel_active(kafka_stack, job_ids)
        delete_topics_quietly(kafka_stack, list(topics.values()))


@pytest.fixture
def job_env(live_job: LiveJob, monkeypatch: pytest.MonkeyPatch) -> LiveJob:
    """The module's job, with its PRICEWAVE_* variables set for this test's CLI calls."""
    for name, value in live_job.env.items():
        monkeypatch.setenv(name, value)
    return live_job


def cancel_active(settings: Settings, job_ids: list[str]) -> None:
    """Cancel each of ``job_ids`` that is still active on the stack's cluster."""
    cluster = flink_jobs.cluster_for(settings)
    for job_id in job_ids:
        try:
            if flink_jobs.job_details(cluster, job_id).get("state") in flink_jobs.ACTIVE_STATES:
                flink_jobs.cancel_job(cluster, job_id)
        except Exception as exc:  # keep cancelling the others
            print(f"could not cancel {job_id}: {exc}")


@pytest.fixture
def submitted_jobs(flink_cluster: Settings) -> Iterator[list[str]]:
    """Job ids the test started; each still active at the end is cancelled."""
    job_ids: list[str] = []
    yield job_ids
    cancel_active(flink_cluster, job_ids)


def bad_clicks(settings: Settings, count: int, tag: str) -> None:
    """Produce ``count`` malformed click records (half broken JSON, half missing fields)."""
    producer = make_producer(settings)
    for n in range(count):
        value = b'{"truncated": ' + tag.encode() if n % 2 else encode_json({"event_id": f"{tag}-{n}", "sku": "A1"})
        producer.send(settings.topics.clicks, value)
    producer.flush()
    producer.close()


def dead_letters(settings: Settings, expected: int) -> list[dict[str, object]]:
    records = consume_all(settings, settings.topics.dlq, expected=expected, timeout_s=90)
    return [json.loads(record.value) for record in records]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    assert code == 0, out.out + out.err
    return out.out


def live_job_args() -> list[str]:
    """The job's flags: a fresh consumer group, from the earliest offsets, checkpoints every 2 s."""
    return ["--group-id", f"test-submit-{uuid.uuid4().hex[:8]}", "--starting-offsets", "earliest-offset",
            "--checkpoint-interval", "2"]  # fmt: skip


def submit_running(settings: Settings, submitted_jobs: list[str], job_args: list[str]) -> tuple[str, str]:
    """``pricewave submit --parallelism 2 -- ARGS``; waits until the job runs. Returns its id and the output."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main(["submit", "--parallelism", "2", "--", *job_args])
    out = output.getvalue()
    assert code == 0, out
    found = flink_jobs.JOB_ID_PATTERN.search(f"JobID {out.split()[2]}")
    assert found is not None, out
    job_id = found.group(1)
    submitted_jobs.append(job_id)
    flink_jobs.wait_for_state(flink_jobs.cluster_for(settings), job_id, ["RUNNING"], timeout_s=180)
    return job_id, out


def test_a_live_job_on_the_cluster_prices_every_view(job_env: LiveJob) -> None:
    """Ten minutes of views on both partitions: an offer for each and a price for each sku window."""
    job_settings, job_id = job_env.settings, job_env.job_id
    good_clicks(job_settings, minutes=10)

    def priced(records: list[ConsumerRecord]) -> bool:
        """A sku price and (nearly) an offer per view: sku prices and offers commit in different checkpoints."""
        kinds = [json.loads(r.value)["kind"] for r in records]
        return "sku" in kinds and kinds.count("offer") >= 50

    records = consume_all(job_settings, job_settings.topics.prices, until=priced, timeout_s=120)
    prices = [json.loads(r.value) for r in records]
    progress = job_progress(job_settings.flink.rest_url, job_id)  # where records and watermarks stand
    assert any(p["kind"] == "sku" and p["sku"] == "A1" for p in prices), f"{prices[:3]}\n{progress}"
    assert sum(p["kind"] == "offer" for p in prices) >= 50, progress  # (nearly) one per view
    assert all(p["price"] >= 10.0 * 1.05 for p in prices)  # the margin floor holds

    # What Prometheus scrapes from Flink's own reporter: the pricers' business metrics of this job.
    reported = reported_pricer_metrics(job_id, until=lambda found: found.get(("OfferPricer", "decisions"), 0) >= 50)
    assert reported.get(("OfferPricer", "decisions"), 0) >= 50, sorted(reported)
    assert reported.get(("SkuPricer", "decisions"), 0) >= 1, sorted(reported)
    assert any(name.startswith("rule_guardrail_hits{") for _, name in reported), sorted(reported)  # hits per rule
    assert reported[("OfferPricer", "event_to_decision_ms_p99")] > 0
    assert 0 <= reported[("OfferPricer", "kill_switch")] <= reported[("OfferPricer", "decisions")]
    assert reported[("OfferPricer", "model_age_s")] >= -1  # -1: no model, the kill switch prices


def test_submit_jobs_upgrade_from_savepoint_and_stop(
    job_env: LiveJob, submitted_jobs: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Runs after the live-pricing test, on the same job (its prices are not dead letters)."""
    job_settings, job_args, first_id = job_env.settings, job_env.args, job_env.job_id
    cluster = flink_jobs.cluster_for(job_settings)

    # submitted at parallelism 2 through the CLI, as a user would (the module's job)
    assert f"{job_settings.flink.rest_url}/#/job/{first_id}/overview" in job_env.submit_output
    details = flink_jobs.job_details(cluster, first_id)
    assert max(vertex["parallelism"] for vertex in details["vertices"]) == 2

    listing = run_cli(capsys, "jobs")
    row = next(line for line in listing.splitlines() if first_id in line)
    assert "RUNNING" in row and "pricewave-pricing" in row

    # records flow: malformed clicks reach the fresh dead-letter topic, once each
    bad_clicks(job_settings, 6, "before")
    letters = dead_letters(job_settings, 6)
    assert len(letters) == 6
    assert {letter["source_topic"] for letter in letters} == {job_settings.topics.clicks}
    assert len({(letter["partition"], letter["offset"]) for letter in letters}) == 6

    # upgrade: stop with a savepoint, then the current code restored from it
    savepoints = tmp_path / "savepoints"
    out = run_cli(capsys, "upgrade", first_id, "--savepoint", str(savepoints), "--parallelism", "2", "--", *job_args)
    savepoint = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("savepoint: "))
    second_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("submitted job "))
    submitted_jobs.append(second_id)
    savepoint_dir = Path(savepoint.removeprefix("file:"))
    assert savepoint_dir.is_dir() and (savepoint_dir / "_metadata").is_file()
    assert savepoint_dir.parent == savepoints.resolve()
    assert flink_jobs.job_details(cluster, first_id)["state"] == "FINISHED"
    flink_jobs.wait_for_state(cluster, second_id, ["RUNNING"], timeout_s=180)
    restored = restored_from(cluster, second_id)
    assert restored["is_savepoint"] is True
    assert str(restored["external_path"]).removeprefix("file:") == str(savepoint_dir)

    # the restored job resumes from the savepoint's offsets: only the new records are dead-lettered
    bad_clicks(job_settings, 4, "after")
    letters = dead_letters(job_settings, 10)
    time.sleep(3)
    letters = dead_letters(job_settings, 11)  # nothing more arrives (no replay from the earliest offset)
    assert len(letters) == 10
    assert len({(letter["partition"], letter["offset"]) for letter in letters}) == 10

    # stop with a savepoint (the one active pricing job, no id given)
    second_savepoints = tmp_path / "second"
    out = run_cli(capsys, "stop", "--savepoint", str(second_savepoints))
    assert second_id in out
    final = Path(out.strip().splitlines()[-1].split(": ", 1)[1].removeprefix("file:"))
    assert (final / "_metadata").is_file() and final.parent == second_savepoints.resolve()
    assert flink_jobs.job_details(cluster, second_id)["state"] == "FINISHED"


PRICER_SAMPLE = re.compile(r"^flink_taskmanager_job_task_operator_pricewave_(\w+)\{([^}]*)\} (\S+)$", re.M)


def reported_pricer_metrics(
    job_id: str, until: Callable[[dict[tuple[str, str], float]], bool], timeout_s: float = 90
) -> dict[tuple[str, str], float]:
    """The job's ``pricewave`` metrics as the TaskManagers' Prometheus reporters expose them, summed
    over subtasks: ``(pricer, name)`` -> value, with a ``rule`` label kept in the name."""
    found: dict[tuple[str, str], float] = {}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = {}
        for port in range(9250, 9261):
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.RequestException:
                continue
            for name, label_text, value in PRICER_SAMPLE.findall(text):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', label_text))
                if labels.get("job_id") != job_id:
                    continue
                key = (labels["pricewave"], f"{name}{{rule={labels['rule']}}}" if "rule" in labels else name)
                # Counters add up over subtasks; a level (a latency, the model's age) is the worst one.
                level = name.startswith("event_to_decision") or name == "model_age_s"
                number = float(value)
                found[key] = max(found.get(key, number), number) if level else found.get(key, 0.0) + number
        if until(found):
            break
        time.sleep(2)
    return found


def test_dry_run_prints_the_flink_run_command(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "submit", "--dry-run", "-p", "3", "--from-savepoint", "/tmp/sp-1", "--", "--bounded")
    assert "/bin/flink run --detached" in out
    assert "-pym jobs.pricing_job" in out and "-p 3" in out and "-s /tmp/sp-1" in out
    assert out.rstrip().endswith("--bounded --parallelism 3")
    assert "FLINK_CONF_DIR=" in out and "--jarfile" not in out and "flink-sql-connector-kafka" not in out
    assert Path(settings.path("submit", "pricewave_job.zip")).is_file()


def test_clear_errors_for_a_down_cluster_and_an_unknown_job(
    flink_cluster: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["jobs", "--cluster", "http://127.0.0.1:1"]) == 3
    assert "no Flink cluster answers at http://127.0.0.1:1" in capsys.readouterr().err
    assert cli.main(["stop", "0" * 32]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"pricewave: error: no job {'0' * 32} on {flink_cluster.flink.rest_url}: see 'pricewave jobs' for the ids"
    )


def test_client_config_for_another_cluster_carries_the_java_17_module_opens(tmp_path: Path) -> None:
    import yaml

    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    conf = flink_jobs.flink_conf_dir(settings, flink_jobs.cluster_for(settings, "http://flink.example:8082"))
    config = yaml.safe_load((conf / "config.yaml").read_text())
    assert config["rest.address"] == "flink.example" and config["rest.port"] == 8082
    # Without these `flink run` fails on Java 17 (InaccessibleObjectException) before submitting.
    assert "--add-opens=java.base/java.lang=ALL-UNNAMED" in config["env.java.opts.all"]


def test_dry_run_pins_the_store_profile_repo_and_models_and_hides_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the job's driver (and through it every worker) gets: absolute paths, the calendar, never a secret."""
    monkeypatch.setenv("PRICEWAVE_STATE_DIR", str(tmp_path))
    config = tmp_path / "pricewave.yaml"
    config.write_text("holidays: [{name: sale, start: 2026-11-27, end: 2026-11-28}]\n")
    monkeypatch.setenv("PRICEWAVE_CONFIG", str(config))
    for name, value in {
        "PRICEWAVE_KAFKA_PASSWORD": "kafka-secret-1",
        "PRICEWAVE_REDIS_PASSWORD": "redis-secret-2",
        "PRICEWAVE_USER_KEY_SECRET": "user-secret-3" * 3,
    }.items():
        monkeypatch.setenv(name, value)
    out = run_cli(capsys, "submit", "--dry-run", "--profile", "redis", "--", "--group-id", "g1")
    assert f"PRICEWAVE_STORE_PROFILE={REPO_FEATURE_REPO / 'feature_store.redis.yaml'}" in out
    assert f"PRICEWAVE_FEATURE_REPO={REPO_FEATURE_REPO}" in out
    assert f"PRICEWAVE_MODELS__MODEL_DIR={tmp_path / 'models'}" in out
    assert f"PRICEWAVE_STATE_DIR={tmp_path}" in out
    calendar = '[{"name": "sale", "start": "2026-11-27T00:00:00Z", "end": "2026-11-28T00:00:00Z"}]'
    assert f"PRICEWAVE_HOLIDAYS={shlex.quote(calendar)}" in out
    assert "secret" not in out


REPO_FEATURE_REPO = Path(__file__).resolve().parents[3] / "feature_repo"


def test_the_udfs_carry_pinned_settings_and_the_redis_password_to_a_bare_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TaskManager's worker has none of the submitting shell's variables: the UDF brings them."""
    import cloudpickle

    from udfs.pricing import SkuPricer

    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path), "PRICEWAVE_STORE_PROFILE": "redis"})
    monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", "carried-1")
    monkeypatch.setenv("PRICEWAVE_KAFKA_PASSWORD", "not-carried")
    shipped = cloudpickle.dumps(SkuPricer(settings))
    monkeypatch.delenv("PRICEWAVE_REDIS_PASSWORD")
    monkeypatch.delenv("PRICEWAVE_KAFKA_PASSWORD")
    monkeypatch.delenv("FEAST_FS_YAML_FILE_PATH", raising=False)
    monkeypatch.chdir(tmp_path)  # a worker's working directory is not the checkout
    worker = cloudpickle.loads(shipped).settings
    assert worker.store_profile == str(REPO_FEATURE_REPO / "feature_store.redis.yaml")
    assert worker.feature_repo == str(REPO_FEATURE_REPO)
    assert worker.model_dir == tmp_path / "models"
    assert worker.redis.password == "carried-1"
    assert b"not-carried" not in shipped  # only the store's secret travels
