"""Reconcile the decision log with the committed ``prices`` topic, and keep the decision log bounded.

The pricing job writes every decision twice: to the ``prices`` topic in Kafka transactions that
commit on checkpoints (exactly-once), and to the decision log, JSON-lines part files that Flink's
filesystem sink commits on the same checkpoints. Both should hold the same publishable decisions.
They can part ways silently: when a transaction stays open longer than its transaction timeout (a
broker outage, a commit after a slow recovery), the broker aborts it, and Flink's Kafka committer
logs "... most likely signals data loss ..." and moves on, while the decision log keeps the rows.
:func:`reconcile` finds those decisions.

The decision log grows with every decision; :func:`prune_decision_log` enforces a size and an age
cap on its committed part files (oldest first), never touching the files Flink still writes.

Example:
    >>> rows = [{"decision_id": "a", "price": 9.5}, {"decision_id": "b", "price": 9.0}]
    >>> result = reconcile(rows, {"a": 1})
    >>> result.missing, result.ok
    (['b'], False)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricewave.config import Settings

# The guardrail the pricers set on a decision that failed its own schema: logged, never published.
UNPUBLISHED_GUARDRAIL_PREFIX = "invalid_decision"


def is_part_file(path: Path) -> bool:
    """Whether ``path`` is a committed part file of the decision log.

    Flink's filesystem sink writes in-progress and pending files with a leading dot and renames
    them on the checkpoint that commits them.
    """
    return path.is_file() and not path.name.startswith(".")


def part_files(directory: Path) -> list[Path]:
    """The committed part files under ``directory``, oldest first (modification time, then name)."""
    if not directory.is_dir():
        return []
    files = [path for path in directory.rglob("*") if is_part_file(path)]
    return sorted(files, key=lambda path: (path.stat().st_mtime, str(path)))


@dataclass
class DecisionLog:
    """The rows of the decision log's committed part files."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    bad_lines: int = 0


def read_decision_log(directory: Path) -> DecisionLog:
    """Every row of the committed part files under ``directory``; unreadable lines are counted."""
    log = DecisionLog()
    for path in part_files(directory):
        log.files += 1
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                log.bad_lines += 1
                continue
            if isinstance(row, dict) and row.get("decision_id"):
                log.rows.append(row)
            else:
                log.bad_lines += 1
    return log


def is_publishable(row: Mapping[str, Any]) -> bool:
    """Whether the job publishes this logged decision to ``prices`` (it has a price and a valid record)."""
    if row.get("price") is None:
        return False
    return not str(row.get("guardrail") or "").startswith(UNPUBLISHED_GUARDRAIL_PREFIX)


@dataclass(frozen=True)
class Reconciliation:
    """The decision log against the committed ``prices`` topic.

    Attributes:
        logged: Publishable decisions in the decision log (distinct ids, within the cut-off).
        published: Distinct decision ids in the topic (read_committed).
        missing: Logged ids absent from the topic, sorted: lost decisions.
        duplicated: Ids committed more than once.
        unlogged: Published ids absent from the log (a pruned log, or another job's output).
        skipped_recent: Logged rows left out because they are newer than the cut-off.
    """

    logged: int
    published: int
    missing: list[str]
    duplicated: int
    unlogged: int
    skipped_recent: int = 0

    @property
    def ok(self) -> bool:
        """No logged decision is missing from the topic and none was committed twice."""
        return not self.missing and not self.duplicated

    def summary(self, topic: str = "prices") -> str:
        """One line: the verdict with its counts."""
        if self.missing:
            examples = ", ".join(self.missing[:3])
            head = (
                f"LOST: {len(self.missing)} of {self.logged} logged decisions are missing from the committed "
                f"'{topic}' topic (e.g. {examples}): a transaction was aborted after its checkpoint "
                "(broker outage or recovery longer than the transaction timeout)"
            )
        elif self.duplicated:
            head = f"DUPLICATED: {self.duplicated} decisions are committed more than once in '{topic}'"
        else:
            head = f"ok: all {self.logged} logged decisions are committed in '{topic}'"
        tail = f"; {self.published} published, {self.unlogged} not in the log"
        if self.duplicated and self.missing:
            tail += f", {self.duplicated} committed twice"
        if self.skipped_recent:
            tail += f", {self.skipped_recent} newer than the cut-off not checked"
        return head + tail


def reconcile(
    rows: Iterable[Mapping[str, Any]], published: Mapping[str, int], *, before_ms: int | None = None
) -> Reconciliation:
    """Compare logged decisions with the ids committed to the topic.

    Args:
        rows: Decision log rows (``decision_id``, ``price``, ``guardrail``, ``decision_time``).
        published: How often each decision id is committed in the topic.
        before_ms: Check only rows decided before this epoch-millisecond time (rows of the latest
            checkpoint may be in the log a moment before their transaction commits).

    Returns:
        The reconciliation.
    """
    logged: set[str] = set()
    skipped = 0
    for row in rows:
        if not is_publishable(row):
            continue
        decided = row.get("decision_time")
        if before_ms is not None and isinstance(decided, int | float) and decided >= before_ms:
            skipped += 1
            continue
        logged.add(str(row["decision_id"]))
    present = {key for key, count in published.items() if count > 0}
    return Reconciliation(
        logged=len(logged),
        published=len(present),
        missing=sorted(logged - present),
        duplicated=sum(1 for count in published.values() if count > 1),
        unlogged=len(present - logged),
        skipped_recent=skipped,
    )


def committed_decision_ids(settings: Settings, topic: str, *, timeout_s: float = 120.0) -> Counter[str]:
    """How often each decision id is committed in ``topic`` (read_committed, up to its last stable offset).

    Raises:
        StackError: The broker does not answer (from the consumer factory).
        TimeoutError: The topic could not be read to its end within ``timeout_s``.
    """
    from pricewave.kafka_io import read_topic_values

    counts: Counter[str] = Counter()
    for value in read_topic_values(settings, topic, timeout_s=timeout_s):
        decision_id = _decision_id(value)
        if decision_id is not None:
            counts[decision_id] += 1
    return counts


def _decision_id(value: bytes | None) -> str | None:
    try:
        decision = json.loads(value or b"")
    except ValueError:
        return None
    return str(decision["decision_id"]) if isinstance(decision, dict) and decision.get("decision_id") else None


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune_decision_log` deleted and kept."""

    deleted_files: int
    deleted_bytes: int
    kept_files: int
    kept_bytes: int

    def summary(self) -> str:
        """One line with the counts."""
        return (
            f"pruned {self.deleted_files} part files ({self.deleted_bytes:,} bytes); kept {self.kept_files} "
            f"({self.kept_bytes:,} bytes)"
        )


def prune_decision_log(
    directory: Path, *, max_bytes: int | None = None, max_age_s: float | None = None, now_s: float | None = None
) -> PruneResult:
    """Delete committed part files, oldest first, until the log is within both caps.

    In-progress and pending files (leading dot) belong to the running job and are never touched
    nor counted: the job rolls them over (``sink.rolling-policy.*``) into part files.

    Args:
        directory: The decision log directory.
        max_bytes: Keep at most this many bytes of committed part files (None: no size cap).
        max_age_s: Delete part files last modified longer ago than this (None: no age cap).
        now_s: The current time (epoch seconds; default the clock).
    """
    now = time.time() if now_s is None else now_s
    files = [(path, path.stat()) for path in part_files(directory)]
    total = sum(stat.st_size for _, stat in files)
    deleted = deleted_bytes = 0
    kept: list[tuple[Path, int]] = []
    for path, stat in files:  # oldest first
        too_old = max_age_s is not None and now - stat.st_mtime > max_age_s
        too_big = max_bytes is not None and total > max_bytes
        if too_old or too_big:
            path.unlink(missing_ok=True)
            deleted += 1
            deleted_bytes += stat.st_size
            total -= stat.st_size
        else:
            kept.append((path, stat.st_size))
    return PruneResult(deleted, deleted_bytes, len(kept), sum(size for _, size in kept))
