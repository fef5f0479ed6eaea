"""The pricing job on a Flink cluster: submission with ``flink run``, and the JobManager's REST API.

* :mod:`~pricewave.flink.rest`: the cluster (:func:`cluster_for`), its jobs listed, watched,
  stopped with a savepoint and cancelled.
* :mod:`~pricewave.flink.checkpoints`: retained checkpoints to resume from.
* :mod:`~pricewave.flink.submission`: ``flink run`` with the job's code zip, and upgrades.

Example:
    >>> from pricewave import flink
    >>> from pricewave.config import load_settings
    >>> flink.cluster_for(load_settings(env={}), "flink-jm:8081").rest_url
    'http://flink-jm:8081'
"""

from pricewave.flink.checkpoints import LATEST, latest_checkpoint, resolve_checkpoint
from pricewave.flink.rest import (
    ACTIVE_STATES,
    JOB_NAME,
    Cluster,
    JobError,
    JobSummary,
    cancel_job,
    check_cluster,
    cluster_for,
    job_details,
    list_jobs,
    resolve_job_id,
    rest_json,
    stop_with_savepoint,
    wait_for_state,
)
from pricewave.flink.submission import (
    JOB_ID_PATTERN,
    JOB_MODULE,
    FlinkRunArgs,
    SubmitResult,
    build_job_archive,
    build_submit_command,
    dry_run_command,
    flink_conf_dir,
    flink_python_jar,
    submit,
    submit_environment,
    upgrade,
)

__all__ = [
    "ACTIVE_STATES",
    "JOB_ID_PATTERN",
    "JOB_MODULE",
    "JOB_NAME",
    "LATEST",
    "Cluster",
    "FlinkRunArgs",
    "JobError",
    "JobSummary",
    "SubmitResult",
    "build_job_archive",
    "build_submit_command",
    "cancel_job",
    "check_cluster",
    "cluster_for",
    "dry_run_command",
    "flink_conf_dir",
    "flink_python_jar",
    "job_details",
    "latest_checkpoint",
    "list_jobs",
    "resolve_checkpoint",
    "resolve_job_id",
    "rest_json",
    "stop_with_savepoint",
    "submit",
    "submit_environment",
    "upgrade",
    "wait_for_state",
]
