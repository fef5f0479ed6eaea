"""The decision-log audit: reconciliation with the prices topic and the retention caps."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from pricewave.audit import (
    is_publishable,
    prune_decision_log,
    read_decision_log,
    reconcile,
)
from pricewave.cli import main
from pricewave.config import Settings


def _row(decision_id: str, *, price: float | None = 9.5, guardrail: str = "none", at_ms: int = 1_000) -> dict[str, Any]:
    return {"decision_id": decision_id, "price": price, "guardrail": guardrail, "decision_time": at_ms}


def _write_part(directory: Path, name: str, rows: list[dict[str, Any]], *, mtime: float | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_reconcile_names_logged_decisions_missing_from_the_topic() -> None:
    rows = [_row("a"), _row("b"), _row("c"), _row("c")]
    result = reconcile(rows, {"a": 1, "z": 1})
    assert result.missing == ["b", "c"]
    assert (result.logged, result.published, result.unlogged, result.duplicated) == (3, 2, 1, 0)
    assert not result.ok
    line = result.summary("prices-x")
    assert line.startswith("LOST: 2 of 3 logged decisions are missing from the committed 'prices-x' topic")
    assert "\n" not in line


def test_reconcile_passes_when_every_publishable_decision_is_committed() -> None:
    rows = [_row("a"), _row("b", price=None), _row("c", guardrail="invalid_decision: price_above_max")]
    assert not is_publishable(rows[1]) and not is_publishable(rows[2])
    result = reconcile(rows, {"a": 1})
    assert result.ok and result.missing == [] and result.logged == 1
    assert result.summary().startswith("ok: all 1 logged decisions are committed in 'prices'")


def test_reconcile_reports_duplicates_and_skips_rows_after_the_cut_off() -> None:
    rows = [_row("a", at_ms=1_000), _row("b", at_ms=5_000)]
    result = reconcile(rows, {"a": 2}, before_ms=2_000)
    assert result.missing == [] and result.skipped_recent == 1
    assert result.duplicated == 1 and not result.ok
    assert result.summary().startswith("DUPLICATED: 1 decisions")


def test_the_log_reader_ignores_in_progress_files_and_counts_bad_lines(tmp_path: Path) -> None:
    _write_part(tmp_path, "part-1-0-0", [_row("a"), _row("b")])
    _write_part(tmp_path, ".part-1-0-1.inprogress.abc", [_row("c")])
    (tmp_path / "part-1-0-2").write_text('{"decision_id": "d", "price": 1}\n{"truncated\n')
    log = read_decision_log(tmp_path)
    assert sorted(row["decision_id"] for row in log.rows) == ["a", "b", "d"]
    assert (log.files, log.bad_lines) == (2, 1)
    assert read_decision_log(tmp_path / "absent").rows == []


def test_prune_deletes_oldest_part_files_beyond_the_size_cap_and_keeps_in_progress_ones(tmp_path: Path) -> None:
    rows = [_row(f"id-{i}") for i in range(20)]
    paths = [_write_part(tmp_path, f"part-x-0-{i}", rows, mtime=1_000_000 + i) for i in range(4)]
    in_progress = _write_part(tmp_path, ".part-x-0-4.inprogress.1", rows, mtime=900_000)
    size = paths[0].stat().st_size
    result = prune_decision_log(tmp_path, max_bytes=2 * size, now_s=1_000_010)
    assert (result.deleted_files, result.kept_files) == (2, 2)
    assert (result.deleted_bytes, result.kept_bytes) == (2 * size, 2 * size)
    assert [p.exists() for p in paths] == [False, False, True, True]
    assert in_progress.exists()
    assert "pruned 2 part files" in result.summary()


def test_prune_deletes_part_files_older_than_the_age_cap(tmp_path: Path) -> None:
    old = _write_part(tmp_path, "part-a", [_row("a")], mtime=1_000)
    new = _write_part(tmp_path, "part-b", [_row("b")], mtime=9_000)
    result = prune_decision_log(tmp_path, max_age_s=3_600, now_s=10_000)
    assert (result.deleted_files, old.exists(), new.exists()) == (1, False, True)


def test_audit_prune_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(3):
        _write_part(tmp_path, f"part-{i}", [_row(f"id-{i}")] * 100, mtime=1_000 + i)
    assert main(["audit", "prune", "--decision-log-dir", str(tmp_path), "--max-mb", "0"]) == 0
    assert "pruned 3 part files" in capsys.readouterr().out
    assert main(["audit", "prune", "--decision-log-dir", str(tmp_path)]) == 2
    assert "prune needs --max-mb and/or --max-age-h" in capsys.readouterr().err


@pytest.mark.integration
def test_audit_reconcile_command_exits_1_naming_the_lost_decisions(
    kafka_stack: Settings, fresh_topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    from pricewave.kafka_io import make_producer

    run = uuid.uuid4().hex[:8]
    ids = [f"audit-{run}-{i}" for i in range(5)]
    producer = make_producer(kafka_stack)
    try:
        for decision_id in ids[:3]:
            producer.send(fresh_topic, json.dumps({"decision_id": decision_id, "price": 9.5}).encode())
        producer.flush()
    finally:
        producer.close()
    _write_part(tmp_path, "part-0", [_row(decision_id) for decision_id in ids])
    argv = ["audit", "reconcile", "--decision-log-dir", str(tmp_path), "--topic", fresh_topic, "--grace", "0"]
    assert main([*argv, "--show", "5"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"audit: LOST: 2 of 5 logged decisions are missing from the committed '{fresh_topic}'")
    assert out[1:] == [f"missing {ids[3]}", f"missing {ids[4]}"]
    _write_part(tmp_path, "part-0", [_row(decision_id) for decision_id in ids[:3]])
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith(f"audit: ok: all 3 logged decisions are committed in '{fresh_topic}'")
