"""The deployment files (deploy/k8s, deploy/docker) checked offline: they cannot run here.

* every YAML parses;
* Strimzi resources and core kinds (Deployment, Service, ConfigMap, PersistentVolumeClaim, the
  FlinkDeployment's pod templates, the JobManager's with its init container merged in) validate
  against the schemas published in npm's ``@kubernetes-models/*`` packages (generated
  from Strimzi's CRDs and Kubernetes' OpenAPI), run by node (deploy/k8s/validate);
* the FlinkDeployment validates against the Flink Kubernetes Operator's own CRD, taken from the
  ``flink-kubernetes-operator-api`` jar on Maven Central, strictly (unknown fields rejected); that
  jar's newest version served here (1.10.0) predates Flink 2, so its ``flinkVersion`` enum is
  extended with v2_0..v2_2 (operator >= 1.14 has them) - see deploy/README.md;
* versions agree with pyproject.toml and deploy/local/pom.xml, the image is built like the
  local stack, and secrets are only referenced;
* exposure: Kafka's only k8s listener is TLS (certificate from a Secret) with SCRAM logins, and the
  job's pods use it with the CA; NetworkPolicies deny by default; every workload runs as non-root
  without capabilities or privilege escalation; Flink's web submission is off; compose publishes
  on loopback;
* the deployments price: compose.yaml, loaded by Docker Compose's own loader (compose-go, in
  deploy/docker/validate), and the k8s manifests select the Redis store profile everywhere, run
  deploy/docker/init.sh before the job, share one model/registry volume at one path, keep Redis's
  data on a persistent volume with an append-only file, and never put its password on a command
  line; /.dockerignore (read by BuildKit's matcher) keeps local state out of every COPY.
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
from pricewave.stack.jars import java_udf_digest
from tests.conftest import build_go_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKER = ROOT / "deploy" / "docker"
MANIFESTS = ("flink-deployment.yaml", "kafka.yaml", "redis.yaml", "network-policies.yaml", "monitor.yaml")
OPERATOR_API = ("org.apache.flink", "flink-kubernetes-operator-api", "1.10.0")
FLINK_2_VERSIONS = ["v2_0", "v2_1", "v2_2"]
MAVEN_NS = {"m": "http://maven.apache.org/POM/4.0.0"}


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def flink_deployment() -> dict[str, Any]:
    (doc,) = [doc for doc in documents("flink-deployment.yaml") if doc["kind"] == "FlinkDeployment"]
    return doc


def jobmanager_pod() -> dict[str, Any]:
    """The JobManager's pod template as the operator builds it: the common ``podTemplate`` with
    ``jobManager.podTemplate`` merged in (objects merged key by key, lists replaced: the operator's
    default, without ``kubernetes.operator.pod-template.merge-arrays-by-name``)."""

    def merge(base: Any, overlay: Any) -> Any:
        if not (isinstance(base, dict) and isinstance(overlay, dict)):
            return copy.deepcopy(overlay)
        merged = copy.deepcopy(base)
        for key, value in overlay.items():
            merged[key] = merge(base.get(key), value)
        return merged

    spec = flink_deployment()["spec"]
    return dict(merge(spec["podTemplate"], spec["jobManager"].get("podTemplate") or {}))


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


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
    pods = []
    for name, template in (("flink-pod-template", flink_deployment()["spec"]["podTemplate"]),
                           ("jobmanager-pod-template", jobmanager_pod())):  # fmt: skip
        pod = copy.deepcopy(template)
        pod.setdefault("metadata", {})["name"] = name
        # the operator fills in the main container's image; a Pod needs one to validate
        pod["spec"]["containers"][0]["image"] = "pricewave-flink"
        pods.append(pod)
    core = [doc for doc in documents("flink-deployment.yaml") if doc["kind"] != "FlinkDeployment"]
    assert {doc["kind"] for doc in core} == {"ConfigMap", "PersistentVolumeClaim"}
    docs = documents("kafka.yaml") + documents("redis.yaml") + documents("network-policies.yaml") + core + pods
    docs += documents("monitor.yaml")
    results = node_validate(node_validator, docs)
    assert [r for r in results if not r["ok"]] == []
    assert len(results) == len(docs)


def test_the_node_validator_rejects_a_broken_resource(node_validator: Path) -> None:
    broken = copy.deepcopy(next(doc for doc in documents("kafka.yaml") if doc["kind"] == "KafkaTopic"))
    broken["spec"]["partitions"] = "twelve"
    bad_pool = copy.deepcopy(documents("kafka.yaml")[0])
    bad_pool["spec"]["roles"] = ["coordinator"]
    bad_policy = copy.deepcopy(documents("network-policies.yaml")[-1])
    bad_policy["spec"]["ingress"][0]["ports"][0]["port"] = {"number": 6379}
    results = node_validate(node_validator, [broken, bad_pool, bad_policy])
    assert [r["ok"] for r in results] == [False, False, False]
    assert "partitions" in results[0]["error"] and "roles" in results[1]["error"]
    assert "port" in results[2]["error"]


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
    assert requires == ">=3.11,<3.13" and "uv python install 3.11" in dockerfile  # the image: CI's 3.11
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
    # the Java functions' jar, prebuilt (the runtime image has no javac) under the name java_udf_jar looks for
    assert "COPY --from=jars /build/jars/udfs /opt/pricewave/state/jars/udfs" in dockerfile
    (digest_command,) = re.findall(r"digest=\$\((.*?)\) \\\n", dockerfile)
    built = subprocess.run(["bash", "-c", digest_command], cwd=ROOT, capture_output=True, text=True, check=True)
    assert built.stdout.strip() == java_udf_digest()
    assert 'jar --create --file "/build/jars/udfs/pricewave-udfs-${digest}.jar"' in dockerfile
    # connectors shipped one way only (pipeline.jars), never in Flink's lib/ nor with --jarfile
    assert "! ls /opt/flink/lib | grep -q flink-sql-connector-kafka" in dockerfile
    for text in (dockerfile, (DOCKER / "compose.yaml").read_text(), (K8S / "flink-deployment.yaml").read_text()):
        assert "--jarfile" not in text and "flink-sql-connector-kafka" not in text.replace(
            "grep -q flink-sql-connector-kafka", ""
        )
    # the Prometheus reporter the stack enables, with its plugin present in the image
    stack_reporter = flink_config(Settings().flink, Path("/state"), "python", prometheus=True)[
        "metrics.reporter.prom.factory.class"
    ]
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
    from pricewave.job import parse_args

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
        retention = int(doc["spec"]["config"]["retention.ms"])
        if doc["metadata"]["name"] == defaults.dlq:
            # Dead letters are raw input bytes: kept no longer than the local topic keeps them.
            assert retention == defaults.dlq_retention_ms
        else:
            assert retention >= defaults.retention_ms
    (kafka,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "Kafka"]
    timeout = int(kafka["spec"]["kafka"]["config"]["transaction.max.timeout.ms"])
    assert timeout == KafkaSettings().transaction_max_timeout_ms
    # A topic the job creates itself gets as many copies as the declared ones.
    replicas = {doc["spec"]["replicas"] for doc in topics}
    assert replicas == {int(_k8s_configmap()["PRICEWAVE_TOPICS__REPLICATION_FACTOR"])}
    assert int(kafka["spec"]["kafka"]["config"]["default.replication.factor"]) in replicas


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
    assert {var["name"] for var in secret_vars} >= {"PRICEWAVE_REDIS_PASSWORD"}
    for var in secret_vars:
        assert "value" not in var and "secretKeyRef" in var["valueFrom"], var
    for doc in docs:
        if doc["kind"] == "ConfigMap":  # settings, not secrets
            assert not [key for key in doc["data"] if SECRET_NAME.search(key)], doc["data"]

    services = compose()["services"]
    assert all(set(secret) == {"environment"} for secret in compose()["secrets"].values())
    for service in services.values():
        for key, value in (service.get("environment") or {}).items():
            # a *_FILE variable names the file of a mounted secret, never holds one
            is_secret_file = key.endswith("_FILE") and str(value).startswith("/run/secrets/")
            assert not SECRET_NAME.search(key) or key == "FLINK_PROPERTIES" or is_secret_file, key
    text = "\n".join((K8S / name).read_text() for name in MANIFESTS) + (DOCKER / "compose.yaml").read_text()
    assert "pricewave-dev-key-change-me" not in text
    # `requirepass` only as a line of the config file the start script writes from the secret file
    assert re.findall(r"\S*requirepass\S*", text) == ["'requirepass"] * 2


# -- deployments that price: Redis profile, init step, shared model volume, durable Redis ----------

SHARED = "/var/lib/pricewave"
"""Where the shared volume (feature repo + registry, models) is mounted in every container."""
INIT_SCRIPT = "/opt/pricewave/deploy/docker/init.sh"
COMPOSE_STORE_USERS = ("init", "jobmanager", "taskmanager", "pricing-job")
"""Compose services that open the store or the models: the init step, the Flink cluster, the driver."""


@pytest.fixture(scope="module")
def go_validator() -> Path:
    """deploy/docker/validate built (Docker's own compose-go and patternmatcher; cached per source)."""
    return build_go_tool(DOCKER / "validate")


def run_validator(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a bare environment: compose's ${VAR:-default} interpolation shows the defaults
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def resolved_compose(go_validator: Path) -> dict[str, Any]:
    """compose.yaml as Docker Compose loads it: schema-checked, interpolated, anchors merged."""
    result = run_validator(go_validator, "compose", str(DOCKER / "compose.yaml"))
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """target -> (type, source) of a resolved compose service's volumes."""
    return {mount["target"]: (mount["type"], mount["source"]) for mount in service.get("volumes") or []}


def _k8s_configmap() -> dict[str, str]:
    (settings,) = [doc for doc in documents("flink-deployment.yaml") if doc["kind"] == "ConfigMap"]
    assert settings["metadata"]["name"] == "pricewave-settings"
    return dict(settings["data"])


def _k8s_containers() -> dict[str, dict[str, Any]]:
    """The JobManager pod's init container and main container (the TaskManagers' main container is
    the common template's, the same one)."""
    pod = jobmanager_pod()["spec"]
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    return {"init": init, "main": main}


def test_the_compose_file_loads_as_docker_compose_loads_it(go_validator: Path, tmp_path: Path) -> None:
    result = run_validator(go_validator, "compose", str(DOCKER / "compose.yaml"))
    assert result.returncode == 0, result.stderr
    # and the loader is a real check: a bad condition and an undeclared volume are refused
    text = (DOCKER / "compose.yaml").read_text()
    for broken, error in (
        (text.replace("condition: service_completed_successfully", "condition: service_finished"), "condition"),
        (text.replace(f"- pricewave-shared:{SHARED}\n", f"- pricewave-shard:{SHARED}\n"), "undefined volume"),
    ):
        assert broken != text
        path = tmp_path / "compose.yaml"
        path.write_text(broken)
        result = run_validator(go_validator, "compose", str(path))
        assert result.returncode == 1 and error in result.stderr, result.stderr


def test_compose_selects_the_redis_profile_for_the_job_the_init_step_and_the_monitor(
    resolved_compose: dict[str, Any],
) -> None:
    services = resolved_compose["services"]
    for name in (*COMPOSE_STORE_USERS, "monitor", "price-api"):
        assert services[name]["environment"].get("PRICEWAVE_STORE_PROFILE") == "redis", name
        assert services[name]["environment"]["PRICEWAVE_REDIS__HOST"] == "redis", name


def test_compose_serves_the_price_api_on_the_store_with_the_jobs_secret(resolved_compose: dict[str, Any]) -> None:
    api = resolved_compose["services"]["price-api"]
    command = " ".join(api["command"])
    assert "pricewave serve --host 0.0.0.0 --port 6570" in command
    # the same user-key secret as the job (or no offer would ever be found) and the store's password
    assert {secret["source"] for secret in api["secrets"]} == {"redis_password", "user_key_secret"}
    assert "/run/secrets/user_key_secret" in command and "/run/secrets/redis_password" in command
    assert (
        api["environment"]["PRICEWAVE_FEATURE_REPO"]
        == resolved_compose["services"]["init"]["environment"]["PRICEWAVE_FEATURE_REPO"]
    )
    assert "/health" in " ".join(api["healthcheck"]["test"])


def test_k8s_selects_the_redis_profile_in_the_init_step_the_jobmanager_and_the_taskmanagers() -> None:
    assert _k8s_configmap()["PRICEWAVE_STORE_PROFILE"] == "redis"
    assert _k8s_configmap()["PRICEWAVE_REDIS__HOST"].startswith("pricewave-redis.")
    for name, container in _k8s_containers().items():
        refs = [source["configMapRef"]["name"] for source in container.get("envFrom", []) if "configMapRef" in source]
        assert refs == ["pricewave-settings"], name
        password = {e["name"]: e for e in container.get("env", [])}["PRICEWAVE_REDIS_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": "pricewave-redis", "key": "password"}, name


def test_compose_runs_the_init_step_before_the_job_and_shares_the_model_volume(
    resolved_compose: dict[str, Any],
) -> None:
    services = resolved_compose["services"]
    init = services["init"]
    assert init["command"] == [INIT_SCRIPT] and init["restart"] == "no"
    assert init["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redis"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert services["pricing-job"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    env = init["environment"]
    assert env["PRICEWAVE_REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
    assert [secret["source"] for secret in init["secrets"]] == ["redis_password"]
    # the defaults without anything exported: the demo catalog, training allowed
    assert (env["PRICEWAVE_CATALOG_FILE"], env["PRICEWAVE_INIT_TRAIN"]) == ("", "1")
    assert env["PRICEWAVE_FEATURE_REPO_SOURCE"] == "/opt/pricewave/feature_repo"
    assert _mounts(init)["/etc/pricewave/catalog"][0] == "bind"
    for name in COMPOSE_STORE_USERS:
        env = services[name]["environment"]
        assert env["PRICEWAVE_MODELS__MODEL_DIR"] == f"{SHARED}/models", name
        assert env["PRICEWAVE_FEATURE_REPO"] == f"{SHARED}/feature_repo", name
        # the same NAMED volume at the same path: a bind mount or an anonymous volume is not shared
        assert _mounts(services[name]).get(SHARED) == ("volume", "pricewave-shared"), name
    assert "pricewave-shared" in resolved_compose["volumes"]


def test_k8s_runs_the_init_step_in_the_jobmanager_pod_and_shares_the_model_volume() -> None:
    spec = flink_deployment()["spec"]
    settings = _k8s_configmap()
    assert settings["PRICEWAVE_MODELS__MODEL_DIR"] == f"{SHARED}/models"
    assert settings["PRICEWAVE_FEATURE_REPO"] == f"{SHARED}/feature_repo"
    assert settings["PRICEWAVE_FEATURE_REPO_SOURCE"] == "/opt/pricewave/feature_repo"
    containers = _k8s_containers()
    init = containers["init"]
    # the operator sets the image of flink-main-container only
    assert init["image"] == spec["image"] and init["command"] == [INIT_SCRIPT]
    # the init container is the JobManager's only: the common template (TaskManagers) has none
    assert "initContainers" not in spec["podTemplate"]["spec"]
    volumes = {volume["name"]: volume for volume in jobmanager_pod()["spec"]["volumes"]}
    for name, container in containers.items():
        (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == SHARED]
        assert "subPath" not in mount and not mount.get("readOnly"), name
        assert volumes[mount["name"]]["persistentVolumeClaim"]["claimName"] == "pricewave-shared", name
    # the TaskManagers: the common template's main container mounts the same claim at the same path
    (main,) = spec["podTemplate"]["spec"]["containers"]
    assert {"name": "pricewave-shared", "mountPath": SHARED} in main["volumeMounts"]
    (claim,) = [doc for doc in documents("flink-deployment.yaml") if doc["kind"] == "PersistentVolumeClaim"]
    assert claim["metadata"]["name"] == "pricewave-shared" and claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # writable by the image's flink user (uid/gid 9999) where the volume driver applies fsGroup
    assert spec["podTemplate"]["spec"]["securityContext"]["fsGroup"] == 9999


def test_the_image_ships_the_init_script_and_a_writable_mount_point() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"COPY --chmod=0755 deploy/docker/init.sh .{INIT_SCRIPT.removeprefix('/opt/pricewave')}" in dockerfile
    assert "WORKDIR /opt/pricewave" in dockerfile
    assert f"mkdir -p {SHARED}" in dockerfile and re.search(rf"chown -R flink:flink [^\n]* {SHARED}\n", dockerfile)
    script = DOCKER / "init.sh"
    assert script.stat().st_mode & 0o111, "init.sh must be executable"
    assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
    if shutil.which("shellcheck"):
        result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


REDIS_START = re.compile(r"exec docker-entrypoint\.sh redis-server (\S+)\s*$")


def _redis_start_script(command: list[str]) -> str:
    """The ``sh -c`` script a Redis container starts with."""
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    return command[2]


def test_redis_is_durable_and_its_password_never_on_a_command_line(resolved_compose: dict[str, Any]) -> None:
    # compose: append-only file on a named volume; the password read from the secret file
    redis_service = resolved_compose["services"]["redis"]
    compose_script = _redis_start_script(redis_service["command"])
    assert _mounts(redis_service) == {"/data": ("volume", "redis-data")}
    assert "redis-data" in resolved_compose["volumes"]
    assert [secret["source"] for secret in redis_service["secrets"]] == ["redis_password"]
    assert "cat /run/secrets/redis_password" in compose_script
    # k8s: the same on a PersistentVolumeClaim, from the mounted Secret
    (deployment,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "Deployment"]
    (claim,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "PersistentVolumeClaim"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    k8s_script = _redis_start_script(container["command"])
    assert "args" not in container
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    assert volumes[mounts["/data"]]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # one RWO volume, one pod at a time
    assert volumes[mounts["/run/secrets/pricewave-redis"]]["secret"]["secretName"] == "pricewave-redis"
    # the Redis container's environment carries no password either
    assert not [e for e in container.get("env", []) if "valueFrom" in e]
    # one script for both (tests/deploy/test_redis_start.py runs it), but for where the secret is
    assert k8s_script.replace("/run/secrets/pricewave-redis/password", "/run/secrets/redis_password") == compose_script

    for script in (compose_script, k8s_script):
        lines = script.splitlines()
        # redis-server gets a config file and nothing else; the file is written by shell builtins
        # (echo, printf) from the secret file: the password is in no process's argv
        assert REDIS_START.search(lines[-1]), lines[-1]
        assert "echo 'appendonly yes'" in script and "echo 'dir /data'" in script
        assert "--requirepass" not in script and "--appendonly" not in script and " -a " not in script
        assert "umask 077" in lines
        if shutil.which("shellcheck"):  # the redis image's /bin/sh is dash: POSIX sh only
            result = subprocess.run(["shellcheck", "-s", "sh", "-"], input=script, capture_output=True, text=True,
                                    check=False)  # fmt: skip
            assert result.returncode == 0, result.stdout
    probes = [redis_service["healthcheck"]["test"][1], container["readinessProbe"]["exec"]["command"][2]]
    for probe in probes:
        assert probe.startswith('REDISCLI_AUTH="$(cat /run/secrets/') and " -a " not in probe

    # kubelet expands $(VAR) in command and args into argv: no container may do that with a secret
    for doc in [doc for name in MANIFESTS for doc in documents(name)]:
        for node in _walk(doc):
            if "image" in node or node.get("name") == "flink-main-container":
                secret_vars = {e["name"] for e in node.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
                words = " ".join(str(word) for word in (node.get("command") or []) + (node.get("args") or []))
                assert not [var for var in secret_vars if f"$({var})" in words], node.get("name")


# -- the build context ------------------------------------------------------------------------------

LOCAL_STATE = (
    ".venv/bin/python",
    ".pricewave/models/LATEST",
    ".pricewave/logs/kafka.log",
    "feature_repo/data/registry.db",
    "feature_repo/data/online_store.db",
    "pricewave/__pycache__/config.cpython-311.pyc",
    "feature_repo/__pycache__/sources.cpython-311.pyc",
    "pricewave/stack/__pycache__/redis.cpython-311.pyc",
    "pricewave/config.pyc",
    ".git/HEAD",
    "node_modules/x/index.js",
    "deploy/k8s/validate/node_modules/kubernetes-models/package.json",
    ".pytest_cache/v/cache/nodeids",
    ".mypy_cache/3.11/x.json",
    ".ruff_cache/0.1/x",
    ".hypothesis/examples/x",
    "pricewave.egg-info/PKG-INFO",
    "deploy/docker/catalog/my-shop.csv",
)
"""Paths a checkout may hold that must never reach an image (local state, caches, a shop's data)."""
LOCAL = re.compile(r"(^|/)(__pycache__|\.venv|\.pricewave|node_modules)/|^feature_repo/data/|\.py[cod]$|\.db$")


def _copy_sources() -> list[str]:
    """The context paths the Dockerfile's COPY lines take (not those copied from another stage)."""
    sources = []
    for line in (DOCKER / "Dockerfile").read_text().splitlines():
        words = line.split()
        if not words or words[0] != "COPY" or any(word.startswith("--from") for word in words):
            continue
        args = [word for word in words[1:] if not word.startswith("--")]
        sources += [source.rstrip("/") or "." for source in args[:-1]]
    return sources


def _excluded(go_validator: Path, paths: list[str]) -> dict[str, bool]:
    """Which paths BuildKit leaves out of the build context, by /.dockerignore."""
    result = run_validator(go_validator, "dockerignore", str(ROOT / ".dockerignore"), *paths)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout)["excluded"])


def test_the_dockerignore_keeps_local_state_out_of_the_build_context(go_validator: Path) -> None:
    result = run_validator(go_validator, "dockerignore", str(ROOT / ".dockerignore"), "x")
    patterns = json.loads(result.stdout)["patterns"]
    for required in (".venv", ".pricewave", "feature_repo/data", "**/__pycache__", ".git", "**/node_modules"):
        assert required in patterns, required
    # no exception patterns: an excluded directory is left out whole
    assert not [pattern for pattern in patterns if pattern.startswith("!")]
    excluded = _excluded(go_validator, [*LOCAL_STATE, *_copy_sources(), "pricewave/feature_store/store.py"])
    assert [path for path in LOCAL_STATE if not excluded[path]] == []
    # and what the image is built from stays in
    assert [path for path, out in excluded.items() if out and path not in LOCAL_STATE] == []


def test_the_dockerfile_copies_nothing_of_the_local_state(go_validator: Path) -> None:
    sources = _copy_sources()
    # nothing copies the whole context: each COPY names what the image needs
    assert "." not in sources
    assert {"pricewave", "jobs", "udfs", "schemas", "feature_repo", "deploy/docker/init.sh"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source

    def under_a_source(path: str) -> bool:
        return any(path == source or path.startswith(source + "/") for source in sources)

    # what this checkout holds now under every COPY source (its caches, a local registry), and the
    # paths a checkout may hold: whatever would be copied is code, never local state
    present = []
    for source in sources:
        base = ROOT / source
        files = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        present += [p.relative_to(ROOT).as_posix() for p in files]
    candidates = sorted(set(present) | {path for path in LOCAL_STATE if under_a_source(path)})
    excluded = _excluded(go_validator, candidates)
    copied = [path for path in candidates if not excluded[path]]
    assert "pricewave/config.py" in copied and "feature_repo/feature_store.redis.yaml" in copied
    assert [path for path in copied if LOCAL.search(path)] == []


# -- exposure: TLS + SCRAM on Kafka, NetworkPolicies, securityContexts, web submission, binds --------

FLINK_POD_LABEL = "pricewave-flink"
"""``app.kubernetes.io/name`` of the JobManager's and TaskManagers' pods (the FlinkDeployment's podTemplate)."""


def _monitor() -> dict[str, Any]:
    """The dashboard's Deployment (monitor.yaml)."""
    (deployment,) = [doc for doc in documents("monitor.yaml") if doc["kind"] == "Deployment"]
    return deployment


def _monitor_pod_labels() -> dict[str, str]:
    return dict(_monitor()["spec"]["template"]["metadata"]["labels"])


def _kafka_cluster() -> dict[str, Any]:
    (kafka,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "Kafka"]
    return kafka


def _selected(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a ``matchLabels`` selector selects a pod with ``labels`` (no matchExpressions here)."""
    assert set(selector) <= {"matchLabels"}, selector
    return all(labels.get(key) == value for key, value in (selector.get("matchLabels") or {}).items())


def _flink_pod_labels() -> dict[str, str]:
    return dict(flink_deployment()["spec"]["podTemplate"]["metadata"]["labels"])


def test_kafka_serves_clients_over_tls_with_scram_and_a_certificate_from_a_secret() -> None:
    listeners = _kafka_cluster()["spec"]["kafka"]["listeners"]
    assert listeners, "no listener"
    for listener in listeners:  # no plaintext, no anonymous listener
        assert listener["tls"] is True, listener["name"]
        assert listener["authentication"]["type"] == "scram-sha-512", listener["name"]
        chain = listener["configuration"]["brokerCertChainAndKey"]
        assert chain == {"secretName": "pricewave-kafka-tls", "certificate": "tls.crt", "key": "tls.key"}
        # Strimzi turns these into the listener's NetworkPolicy: the job's pods and the dashboard, nobody else
        peers = listener["networkPolicyPeers"]
        assert peers and all(set(peer) == {"podSelector"} for peer in peers), peers
        flink, monitor = _flink_pod_labels(), _monitor_pod_labels()
        selects = [(_selected(p["podSelector"], flink), _selected(p["podSelector"], monitor)) for p in peers]
        assert selects == [(True, False), (False, True)], peers
    (user,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "KafkaUser"]
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert user["metadata"]["labels"]["strimzi.io/cluster"] == _kafka_cluster()["metadata"]["name"]


def test_k8s_kafka_clients_use_the_tls_listener_with_its_ca(tmp_path: Path) -> None:
    from pricewave.config import load_settings
    from pricewave.kafka_io import flink_security_properties

    (listener,) = _kafka_cluster()["spec"]["kafka"]["listeners"]
    settings_map = _k8s_configmap()
    # the ConfigMap's PRICEWAVE_* variables are pricewave settings (a misspelt one is refused)
    settings = load_settings(env={k: v for k, v in settings_map.items() if k != "PRICEWAVE_KAFKA_USERNAME"})
    kafka = settings.kafka
    assert kafka.port == listener["port"] and kafka.host.startswith("pricewave-kafka-bootstrap.")
    assert kafka.security_protocol == "SASL_SSL" and kafka.sasl_mechanism == "SCRAM-SHA-512"
    (user,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "KafkaUser"]
    assert settings_map["PRICEWAVE_KAFKA_USERNAME"] == user["metadata"]["name"]
    # the CA: mounted from the listener's Secret (its ca.crt only, never the broker's key) in every
    # Flink container and the init step, at the path the setting names
    ca_path = Path(kafka.ssl_ca_location)
    volumes = {volume["name"]: volume for volume in jobmanager_pod()["spec"]["volumes"]}
    secret = listener["configuration"]["brokerCertChainAndKey"]["secretName"]
    for name, container in _k8s_containers().items():
        (mount,) = [m for m in container["volumeMounts"] if ca_path.parent == Path(m["mountPath"])]
        source = volumes[mount["name"]]["secret"]
        assert source["secretName"] == secret and source["items"] == [{"key": "ca.crt", "path": ca_path.name}], name
        assert mount.get("readOnly") is True, name
    # the job's container: the password from the KafkaUser's Secret, by reference
    (main,) = flink_deployment()["spec"]["podTemplate"]["spec"]["containers"]
    env = {e["name"]: e for e in main["env"]}
    password = env["PRICEWAVE_KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": user["metadata"]["name"], "key": "password"}
    # what the job's Kafka connector gets from these settings: TLS with the CA as a PEM truststore
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRICEWAVE_KAFKA_USERNAME", settings_map["PRICEWAVE_KAFKA_USERNAME"])
        patch.setenv("PRICEWAVE_KAFKA_PASSWORD", "x")
        local = settings.model_copy(update={"kafka": kafka.model_copy(update={"ssl_ca_location": str(ca)})})
        properties = flink_security_properties(local)
    assert properties["security.protocol"] == "SASL_SSL" and properties["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (properties["ssl.truststore.type"], properties["ssl.truststore.location"]) == ("PEM", str(ca))


def _workloads() -> dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]:
    """name -> (pod securityContext, [container securityContext, ...]) of every workload deployed."""
    (redis,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "Deployment"]
    redis_pod = redis["spec"]["template"]["spec"]
    jobmanager = jobmanager_pod()["spec"]
    taskmanager = flink_deployment()["spec"]["podTemplate"]["spec"]
    (pool,) = [doc for doc in documents("kafka.yaml") if doc["kind"] == "KafkaNodePool"]
    pool_template = pool["spec"]["template"]
    operators = _kafka_cluster()["spec"]["entityOperator"]["template"]
    monitor = _monitor()["spec"]["template"]["spec"]

    def contexts(pod: dict[str, Any]) -> list[dict[str, Any]]:
        return [c.get("securityContext") or {} for c in pod.get("initContainers", []) + pod["containers"]]

    return {
        "redis": (redis_pod.get("securityContext") or {}, contexts(redis_pod)),
        "jobmanager": (jobmanager.get("securityContext") or {}, contexts(jobmanager)),
        "taskmanager": (taskmanager.get("securityContext") or {}, contexts(taskmanager)),
        "kafka": (pool_template["pod"]["securityContext"], [pool_template["kafkaContainer"]["securityContext"]]),
        "entity-operator": (
            operators["pod"]["securityContext"],
            [operators[name]["securityContext"] for name in ("topicOperatorContainer", "userOperatorContainer")],
        ),
        "monitor": (monitor.get("securityContext") or {}, contexts(monitor)),
    }


READ_ONLY_ROOT = {"redis", "kafka", "entity-operator"}
"""Workloads whose containers run on a read-only root filesystem (Flink's image writes to its own)."""


def test_every_workload_runs_as_non_root_without_capabilities() -> None:
    workloads = _workloads()
    assert len(workloads["jobmanager"][1]) == 2  # the init step and the JobManager
    for name, (pod, containers) in workloads.items():
        assert pod.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        for container in containers:
            assert pod.get("runAsNonRoot") is True or container.get("runAsNonRoot") is True, name
            assert container.get("allowPrivilegeEscalation") is False, name
            assert container.get("capabilities") == {"drop": ["ALL"]}, name
            assert not container.get("privileged"), name
            # a decision, written down, for every container
            assert container.get("readOnlyRootFilesystem") is (name in READ_ONLY_ROOT), name
    # uid 0 nowhere; the Flink image's user, the Redis image's user
    assert workloads["taskmanager"][0]["runAsUser"] == workloads["jobmanager"][0]["runAsUser"] == 9999
    assert workloads["redis"][0]["runAsUser"] == workloads["redis"][0]["fsGroup"] == 999
    assert workloads["monitor"][0]["runAsUser"] == 9999
    for doc in [doc for name in MANIFESTS for doc in documents(name)]:
        for node in _walk(doc):
            assert node.get("runAsUser") != 0 and not node.get("hostNetwork") and not node.get("hostPID")


def test_redis_runs_on_a_read_only_root_with_its_password_readable_by_it_alone() -> None:
    (deployment,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    # the start script writes /tmp/redis.conf: /tmp is the one writable place besides /data
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert set(mounts) == {"/data", "/tmp", "/run/secrets/pricewave-redis"}
    script = _redis_start_script(container["command"])
    assert "> /tmp/redis.conf" in script and "redis-server /tmp/redis.conf" in script
    # root:999 (fsGroup) 0440: the redis user's group reads the password, nobody else
    assert volumes[mounts["/run/secrets/pricewave-redis"]]["secret"]["defaultMode"] == 0o440
    assert pod["automountServiceAccountToken"] is False


def _policies() -> list[dict[str, Any]]:
    docs = documents("network-policies.yaml")
    assert {doc["kind"] for doc in docs} == {"NetworkPolicy"}
    return docs


def test_network_policies_deny_by_default_and_allow_only_the_needed_flows() -> None:
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in _policies()}
    assert all(doc["metadata"]["namespace"] == "pricewave" for doc in _policies())
    deny = policies["default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}  # every pod, no rule: nothing in
    flink_labels = _flink_pod_labels()
    (redis,) = [doc for doc in documents("redis.yaml") if doc["kind"] == "Deployment"]
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    assert flink_labels["app.kubernetes.io/name"] == FLINK_POD_LABEL

    # Redis: from the Flink pods (init step, driver, Python workers) to 6379 only; no egress at all
    redis_policy = policies["pricewave-redis"]
    assert _selected(redis_policy["podSelector"], redis_labels)
    assert not _selected(redis_policy["podSelector"], flink_labels)
    (rule,) = redis_policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    monitor_labels = _monitor_pod_labels()
    readers = [(_selected(peer["podSelector"], flink_labels), _selected(peer["podSelector"], monitor_labels))
               for peer in rule["from"]]  # fmt: skip
    assert readers == [(True, False), (False, True)]  # the job's pods, the dashboard
    assert redis_policy["policyTypes"] == ["Ingress", "Egress"] and redis_policy["egress"] == []

    # Flink: each other (any port), the operator on REST only, Prometheus on the metrics port only
    flink_policy = policies["pricewave-flink"]
    assert _selected(flink_policy["podSelector"], flink_labels)
    assert not _selected(flink_policy["podSelector"], redis_labels)
    ports = {}
    for rule in flink_policy["ingress"]:
        assert rule.get("from"), rule  # never "from anywhere"
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            name = peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            ports[name] = [port["port"] for port in rule.get("ports", [])]
    rest_port = int(flink_deployment()["spec"]["flinkConfiguration"].get("rest.port", 8081))
    metrics_port = int(flink_deployment()["spec"]["flinkConfiguration"]["metrics.reporter.prom.port"])
    assert ports == {
        FLINK_POD_LABEL: [],
        "flink-kubernetes-operator": [rest_port],
        "pricewave-monitor": [rest_port],
        "prometheus": [metrics_port],
    }

    # the dashboard: Prometheus on its HTTP port only (people reach it with kubectl port-forward)
    monitor_policy = policies["pricewave-monitor"]
    assert _selected(monitor_policy["podSelector"], _monitor_pod_labels())
    assert not _selected(monitor_policy["podSelector"], flink_labels)
    (rule,) = monitor_policy["ingress"]
    (container,) = _monitor()["spec"]["template"]["spec"]["containers"]
    (http,) = container["ports"]
    assert rule["ports"] == [{"protocol": "TCP", "port": http["containerPort"]}]
    assert [peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] for peer in rule["from"]] == ["prometheus"]
    # no policy anywhere opens a pod to every source
    for spec in policies.values():
        for rule in spec.get("ingress", []):
            assert rule.get("from"), rule


def test_flink_web_submission_is_off_in_the_deployments(resolved_compose: dict[str, Any]) -> None:
    configuration = flink_deployment()["spec"]["flinkConfiguration"]
    assert configuration["web.submit.enable"] == "false" and configuration["web.cancel.enable"] == "false"
    # application mode: the operator runs the job's driver itself, no upload through the REST API
    assert flink_deployment()["spec"]["mode"] == "native" and flink_deployment()["spec"]["job"]["jarURI"]
    services = resolved_compose["services"]
    for name in ("jobmanager", "taskmanager"):
        properties = yaml.safe_load(services[name]["environment"]["FLINK_PROPERTIES"])
        assert properties["web.submit.enable"] is False and properties["web.cancel.enable"] is False, name
    # compose submits with `flink run` (the REST API's job submission, which web.submit.enable does
    # not gate), never with a jar upload
    submit = " ".join(services["pricing-job"]["command"])
    assert "/opt/flink/bin/flink run --detached -m jobmanager:8081" in submit
    for text in ((DOCKER / "compose.yaml").read_text(), (K8S / "flink-deployment.yaml").read_text()):
        assert "/jars/upload" not in text


def test_compose_publishes_every_port_on_loopback_unless_told_otherwise(
    go_validator: Path, resolved_compose: dict[str, Any], tmp_path: Path
) -> None:
    published = {
        name: port for name, service in resolved_compose["services"].items() for port in service.get("ports") or []
    }
    assert set(published) == {"kafka", "redis", "jobmanager", "monitor", "price-api"}
    assert {name: port["host_ip"] for name, port in published.items()} == dict.fromkeys(published, "127.0.0.1")
    # PRICEWAVE_BIND_HOST publishes them elsewhere
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "PRICEWAVE_BIND_HOST": "0.0.0.0"}
    result = subprocess.run([str(go_validator), "compose", str(DOCKER / "compose.yaml")], env=env,
                            capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert {port["host_ip"] for service in services.values() for port in service.get("ports") or []} == {"0.0.0.0"}


def test_the_monitor_runs_beside_the_job_on_its_settings_secrets_and_volumes() -> None:
    from pricewave.config import load_settings

    deployment = _monitor()
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["/opt/venv/bin/pricewave", "monitor"]
    port = int(command[command.index("--port") + 1])
    assert command[command.index("--host") + 1] == "0.0.0.0" and container["ports"][0]["containerPort"] == port
    (service,) = [doc for doc in documents("monitor.yaml") if doc["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"] == _monitor_pod_labels()
    job_args = flink_deployment()["spec"]["job"]["args"]
    assert command[command.index("--group") + 1] == job_args[job_args.index("--group-id") + 1]  # the job's group
    # the same ConfigMap as the job; Flink's REST API is the Service the operator creates, <name>-rest
    assert container["envFrom"] == [{"configMapRef": {"name": "pricewave-settings"}}]
    env = {e["name"]: e for e in container["env"]}
    rest_host = env["PRICEWAVE_FLINK__REST_HOST"]["value"]
    assert rest_host.split(".")[0] == f"{flink_deployment()['metadata']['name']}-rest"
    configured = {k: v for k, v in _k8s_configmap().items() if k != "PRICEWAVE_KAFKA_USERNAME"}
    configured |= {name: env[name]["value"] for name in ("PRICEWAVE_FLINK__REST_HOST", "PRICEWAVE_FLINK__REST_PORT")}
    settings = load_settings(env=configured)
    assert settings.flink.rest_port == int(flink_deployment()["spec"]["flinkConfiguration"].get("rest.port", 8081))
    # secrets by reference only, and only those it needs (no user-key secret: it pseudonymizes nothing)
    secrets = {name: e["valueFrom"]["secretKeyRef"]["name"] for name, e in env.items() if "valueFrom" in e}
    assert secrets == {"PRICEWAVE_REDIS_PASSWORD": "pricewave-redis", "PRICEWAVE_KAFKA_PASSWORD": "pricewave-app"}
    # the Kafka CA where the setting says, the shared volume (models, Feast registry) read-only
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    ca = mounts[str(Path(settings.kafka.ssl_ca_location).parent)]
    assert ca["readOnly"] is True and volumes[ca["name"]]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    shared = mounts["/var/lib/pricewave"]
    assert shared["readOnly"] is True and volumes[shared["name"]]["persistentVolumeClaim"] == {
        "claimName": "pricewave-shared",
        "readOnly": True,
    }
    assert str(settings.model_dir).startswith("/var/lib/pricewave/") and pod["automountServiceAccountToken"] is False
