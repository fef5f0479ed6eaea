"""Submit the pricing job to a Flink cluster with Flink's own ``flink run``, list, stop and upgrade it.

``flink run`` comes from the installed apache-flink package (``<flink_home>/bin/flink``) and reads
its configuration from ``FLINK_CONF_DIR``: the local stack's conf dir, or a generated one that
points at ``--cluster``. The job's code travels as one zip (``-pyfs``) holding ``jobs/``,
``udfs/``, ``pricewave/``, ``schemas/`` (next to the package, where :mod:`pricewave.schemas` looks
for them) and ``deploy/local/pom.xml`` (which :mod:`pricewave.stack.jars` digests), so the client
and every Python worker import the same snapshot of the code. Connector jars are NOT passed here:
the job sets ``pipeline.jars`` itself, and a second copy breaks Kafka's deserializers.

Jobs are listed, stopped with a savepoint and cancelled through the JobManager's REST API.

Example:
    >>> from pricewave.config import load_settings
    >>> cluster = cluster_for(load_settings(env={}), "http://flink-jm:8081")
    >>> cluster.address, cluster.web_url("0123")
    ('flink-jm:8081', 'http://flink-jm:8081/#/job/0123/overview')
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests
import yaml

from pricewave.config import CONFIG_PATH_ENV, SECRET_ENVS, Settings, mask_secrets
from pricewave.errors import ConfigError, PricewaveError, StackError
from pricewave.feature_store.store import open_store, pinned_settings
from pricewave.stack.flink import FlinkService, default_java_opts, flink_home
from pricewave.stack.process import child_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
# What the job zip holds, relative to the repository root.
SHIPPED_PATHS = ("jobs", "udfs", "pricewave", "schemas", "deploy/local/pom.xml")
JOB_MODULE = "jobs.pricing_job"
JOB_NAME = "pricewave-pricing"
JOB_ID_PATTERN = re.compile(r"JobID ([0-9a-f]{32})")
ACTIVE_STATES = ("CREATED", "INITIALIZING", "RUNNING", "RESTARTING", "FAILING", "CANCELLING", "RECONCILING")


class JobError(PricewaveError):
    """A job could not be submitted, found, stopped or restored."""


@dataclass(frozen=True)
class Cluster:
    """A Flink cluster reached through its JobManager's REST endpoint."""

    rest_url: str
    local_stack: bool = False

    @property
    def host(self) -> str:
        return urlparse(self.rest_url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlparse(self.rest_url).port or 8081

    @property
    def address(self) -> str:
        """``host:port`` for ``flink run -m``."""
        return f"{self.host}:{self.port}"

    def web_url(self, job_id: str) -> str:
        """The job's page in the Flink Web UI."""
        return f"{self.rest_url}/#/job/{job_id}/overview"


@dataclass(frozen=True)
class JobSummary:
    """One row of ``GET /jobs/overview``."""

    job_id: str
    name: str
    state: str
    start_time_ms: int
    duration_ms: int

    @property
    def started(self) -> str:
        if self.start_time_ms <= 0:
            return "-"
        return datetime.fromtimestamp(self.start_time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    @property
    def duration(self) -> str:
        seconds = max(self.duration_ms, 0) // 1000
        hours, rest = divmod(seconds, 3600)
        return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


@dataclass(frozen=True)
class SubmitResult:
    """What ``flink run`` reported."""

    job_id: str
    web_url: str
    command: list[str]


def cluster_for(settings: Settings, url: str | None = None) -> Cluster:
    """The cluster at ``url``, or the local stack's when ``url`` is None.

    Raises:
        ConfigError: ``url`` is not an ``http(s)://host:port`` URL.
    """
    if url is None:
        return Cluster(settings.flink.rest_url.rstrip("/"), local_stack=True)
    parsed = urlparse(url if "://" in url else f"http://{url}")
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"--cluster {url!r} is not a REST URL: use http://HOST:PORT of the JobManager")
    port = parsed.port or 8081
    rest_url = f"{parsed.scheme}://{parsed.hostname}:{port}"
    return Cluster(rest_url, local_stack=rest_url == settings.flink.rest_url.rstrip("/"))


# ---------------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------------


def _rest(cluster: Cluster, method: str, path: str, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(method, f"{cluster.rest_url}{path}", timeout=kwargs.pop("timeout", 10), **kwargs)
    except requests.RequestException:
        hint = "run 'pricewave stack up'" if cluster.local_stack else "check --cluster"
        raise StackError(f"no Flink cluster answers at {cluster.rest_url}: {hint}") from None


def _rest_json(cluster: Cluster, method: str, path: str, *, job_id: str | None = None, **kwargs: Any) -> Any:
    response = _rest(cluster, method, path, **kwargs)
    if response.status_code == 404 and job_id is not None:
        raise JobError(f"no job {job_id} on {cluster.rest_url}: see 'pricewave jobs' for the ids")
    if response.status_code >= 400:
        try:
            errors = response.json().get("errors", [])
        except ValueError:
            errors = [response.text]
        first = str(errors[0]).strip().splitlines()[0] if errors else f"HTTP {response.status_code}"
        raise JobError(f"Flink at {cluster.rest_url} refused {method} {path}: {first}")
    return response.json() if response.content else {}


def check_cluster(cluster: Cluster) -> dict[str, Any]:
    """The cluster's ``/overview``; raises StackError when nothing answers."""
    return dict(_rest_json(cluster, "GET", "/overview"))


def list_jobs(cluster: Cluster) -> list[JobSummary]:
    """Every job the cluster knows, newest first."""
    overview = _rest_json(cluster, "GET", "/jobs/overview")
    jobs = [
        JobSummary(
            job_id=str(job["jid"]),
            name=str(job.get("name", "")),
            state=str(job.get("state", "?")),
            start_time_ms=int(job.get("start-time", -1)),
            duration_ms=int(job.get("duration", 0)),
        )
        for job in overview.get("jobs", [])
    ]
    return sorted(jobs, key=lambda job: -job.start_time_ms)


def job_details(cluster: Cluster, job_id: str) -> dict[str, Any]:
    """``GET /jobs/:id`` (state, vertices, timestamps)."""
    return dict(_rest_json(cluster, "GET", f"/jobs/{job_id}", job_id=job_id))


def resolve_job_id(cluster: Cluster, job_id: str | None) -> str:
    """``job_id`` when given, else the one active pricing job on the cluster.

    Raises:
        JobError: No job id was given and there is not exactly one active pricing job.
    """
    if job_id:
        if not re.fullmatch(r"[0-9a-fA-F]{32}", job_id):
            raise JobError(f"{job_id!r} is not a Flink job id (32 hex digits): see 'pricewave jobs'")
        return job_id.lower()
    active = [job for job in list_jobs(cluster) if job.state in ACTIVE_STATES]
    pricing = [job for job in active if job.name == JOB_NAME] or active
    if len(pricing) != 1:
        what = "no active job" if not pricing else f"{len(pricing)} active jobs"
        raise JobError(f"{what} on {cluster.rest_url}: name the JOB_ID (see 'pricewave jobs')")
    return pricing[0].job_id


def _savepoint_target(directory: str | None) -> str | None:
    if directory is None:
        return None
    if "://" in directory:
        return directory
    return Path(directory).expanduser().resolve().as_uri()


def stop_with_savepoint(
    cluster: Cluster,
    job_id: str,
    directory: str | None,
    *,
    drain: bool = False,
    timeout_s: float = 300.0,
) -> str:
    """Stop ``job_id`` with a savepoint in ``directory`` (None: the cluster's default); returns its path.

    Raises:
        JobError: The job is unknown, or the savepoint failed or did not finish in time.
    """
    state = job_details(cluster, job_id).get("state")
    if state != "RUNNING":
        raise JobError(f"job {job_id} is {state}: only a running job can be stopped with a savepoint")
    body: dict[str, Any] = {"drain": drain}
    target = _savepoint_target(directory)
    if target is not None:
        body["targetDirectory"] = target
    trigger = _rest_json(cluster, "POST", f"/jobs/{job_id}/stop", job_id=job_id, json=body)
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _rest_json(cluster, "GET", f"/jobs/{job_id}/savepoints/{request_id}", job_id=job_id)
        if status.get("status", {}).get("id") == "COMPLETED":
            operation = status.get("operation", {})
            if "location" in operation:
                _wait_until_ended(cluster, job_id, deadline)
                return str(operation["location"])
            cause = operation.get("failure-cause", {}).get("stack-trace", "unknown cause")
            reason = next((line for line in str(cause).splitlines() if "Exception" in line), str(cause))
            raise JobError(f"the savepoint of job {job_id} failed: {reason.strip()[:300]}")
        time.sleep(0.5)
    raise JobError(f"the savepoint of job {job_id} did not finish within {timeout_s:.0f} s")


def _wait_until_ended(cluster: Cluster, job_id: str, deadline: float) -> None:
    """After a stop-with-savepoint: wait until the job's tasks are gone (its slots are free)."""
    while time.monotonic() < deadline:
        if job_details(cluster, job_id).get("state") not in ACTIVE_STATES:
            return
        time.sleep(0.25)


def cancel_job(cluster: Cluster, job_id: str, *, wait_s: float = 60.0) -> None:
    """Cancel ``job_id`` (no savepoint) and wait until it is no longer active."""
    _rest_json(cluster, "PATCH", f"/jobs/{job_id}?mode=cancel", job_id=job_id)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if job_details(cluster, job_id).get("state") not in ACTIVE_STATES:
            return
        time.sleep(0.5)


def wait_for_state(cluster: Cluster, job_id: str, states: Sequence[str], *, timeout_s: float = 120.0) -> str:
    """Wait until the job is in one of ``states`` (all its tasks running, for RUNNING); returns it.

    Raises:
        JobError: The job ended in another terminal state, or time ran out.
    """
    deadline = time.monotonic() + timeout_s
    state = "?"
    while time.monotonic() < deadline:
        details = job_details(cluster, job_id)
        state = str(details.get("state"))
        tasks_running = all(vertex.get("status") == "RUNNING" for vertex in details.get("vertices", []))
        if state in states and (state != "RUNNING" or tasks_running):
            return state
        if state in ("FAILED", "CANCELED", "FINISHED") and state not in states:
            raise JobError(f"job {job_id} ended {state}: see {cluster.web_url(job_id)}")
        time.sleep(0.5)
    raise JobError(f"job {job_id} is {state}, not {'/'.join(states)}, after {timeout_s:.0f} s")


# ---------------------------------------------------------------------------------------------
# Checkpoints to resume from
# ---------------------------------------------------------------------------------------------

LATEST = "latest"
_CHECKPOINT_DIR = re.compile(r"chk-(\d+)")


def _completed_checkpoints(directory: Path) -> list[Path]:
    """The ``chk-N`` folders holding a ``_metadata`` file at ``directory`` and one level below it.

    Flink writes a checkpoint's ``_metadata`` last, through a temporary file renamed when it is
    complete: a ``chk-N`` without one is a checkpoint that was still being taken.
    """
    found: list[Path] = []
    for parent in (directory, *(child for child in directory.iterdir() if child.is_dir())):
        for candidate in parent.iterdir():
            if _CHECKPOINT_DIR.fullmatch(candidate.name) and (candidate / "_metadata").is_file():
                found.append(candidate)
    return found


def latest_checkpoint(location: str | Path) -> Path:
    """The newest completed checkpoint at ``location``.

    Args:
        location: A checkpoint (``chk-N``, or its ``_metadata`` file), a job's checkpoint folder
            (``<checkpoints>/<job id>``) or a checkpoint root holding one folder per job. Across
            jobs the one whose ``_metadata`` was written last wins; within a job the highest N.

    Raises:
        JobError: ``location`` does not exist or holds no completed checkpoint.
    """
    path = Path(str(location).removeprefix("file://").removeprefix("file:")).expanduser().resolve()
    if path.name == "_metadata" and path.is_file():
        return path.parent
    if not path.is_dir():
        raise JobError(f"no checkpoint to resume from: {path} does not exist")
    if _CHECKPOINT_DIR.fullmatch(path.name) and (path / "_metadata").is_file():
        return path
    found = _completed_checkpoints(path)
    if not found:
        raise JobError(
            f"no completed checkpoint (chk-N/_metadata) under {path}: nothing to resume from "
            "(submit without --from-checkpoint to start from the topics' offsets)"
        )
    return max(found, key=lambda chk: ((chk / "_metadata").stat().st_mtime_ns, int(chk.name[4:])))


def resolve_checkpoint(settings: Settings, location: str) -> str:
    """What ``flink run -s`` gets for ``--from-checkpoint LOCATION``.

    ``latest`` means the newest completed checkpoint under the local stack's checkpoint folder
    (``<state>/flink/checkpoints``, where the stack's cluster and the job put them); a local path
    is searched as :func:`latest_checkpoint` does. A remote URI (``s3://...``) cannot be listed
    from here and is passed on as it is: it must name the checkpoint itself.

    Raises:
        JobError: No completed checkpoint is there.
    """
    if location == LATEST:
        return str(latest_checkpoint(settings.path("flink", "checkpoints")))
    if "://" in location and not location.startswith("file://"):
        return location
    return str(latest_checkpoint(location))


# ---------------------------------------------------------------------------------------------
# flink run
# ---------------------------------------------------------------------------------------------


def build_job_archive(settings: Settings, root: Path = REPO_ROOT) -> Path:
    """Zip the job's code (``SHIPPED_PATHS``) into the state directory; returns the zip's path."""
    target = settings.path("submit", "pricewave_job.zip")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for relative in SHIPPED_PATHS:
            source = root / relative
            if not source.exists():
                raise JobError(f"{source} is missing: 'pricewave submit' runs from a pricewave checkout")
            files = [source] if source.is_file() else sorted(source.rglob("*"))
            for path in files:
                if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
                    archive.write(path, path.relative_to(root).as_posix())
    partial.replace(target)
    return target


def flink_python_jar() -> Path:
    """PyFlink's runtime jar, ``<flink_home>/opt/flink-python-*.jar``."""
    jars = sorted((flink_home() / "opt").glob("flink-python*.jar"))
    if not jars:
        raise JobError(f"no flink-python jar in {flink_home() / 'opt'}: reinstall apache-flink")
    return jars[0]


def flink_conf_dir(settings: Settings, cluster: Cluster) -> Path:
    """``FLINK_CONF_DIR`` for the client: the stack's own, or a generated one for another cluster."""
    stack_conf = FlinkService(settings).conf_dir
    if cluster.local_stack and (stack_conf / "config.yaml").exists():
        return stack_conf
    conf = settings.path("submit", f"conf-{cluster.host}-{cluster.port}")
    conf.mkdir(parents=True, exist_ok=True)
    shipped = flink_home() / "conf"
    for name in ("log4j-cli.properties", "log4j-console.properties", "log4j.properties"):
        if (shipped / name).exists():
            shutil.copy(shipped / name, conf / name)
    config = {
        "rest.address": cluster.host,
        "rest.port": cluster.port,
        "jobmanager.rpc.address": cluster.host,
        "python.executable": sys.executable,
        "python.client.executable": sys.executable,
        # The module opens Flink needs on Java 17: without them `flink run` fails in the client.
        "env.java.opts.all": default_java_opts(),
    }
    (conf / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
    return conf


def submit_environment(settings: Settings, conf_dir: Path, config_file: str | None) -> dict[str, str]:
    """The environment of ``flink run``: ours (PRICEWAVE_* reach the job's driver) plus Flink's.

    The driver runs from the shipped zip in a temporary folder, where neither the checkout's
    feature repo nor a relative path means anything: the state dir, the feature repo, the store
    profile and the model directory go to it as absolute paths, resolved here as this command
    resolved them. The driver hands them on to every Python worker with the UDFs.
    """
    pinned = pinned_settings(settings)
    env = child_environment(
        {
            "FLINK_HOME": str(flink_home()),
            "FLINK_CONF_DIR": str(conf_dir),
            "FLINK_LOG_DIR": str(settings.path("logs")),
            "PRICEWAVE_STATE_DIR": str(settings.state_dir),
            "PRICEWAVE_FEATURE_REPO": pinned.feature_repo,
            "PRICEWAVE_STORE_PROFILE": pinned.store_profile,
            "PRICEWAVE_MODELS__MODEL_DIR": pinned.models.model_dir,
        }
    )
    if config_file:
        env[CONFIG_PATH_ENV] = str(Path(config_file).expanduser().resolve())
    return env


def build_submit_command(
    settings: Settings,
    cluster: Cluster,
    archive: Path,
    *,
    parallelism: int | None = None,
    savepoint: str | None = None,
    allow_non_restored: bool = False,
    job_args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """The ``flink run`` command line (detached) that submits the pricing job."""
    command = [
        str(flink_home() / "bin" / "flink"),
        "run",
        "--detached",
        "-m",
        cluster.address,
        "-Drest.address=" + cluster.host,
        f"-Drest.port={cluster.port}",
        "-pym",
        JOB_MODULE,
        "-pyfs",
        str(archive),
        "-pyexec",
        python,
        "-pyclientexec",
        python,
        # PyFlink's operators (flink-python, in opt/) for the cluster's class loaders: `flink run -py`
        # ships it in pipeline.jars, but the job replaces pipeline.jars with its connector jars.
        "-C",
        flink_python_jar().as_uri(),
    ]
    args = list(job_args)
    if parallelism is not None:
        if parallelism < 1:
            raise ConfigError("--parallelism must be >= 1")
        command += ["-p", str(parallelism)]
        # The job sets parallelism.default from its own flag, which would win over -p.
        if "--parallelism" not in args and not any(arg.startswith("--parallelism=") for arg in args):
            args += ["--parallelism", str(parallelism)]
    if savepoint is not None:
        command += ["-s", savepoint]
        if allow_non_restored:
            command.append("--allowNonRestoredState")
    return command + args


def _run_until_submitted(
    command: Sequence[str], env: Mapping[str, str], *, cwd: Path, timeout_s: float, grace_s: float = 5.0
) -> tuple[int | None, str]:
    """Run ``flink run`` until it exits, or until it printed the job id and had ``grace_s`` to exit.

    A detached submission is complete once the JobID is printed; a job driver that then blocks
    (waiting on its result) is ended with its whole process group, which leaves the job running.

    Returns:
        The exit code (None when it was ended or timed out) and the combined output.
    """
    process = subprocess.Popen(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    submitted = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if JOB_ID_PATTERN.search(line):
                submitted.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and not submitted.is_set() and time.monotonic() < deadline:
        time.sleep(0.2)
    if process.poll() is None:
        try:
            process.wait(timeout=grace_s if submitted.is_set() else 0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    reader.join(timeout=5)
    returncode = process.returncode if process.returncode is not None and process.returncode >= 0 else None
    return returncode, "".join(lines)


def _failure_summary(output: str) -> str:
    lines = [line.strip() for line in mask_secrets(output).splitlines() if line.strip()]
    for marker in ("Caused by:", "Error:", "Exception:", "error:"):
        hits = [line for line in lines if marker in line]
        if hits:
            return hits[-1][:300]
    return lines[-1][:300] if lines else "no output"


def submit(
    settings: Settings,
    *,
    cluster_url: str | None = None,
    parallelism: int | None = None,
    savepoint: str | None = None,
    allow_non_restored: bool = False,
    job_args: Sequence[str] = (),
    config_file: str | None = None,
    timeout_s: float = 300.0,
) -> SubmitResult:
    """Submit the pricing job with ``flink run --detached``; returns its job id and Web UI link.

    Raises:
        StackError: The cluster does not answer.
        JobError: ``flink run`` failed (the message names the cause; the full output is in the log).
    """
    cluster = cluster_for(settings, cluster_url)
    check_cluster(cluster)
    # The store the job will write: unreachable, unapplied or refusing the password, say so in one
    # line now rather than as a Java stack trace from the driver (which checks it again).
    open_store(pinned_settings(settings))
    archive = build_job_archive(settings)
    command = build_submit_command(
        settings,
        cluster,
        archive,
        parallelism=parallelism,
        savepoint=savepoint,
        allow_non_restored=allow_non_restored,
        job_args=job_args,
    )
    env = submit_environment(settings, flink_conf_dir(settings, cluster), config_file)
    log = settings.path("logs", f"flink-submit-{time.strftime('%Y%m%d-%H%M%S')}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    returncode, output = _run_until_submitted(command, env, cwd=archive.parent, timeout_s=timeout_s)
    log.write_text(mask_secrets(" ".join(command) + "\n\n" + output))
    match = JOB_ID_PATTERN.search(output)
    if match is None:
        if returncode is None:
            raise JobError(f"flink run did not submit the job within {timeout_s:.0f} s (output: {log})")
        raise JobError(f"flink run failed: {_failure_summary(output)} (full output: {log})")
    job_id = match.group(1)
    return SubmitResult(job_id=job_id, web_url=cluster.web_url(job_id), command=command)


def dry_run_command(
    settings: Settings,
    *,
    cluster_url: str | None = None,
    parallelism: int | None = None,
    savepoint: str | None = None,
    allow_non_restored: bool = False,
    job_args: Sequence[str] = (),
    config_file: str | None = None,
) -> str:
    """The exact shell command ``submit`` would run (environment included), for running by hand.

    Builds the code zip (so the command works as printed) but submits nothing.
    """
    import shlex

    cluster = cluster_for(settings, cluster_url)
    archive = build_job_archive(settings)
    command = build_submit_command(
        settings,
        cluster,
        archive,
        parallelism=parallelism,
        savepoint=savepoint,
        allow_non_restored=allow_non_restored,
        job_args=job_args,
    )
    env = submit_environment(settings, flink_conf_dir(settings, cluster), config_file)
    wanted: Mapping[str, str] = {
        name: env[name]
        for name in sorted(env)
        if name in ("FLINK_HOME", "FLINK_CONF_DIR", "FLINK_LOG_DIR", CONFIG_PATH_ENV)
        or (name.startswith("PRICEWAVE_") and name not in SECRET_ENVS)
    }
    prefix = " ".join(f"{name}={shlex.quote(value)}" for name, value in wanted.items())
    return mask_secrets(f"cd {shlex.quote(str(REPO_ROOT))} && {prefix} {shlex.join(command)}")


def upgrade(
    settings: Settings,
    *,
    job_id: str | None,
    savepoint_dir: str | None,
    cluster_url: str | None = None,
    parallelism: int | None = None,
    allow_non_restored: bool = False,
    job_args: Sequence[str] = (),
    config_file: str | None = None,
) -> tuple[str, SubmitResult]:
    """Stop the job with a savepoint, then submit the current code restored from it.

    Returns:
        The savepoint path and the new job's submit result.
    """
    cluster = cluster_for(settings, cluster_url)
    old_id = resolve_job_id(cluster, job_id)
    savepoint = stop_with_savepoint(cluster, old_id, savepoint_dir)
    result = submit(
        settings,
        cluster_url=cluster_url,
        parallelism=parallelism,
        savepoint=savepoint,
        allow_non_restored=allow_non_restored,
        job_args=job_args,
        config_file=config_file,
    )
    return savepoint, result
