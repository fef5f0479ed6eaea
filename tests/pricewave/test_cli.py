"""The top-level ``pricewave`` options: --version and --verbose."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from pricewave.cli import main


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"pricewave {version('pricewave')}"


def test_verbose_logs_what_pricewave_does_and_the_default_does_not(feature_repo_copy: Path) -> None:
    from tests.pricewave.commands.test_price import pricewave

    command = ["price", "--sku", "NO-SUCH-SKU", "--repo", str(feature_repo_copy), "--profile", "sqlite"]
    quiet, verbose = pricewave(*command), pricewave("-v", *command)
    assert quiet.returncode == verbose.returncode == 1  # no price: exit code 1, either way
    line = "INFO pricewave.feature_store.store: feature repo"
    assert line not in quiet.stderr
    assert line in verbose.stderr and "online store sqlite" in verbose.stderr, verbose.stderr
    assert quiet.stdout == verbose.stdout  # the command's own output does not change
