"""Schema evolution through the real job: producers and the job upgrade the clicks schema in either order.

``click_event`` is fully compatible (``"x-compatibility": "full"``). A v2 adds one optional field,
``referrer``. The pricing job runs as a user runs it (``python jobs/pricing_job.py --bounded``, its
own process, so ``PRICEWAVE_SCHEMAS_DIR`` reaches its Python workers) on fresh topics holding v1
and v2 clicks mixed:

* the job built for v1 (the shipped schemas) reads v2 records: it ignores ``referrer``;
* the job built for v2 (a schema directory with ``click_event/v2.json``) reads v1 records: the new
  field is absent, which its schema allows.

Either way no click of either version is dead-lettered and every view gets its offer on the
``prices`` topic. One more view carries a ``referrer`` longer than v2 allows: the v1 job ignores the
field and prices it, the v2 job dead-letters it, which shows each job ran on the schema it was built for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pricewave.config import Settings
from pricewave.feature_store import FeatureWriter, open_store
from pricewave.kafka_io import encode_json, make_producer
from pricewave.schemas import DEFAULT_SCHEMAS_DIR, SCHEMAS_DIR_ENV, compatibility_problems, load_schema
from tests.reliability.harness import fresh_topics, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SKU = "EVO-1"
CATALOG_ROW = {
    "sku": SKU, "base_price": 20.0, "cost": 10.0, "map_price": None, "ceiling_price": 40.0,
    "category": "snacks", "event_time": T0,
}  # fmt: skip
REFERRER = {"type": ["string", "null"], "maxLength": 64, "description": "Where the shopper came from (new in v2)."}
CLICKS = 40


def v2_schemas(target: Path) -> Path:
    """The shipped schemas plus ``click_event/v2.json``: v1 with the optional field ``referrer``."""
    shutil.copytree(DEFAULT_SCHEMAS_DIR, target)
    document = json.loads((target / "click_event" / "v1.json").read_text())
    document["$id"] = "pricewave/click_event/v2"
    document["properties"]["referrer"] = REFERRER
    document["examples"] = [{**example, "referrer": "newsletter"} for example in document["examples"]]
    (target / "click_event" / "v2.json").write_text(json.dumps(document, indent=2))
    return target


def click(n: int) -> dict[str, object]:
    """View ``n``: odd ones carry v2's ``referrer`` (what a producer already on v2 sends)."""
    record: dict[str, object] = {
        "event_id": f"evo-{n}", "event_type": "view", "user_key": f"{n % 4:032x}", "session_id": f"s{n % 4}",
        "sku": SKU, "price_seen": 20.0, "channel": "web", "event_time": T0 + n * 5_000,
    }  # fmt: skip
    if n % 2:
        record["referrer"] = "newsletter"
    return record


def run_job(settings: Settings, tmp_path: Path, schemas_dir: Path | None) -> tuple[list[dict], list[dict]]:
    """Clicks onto fresh topics, the job over them (bounded), and what it wrote: (offers, dead letters)."""
    topics = fresh_topics(settings)
    producer = make_producer(topics)
    for n in range(CLICKS):
        producer.send(topics.topics.clicks, encode_json(click(n)), key=f"{n % 4}".encode())
    too_long = {**click(CLICKS), "referrer": "x" * (REFERRER["maxLength"] + 1)}  # a v2 fault, unknown to v1
    producer.send(topics.topics.clicks, encode_json(too_long), key=b"0")
    producer.flush()
    producer.close()
    env = {name: value for name, value in os.environ.items() if not name.startswith("PRICEWAVE_TOPICS__")}
    env.update({f"PRICEWAVE_TOPICS__{role.upper()}": getattr(topics.topics, role) for role in
                ("clicks", "competitor_prices", "reviews", "prices", "dlq")})  # fmt: skip
    env["PRICEWAVE_FEATURE_REPO"] = settings.feature_repo
    env["PRICEWAVE_MODELS__MODEL_DIR"] = str(tmp_path / "models")  # no model: the kill switch prices
    env.pop(SCHEMAS_DIR_ENV, None)
    if schemas_dir is not None:
        env[SCHEMAS_DIR_ENV] = str(schemas_dir)
    command = [sys.executable, "jobs/pricing_job.py", "--bounded", "--starting-offsets", "earliest-offset",
               "--group-id", f"test-evolution-{uuid.uuid4().hex[:8]}", "--parallelism", "1",
               "--decision-log-dir", str(tmp_path / "decisions")]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    prices = [json.loads(r.value) for r in read_topic(topics, topics.topics.prices)]
    letters = [json.loads(r.value) for r in read_topic(topics, topics.topics.dlq, read_committed=False)]
    return [p for p in prices if p["kind"] == "offer"], letters


@pytest.fixture
def evolution_settings(kafka_stack: Settings, feature_repo_copy: Path) -> Settings:
    settings = kafka_stack.model_copy(update={"feature_repo": str(feature_repo_copy)})
    FeatureWriter(open_store(settings)).write("sku_catalog", [CATALOG_ROW])
    return settings


def test_v2_is_a_compatible_successor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCHEMAS_DIR_ENV, str(v2_schemas(tmp_path / "schemas")))
    assert compatibility_problems(load_schema("click_event", 1), load_schema("click_event", 2)) == []


@pytest.mark.parametrize("job_schema", ["v1", "v2"])
def test_the_job_prices_clicks_of_either_version(job_schema: str, evolution_settings: Settings, tmp_path: Path) -> None:
    schemas_dir = v2_schemas(tmp_path / "schemas") if job_schema == "v2" else None
    offers, letters = run_job(evolution_settings, tmp_path, schemas_dir)
    reasons = [letter["reason"] for letter in letters]
    priced = {offer["decision_id"] for offer in offers}
    if job_schema == "v1":  # v2's field is unknown to it: ignored, the view priced
        assert reasons == [] and len(priced) == CLICKS + 1, (reasons, len(priced))
    else:  # the v2 job checks v2's field: only the over-long referrer is a fault
        assert reasons == ["too_long: referrer length 65 > 64"] and len(priced) == CLICKS, (reasons, len(priced))
    assert all(offer["sku"] == SKU and offer["price"] > 0 for offer in offers)
    assert not any("referrer" in offer or "newsletter" in json.dumps(offer) for offer in offers)  # dropped
