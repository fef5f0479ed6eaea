"""The network policy through the real pipeline (Kafka + Flink + Feast) vs the same policy in process.

:func:`evaluate_through_pipeline` checks that the streaming system earns what the in-process
evaluation says the pricing network earns:

1. **Private plumbing**: fresh single-partition topics (names through the settings), a private copy
   of ``feature_repo/`` on which ``feast apply`` ran, the scenario's catalog written to its online
   store, and the model under evaluation.
2. **The pipeline**: ``jobs/pricing_job.py`` on a MiniCluster in a subprocess (``PRICEWAVE_*``
   environment for the topics, feature repo and model; earliest offsets of the fresh, empty topics;
   1 s checkpoints so committed prices reach the shop quickly; parallelism 1).
3. **The market**: the simulator, fault free, closed loop (its price book follows the ``prices``
   topic read_committed) for ``events`` messages at ``rate`` messages/s.
4. **In process**: :func:`pricewave.evaluation.run_policy` with the network, the same scenario and
   seed, no warm-up and a 60 s re-pricing interval (the job's window slide), over the same
   simulated minutes.

The compared figure is the **paired expected-margin ratio** over the views of those minutes:
Σ (p − cost) · P(buy | p) / Σ (list − cost) · P(buy | list), both under the simulator's hidden
demand model at the moment of each view. It is free of purchase noise, and normalizing by the
list price on the very same views removes the sku mix, which drifts between the two runs.

Example:
    >>> from pricewave.config import load_settings                                  # doctest: +SKIP
    >>> check = evaluate_through_pipeline("small", load_settings(), model="models")  # doctest: +SKIP
    >>> check["agrees"], check["relative_difference"] <= check["tolerance"]         # doctest: +SKIP
    (True, True)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricewave.config import Settings
from pricewave.errors import ConfigError, StackError
from pricewave.simulator.runner import Simulator
from pricewave.simulator.scenario import Scenario, load_scenario
from pricewave.stack.process import child_environment, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
INTERVAL_MS = 60_000  # the job's window slide: it re-prices every sku once per simulated minute
DEFAULT_TOLERANCE = 0.015
"""How far R_pipeline / R_in_process − 1 may fall below 0 (R: the paired expected-margin ratio; docs/EVALUATION.md)."""
PERSONALIZATION_ALLOWANCE = 0.05
"""How far it may rise above 0: the pipeline's per-view offers can earn more than one price per sku."""

_JOB_SCRIPT = textwrap.dedent(
    """
    import sys, uuid
    sys.path.insert(0, {root!r})
    from pricewave.job import JobOptions, build_pipeline, create_table_environment
    from pricewave.config import load_settings

    settings = load_settings()
    options = JobOptions(
        group_id="pricewave-eval-" + uuid.uuid4().hex[:8], starting_offsets="earliest-offset",
        checkpoint_interval_s={checkpoint_s!r}, parallelism=1, restart_strategy="none",
        decision_log_dir={decision_log!r},
    )
    options.validate()
    t_env = create_table_environment(settings, options)
    result = build_pipeline(t_env, settings, options).execute()
    client = result.get_job_client()
    print("pricing job", client.get_job_id() if client else "?", "running", flush=True)
    result.wait()
    """
)


class _PairedSimulator(Simulator):
    """A simulator that also records each view's paired expected margin (shown vs list price)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from pricewave.evaluation.closed_loop import PairedMargin

        self._paired = PairedMargin(self)
        # (event time, expected margin at the shown price, at the list price, price source) per view
        self.paired_views: list[tuple[int, float, float, str]] = []

    def _view(self, session: Any, t_ms: int) -> dict[str, Any]:
        sources = dict(self.summary.price_sources)
        record = super()._view(session, t_ms)
        source = next((k for k, v in self.summary.price_sources.items() if v != sources.get(k, 0)), "list")
        shown, at_list = self._paired.shown, self._paired.at_list
        self._paired.add(record)  # the market is exactly as at the view, as in the in-process run
        self.paired_views.append((t_ms, self._paired.shown - shown, self._paired.at_list - at_list, source))
        return record


@dataclass
class _Plumbing:
    settings: Settings
    topics: list[str] = field(default_factory=list)


def _apply_feature_repo(target: Path, settings: Settings) -> Path:
    """Copy ``feature_repo/`` (without data) to ``target`` and run the real ``feast apply`` on it (SQLite)."""
    from pricewave.feature_store.store import apply_repo

    shutil.copytree(REPO_ROOT / "feature_repo", target, ignore=shutil.ignore_patterns("data", "__pycache__"))
    return apply_repo(target, settings, "sqlite")


def _environment(settings: Settings) -> dict[str, str]:
    """``PRICEWAVE_*`` variables that make a fresh process load exactly ``settings``' topics, repo and model."""
    env = child_environment()
    topics = settings.topics
    for role in ("clicks", "competitor_prices", "reviews", "prices", "dlq"):
        env[f"PRICEWAVE_TOPICS__{role.upper()}"] = getattr(topics, role)
    env["PRICEWAVE_TOPICS__PARTITIONS"] = str(topics.partitions)
    env["PRICEWAVE_FEATURE_REPO"] = settings.feature_repo
    env["PRICEWAVE_MODELS__MODEL_DIR"] = settings.models.model_dir
    env["FEAST_FS_YAML_FILE_PATH"] = "feature_store.yaml"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


@contextmanager
def _pricing_job(settings: Settings, work: Path, *, checkpoint_s: float, timeout_s: float) -> Iterator[Path]:
    """Run the pricing job on a MiniCluster in its own process group until the block ends."""
    log_path = work / "pricing-job.log"
    script = _JOB_SCRIPT.format(root=str(REPO_ROOT), checkpoint_s=checkpoint_s, decision_log=str(work / "decision_log"))
    with log_path.open("wb") as log:
        job = subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=_environment(settings),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout_s
        while b"running" not in log_path.read_bytes():
            if job.poll() is not None:
                raise StackError(f"the pricing job exited (code {job.returncode}); see {log_path}\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise StackError(
                    f"the pricing job did not start within {timeout_s:.0f} s; see {log_path}\n{tail(log_path)}"
                )
            time.sleep(0.5)
        time.sleep(3)  # the sources take their partitions
        yield log_path
    finally:
        # The job's process group is ours alone (start_new_session): the Python driver and its JVM.
        for sig, wait_s in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
            if job.poll() is not None:
                break
            try:
                os.killpg(job.pid, sig)
            except ProcessLookupError:
                break
            try:
                job.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        with suppress(ProcessLookupError):  # a JVM child may outlive the driver in the same group
            os.killpg(job.pid, signal.SIGKILL)


def _plumbing(settings: Settings, repo: Path, model_dir: Path) -> _Plumbing:
    from pricewave.kafka_io import ensure_topics

    suffix = uuid.uuid4().hex[:8]
    roles = ("clicks", "competitor_prices", "reviews", "prices", "dlq")
    names = {role: f"pricewave-eval-{role.replace('_', '-')}-{suffix}" for role in roles}
    # One partition per topic: the watermark follows the simulator's order exactly.
    ensure_topics(settings, names.values(), partitions=1)
    topics = settings.topics.model_copy(update={**names, "partitions": 1})
    models = settings.models.model_copy(update={"model_dir": str(model_dir.resolve())})
    private = settings.model_copy(update={"topics": topics, "feature_repo": str(repo.resolve()), "models": models})
    return _Plumbing(private, list(names.values()))


def _delete_topics(settings: Settings, names: list[str]) -> None:
    from pricewave.kafka_io import make_admin

    admin = make_admin(settings)
    try:
        admin.delete_topics(names)
    except Exception:  # best effort: a leftover topic harms nothing
        pass
    finally:
        admin.close()


def evaluate_through_pipeline(
    scenario: Scenario | str | Path,
    settings: Settings,
    *,
    model: str | Path,
    seed: int = 0,
    events: int = 6000,
    rate: float = 100.0,
    tolerance: float = DEFAULT_TOLERANCE,
    feature_repo: str | Path | None = None,
    checkpoint_s: float = 1.0,
    job_start_timeout_s: float = 240.0,
    progress: bool = True,
) -> dict[str, Any]:
    """Price the closed-loop market with the real pipeline and compare with the in-process network run.

    Args:
        scenario: A scenario, a shipped name or a YAML path.
        settings: pricewave settings (the broker; topics, repo and model are overridden privately).
        model: The model directory (with ``LATEST``) or version directory the job serves.
        seed: The simulator seed of both runs.
        events: Messages the simulator sends through the pipeline.
        rate: Messages per wall-clock second (modest, so that the job's lag is a fraction of a window).
        tolerance: The agreement bound on the relative difference of the paired ratios.
        feature_repo: An already applied private feature repo copy (default: copy and apply one here).
        checkpoint_s: The job's checkpoint interval (prices become visible at each checkpoint).
        job_start_timeout_s: How long the job may take to start.
        progress: Show progress bars.

    Returns:
        The ``through_pipeline`` section of the report: both runs' figures, the relative difference,
        the tolerance and whether they agree.
    """
    from pricewave.evaluation.closed_loop import run_policy
    from pricewave.evaluation.policies import Pricer
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.pricing.artifact import load_artifact
    from pricewave.pricing.guardrails import GuardrailPolicy
    from pricewave.training import NO_FAULTS

    if events < 1000:
        raise ConfigError("--pipeline-events must be at least 1000 (a few simulated minutes of windows)")
    if rate <= 0:
        raise ConfigError("the pipeline rate must be > 0 messages per second")
    scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    model_dir = Path(model)
    artifact = load_artifact(model_dir, device="cpu")
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pricewave-eval-pipeline-"))
    plumbing: _Plumbing | None = None
    try:
        repo = Path(feature_repo) if feature_repo else _apply_feature_repo(work / "feature_repo", settings)
        plumbing = _plumbing(settings, repo, model_dir)
        private = plumbing.settings
        sim = _PairedSimulator(scenario, private, seed=seed, faults=NO_FAULTS, review_texts=["(review)"])
        FeatureWriter(open_store(private)).write("sku_catalog", sim.catalog_records())
        with _pricing_job(private, work, checkpoint_s=checkpoint_s, timeout_s=job_start_timeout_s) as job_log:
            # Until the job's first committed price reaches the shop (its Python workers start and
            # load the model on the first records), in short chunks; those minutes are not compared.
            warmup_deadline = time.monotonic() + job_start_timeout_s
            while sim.pricebook.received == 0 and time.monotonic() < warmup_deadline:
                sim.run_to_kafka(rate=rate, max_events=max(100, int(rate * 5)), closed_loop=True, progress=False)
            warmup_messages = sim.summary.messages
            summary = sim.run_to_kafka(rate=rate, max_events=events, closed_loop=True, progress=progress)
            job_log_tail = job_log.read_text(errors="replace")[-4000:]
    finally:
        if plumbing is not None:
            _delete_topics(settings, plumbing.topics)
        shutil.rmtree(work, ignore_errors=True)
    pipeline_s = time.monotonic() - started

    # The same simulated minutes in process: from the first re-pricing to the last whole minute.
    first_ms = (sim.market.start_ms // INTERVAL_MS + 1) * INTERVAL_MS
    steps = (summary.sim_end_ms - first_ms) // INTERVAL_MS
    end_ms = first_ms + steps * INTERVAL_MS
    first_shown: dict[str, float] = {}
    for t, _, _, source in sim.paired_views:
        first_shown.setdefault(source, round((t - sim.market.start_ms) / INTERVAL_MS, 2))
    priced = [view[0] for view in sim.paired_views if view[3] != "list"]
    if not priced:
        raise StackError(
            "no price from the pipeline reached the shop during the run (the job may have failed or started "
            f"too slowly: raise --pipeline-events); job log tail:\n{job_log_tail[-1500:]}"
        )
    # Compared from the first whole minute after the job's first price reached the shop: before
    # it the job was still starting (Python workers, model load), not pricing.
    compare_ms = max(first_ms, -(-priced[0] // INTERVAL_MS) * INTERVAL_MS)
    if end_ms - compare_ms < 2 * INTERVAL_MS:
        raise ConfigError("under 2 simulated minutes of pipeline prices to compare: raise --pipeline-events")
    window = [view for view in sim.paired_views if compare_ms <= view[0] < end_ms]
    pipe_shown, pipe_list = sum(v[1] for v in window), sum(v[2] for v in window)
    whole = [view for view in sim.paired_views if first_ms <= view[0] < end_ms]
    guardrails = GuardrailPolicy(
        min_margin=scenario.pricing.min_margin,
        ceiling_multiple=scenario.pricing.ceiling_ratio,
        max_model_age_s=365 * 86_400.0,
    )
    trace = run_policy(
        Pricer("network", guardrails, artifact=artifact), scenario, settings, seed=seed, warmup_events=0,
        interval_s=INTERVAL_MS // 1000, steps=int(steps), progress=progress,
    )  # fmt: skip
    compared_steps = [step for step in trace.steps if step["time_ms"] >= compare_ms]
    in_shown = sum(step["paired_shown"] for step in compared_steps)
    in_list = sum(step["paired_list"] for step in compared_steps)
    in_views = sum(step["views"] for step in compared_steps)
    in_margin = sum(step["margin"] for step in compared_steps)
    if pipe_list <= 0 or in_list <= 0:
        raise StackError("no views in the compared window: nothing to compare")
    ratio_pipeline, ratio_in_process = pipe_shown / pipe_list, in_shown / in_list
    signed = ratio_pipeline / ratio_in_process - 1
    difference = abs(signed)
    # What a pipeline that never reached the shop (list prices only, R = 1) would score.
    null_difference = abs(1 / ratio_in_process - 1)
    whole_pipeline = sum(v[1] for v in whole) / max(1e-9, sum(v[2] for v in whole))
    whole_in_process = trace.totals["paired_shown"] / max(1e-9, trace.totals["paired_list"])
    sources = {k: int(v) for k, v in summary.price_sources.items()}
    views = summary.views or 1
    return {
        "scenario": scenario.name,
        "seed": seed,
        "model_version": artifact.version,
        "metric": "paired expected-margin ratio R = Σ (p − cost)·P(buy | p) / Σ (list − cost)·P(buy | list) over "
        "the views of the compared simulated minutes, under the hidden demand model",
        "window": {
            "start_iso": _iso(compare_ms),
            "end_iso": _iso(end_ms),
            "minutes": int((end_ms - compare_ms) // INTERVAL_MS),
            "skipped_start_minutes": int((compare_ms - first_ms) // INTERVAL_MS),
        },
        # The same figures from the first re-pricing on, the job's start-up minutes included.
        "from_first_minute": {
            "minutes": int(steps),
            "pipeline_paired_ratio": round(whole_pipeline, 5),
            "in_process_paired_ratio": round(whole_in_process, 5),
            "relative_difference": round(abs(whole_pipeline / whole_in_process - 1), 5),
        },
        "pipeline": {
            "events": summary.messages,
            "warmup_messages": warmup_messages,
            "rate": rate,
            "checkpoint_interval_s": checkpoint_s,
            "views_compared": len(window),
            "paired_ratio": round(ratio_pipeline, 5),
            "paired_margin_vs_list": round(ratio_pipeline - 1, 5),
            "expected_margin_per_view": round(pipe_shown / max(1, len(window)), 4),
            # Realized figures of the whole run (purchase noise dominates over a few minutes).
            "realized_margin_whole_run": round(summary.margin, 2),
            "realized_margin_per_view_whole_run": round(summary.margin / views, 4),
            "views": summary.views,
            "price_sources": sources,
            "price_sources_compared": {k: sum(1 for v in window if v[3] == k) for k in sorted({v[3] for v in window})},
            "first_shown_minute": first_shown,
            "prices_received": summary.prices_received,
            "elapsed_s": round(pipeline_s, 1),
        },
        "in_process": {
            "interval_s": INTERVAL_MS // 1000,
            "views_compared": int(in_views),
            "paired_ratio": round(ratio_in_process, 5),
            "paired_margin_vs_list": round(ratio_in_process - 1, 5),
            "expected_margin_per_view": round(in_shown / max(1, in_views), 4),
            "realized_margin": round(in_margin, 2),
            "realized_margin_per_view": round(in_margin / max(1, in_views), 4),
        },
        "relative_difference": round(difference, 5),
        "signed_difference": round(signed, 5),
        "allowed_above": PERSONALIZATION_ALLOWANCE,
        "list_price_difference": round(null_difference, 5),
        "tolerance": tolerance,
        "agrees": -tolerance <= signed <= PERSONALIZATION_ALLOWANCE,
        "priced_by_pipeline": sources.get("sku", 0) + sources.get("offer", 0) > 0,
        "job_log_tail": job_log_tail,
    }


def _iso(ms: int) -> str:
    import pandas as pd

    return str(pd.Timestamp(ms, unit="ms", tz="UTC").isoformat())


def add_to_report(out_dir: str | Path, check: dict[str, Any]) -> dict[str, Any]:
    """Put ``check`` into ``out_dir/report.json`` under ``through_pipeline`` and a section into report.md."""
    import json

    out = Path(out_dir)
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    report["through_pipeline"] = check
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    pipe, local = check["pipeline"], check["in_process"]
    rows = [
        f"| {name} | {run['views_compared']:,} | {run['paired_margin_vs_list']:+.2%} | "
        f"{run['expected_margin_per_view']:.4f} |"
        for name, run in (("pipeline", pipe), ("in process", local))
    ]
    section = f"""
## The network through the real pipeline (Kafka + Flink + Feast)

{check["window"]["minutes"]} simulated minutes ({check["window"]["start_iso"]} to {check["window"]["end_iso"]}),
{pipe["events"]:,} messages at {pipe["rate"]:.0f}/s, checkpoints every {pipe["checkpoint_interval_s"]} s.

| run | views | paired margin vs list | expected margin / view |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Pipeline vs in process, paired ratios: {check["signed_difference"]:+.2%} (allowed −{check["tolerance"]:.1%} to
+{check["allowed_above"]:.0%}:
{"agrees" if check["agrees"] else "DOES NOT AGREE"}). Prices shown by source: {pipe["price_sources"]}.
"""
    with (out / "report.md").open("a") as md:
        md.write(section)
    return report
