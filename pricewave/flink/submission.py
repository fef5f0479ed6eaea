"""Submit the pricing job with Flink's own ``flink run``, and upgrade it through a savepoint.

``flink run`` comes from the installed apache-flink package (``<flink_home>/bin/flink``) and reads
its configuration from ``FLINK_CONF_DIR``: the local stack's conf dir, or a generated one that
points at ``--cluster``. The job's code travels as one zip (``-pyfs``) holding ``jobs/``,
``udfs/``, ``pricewave/``, ``schemas/`` (next to the package, where :mod:`pricewave.schemas` looks
for them) and ``deploy/local/pom.xml`` (which :mod:`pricewave.stack.jars` digests), so the client
and every Python worker import the same snapshot of the code. Connector jars are NOT passed here:
the job sets ``pipeline.jars`` itself, and a second copy breaks Kafka's deserializers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

import yaml

from pricewave.config import CONFIG_PATH_ENV, HOLIDAYS_ENV, SECRET_ENVS, Settings, holidays_variable, mask_secrets
from pricewave.errors import ConfigError
from pricewave.feature_store.store import open_store, pinned_settings
from pricewave.flink.rest import Cluster, JobError, check_cluster, cluster_for, resolve_job_id, stop_with_savepoint
from pricewave.stack.flink import FlinkService, default_java_opts, flink_home
from pricewave.stack.process import child_environment

REPO_ROOT = Path(__file__).resolve().parents[2]


# What the job zip holds, relative to the repository root.
SHIPPED_PATHS = ("jobs", "udfs", "pricewave", "schemas", "deploy/local/pom.xml")


JOB_MODULE = "jobs.pricing_job"


JOB_ID_PATTERN = re.compile(r"JobID ([0-9a-f]{32})")


class FlinkRunArgs(TypedDict, total=False):
    """What ``flink run`` is asked for besides the code and the cluster.

    Keys:
        parallelism: ``-p`` (and the job's own ``--parallelism``); default: the cluster's.
        savepoint: ``-s``: a savepoint or retained checkpoint to restore the job's state from.
        allow_non_restored: ``--allowNonRestoredState``: state no operator claims is dropped.
        job_args: flags of ``jobs/pricing_job.py``.
    """

    parallelism: int | None
    savepoint: str | None
    allow_non_restored: bool
    job_args: Sequence[str]


@dataclass(frozen=True)
class SubmitResult:
    """What ``flink run`` reported."""

    job_id: str
    web_url: str
    command: list[str]


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
    resolved them, and the holiday calendar as this command has it. The driver hands them on to
    every Python worker with the UDFs.
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
            HOLIDAYS_ENV: holidays_variable(pinned),
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
    python: str = sys.executable,
    **run: Unpack[FlinkRunArgs],
) -> list[str]:
    """The ``flink run`` command line (detached) that submits the pricing job."""
    parallelism, savepoint = run.get("parallelism"), run.get("savepoint")
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
    args = list(run.get("job_args", ()))
    if parallelism is not None:
        if parallelism < 1:
            raise ConfigError("--parallelism must be >= 1")
        command += ["-p", str(parallelism)]
        # The job sets parallelism.default from its own flag, which would win over -p.
        if "--parallelism" not in args and not any(arg.startswith("--parallelism=") for arg in args):
            args += ["--parallelism", str(parallelism)]
    if savepoint is not None:
        command += ["-s", savepoint]
        if run.get("allow_non_restored", False):
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


def failure_summary(output: str) -> str:
    """The line of ``flink run``'s output that names the cause (secrets masked), at most 300 characters."""
    lines = [line.strip() for line in mask_secrets(output).splitlines() if line.strip()]
    for marker in ("Caused by:", "Error:", "Exception:", "error:"):
        hits = [line for line in lines if marker in line]
        if hits:
            return hits[-1][:300]
    return lines[-1][:300] if lines else "no output"


def _prepare(
    settings: Settings, cluster: Cluster, config_file: str | None, run: FlinkRunArgs
) -> tuple[Path, list[str], dict[str, str]]:
    """The code zip, the ``flink run`` command and its environment (what ``submit`` runs)."""
    archive = build_job_archive(settings)
    command = build_submit_command(settings, cluster, archive, **run)
    return archive, command, submit_environment(settings, flink_conf_dir(settings, cluster), config_file)


def submit(
    settings: Settings,
    *,
    cluster_url: str | None = None,
    config_file: str | None = None,
    timeout_s: float = 300.0,
    **run: Unpack[FlinkRunArgs],
) -> SubmitResult:
    """Submit the pricing job with ``flink run --detached``; returns its job id and Web UI link.

    Args:
        settings: The settings the job runs with (its store profile and model directory travel with it).
        cluster_url: The JobManager's REST URL; default: the local stack's.
        config_file: A settings file the job's driver reads too.
        timeout_s: How long ``flink run`` may take to print the job id.
        **run: What ``flink run`` is asked for (:class:`FlinkRunArgs`).

    Raises:
        StackError: The cluster does not answer.
        JobError: ``flink run`` failed (the message names the cause; the full output is in the log).
    """
    cluster = cluster_for(settings, cluster_url)
    check_cluster(cluster)
    # The store the job will write: unreachable, unapplied or refusing the password, say so in one
    # line now rather than as a Java stack trace from the driver (which checks it again).
    open_store(pinned_settings(settings))
    archive, command, env = _prepare(settings, cluster, config_file, run)
    log = settings.path("logs", f"flink-submit-{time.strftime('%Y%m%d-%H%M%S')}.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    returncode, output = _run_until_submitted(command, env, cwd=archive.parent, timeout_s=timeout_s)
    log.write_text(mask_secrets(" ".join(command) + "\n\n" + output))
    match = JOB_ID_PATTERN.search(output)
    if match is None:
        if returncode is None:
            raise JobError(f"flink run did not submit the job within {timeout_s:.0f} s (output: {log})")
        raise JobError(f"flink run failed: {failure_summary(output)} (full output: {log})")
    job_id = match.group(1)
    return SubmitResult(job_id=job_id, web_url=cluster.web_url(job_id), command=command)


def dry_run_command(
    settings: Settings,
    *,
    cluster_url: str | None = None,
    config_file: str | None = None,
    **run: Unpack[FlinkRunArgs],
) -> str:
    """The exact shell command ``submit`` would run (environment included), for running by hand.

    Builds the code zip (so the command works as printed) but submits nothing.
    """
    _, command, env = _prepare(settings, cluster_for(settings, cluster_url), config_file, run)
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
    config_file: str | None = None,
    **run: Unpack[FlinkRunArgs],
) -> tuple[str, SubmitResult]:
    """Stop the job with a savepoint, then submit the current code restored from it.

    Returns:
        The savepoint path and the new job's submit result.
    """
    cluster = cluster_for(settings, cluster_url)
    savepoint = stop_with_savepoint(cluster, resolve_job_id(cluster, job_id), savepoint_dir)
    restore: FlinkRunArgs = {**run, "savepoint": savepoint}
    result = submit(settings, cluster_url=cluster_url, config_file=config_file, **restore)
    return savepoint, result
