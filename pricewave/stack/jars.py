"""JVM jars for the local stack, resolved from Maven Central by ``deploy/local/pom.xml``.

Two sets, each in one place under the state directory:

* ``kafka``: the broker and its dependencies (started with ``java -cp``),
* ``flink``: connector jars a job ships through ``pipeline.jars`` (never also in Flink's lib/).

Example:
    >>> from pricewave.config import load_settings
    >>> jar_dir(load_settings(env={}), "flink").name
    'flink'
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from pricewave.config import Settings
from pricewave.errors import StackError

JarSet = Literal["kafka", "flink"]
POM_PATH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"


def jar_dir(settings: Settings, jar_set: JarSet) -> Path:
    """Where the jars of ``jar_set`` live."""
    return settings.path("jars", jar_set)


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()[:16]


def ensure_jars(settings: Settings, jar_set: JarSet, *, say: bool = True) -> Path:
    """Resolve the jars of ``jar_set`` with Maven unless they are already there for this pom.

    Raises:
        StackError: Maven is missing or the resolution failed.
    """
    target = jar_dir(settings, jar_set)
    stamp = target / ".pom-digest"
    if stamp.exists() and stamp.read_text() == _pom_digest() and any(target.glob("*.jar")):
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not installed: install it (apt-get install maven) and retry")
    if say:
        print(f"[stack] resolving {jar_set} jars from Maven Central into {target} ...", flush=True)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(POM_PATH),
        "dependency:copy-dependencies",
        f"-P{jar_set}",
        f"-DoutputDirectory={target}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
        raise StackError(f"Maven could not resolve the {jar_set} jars: {' / '.join(detail)}")
    stamp.write_text(_pom_digest())
    return target


def flink_connector_jars(settings: Settings) -> list[Path]:
    """The connector jars a Flink job ships with ``pipeline.jars`` (resolved on first use)."""
    return sorted(ensure_jars(settings, "flink", say=False).glob("*.jar"))


def kafka_classpath(settings: Settings) -> str:
    """The broker's ``java -cp`` classpath."""
    return str(ensure_jars(settings, "kafka") / "*")
