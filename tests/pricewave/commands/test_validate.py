"""``pricewave validate`` run as a user runs it: the installed console script in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pricewave.schemas import load_schema

PRICEWAVE = Path(sys.executable).parent / "pricewave"
REVIEW = load_schema("review").json["examples"][0]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PRICEWAVE), "validate", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_all_valid_exits_0(tmp_path: Path) -> None:
    examples = load_schema("review").json["examples"]
    path = write_lines(tmp_path / "reviews.jsonl", [json.dumps(e).encode() for e in examples])
    result = run("--schema", "review", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(
        f"{len(examples)} events, {len(examples)} valid, 0 invalid (schema review v1)"
    )


def test_invalid_lines_are_reported_with_reasons_and_exit_1(tmp_path: Path) -> None:
    lines = [
        json.dumps(REVIEW).encode(),
        json.dumps({**REVIEW, "rating": 9}).encode(),
        b"",
        b"{not json",
        b'{"review_id": "\xff"}',
    ]
    result = run("--schema", "review", str(write_lines(tmp_path / "mixed.jsonl", lines)))
    assert result.returncode == 1
    out = result.stdout.splitlines()
    assert out[0] == "line 2: out_of_range: rating=9 must be <= 5"
    assert out[1].startswith("line 4: bad_json: ")
    assert out[2] == "line 5: bad_encoding: invalid UTF-8 at byte 15"
    assert out[3].endswith("4 events, 1 valid, 3 invalid (schema review v1)")


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [b"[]"])
    result = run("--schema", "review", "--quiet", str(path))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{path}: 1 events, 0 valid, 1 invalid (schema review v1)"]


def test_stdin(tmp_path: Path) -> None:
    result = run("--schema", "review", "-", stdin=json.dumps(REVIEW).encode() + b"\n")
    assert result.returncode == 0
    assert "1 valid, 0 invalid" in result.stdout


def test_now_ms_sets_the_clock_for_future_timestamps(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", [json.dumps(REVIEW).encode()])
    result = run("--schema", "review", "--now-ms", "946684800000", str(path))
    assert result.returncode == 1
    assert "bad_timestamp: event_time=" in result.stdout and "more than 1 day in the future" in result.stdout


def test_missing_file_is_one_line_error(tmp_path: Path) -> None:
    result = run("--schema", "review", str(tmp_path / "nope.jsonl"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"pricewave: error: input file {tmp_path / 'nope.jsonl'} does not exist"
    ]
    assert result.stdout == ""


def test_unknown_schema_is_one_line_error(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", [b"{}"])
    result = run("--schema", "nope", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pricewave: error: unknown schema 'nope'")
    assert "click_event" in lines[0]


def test_help_explains_the_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "JSON-lines" in text and "'-' for stdin" in text
    assert "0 all lines valid, 1 some line invalid" in text


def test_missing_schema_option_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "x.jsonl"))
    assert result.returncode == 2
    assert "--schema" in result.stderr
