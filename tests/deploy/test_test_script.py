"""deploy/local/test.sh (``make test``): two pytest runs side by side, and a failure in either fails it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_suite(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """The script over one test file outside the repository (its logs in ``tmp_path``)."""
    tests = tmp_path / "planted"
    tests.mkdir()
    (tests / "test_planted.py").write_text(body)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PRICEWAVE_TEST_LOG_DIR": str(tmp_path / "logs")}
    return subprocess.run(
        ["bash", "deploy/local/test.sh", "-p", "no:cacheprovider", "-q", str(tests)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("def test_fine():\n    assert True\n", 0),
        ("def test_broken():\n    assert 1 == 2\n", 1),
    ],
    ids=["passing", "failing"],
)
def test_a_unit_failure_beside_the_shared_run_fails_the_suite(tmp_path: Path, body: str, status: int) -> None:
    done = run_suite(tmp_path, body)
    assert done.returncode == status, done.stdout[-3000:] + done.stderr[-3000:]
    # The beside run's whole output is shown, and each run's result is named at the end.
    assert ("1 passed" if status == 0 else "1 failed") in done.stdout
    assert "[test] shared stack: exit 5" in done.stdout  # nothing integration-marked selected: not a failure
    assert f"[test] beside: exit {status}" in done.stdout
    assert (tmp_path / "logs" / "tests-beside.log").is_file()
