"""``deploy/local/python.sh``: which Python ``setup.sh`` builds ``.venv`` with (no install runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_SH = ROOT / "deploy" / "local" / "python.sh"


def chosen_python(workdir: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run the chooser from ``workdir`` (a repository root) as setup.sh sources it."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **environment}
    return subprocess.run(["bash", str(PYTHON_SH)], cwd=workdir, env=env, capture_output=True, text=True, check=False)


def other_supported_python() -> str | None:
    """A Python 3.11 or 3.12 that is not this one, when the machine has it (on PATH, or under pyenv)."""
    other = "3.12" if sys.version_info[:2] == (3, 11) else "3.11"
    found = shutil.which(f"python{other}")
    pyenv = sorted(Path.home().glob(f".pyenv/versions/{other}.*/bin/python{other}"))
    for candidate in [found, *map(str, pyenv)]:
        # A pyenv shim of a version that is not selected is on PATH but does not run.
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True, check=False).returncode == 0:
            return candidate
    return None


def test_an_existing_venv_keeps_its_python_without_a_variable(tmp_path: Path) -> None:
    other = other_supported_python()
    if other is None:
        pytest.skip("needs a second supported Python (3.11 and 3.12)")
    subprocess.run([other, "-m", "venv", "--without-pip", str(tmp_path / ".venv")], check=True)
    expected = subprocess.run(
        [str(tmp_path / ".venv" / "bin" / "python"), "-c", "import sys; print(sys._base_executable)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip

    done = chosen_python(tmp_path)  # what `make run` does after `PRICEWAVE_PYTHON=... make setup`

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected


def test_the_variable_wins_and_a_bad_one_is_one_line(tmp_path: Path) -> None:
    this = sys._base_executable
    assert chosen_python(tmp_path, PRICEWAVE_PYTHON=this).stdout.strip() == shutil.which(this)
    done = chosen_python(tmp_path, PRICEWAVE_PYTHON="/nonexistent/python3")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "[setup] error: PRICEWAVE_PYTHON=/nonexistent/python3 is not a Python 3.11 or 3.12 interpreter"
    ]
