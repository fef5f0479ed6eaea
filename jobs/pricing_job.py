"""The streaming pricing job's entry point: ``flink run -py`` and schedulers run this file.

Example::

    python jobs/pricing_job.py --bounded --starting-offsets earliest-offset

The job itself, stage by stage in data-flow order, is :mod:`pricewave.job`. Settings come from
``--config`` / ``PRICEWAVE_*`` like every pricewave command; ``--help`` lists the job's flags.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    """Build and run the pricing job with these arguments; returns the exit code."""
    from pricewave.job.run import main as run_job

    return run_job(argv)


if __name__ == "__main__":
    # Run as a script (``python jobs/pricing_job.py``, ``flink run -py``): the repository root holds
    # pricewave/ and udfs/.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
