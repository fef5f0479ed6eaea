"""What the journey tests share: the documented commands, run the way a user types them.

Every command runs as a subprocess from the repository root with a clean environment: ``PATH``,
``HOME`` and the locale, none of the ``PRICEWAVE_*``, ``FEAST_*`` or other variables the rest of
the suite sets. Whatever a journey needs must come from the commands themselves.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from pricewave import flink as flink_jobs
from pricewave.config import load_settings

REPO = Path(__file__).resolve().parents[2]
PRICEWAVE = REPO / ".venv" / "bin" / "pricewave"


def clean_environment() -> dict[str, str]:
    """A fresh login's environment: the user's PATH and HOME, nothing of the suite's."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "USER", "TMPDIR", "PYENV_ROOT")
    return {name: os.environ[name] for name in keep if name in os.environ}


def run_documented(command: str, *, timeout_s: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one documented shell command line from the repository root, as a user would."""
    done = subprocess.run(
        shlex.split(command),
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{command!r} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def documented_commands(markdown: Path, pattern: str) -> list[str]:
    """The command lines of ``markdown``'s code blocks that match ``pattern`` (comments dropped)."""
    blocks = re.findall(r"```bash\n(.*?)```", markdown.read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if re.search(pattern, line)]


def price_fields(output: str) -> dict[str, str]:
    """``pricewave price``'s text answer as a dict (sku, price, source, personalized, age, model)."""
    fields = {}
    for line in output.splitlines():
        name, _, value = line.partition(" ")
        if name and value.strip():
            fields[name] = value.strip()
    return fields


def age_seconds(fields: dict[str, str]) -> float:
    """The ``age`` line of a price answer, in seconds."""
    assert fields.get("age", "").endswith(" s"), fields
    return float(fields["age"][:-2])


@pytest.fixture(scope="module")
def cancel_pricing_jobs() -> Iterator[None]:
    """Cancel the pricing jobs a journey leaves running on the stack's cluster (the suite shares it)."""
    yield
    cluster = flink_jobs.cluster_for(load_settings(env={}))
    for job in flink_jobs.list_jobs(cluster):
        if job.name == flink_jobs.JOB_NAME and job.state in flink_jobs.ACTIVE_STATES:
            flink_jobs.cancel_job(cluster, job.job_id)


def active_pricing_jobs() -> Sequence[flink_jobs.JobSummary]:
    """The pricing jobs running on the stack's cluster now."""
    cluster = flink_jobs.cluster_for(load_settings(env={}))
    return [
        job
        for job in flink_jobs.list_jobs(cluster)
        if job.name == flink_jobs.JOB_NAME and job.state in flink_jobs.ACTIVE_STATES
    ]
