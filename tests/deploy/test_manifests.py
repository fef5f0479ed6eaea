"""The deployment files (deploy/k8s, deploy/docker) checked offline: they cannot run here.

* every YAML parses;
* Strimzi resources and core kinds (Deployment, Service, the FlinkDeployment's pod template)
  validate against the schemas published in npm's ``@kubernetes-models/*`` packages (generated
  from Strimzi's CRDs and Kubernetes' OpenAPI), run by node (deploy/k8s/validate);
* the FlinkDeployment validates against the Flink Kubernetes Operator's own CRD, taken from the
  ``flink-kubernetes-operator-api`` jar on Maven Central, strictly (unknown fields rejected); that
  jar's newest version served here (1.10.0) predates Flink 2, so its ``flinkVersion`` enum is
  extended with v2_0..v2_2 (operator >= 1.14 has them) - see deploy/README.md;
* versions agree with pyproject.toml and deploy/local/pom.xml, the image is built like the
  local stack, and secrets are only referenced.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest
import yaml

from pricewave.config import KafkaSettings, Settings, TopicSettings
from pricewave.stack.flink import flink_config

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
MANIFESTS = ("flink-deployment.yaml", "kafka.yaml", "redis.yaml")
OPERATOR_API = ("org.apache.flink", "flink-kubernetes-operator-api", "1.10.0")
FLINK_2_VERSIONS = ["v2_0", "v2_1", "v2_2"]
MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def flink_deployment() -> dict[str, Any]:
    (doc,) = documents("flink-deployment.yaml")
    return doc


def pinned_flink_version() -> str:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [dep for dep in deps if dep.startswith("apache-flink==")]
    return pin.split("==")[1]


def pom_property(name: str) -> str:
    root = ElementTree.parse(ROOT / "deploy" / "local" / "pom.xml").getroot()
    node = root.find(f"m:properties/m:{name}", MAVEN_NS)
    assert node is not None and node.text
    return node.text


# -- parsing and schemas -------------------------------------------------------------------------


def test_every_yaml_parses() -> None:
    for name in MANIFESTS:
        assert documents(name), name
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert {"kafka", "redis", "jobmanager", "taskmanager"} <= set(compose["services"])
    assert compose["services"]["taskmanager"]["deploy"]["replicas"] == 2


@pytest.fixture(scope="module")
def node_validator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/k8s/validate with its pinned npm packages installed (npm ci, cached per lock file)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed to validate the manifests (apt-get install nodejs npm)")
    source = K8S / "validate"
    lock = (source / "package-lock.json").read_bytes()
    cache = Settings().path("cache", "k8s-validate", hashlib.sha256(lock).hexdigest()[:12])
    if not (cache / "node_modules" / "kubernetes-models").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(source / name, cache / name)
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=cache,
                                capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    shutil.copy(source / "validate.mjs", cache / "validate.mjs")
    return cache


def node_validate(validator: Path, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = subprocess.run(["node", "validate.mjs"], cwd=validator, input=json.dumps(docs),
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout))


def test_strimzi_and_core_resources_match_their_published_schemas(node_validator: Path) -> None:
    pod = copy.deepcopy(flink_deployment()["spec"]["podTemplate"])
    pod["metadata"]["name"] = "flink-pod-template"
    # the operator fills in the container image; a Pod needs one to validate
    pod["spec"]["containers"][0]["image"] = "pricewave-flink"
    docs = documents("kafka.yaml") + documents("redis.yaml") + [pod]
    results = node_validate(node_validator, docs)
    assert [r for r in results if not r["ok"]] == []
    assert len(results) == len(docs)


def test_the_node_validator_rejects_a_broken_resource(node_validator: Path) -> None:
    broken = copy.deepcopy(documents("kafka.yaml")[2])  # a KafkaTopic
    broken["spec"]["partitions"] = "twelve"
    bad_pool = copy.deepcopy(documents("kafka.yaml")[0])
    bad_pool["spec"]["roles"] = ["coordinator"]
    results = node_validate(node_validator, [broken, bad_pool])
    assert [r["ok"] for r in results] == [False, False]
    assert "partitions" in results[0]["error"] and "roles" in results[1]["error"]


def _strict(schema: Any) -> Any:
    """Reject unknown fields wherever the CRD lists its fields (as ``kubectl --validate=strict``)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


@pytest.fixture(scope="module")
def flink_crd_schema() -> dict[str, Any]:
    """The FlinkDeployment v1beta1 schema from the operator API jar (resolved with Maven)."""
    group, artifact, version = OPERATOR_API
    jar = (
        Path.home() / ".m2" / "repository" / group.replace(".", "/") / artifact / version / f"{artifact}-{version}.jar"
    )
    if not jar.exists():
        mvn = shutil.which("mvn")
        assert mvn, "Maven (mvn) is needed to fetch the Flink operator's CRD"
        command = [mvn, "-q", "-B", "dependency:get", f"-Dartifact={group}:{artifact}:{version}", "-Dtransitive=false"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        assert result.returncode == 0 and jar.exists(), result.stdout + result.stderr
    with zipfile.ZipFile(jar) as archive:
        crd = yaml.safe_load(archive.read("META-INF/fabric8/flinkdeployments.flink.apache.org-v1.yml"))
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema = served["schema"]["openAPIV3Schema"]
    flink_version = schema["properties"]["spec"]["properties"]["flinkVersion"]
    flink_version["enum"] = sorted(set(flink_version["enum"]) | set(FLINK_2_VERSIONS))
    strict = dict(_strict(schema))
    # every object's envelope, which a CRD's schema leaves to the API server
    strict["properties"] = {
        "apiVersion": {"const": f"{crd['spec']['group']}/v1beta1"},
        "kind": {"const": crd["spec"]["names"]["kind"]},
        "metadata": {"type": "object", "required": ["name"]},
        **strict["properties"],
    }
    return strict


def test_flink_deployment_matches_the_operator_crd(flink_crd_schema: dict[str, Any]) -> None:
    deployment = flink_deployment()
    assert (deployment["apiVersion"], deployment["kind"]) == ("flink.apache.org/v1beta1", "FlinkDeployment")
    jsonschema.Draft7Validator(flink_crd_schema).validate(deployment)


def test_the_crd_check_rejects_typos_and_bad_values(flink_crd_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(flink_crd_schema)
    typo = copy.deepcopy(flink_deployment())
    typo["spec"]["job"]["upgradMode"] = typo["spec"]["job"].pop("upgradeMode")
    assert not validator.is_valid(typo)
    wrong = copy.deepcopy(flink_deployment())
    wrong["spec"]["job"]["upgradeMode"] = "sometimes"
    assert not validator.is_valid(wrong)


# -- what the files say agrees with the project --------------------------------------------------


def test_versions_agree_with_pyproject_and_the_pom() -> None:
    flink = pinned_flink_version()
    major_minor = ".".join(flink.split(".")[:2])
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"ARG FLINK_VERSION={flink}\n" in dockerfile
    assert "FROM --platform=linux/amd64 flink:${FLINK_VERSION}-java17" in dockerfile
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.12" and "uv python install 3.11" in dockerfile
    assert "uv venv --python 3.11 /opt/venv" in dockerfile

    deployment = flink_deployment()["spec"]
    assert deployment["flinkVersion"] == "v" + major_minor.replace(".", "_")
    assert deployment["job"]["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink}.jar"
    env = {e["name"]: e for e in deployment["podTemplate"]["spec"]["containers"][0]["env"]}
    assert env["ENABLE_BUILT_IN_PLUGINS"]["value"] == f"flink-s3-fs-presto-{flink}.jar"

    assert pom_property("flink.kafka.connector.version").endswith(f"-{major_minor}")
    kafka_version = pom_property("kafka.version")
    assert kafka_version == KafkaSettings().version
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version}"
    (kafka,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "Kafka"]
    assert kafka["spec"]["kafka"]["version"] == kafka_version
    assert kafka["spec"]["kafka"]["metadataVersion"].startswith(".".join(kafka_version.split(".")[:2]))


def test_the_image_is_built_like_the_local_stack() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    # the same pom, profile and Maven goal as pricewave.stack.jars.ensure_jars
    assert "COPY deploy/local/pom.xml deploy/local/pom.xml" in dockerfile
    assert "mvn -q -B -f deploy/local/pom.xml dependency:copy-dependencies -Pflink" in dockerfile
    jars_source = (ROOT / "pricewave" / "stack" / "jars.py").read_text()
    assert '"dependency:copy-dependencies"' in jars_source and 'f"-P{jar_set}"' in jars_source
    # the jars land where the job's flink_connector_jars() looks, with the stamp ensure_jars trusts
    assert "ENV PRICEWAVE_HOME=/opt/pricewave \\\n    PRICEWAVE_STATE_DIR=/opt/pricewave/state" in dockerfile
    assert "COPY --from=jars /build/jars/flink /opt/pricewave/state/jars/flink" in dockerfile
    assert "sha256sum deploy/local/pom.xml | cut -c1-16" in dockerfile
    assert "hexdigest()[:16]" in jars_source
    # connectors shipped one way only (pipeline.jars), never in Flink's lib/ nor with --jarfile
    assert "! ls /opt/flink/lib | grep -q flink-sql-connector-kafka" in dockerfile
    for text in (dockerfile, (DOCKER / "compose.yaml").read_text(), (K8S / "flink-deployment.yaml").read_text()):
        assert "--jarfile" not in text and "flink-sql-connector-kafka" not in text.replace(
            "grep -q flink-sql-connector-kafka", ""
        )
    # the Prometheus reporter the stack enables, with its plugin present in the image
    stack_reporter = flink_config(Settings().flink, Path("/state"), "python")["metrics.reporter.prom.factory.class"]
    configuration = flink_deployment()["spec"]["flinkConfiguration"]
    assert configuration["metrics.reporter.prom.factory.class"] == stack_reporter
    compose_properties = yaml.safe_load(
        yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["jobmanager"]["environment"][
            "FLINK_PROPERTIES"
        ]
    )
    assert compose_properties["metrics.reporter.prom.factory.class"] == stack_reporter
    assert "/opt/flink/plugins/metrics-prometheus/flink-metrics-prometheus-${FLINK_VERSION}.jar" in dockerfile
    # the shipped code: what pricewave submit zips, copied to where the FlinkDeployment runs it
    for folder in ("pricewave", "jobs", "udfs", "schemas"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "-e ." in dockerfile


def test_flink_deployment_runs_the_pricing_job_with_savepoint_upgrades() -> None:
    spec = flink_deployment()["spec"]
    job = spec["job"]
    assert job["upgradeMode"] == "savepoint" and job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    args = job["args"]
    script = args.index("-py") + 1
    assert args[script] == "/opt/pricewave/jobs/pricing_job.py" and (ROOT / "jobs" / "pricing_job.py").is_file()
    flink_options = args[: script + 1]
    assert flink_options[:2] == ["-pyclientexec", "/opt/venv/bin/python"]
    user_args = args[script + 1 :]
    assert all(not arg.startswith("-py") for arg in user_args)
    from jobs.pricing_job import parse_args

    _, options, *_ = parse_args(user_args)  # the job accepts its flags
    assert options.parallelism == job["parallelism"]
    configuration = spec["flinkConfiguration"]
    for key in ("execution.checkpointing.dir", "execution.checkpointing.savepoint-dir", "state.savepoints.dir"):
        assert configuration[key].startswith("s3://")
    assert spec["jobManager"]["resource"]["memory"] and spec["taskManager"]["resource"]["cpu"]


def test_topics_match_the_settings() -> None:
    defaults = TopicSettings()
    topics = [doc for doc in documents("kafka.yaml") if doc["kind"] == "KafkaTopic"]
    assert sorted(doc["metadata"]["name"] for doc in topics) == sorted(defaults.all_names())
    for doc in topics:
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "pricewave"
        assert doc["spec"]["partitions"] >= defaults.partitions
        assert int(doc["spec"]["config"]["retention.ms"]) >= defaults.retention_ms
    (kafka,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "Kafka"]
    timeout = int(kafka["spec"]["kafka"]["config"]["transaction.max.timeout.ms"])
    assert timeout == KafkaSettings().transaction_max_timeout_ms


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", re.IGNORECASE)


def test_secrets_are_only_referenced() -> None:
    docs = [doc for name in MANIFESTS for doc in documents(name)]
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    env_vars = [
        node for doc in docs for node in _walk(doc) if "name" in node and ("value" in node or "valueFrom" in node)
    ]
    secret_vars = [var for var in env_vars if SECRET_NAME.search(var["name"])]
    assert {var["name"] for var in secret_vars} >= {"REDIS_PASSWORD", "PRICEWAVE_REDIS_PASSWORD"}
    for var in secret_vars:
        assert "value" not in var and "secretKeyRef" in var["valueFrom"], var
    (redis,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "Deployment"]
    assert redis["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]

    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    assert all(set(secret) == {"environment"} for secret in compose["secrets"].values())
    for service in compose["services"].values():
        for key in service.get("environment") or {}:
            assert not SECRET_NAME.search(key) or key == "FLINK_PROPERTIES", key
    text = "\n".join((K8S / name).read_text() for name in MANIFESTS) + (DOCKER / "compose.yaml").read_text()
    assert "pricewave-dev-key-change-me" not in text and "requirepass " not in text.replace('--requirepass \\"', "")
