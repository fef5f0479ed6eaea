"""The job's knobs: :class:`JobOptions` and the command line of ``jobs/pricing_job.py`` that sets them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from pricewave.config import Settings, load_settings
from pricewave.errors import ConfigError
from pricewave.feature_views.shopper_profile import DEFAULT_HORIZON_S
from pricewave.schemas import DEFAULT_INPUT_CLOCK_SKEW_S, MAX_FUTURE_SKEW_MS

PYTHON_WORKER_MODES = ("loopback", "process")


@dataclass(frozen=True)
class JobOptions:
    """Knobs of the pricing job (the CLI flags of ``jobs/pricing_job.py``)."""

    group_id: str = "pricewave-pricing"
    starting_offsets: str = "group-offsets"  # or earliest-offset / latest-offset
    out_of_orderness_s: float = 5.0
    # An input event time further ahead of the job's clock gets no rowtime (it cannot move the
    # watermark) and is dead-lettered as bad_timestamp: a producer whose clock runs ahead would
    # otherwise make every other record late. The schemas allow a day (their contract for any record).
    max_clock_skew_s: float = DEFAULT_INPUT_CLOCK_SKEW_S
    # An input event time further ahead of its own Kafka record timestamp (the producer's create
    # time, kept in the log, so a replay judges it the same) gets no rowtime either and is
    # dead-lettered as bad_timestamp: one record from a clock running minutes ahead cannot move its
    # partition's watermark and make the on-time traffic after it late.
    max_record_skew_s: float = 60.0
    # Live runs only: a source with no records for this long stops holding the watermark back (an
    # empty partition would stall every window otherwise). Bounded runs ignore it (source_idle_timeout_s).
    idle_timeout_s: float = 5.0
    checkpoint_interval_s: float = 5.0
    window_slide_s: int = 60
    # A session is the user's clicks in the last 30 minutes (user_session TTL in the feature repo).
    session_gap_s: int = 1800
    # A shopper's profile (revealed price response) counts their clicks of the last 7 days: the
    # retention limit of its keyed state (shopper_profile TTL in the feature repo).
    shopper_horizon_s: int = DEFAULT_HORIZON_S
    short_horizon_s: int = 300
    long_horizon_s: int = 3600
    # A replayed duplicate carries its original's event time, so any window catches it (one that
    # arrives after the window fired is behind the watermark: dead-lettered as late). The window is
    # one millisecond: a click leaves it as soon as the watermark reaches its own time, before that
    # watermark goes on. A longer window held clicks back past later clicks' times, and at
    # parallelism > 1 another dedup subtask's watermark could then let the user's session window fire
    # a later click first and silently drop the held one as late (a timing-dependent lost offer).
    dedup_window_s: float = 0.001
    parallelism: int | None = None  # None: the cluster's / `flink run -p` default
    # 'exponential-delay' in production; tests use 'none' so that a failure surfaces at once.
    restart_strategy: str = "exponential-delay"
    # Bounded runs (tests, backfills) stop at the offsets that were latest when the job started.
    bounded: bool = False
    # 'on-periodic' (default) or 'on-event': emit a watermark after every record (exact lateness).
    watermark_emit_strategy: str = "on-periodic"
    # Empty: "<group_id>-prices", so two jobs on one broker never fence each other's transactions.
    transactional_id_prefix: str = ""
    # Above checkpoint interval + restart delay, below the broker's transaction.max.timeout.ms.
    transaction_timeout_s: int = 900
    # Where the decision log's JSON-lines part files go (default: <state>/decision_log).
    decision_log_dir: str = ""
    # A part file rolls over (is committed, on the next checkpoint) at this size or age; JSON part
    # files do not roll on checkpoints. `pricewave audit prune` caps the total size and age.
    decision_log_file_mb: int = 64
    decision_log_rollover_s: float = 60.0
    # Where checkpoints go when the cluster names no place (default: <state>/flink/checkpoints).
    # Give it its own filesystem, apart from the decision log: a full disk then fails checkpoints
    # (tolerated below) instead of the decision log's writes.
    checkpoint_dir: str = ""
    # Consecutive failed checkpoints (a full checkpoint disk, an expired checkpoint) the job keeps
    # running through; one more fails it (restart from the last completed one). Pending prices
    # commit with the next completed checkpoint, so interval x (n + 1) must stay well below the
    # transaction timeout (validate): an older transaction is aborted by the broker and lost.
    tolerable_failed_checkpoints: int = 60
    # Python execution tuned for latency: a bundle is flushed after 1,000 rows or 100 ms, so a
    # record waits at most ~0.1 s for its batch instead of the 1 s default; Arrow batches of up
    # to 1,000 rows keep the vectorized UDFs efficient at the throughput we target.
    bundle_size: int = 1000
    bundle_time_ms: int = 100
    arrow_batch_size: int = 1000
    # Latency between operators: how often the sources emit a watermark, and how long a network
    # buffer that is not full waits before it is sent. A price crosses about six exchanges and waits
    # for a watermark at each window and temporal join: Flink's defaults (200 ms, 100 ms) add up to
    # most of a second at live rates, where buffers rarely fill (BENCHMARKS.md, latency).
    watermark_interval_ms: int = 50
    buffer_timeout_ms: int = 10
    # Embedded runs only (a cluster always starts worker processes): 'loopback' runs the Python
    # workers as threads of this process, sharing its interpreter and GIL; 'process' starts worker
    # processes that use every core (more throughput, fewer GIL waits; BENCHMARKS.md F8).
    python_workers: str = "loopback"
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def source_idle_timeout_s(self) -> float | None:
        """The idle timeout the sources get: none in a bounded run, which never needs one.

        A bounded source ends at its stopping offsets (an empty partition at once), so nothing can
        stall. Idleness, on the other hand, makes results depend on timing: during a broker outage
        longer than the timeout every source goes idle, and a two-input operator whose other input
        has already ended (at the final watermark) jumps to it. Measured (RELIABILITY.md §1, "Idle sources"):
        clicks that arrived after such a jump waited in the temporal join for a watermark that never
        came, and 5,923 of 12,874 offers were lost without an error.
        """
        return None if self.bounded else self.idle_timeout_s

    def validate(self) -> None:
        """Raise ConfigError for impossible settings."""
        if self.starting_offsets not in ("group-offsets", "earliest-offset", "latest-offset"):
            raise ConfigError(
                f"--starting-offsets must be group-offsets, earliest-offset or latest-offset, "
                f"not {self.starting_offsets!r}"
            )
        if not 0 < self.short_horizon_s <= self.long_horizon_s:
            raise ConfigError("windows: need 0 < short horizon <= long horizon")
        if self.long_horizon_s % self.window_slide_s or self.short_horizon_s % self.window_slide_s:
            raise ConfigError("windows: each horizon must be a whole number of slides")
        if self.shopper_horizon_s <= 0:
            raise ConfigError(f"--shopper-horizon must be > 0 seconds, not {self.shopper_horizon_s}")
        if self.out_of_orderness_s < 0 or self.idle_timeout_s <= 0 or self.checkpoint_interval_s <= 0:
            raise ConfigError("out-of-orderness must be >= 0, idle timeout and checkpoint interval > 0")
        if not 0 < self.max_clock_skew_s <= MAX_FUTURE_SKEW_MS / 1000:
            raise ConfigError(f"--max-clock-skew must be in (0, {MAX_FUTURE_SKEW_MS // 1000}] seconds")
        if not 0 < self.max_record_skew_s <= MAX_FUTURE_SKEW_MS / 1000:
            raise ConfigError(f"--max-record-skew must be in (0, {MAX_FUTURE_SKEW_MS // 1000}] seconds")
        if self.watermark_interval_ms <= 0 or self.buffer_timeout_ms < 0:
            raise ConfigError("--watermark-interval must be > 0 ms and --buffer-timeout >= 0 ms")
        if self.python_workers not in PYTHON_WORKER_MODES:
            raise ConfigError(f"--python-workers must be loopback or process, not {self.python_workers!r}")
        if self.tolerable_failed_checkpoints < 0 or self.decision_log_file_mb <= 0 or self.decision_log_rollover_s <= 0:
            raise ConfigError("--tolerable-failed-checkpoints must be >= 0, decision log file size and rollover > 0")
        if self.checkpoint_interval_s * (self.tolerable_failed_checkpoints + 1) >= self.transaction_timeout_s:
            raise ConfigError(
                f"checkpoint interval {self.checkpoint_interval_s:g} s x (tolerable failed checkpoints "
                f"{self.tolerable_failed_checkpoints} + 1) must stay below the transaction timeout "
                f"{self.transaction_timeout_s} s: the broker would abort prices waiting for a checkpoint"
            )


def parse_args(argv: Sequence[str] | None) -> tuple[Settings, JobOptions, float, str | None]:
    """Settings, options and the run duration (0 = until cancelled) from the command line."""
    defaults = JobOptions()
    parser = argparse.ArgumentParser(
        prog="pricing_job.py",
        description="The pricewave streaming pricing job (PyFlink). Settings come from --config / "
        "PRICEWAVE_* like every pricewave command.",
    )
    parser.add_argument("--config", metavar="FILE", help="pricewave settings YAML")
    parser.add_argument("--group-id", default=defaults.group_id)
    parser.add_argument(
        "--starting-offsets",
        default=defaults.starting_offsets,
        choices=["group-offsets", "earliest-offset", "latest-offset"],
    )
    parser.add_argument(
        "--out-of-orderness", dest="out_of_orderness_s", type=float, default=defaults.out_of_orderness_s, metavar="S"
    )
    parser.add_argument(
        "--max-clock-skew",
        dest="max_clock_skew_s",
        type=float,
        default=defaults.max_clock_skew_s,
        metavar="S",
        help="input event times more than S seconds ahead of the job's clock are dead-lettered as "
        "bad_timestamp instead of moving the watermark (default 300)",
    )
    parser.add_argument(
        "--max-record-skew",
        dest="max_record_skew_s",
        type=float,
        default=defaults.max_record_skew_s,
        metavar="S",
        help="input event times more than S seconds ahead of their Kafka record timestamp are "
        "dead-lettered as bad_timestamp instead of moving the watermark (default 60)",
    )
    parser.add_argument(
        "--idle-timeout",
        dest="idle_timeout_s",
        type=float,
        default=defaults.idle_timeout_s,
        metavar="S",
        help="live runs: a source without records for S seconds stops holding the watermark back "
        "(default 5). Prices after an outage longer than S can differ from a run without one; "
        "raise it above the longest broker outage you need reproducible prices through. "
        "--bounded runs never mark a source idle",
    )
    parser.add_argument(
        "--checkpoint-interval",
        dest="checkpoint_interval_s",
        type=float,
        default=defaults.checkpoint_interval_s,
        metavar="S",
    )
    parser.add_argument("--checkpoint-dir", metavar="DIR", default="", help="default: <state>/flink/checkpoints")
    parser.add_argument(
        "--tolerable-failed-checkpoints",
        type=int,
        default=defaults.tolerable_failed_checkpoints,
        metavar="N",
        help="consecutive checkpoint failures (e.g. a full checkpoint disk) the job runs through (default 60)",
    )
    parser.add_argument(
        "--watermark-interval",
        dest="watermark_interval_ms",
        type=int,
        default=defaults.watermark_interval_ms,
        metavar="MS",
        help=f"how often the sources emit a watermark (default {defaults.watermark_interval_ms} ms; Flink's is 200)",
    )
    parser.add_argument(
        "--buffer-timeout",
        dest="buffer_timeout_ms",
        type=int,
        default=defaults.buffer_timeout_ms,
        metavar="MS",
        help=f"longest wait of a network buffer that is not full (default {defaults.buffer_timeout_ms} ms; "
        "Flink's is 100; 0 sends every record at once, at a cost in throughput)",
    )
    parser.add_argument(
        "--shopper-horizon",
        dest="shopper_horizon_s",
        type=int,
        default=defaults.shopper_horizon_s,
        metavar="S",
        help="how far back a shopper's profile (their revealed price response) reaches, in seconds: the "
        "retention of its keyed state (default 604800, 7 days)",
    )
    parser.add_argument("--parallelism", type=int, default=None, help="default: flink run -p, else 1")
    parser.add_argument("--bounded", action="store_true", help="stop at the offsets that are latest at start")
    parser.add_argument("--decision-log-dir", metavar="DIR", default="", help="default: <state>/decision_log")
    parser.add_argument("--duration", type=float, default=0.0, help="cancel after S seconds (embedded runs)")
    parser.add_argument(
        "--python-workers",
        choices=PYTHON_WORKER_MODES,
        default=defaults.python_workers,
        help="embedded runs: Python UDF workers as threads of this process (loopback, default) or as "
        "separate processes that use every core (process); a cluster always uses processes",
    )
    parser.add_argument(
        "--compiled-plan",
        metavar="FILE",
        help="run the SQL as a compiled plan: written to FILE on the first run and executed from FILE "
        "afterwards, so operator identities (and the state in savepoints) survive upgrades of the code",
    )
    args = parser.parse_args(argv)
    settings = load_settings(args.config)
    # Each option's flag stores under the JobOptions field it sets: the rest keep their defaults.
    options = JobOptions(
        **{option.name: getattr(args, option.name) for option in fields(JobOptions) if option.name in args}
    )
    options.validate()
    return settings, options, args.duration, args.compiled_plan
