"""A Flink cluster through its JobManager's REST API: jobs listed, watched, stopped with a savepoint, cancelled.

Example:
    >>> from pricewave.config import load_settings
    >>> cluster = cluster_for(load_settings(env={}), "http://flink-jm:8081")
    >>> cluster.address, cluster.web_url("0123")
    ('flink-jm:8081', 'http://flink-jm:8081/#/job/0123/overview')
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from pricewave.config import Settings
from pricewave.errors import ConfigError, PricewaveError, StackError

JOB_NAME = "pricewave-pricing"


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


def _rest(cluster: Cluster, method: str, path: str, **kwargs: Any) -> requests.Response:
    try:
        return requests.request(method, f"{cluster.rest_url}{path}", timeout=kwargs.pop("timeout", 10), **kwargs)
    except requests.RequestException:
        hint = "run 'pricewave stack up'" if cluster.local_stack else "check --cluster"
        raise StackError(f"no Flink cluster answers at {cluster.rest_url}: {hint}") from None


def rest_json(cluster: Cluster, method: str, path: str, *, job_id: str | None = None, **kwargs: Any) -> Any:
    """The JSON answer to ``method path``; a refusal raises :class:`JobError` with Flink's first error line."""
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
    return dict(rest_json(cluster, "GET", "/overview"))


def list_jobs(cluster: Cluster) -> list[JobSummary]:
    """Every job the cluster knows, newest first."""
    overview = rest_json(cluster, "GET", "/jobs/overview")
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
    return dict(rest_json(cluster, "GET", f"/jobs/{job_id}", job_id=job_id))


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
    trigger = rest_json(cluster, "POST", f"/jobs/{job_id}/stop", job_id=job_id, json=body)
    request_id = trigger["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = rest_json(cluster, "GET", f"/jobs/{job_id}/savepoints/{request_id}", job_id=job_id)
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
    rest_json(cluster, "PATCH", f"/jobs/{job_id}?mode=cancel", job_id=job_id)
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
