"""JVM jars for the local stack: resolved from Maven Central by ``deploy/local/pom.xml``, and our own.

Three sets, each in one place under the state directory:

* ``kafka``: the broker and its dependencies (started with ``java -cp``),
* ``flink``: connector jars a job ships through ``pipeline.jars`` (never also in Flink's lib/),
* ``udfs``: the job's Java functions (``udfs/java``), compiled against the installed PyFlink's own
  jars and shipped through ``pipeline.jars`` too (:func:`java_udf_jar`).

Example:
    >>> from pricewave.config import load_settings
    >>> jar_dir(load_settings(env={}), "flink").name
    'flink'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Literal

from pricewave.config import Settings
from pricewave.errors import StackError

JarSet = Literal["kafka", "flink"]
POM_PATH = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"
JAVA_UDF_SOURCES = Path(__file__).resolve().parents[2] / "udfs" / "java"


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


def java_udf_sources() -> list[Path]:
    """The Java sources under ``udfs/java``, in the order their digest reads them (byte order of the path)."""
    return sorted(JAVA_UDF_SOURCES.rglob("*.java"), key=lambda path: str(path).encode())


def java_udf_digest() -> str:
    """The first 16 hex digits of the SHA-256 of the Java sources, concatenated: the jar's version.

    The same as ``find udfs/java -name '*.java' | LC_ALL=C sort | xargs cat | sha256sum | cut -c1-16``,
    which the Docker image runs to build the jar ahead of time.
    """
    return hashlib.sha256(b"".join(path.read_bytes() for path in java_udf_sources())).hexdigest()[:16]


def java_udf_jar(settings: Settings) -> Path:
    """The jar of the job's Java functions, compiled on first use and whenever ``udfs/java`` changes.

    ``javac`` compiles against the jars of the installed PyFlink, so the functions match the Flink that
    runs them; the jar's name carries a digest of the sources. A process compiles in a folder of its
    own and renames the jar into place, so two test processes can ask for it at once.

    Raises:
        StackError: no JDK (``javac``/``jar``) on PATH, or the sources do not compile.
    """
    sources = java_udf_sources()
    target = settings.path("jars", "udfs") / f"pricewave-udfs-{java_udf_digest()}.jar"
    if target.exists():
        return target
    javac, jar = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar is None:
        raise StackError("javac and jar are missing: install a JDK 17 (apt-get install openjdk-17-jdk-headless)")
    import pyflink

    classpath = str(Path(pyflink.__file__).resolve().parent / "lib" / "*")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        classes = Path(work) / "classes"
        for command in (
            [javac, "--release", "11", "-nowarn", "-cp", classpath, "-d", str(classes), *map(str, sources)],
            [jar, "--create", "--file", str(Path(work) / target.name), "-C", str(classes), "."],
        ):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                detail = (result.stdout + result.stderr).strip().splitlines()[-5:]
                raise StackError(f"could not build {target.name} from {JAVA_UDF_SOURCES}: {' / '.join(detail)}")
        os.replace(Path(work) / target.name, target)
    for stale in target.parent.glob("pricewave-udfs-*.jar"):
        if stale != target:
            stale.unlink(missing_ok=True)
    return target


def kafka_classpath(settings: Settings) -> str:
    """The broker's ``java -cp`` classpath."""
    return str(ensure_jars(settings, "kafka") / "*")
