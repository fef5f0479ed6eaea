"""Journey: the README's ``make run``, then a channel's price reads and the dashboard, as a user does.

``make run`` sets up, trains if needed, submits the pricing job to the stack's Flink cluster and
streams the simulator on the live clock; its closing lines name a sku and a shopper to try. The
test then types exactly those ``pricewave price`` lines, and opens the dashboard
(``pricewave monitor``) and reads its ``/api/snapshot``, all with a clean environment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from pricewave.config import load_settings
from tests.journeys.conftest import (
    PRICEWAVE,
    REPO,
    active_pricing_jobs,
    age_seconds,
    clean_environment,
    documented_commands,
    price_fields,
    run_documented,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DURATION_S = 80  # more than one minute: at least one sku window closes on the live clock
QUICKSTART = f"make run DURATION={DURATION_S}"


@pytest.fixture(scope="module")
def quickstart(cancel_pricing_jobs: None) -> str:
    """The output of ``make run`` (the job keeps running until the module ends)."""
    assert documented_commands(REPO / "README.md", r"^make run\b"), "the README no longer says 'make run'"
    done = run_documented(QUICKSTART, timeout_s=900)
    return done.stdout


def hinted_commands(output: str) -> list[str]:
    """The ``pricewave price`` lines the quickstart prints for the user to try."""
    return [line.strip() for line in output.splitlines() if line.strip().startswith(".venv/bin/pricewave price")]


def test_quickstart_submits_one_job_to_the_cluster_and_publishes_prices(quickstart: str) -> None:
    summary = re.search(r"quickstart: ([\d,]+) clicks in, ([\d,]+) prices published", quickstart)
    assert summary is not None, quickstart[-3000:]
    assert int(summary.group(2).replace(",", "")) > 0
    job = re.search(r"pricing job ([0-9a-f]{32}) submitted \(consumer group pricewave-pricing\)", quickstart)
    assert job is not None, quickstart[-3000:]
    # The job prices where the user looks for it: running on the stack's cluster, once.
    assert [j.job_id for j in active_pricing_jobs()] == [job.group(1)]
    assert f"still running: the pricing job {job.group(1)}" in quickstart


def test_a_channel_reads_the_live_sku_price_the_quickstart_names(quickstart: str) -> None:
    sku_line = next(line for line in hinted_commands(quickstart) if "--user" not in line)
    fields = price_fields(run_documented(sku_line, timeout_s=120).stdout)
    assert fields["source"] == "sku", fields  # the job's price, not the catalog's base price
    assert fields["model"].startswith("demand-"), fields  # the model priced it (no kill switch)
    # Live: the window that priced it closed moments ago (the clock of 2025 made this ~16,700 h).
    assert age_seconds(fields) < 120, fields


def test_a_channel_reads_a_fresh_personalized_offer_for_the_named_shopper(quickstart: str) -> None:
    user_line = next(line for line in hinted_commands(quickstart) if "--user" in line)
    fields = price_fields(run_documented(user_line, timeout_s=120).stdout)
    assert fields["source"] == "offer", fields
    # Disclosed when personalized; an offer the kill switch or the sku's price capped is not.
    assert fields["personalized"].split()[0] in ("yes", "no"), fields
    assert age_seconds(fields) < 60, fields


def test_the_feedback_loop_reads_the_live_log_and_clicks_and_says_what_it_decided(
    quickstart: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``pricewave train --from-log`` (README) right after ``make run``: the job's own decision log, the
    clicks from Kafka and the catalog from the online store, joined; then a verdict or what to do."""
    assert "`pricewave train --from-log" in (REPO / "README.md").read_text()
    models = tmp_path_factory.mktemp("feedback") / "models"  # the served models stay as they are
    shutil.copytree(load_settings(env={}).model_dir, models)  # the quickstart's, as a clean shell sees it
    done = run_documented(
        f"{PRICEWAVE} train --from-log --out {models} --epochs 3 --no-progress", timeout_s=600, check=False
    )
    shown = re.search(r"the decision log holds ([\d,]+) shown sku decisions", done.stderr)
    if done.returncode == 2:  # one minute of live clock: too little to judge, and it says so
        assert shown is not None and int(shown.group(1).replace(",", "")) > 0, done.stderr
        assert "let the job run longer, or lower --min-decisions" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    else:  # a longer log (other journeys' decisions too): a verdict, and LATEST moved only if it passed
        assert done.returncode in (0, 3), done.stdout + done.stderr
        assert re.search(r"^gate +(PROMOTE|REFUSE)", done.stdout, flags=re.M), done.stdout
        assert ("promoted: LATEST" in done.stdout) == (done.returncode == 0), done.stdout


@pytest.fixture
def dashboard(quickstart: str) -> Iterator[str]:
    """``pricewave monitor`` as the README starts it; yields its URL."""
    process = subprocess.Popen(
        [str(PRICEWAVE), "monitor"],
        cwd=REPO,
        env=clean_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield "http://127.0.0.1:8050"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _snapshot_when(url: str, ready: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    snapshot: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            snapshot = requests.get(f"{url}/api/snapshot", timeout=5).json()
        except requests.RequestException:
            snapshot = {}
        if snapshot and ready(snapshot):
            return snapshot
        time.sleep(2)
    return snapshot


def test_the_dashboard_names_the_running_job_its_lag_and_live_latencies(dashboard: str) -> None:
    def ready(snapshot: dict[str, Any]) -> bool:
        kafka_topics = snapshot["kafka"].get("topics") or []
        return bool(
            snapshot["flink"].get("job")
            and snapshot["prices"]["latency_ms"]["samples"]
            and any(topic.get("lag_total") is not None for topic in kafka_topics)
        )

    snapshot = _snapshot_when(dashboard, ready, timeout_s=120)
    assert snapshot, "the dashboard did not answer"
    job = snapshot["flink"]["job"]
    assert job["name"] == "pricewave-pricing" and job["state"] == "RUNNING", job
    assert [j.job_id for j in active_pricing_jobs()] == [job["id"]]
    kafka = snapshot["kafka"]
    assert kafka["group_id"] == "pricewave-pricing"
    clicks = next(topic for topic in kafka["topics"] if topic["role"] == "clicks")
    assert clicks["lag_total"] is not None and clicks["lag_total"] >= 0, clicks
    latency = snapshot["prices"]["latency_ms"]
    assert 0 <= latency["p50"] <= latency["p99"] < 60_000, latency  # ms, not the 16,746.9 h of a 2025 clock
    model = snapshot["model"]
    assert model["age_s"] is not None and not model["stale"], model
