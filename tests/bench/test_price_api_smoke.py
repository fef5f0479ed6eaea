"""bench/price_api.py runs (--tiny): pricewave serve and feast serve answer every request on both stores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench import failure_report

ROOT = Path(__file__).resolve().parents[2]
# Private (a feature repo copy, Redis on a free port, its own servers), but run with the shared-stack
# tests (deploy/local/test.sh). Moved beside them on 2026-12-07, the two runs ended 25 s apart, but the
# shared run's job tests then met a different load and one failed twice (RELIABILITY row 5k): back.
pytestmark = pytest.mark.integration


def test_price_api_bench_tiny() -> None:
    result = subprocess.run(
        [sys.executable, "bench/price_api.py", "--tiny"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, failure_report(result)
    assert "machine:" in result.stdout and "cores" in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for profile in ("sqlite", "redis"):
        for server in ("pricewave serve GET /price", "feast serve /get-online-features"):
            figures = report["cells"][f"{profile} {server} c4"]
            assert figures["requests"] > 0, (profile, server, figures)
            if profile == "sqlite" and server.startswith("feast") and sys.version_info >= (3, 12):
                # Feast's own defect, not this bench's: its SQLite store shares one connection between
                # the server's threads, and Python 3.12's sqlite3 fails concurrent use of it ("bad
                # parameter or other API misuse"). pricewave serve makes its SQLite reads take turns.
                assert figures["errors"] < figures["requests"], (profile, server, figures)
            else:
                assert figures["errors"] == 0, (profile, server, figures)
            assert 0 < figures["p50_ms"] <= figures["p99_ms"], figures
        assert report["ratios"][f"{profile} c4"] > 0
