"""deploy/docker/init.sh, the init step of the Compose and Kubernetes deployments, run for real.

The script runs as the containers run it: ``bash deploy/docker/init.sh`` in a clean environment
(only PATH, HOME and the PRICEWAVE_* the deployments set), with the Redis profile, the password from a
file (a mounted secret), the image's feature repo copied into the "shared volume" first, a shop's
CSV catalog and the model directory on that volume. Against a real, password-protected Redis
(conftest's ``redis_server``, private to the test session, not the shared stack's) and the real
``feast`` and ``pricewave`` commands:

* the registry is applied, the catalog's base prices read back through ``pricewave price`` and
  ``get_price`` equal the CSV, a fresh model is kept; a second run changes nothing (idempotent) and
  drops a feature-repo file the image no longer has;
* without a catalog file the simulator's demo catalog is loaded (and said so); with no model and
  ``PRICEWAVE_INIT_TRAIN=0`` the script fails with one clear line, training nothing.

The Feast project gets a private name, so every Redis key the test writes ends with it and is
deleted afterwards.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pricewave.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "docker" / "init.sh"
VENV_BIN = Path(sys.executable).parent
CATALOG = [
    {"sku": "init-sku-1", "base_price": "9.5", "cost": "4.0", "map_price": "", "ceiling_price": "14.0",
     "category": "snacks"},
    {"sku": "init-sku-2", "base_price": "21.25", "cost": "10.0", "map_price": "18.0", "ceiling_price": "30.0",
     "category": "coffee"},
]  # fmt: skip

pytestmark = pytest.mark.integration


class Deployment:
    """One deployment's layout in a temporary folder: the image's feature repo, the shared volume."""

    def __init__(self, tmp: Path, redis_server: Any) -> None:
        self.project = f"pwinit_{uuid.uuid4().hex[:10]}"
        self.redis_server = redis_server
        # the image's feature repo (a copy of feature_repo/ without local state, under a private project)
        self.image_repo = tmp / "image" / "feature_repo"
        shutil.copytree(ROOT / "feature_repo", self.image_repo, ignore=shutil.ignore_patterns("data", "__pycache__"))
        for name in ("feature_store.yaml", "feature_store.redis.yaml"):
            path = self.image_repo / name
            path.write_text(path.read_text().replace("project: pricewave\n", f"project: {self.project}\n"))
        project = self.image_repo / "project.py"
        project.write_text(project.read_text().replace('name="pricewave"', f'name="{self.project}"'))
        assert self.project in project.read_text()
        assert f"project: {self.project}" in (self.image_repo / "feature_store.redis.yaml").read_text()
        # the shared volume and the state directory
        self.volume = tmp / "volume"
        self.repo = self.volume / "feature_repo"
        self.model_dir = self.volume / "models"
        self.state = tmp / "state"
        self.secret = tmp / "secrets" / "redis_password"
        self.secret.parent.mkdir()
        self.secret.write_text(redis_server.password + "\n")
        self.catalog = tmp / "catalog.csv"
        with self.catalog.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(CATALOG[0]))
            writer.writeheader()
            writer.writerows(CATALOG)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment the deployments give the init container, and nothing else."""
        return {
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "HOME": os.environ.get("HOME", "/root"),
            "PRICEWAVE_STATE_DIR": str(self.state),
            "PRICEWAVE_STORE_PROFILE": "redis",
            "PRICEWAVE_REDIS__HOST": self.redis_server.host,
            "PRICEWAVE_REDIS__PORT": str(self.redis_server.port),
            "PRICEWAVE_REDIS_PASSWORD_FILE": str(self.secret),
            "PRICEWAVE_FEATURE_REPO": str(self.repo),
            "PRICEWAVE_FEATURE_REPO_SOURCE": str(self.image_repo),
            "PRICEWAVE_MODELS__MODEL_DIR": str(self.model_dir),
            **extra,
        }

    def run(self, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(SCRIPT)], env=self.env(**extra), capture_output=True, text=True,
                              timeout=900, check=False)  # fmt: skip

    def pricewave(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env(), "PRICEWAVE_REDIS_PASSWORD": self.redis_server.password}
        del env["PRICEWAVE_REDIS_PASSWORD_FILE"]  # only init.sh reads the file; the CLI takes the variable
        return subprocess.run([str(VENV_BIN / "pricewave"), *args], env=env, capture_output=True, text=True,
                              timeout=300, check=False)  # fmt: skip

    def keys(self) -> list[bytes]:
        """Every Redis key of this test's Feast project (Feast's keys end with the project name)."""
        return list(self.redis_server.client().scan_iter(match=b"*" + self.project.encode()))

    def store(self, monkeypatch: pytest.MonkeyPatch) -> Any:
        """The online store as the job and the channels open it, with the same settings."""
        from pricewave.feature_store import open_store

        for name, value in self.env().items():
            if name.startswith("PRICEWAVE_") and not name.endswith("_FILE"):
                monkeypatch.setenv(name, value)
        monkeypatch.setenv("PRICEWAVE_REDIS_PASSWORD", self.redis_server.password)
        return open_store(load_settings(), repo_path=self.repo, profile="redis")

    def base_prices(self, skus: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[float | None, str]]:
        """What a channel reads (``get_price``) for each sku."""
        from pricewave.feature_store import get_price

        store = self.store(monkeypatch)
        quotes = {sku: get_price(store, sku) for sku in skus}
        return {sku: (quote.price, quote.source) for sku, quote in quotes.items()}

    def registered(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        """The feature views and services the registry holds."""
        store = self.store(monkeypatch)
        return sorted([view.name for view in store.list_feature_views()]
                      + [service.name for service in store.list_feature_services()])  # fmt: skip


@pytest.fixture
def deployment(tmp_path: Path, redis_server: Any) -> Iterator[Deployment]:
    if shutil.which("tar") is None:
        pytest.fail("tar is needed by init.sh")
    deployment = Deployment(tmp_path, redis_server)
    yield deployment
    keys = deployment.keys()
    if keys:
        redis_server.client().delete(*keys)
    assert deployment.keys() == []


def publish_fresh_model(model_dir: Path) -> str:
    """A model version created now (the artifact ``pricewave train`` writes, untrained weights):
    what the model step must find fresh and keep, without spending a minute training."""
    from pricewave.pricing.artifact import save_artifact
    from pricewave.pricing.demand_model import DemandModel

    return save_artifact(DemandModel(), None, {"auc": 0.5}, {}, model_dir, created_at=time.time())


def test_init_applies_loads_the_catalog_keeps_a_fresh_model_and_is_idempotent(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = publish_fresh_model(deployment.model_dir)
    expected = {row["sku"]: (float(row["base_price"]), "base") for row in CATALOG}

    first = deployment.run(PRICEWAVE_CATALOG_FILE=str(deployment.catalog))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "[init] applying the Feast feature repo (pricewave features apply)" in first.stdout
    assert f"[init] loading the catalog {deployment.catalog} (pricewave catalog load)" in first.stdout
    # minutes old by now on a loaded machine (0.0 or 0.1 h): fresh, kept
    kept = re.search(rf"model {re.escape(version)} in {re.escape(str(deployment.model_dir))} is (\d+\.\d) h old "
                     r"\(limit 168 h\): keeping it", first.stdout)  # fmt: skip
    assert kept and float(kept.group(1)) < 1, first.stdout
    assert "training" not in first.stdout and first.stdout.rstrip().endswith("[init] done: the pricing job may start")
    assert f"project {deployment.project}, redis online store" in first.stderr
    assert deployment.redis_server.password not in first.stdout + first.stderr
    # the image's definitions in the volume's repo, with the registry beside them
    assert (deployment.repo / "feature_store.redis.yaml").read_text() == (
        deployment.image_repo / "feature_store.redis.yaml"
    ).read_text()
    assert (deployment.repo / "data" / "registry.db").is_file()
    assert len(deployment.keys()) == len(CATALOG)
    assert deployment.base_prices(list(expected), monkeypatch) == expected
    # the documented channel command, in the clean environment
    price = deployment.pricewave("price", "--sku", "init-sku-2", "--profile", "redis", "--json")
    assert price.returncode == 0, price.stdout + price.stderr
    quote = json.loads(price.stdout)
    assert (quote["price"], quote["source"]) == (21.25, "base")

    # a file the image no longer has (a removed feature view) must not be applied again
    (deployment.repo / "removed_view.py").write_text("# from an older image\n")
    registered = deployment.registered(monkeypatch)
    assert "sku_catalog" in registered

    second = deployment.run(PRICEWAVE_CATALOG_FILE=str(deployment.catalog))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[init] removing ./removed_view.py" in second.stdout
    assert not (deployment.repo / "removed_view.py").exists()
    assert f"model {version} in {deployment.model_dir}" in second.stdout and "keeping it" in second.stdout
    assert (deployment.model_dir / "LATEST").read_text().strip() == version
    assert sorted(p.name for p in deployment.model_dir.iterdir() if not p.name.startswith(".")) == ["LATEST", version]
    assert deployment.registered(monkeypatch) == registered
    assert len(deployment.keys()) == len(CATALOG)
    assert deployment.base_prices(list(expected), monkeypatch) == expected


def test_init_loads_the_demo_catalog_and_refuses_to_run_without_a_model_when_told_not_to_train(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pricewave.simulator.runner import Simulator

    result = deployment.run(PRICEWAVE_INIT_TRAIN="0")
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "[init] PRICEWAVE_CATALOG_FILE is not set: loading the simulator's demo catalog (scenario small, seed 7)"
        in result.stdout
    )
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"[init] error: no model in {deployment.model_dir} and PRICEWAVE_INIT_TRAIN=0: publish a fresh model there "
        "first (pricewave train --out DIR); without one the job's kill switch prices everything at base"
    )
    assert "training" not in result.stdout and not (deployment.model_dir / "LATEST").exists()
    # the demo catalog is the one the quickstart's simulator streams (seed 7), in Redis
    demo = Simulator("small", load_settings(), seed=7).catalog_records()
    assert len(deployment.keys()) == len(demo)
    sample = demo[:3]
    prices = deployment.base_prices([row["sku"] for row in sample], monkeypatch)
    assert prices == {row["sku"]: (pytest.approx(row["base_price"]), "base") for row in sample}
