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
4. **In process**: :func:`pricewave.evaluation.run_policy` with the network (sku prices only), the same
   scenario and seed, no warm-up and a 60 s re-pricing interval (the job's window slide), over the
   same simulated minutes.

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
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pricewave.config import HOLIDAYS_ENV, Settings, holidays_variable
from pricewave.errors import ConfigError, StackError
from pricewave.simulator.runner import RunSummary, Simulator
from pricewave.simulator.scenario import Scenario, load_scenario
from pricewave.stack.process import child_environment, tail

if TYPE_CHECKING:
    from pricewave.evaluation.closed_loop import RunTrace
    from pricewave.pricing.artifact import ModelArtifact

REPO_ROOT = Path(__file__).resolve().parents[2]
INTERVAL_MS = 60_000  # the job's window slide: it re-prices every sku once per simulated minute
DEFAULT_TOLERANCE = 0.015
"""How far R_pipeline / R_in_process − 1 may fall below 0 (R: the paired expected-margin ratio; docs/EVALUATION.md)."""
PERSONALIZATION_ALLOWANCE = 0.05
"""How far it may rise above 0: the pipeline's per-view offers can earn more than the in-process sku prices."""

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
    """``PRICEWAVE_*`` variables that make a fresh process load ``settings``' topics, repo, model and holidays."""
    env = child_environment()
    topics = settings.topics
    for role in topics.ROLES:
        env[f"PRICEWAVE_TOPICS__{role.upper()}"] = getattr(topics, role)
    env["PRICEWAVE_TOPICS__PARTITIONS"] = str(topics.partitions)
    env["PRICEWAVE_FEATURE_REPO"] = settings.feature_repo
    env["PRICEWAVE_MODELS__MODEL_DIR"] = settings.models.model_dir
    env[HOLIDAYS_ENV] = holidays_variable(settings)
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
    names = {role: f"pricewave-eval-{role.replace('_', '-')}-{suffix}" for role in settings.topics.ROLES}
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


@dataclass(frozen=True)
class _CheckPlan:
    """What the check's steps share: the market, the model, the caller's settings and the run's shape."""

    scenario: Scenario
    settings: Settings  # the caller's: the broker, and the in-process run's settings
    artifact: ModelArtifact
    seed: int
    events: int
    rate: float
    tolerance: float
    checkpoint_s: float
    job_start_timeout_s: float
    progress: bool


class _PipelineRun(NamedTuple):
    """What the market recorded while the pipeline priced it."""

    sim: _PairedSimulator
    summary: RunSummary
    warmup_messages: int  # sent before the job's first price reached the shop
    job_log_tail: str


class _Minutes(NamedTuple):
    """The simulated minutes of the comparison (epoch ms on minute boundaries)."""

    first_ms: int  # the first re-pricing: the in-process run starts here
    compare_ms: int  # the first whole minute after the pipeline's first price reached the shop
    end_ms: int  # the end of the last whole minute
    steps: int  # whole minutes from first_ms to end_ms: the in-process run's intervals

    def section(self) -> dict[str, Any]:
        return {
            "start_iso": _iso(self.compare_ms),
            "end_iso": _iso(self.end_ms),
            "minutes": int((self.end_ms - self.compare_ms) // INTERVAL_MS),
            "skipped_start_minutes": int((self.compare_ms - self.first_ms) // INTERVAL_MS),
        }


class _Paired(NamedTuple):
    """Σ expected margin at the shown and at the list prices over one run's compared views."""

    shown: float
    at_list: float
    views: float

    @property
    def ratio(self) -> float:
        return self.shown / self.at_list

    def figures(self) -> dict[str, Any]:
        return {
            "views_compared": int(self.views),
            "paired_ratio": round(self.ratio, 5),
            "paired_margin_vs_list": round(self.ratio - 1, 5),
            "expected_margin_per_view": round(self.shown / max(1, self.views), 4),
        }


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

    The steps of the module docstring: (1) the private plumbing, (2) the pricing job, (3) the
    market it prices (the plumbing goes once the job has stopped), (4) the same minutes in process,
    then the comparison of the paired expected-margin ratios.

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
    from pricewave.pricing.artifact import load_artifact

    if events < 1000:
        raise ConfigError("--pipeline-events must be at least 1000 (a few simulated minutes of windows)")
    if rate <= 0:
        raise ConfigError("the pipeline rate must be > 0 messages per second")
    plan = _CheckPlan(
        scenario=scenario if isinstance(scenario, Scenario) else load_scenario(scenario), settings=settings,
        artifact=load_artifact(Path(model), device="cpu"), seed=seed, events=events, rate=rate, tolerance=tolerance,
        checkpoint_s=checkpoint_s, job_start_timeout_s=job_start_timeout_s, progress=progress,
    )  # fmt: skip
    started = time.monotonic()
    # Undone in reverse: the job stops, then its topics go, then the work directory (the job's log, the repo).
    with (
        tempfile.TemporaryDirectory(prefix="pricewave-eval-pipeline-", ignore_cleanup_errors=True) as tmp,
        ExitStack() as cleanup,
    ):
        work = Path(tmp)
        private = _private_plumbing(cleanup, settings, work, feature_repo=feature_repo, model_dir=Path(model))
        sim = _market_with_catalog(plan, private)
        # The job prices with this market's holidays, as the in-process run does.
        market_calendar = private.model_copy(update={"holidays": sim.scenario.holiday_calendar()})
        job_log = cleanup.enter_context(
            _pricing_job(market_calendar, work, checkpoint_s=checkpoint_s, timeout_s=job_start_timeout_s)
        )
        run = _run_market(plan, sim, job_log)
    pipeline_s = time.monotonic() - started
    minutes = _compared_minutes(run)
    trace = _run_in_process(plan, minutes.steps)
    return _comparison(plan, run, trace, minutes, pipeline_s=pipeline_s)


def _private_plumbing(
    cleanup: ExitStack, settings: Settings, work: Path, *, feature_repo: str | Path | None, model_dir: Path
) -> Settings:
    """Step 1: settings with fresh topics (deleted when ``cleanup`` closes), an applied repo and the model."""
    repo = Path(feature_repo) if feature_repo else _apply_feature_repo(work / "feature_repo", settings)
    plumbing = _plumbing(settings, repo, model_dir)
    cleanup.callback(_delete_topics, settings, plumbing.topics)
    return plumbing.settings


def _market_with_catalog(plan: _CheckPlan, private: Settings) -> _PairedSimulator:
    """Step 1: the fault-free market on the private topics; its catalog goes to the online store the job reads."""
    from pricewave.feature_store import FeatureWriter, open_store
    from pricewave.training import NO_FAULTS

    sim = _PairedSimulator(plan.scenario, private, seed=plan.seed, faults=NO_FAULTS, review_texts=["(review)"])
    FeatureWriter(open_store(private)).write("sku_catalog", sim.catalog_records())
    return sim


def _run_market(plan: _CheckPlan, sim: _PairedSimulator, job_log: Path) -> _PipelineRun:
    """Step 3: the closed-loop market at ``plan.rate`` messages/s while the job prices it."""
    # Until the job's first committed price reaches the shop (its Python workers start and
    # load the model on the first records), in short chunks; those minutes are not compared.
    warmup_deadline = time.monotonic() + plan.job_start_timeout_s
    while sim.pricebook.received == 0 and time.monotonic() < warmup_deadline:
        sim.run_to_kafka(rate=plan.rate, max_events=max(100, int(plan.rate * 5)), closed_loop=True, progress=False)
    warmup_messages = sim.summary.messages
    summary = sim.run_to_kafka(rate=plan.rate, max_events=plan.events, closed_loop=True, progress=plan.progress)
    return _PipelineRun(sim, summary, warmup_messages, job_log.read_text(errors="replace")[-4000:])


def _compared_minutes(run: _PipelineRun) -> _Minutes:
    """The simulated minutes both runs cover, and from when the pipeline's prices are compared."""
    start_ms = run.sim.market.start_ms
    # The same simulated minutes in process: from the first re-pricing to the last whole minute.
    first_ms = (start_ms // INTERVAL_MS + 1) * INTERVAL_MS
    steps = (run.summary.sim_end_ms - first_ms) // INTERVAL_MS
    end_ms = first_ms + steps * INTERVAL_MS
    priced = [view[0] for view in run.sim.paired_views if view[3] != "list"]
    if not priced:
        raise StackError(
            "no price from the pipeline reached the shop during the run (the job may have failed or started "
            f"too slowly: raise --pipeline-events); job log tail:\n{run.job_log_tail[-1500:]}"
        )
    # Compared from the first whole minute after the job's first price reached the shop: before
    # it the job was still starting (Python workers, model load), not pricing.
    compare_ms = max(first_ms, -(-priced[0] // INTERVAL_MS) * INTERVAL_MS)
    if end_ms - compare_ms < 2 * INTERVAL_MS:
        raise ConfigError("under 2 simulated minutes of pipeline prices to compare: raise --pipeline-events")
    return _Minutes(first_ms, compare_ms, end_ms, steps)


def _run_in_process(plan: _CheckPlan, steps: int) -> RunTrace:
    """Step 4: the network in process, same scenario and seed, no warm-up, re-pricing every minute."""
    from pricewave.evaluation.closed_loop import run_policy
    from pricewave.evaluation.policies import Pricer
    from pricewave.pricing.guardrails import GuardrailPolicy

    guardrails = GuardrailPolicy(
        min_margin=plan.scenario.pricing.min_margin,
        ceiling_multiple=plan.scenario.pricing.ceiling_ratio,
        max_model_age_s=365 * 86_400.0,
    )
    # Sku prices only, the reference the tolerance band was set on: the in-process offers reach the next
    # view within a tick, the pipeline's within its lag, which a loaded machine stretches (docs/EVALUATION.md).
    return run_policy(
        Pricer("network", guardrails, artifact=plan.artifact), plan.scenario, plan.settings, seed=plan.seed,
        warmup_events=0, interval_s=INTERVAL_MS // 1000, steps=int(steps), progress=plan.progress, offers=False,
    )  # fmt: skip


def _comparison(
    plan: _CheckPlan, run: _PipelineRun, trace: RunTrace, minutes: _Minutes, *, pipeline_s: float
) -> dict[str, Any]:
    """Both runs' paired ratios over the compared minutes, and whether they agree (the check's report)."""
    window = [view for view in run.sim.paired_views if minutes.compare_ms <= view[0] < minutes.end_ms]
    pipeline = _Paired(sum(v[1] for v in window), sum(v[2] for v in window), len(window))
    compared_steps = [step for step in trace.steps if step["time_ms"] >= minutes.compare_ms]
    in_process = _Paired(
        sum(step["paired_shown"] for step in compared_steps),
        sum(step["paired_list"] for step in compared_steps),
        sum(step["views"] for step in compared_steps),
    )
    in_margin = sum(step["margin"] for step in compared_steps)
    if pipeline.at_list <= 0 or in_process.at_list <= 0:
        raise StackError("no views in the compared window: nothing to compare")
    signed = pipeline.ratio / in_process.ratio - 1
    pipeline_section = _pipeline_section(plan, run, window, pipeline, pipeline_s=pipeline_s)
    sources = pipeline_section["price_sources"]
    return {
        "scenario": plan.scenario.name,
        "seed": plan.seed,
        "model_version": plan.artifact.version,
        "metric": "paired expected-margin ratio R = Σ (p − cost)·P(buy | p) / Σ (list − cost)·P(buy | list) over "
        "the views of the compared simulated minutes, under the hidden demand model",
        "window": minutes.section(),
        # The same figures from the first re-pricing on, the job's start-up minutes included.
        "from_first_minute": _from_first_minute(run, trace, minutes),
        "pipeline": pipeline_section,
        "in_process": {
            "interval_s": INTERVAL_MS // 1000,
            **in_process.figures(),
            "realized_margin": round(in_margin, 2),
            "realized_margin_per_view": round(in_margin / max(1, in_process.views), 4),
        },
        "relative_difference": round(abs(signed), 5),
        "signed_difference": round(signed, 5),
        "allowed_above": PERSONALIZATION_ALLOWANCE,
        # What a pipeline that never reached the shop (list prices only, R = 1) would score.
        "list_price_difference": round(abs(1 / in_process.ratio - 1), 5),
        "tolerance": plan.tolerance,
        "agrees": -plan.tolerance <= signed <= PERSONALIZATION_ALLOWANCE,
        "priced_by_pipeline": sources.get("sku", 0) + sources.get("offer", 0) > 0,
        "job_log_tail": run.job_log_tail,
    }


def _from_first_minute(run: _PipelineRun, trace: RunTrace, minutes: _Minutes) -> dict[str, Any]:
    whole = [view for view in run.sim.paired_views if minutes.first_ms <= view[0] < minutes.end_ms]
    whole_pipeline = sum(v[1] for v in whole) / max(1e-9, sum(v[2] for v in whole))
    whole_in_process = trace.totals["paired_shown"] / max(1e-9, trace.totals["paired_list"])
    return {
        "minutes": int(minutes.steps),
        "pipeline_paired_ratio": round(whole_pipeline, 5),
        "in_process_paired_ratio": round(whole_in_process, 5),
        "relative_difference": round(abs(whole_pipeline / whole_in_process - 1), 5),
    }


def _pipeline_section(
    plan: _CheckPlan,
    run: _PipelineRun,
    window: list[tuple[int, float, float, str]],
    compared: _Paired,
    *,
    pipeline_s: float,
) -> dict[str, Any]:
    """The pipeline run's figures: the compared views' paired figures and the whole run's."""
    summary = run.summary
    first_shown: dict[str, float] = {}
    for t, _, _, source in run.sim.paired_views:
        first_shown.setdefault(source, round((t - run.sim.market.start_ms) / INTERVAL_MS, 2))
    return {
        "events": summary.messages,
        "warmup_messages": run.warmup_messages,
        "rate": plan.rate,
        "checkpoint_interval_s": plan.checkpoint_s,
        **compared.figures(),
        # Realized figures of the whole run (purchase noise dominates over a few minutes).
        "realized_margin_whole_run": round(summary.margin, 2),
        "realized_margin_per_view_whole_run": round(summary.margin / (summary.views or 1), 4),
        "views": summary.views,
        "price_sources": {k: int(v) for k, v in summary.price_sources.items()},
        "price_sources_compared": {k: sum(1 for v in window if v[3] == k) for k in sorted({v[3] for v in window})},
        "first_shown_minute": first_shown,
        "prices_received": summary.prices_received,
        "elapsed_s": round(pipeline_s, 1),
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
