"""Retained checkpoints to resume the job from (``pricewave submit --from-checkpoint PATH|latest``)."""

from __future__ import annotations

import re
from pathlib import Path

from pricewave.config import Settings
from pricewave.flink.rest import JobError

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
