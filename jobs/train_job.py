"""The training job: a thin entry point over ``pricewave train`` (schedulers run this file).

Example::

    python jobs/train_job.py --scenario small --events 100000 --out .pricewave/models

Settings come from ``PRICEWAVE_CONFIG`` / ``PRICEWAVE_*`` like every pricewave command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pricewave train`` with these arguments; returns the exit code."""
    from pricewave.cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
