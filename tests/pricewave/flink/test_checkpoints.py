"""``pricewave submit --from-checkpoint``: which retained checkpoint a resubmitted job resumes from.

Pure file-system tests (no cluster): the checkpoint layout is Flink's, ``<root>/<job id>/chk-N``
with a ``_metadata`` file once the checkpoint is complete (next to ``shared/`` and ``taskowned/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pricewave import cli
from pricewave.config import load_settings
from pricewave.flink import JobError, latest_checkpoint, resolve_checkpoint

JOB_A = "a" * 32
JOB_B = "b" * 32


def checkpoint(root: Path, job_id: str, number: int, *, complete: bool = True, mtime: float | None = None) -> Path:
    """Lay out ``root/<job>/chk-<number>`` as Flink does; with ``_metadata`` when complete."""
    chk = root / job_id / f"chk-{number}"
    chk.mkdir(parents=True)
    (root / job_id / "shared").mkdir(exist_ok=True)
    (root / job_id / "taskowned").mkdir(exist_ok=True)
    (chk / "some-state-file").write_bytes(b"state")
    if complete:
        metadata = chk / "_metadata"
        metadata.write_bytes(b"metadata")
        if mtime is not None:
            os.utime(metadata, (mtime, mtime))
    return chk


def test_the_newest_completed_checkpoint_of_a_job_wins(tmp_path: Path) -> None:
    checkpoint(tmp_path, JOB_A, 9, mtime=1000)
    newest = checkpoint(tmp_path, JOB_A, 10, mtime=1000)  # same mtime: the higher number wins
    checkpoint(tmp_path, JOB_A, 11, complete=False)  # still being taken when the JobManager died
    assert latest_checkpoint(tmp_path / JOB_A) == newest.resolve()
    assert latest_checkpoint(tmp_path) == newest.resolve()


def test_across_jobs_the_one_written_last_wins(tmp_path: Path) -> None:
    checkpoint(tmp_path, JOB_A, 40, mtime=2000)  # an older job that ran longer
    later = checkpoint(tmp_path, JOB_B, 3, mtime=3000)
    assert latest_checkpoint(tmp_path) == later.resolve()


def test_a_checkpoint_its_metadata_and_a_file_uri_name_themselves(tmp_path: Path) -> None:
    checkpoint(tmp_path, JOB_A, 5)
    chk = checkpoint(tmp_path, JOB_A, 4)
    assert latest_checkpoint(chk) == chk.resolve()
    assert latest_checkpoint(chk / "_metadata") == chk.resolve()
    assert latest_checkpoint(chk.as_uri()) == chk.resolve()


def test_no_completed_checkpoint_is_one_readable_error(tmp_path: Path) -> None:
    checkpoint(tmp_path, JOB_A, 1, complete=False)
    with pytest.raises(JobError, match=r"^no completed checkpoint \(chk-N/_metadata\) under ") as error:
        latest_checkpoint(tmp_path)
    assert "\n" not in str(error.value)
    with pytest.raises(JobError, match="does not exist"):
        latest_checkpoint(tmp_path / "missing")


def test_latest_means_the_state_dirs_checkpoint_root_and_remote_uris_pass(tmp_path: Path) -> None:
    settings = load_settings(env={"PRICEWAVE_STATE_DIR": str(tmp_path)})
    chk = checkpoint(settings.path("flink", "checkpoints"), JOB_A, 7)
    assert resolve_checkpoint(settings, "latest") == str(chk.resolve())
    assert resolve_checkpoint(settings, "s3://bucket/ckpt/x/chk-3") == "s3://bucket/ckpt/x/chk-3"


def test_cli_resumes_with_flink_run_s_or_says_why_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PRICEWAVE_STATE_DIR", str(tmp_path))
    code = cli.main(["submit", "--dry-run", "--from-checkpoint", "latest"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and err.startswith("pricewave: error: no checkpoint to resume from"), err
    chk = checkpoint(tmp_path / "flink" / "checkpoints", JOB_A, 12)
    assert cli.main(["submit", "--dry-run", "--from-checkpoint", "latest", "--", "--bounded"]) == 0
    out = capsys.readouterr().out
    assert f"resuming from checkpoint {chk.resolve()}" in out
    assert f" -s {chk.resolve()} " in out and out.rstrip().endswith("--bounded")
