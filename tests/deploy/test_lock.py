"""The lock files: they satisfy pyproject.toml, agree with each other, and are what this venv holds.

``requirements-dev.lock`` is what ``deploy/local/setup.sh`` installs (so local runs and CI get the same
versions) and ``requirements.lock`` what the image installs; ``make lock`` re-resolves both.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def pins(lock: Path) -> dict[str, tuple[Version, Marker | None]]:
    """name -> (pinned version, environment marker) of a lock file."""
    out: dict[str, tuple[Version, Marker | None]] = {}
    for line in lock.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        out[canonicalize_name(requirement.name)] = (Version(specifier.version), requirement.marker)
    return out


def project() -> dict[str, list[str]]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]  # type: ignore[no-any-return]


def test_each_lock_satisfies_pyproject() -> None:
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    wanted = [(Requirement(text), runtime) for text in project()["dependencies"]]
    wanted += [(Requirement(text), dev) for text in project()["dependencies"]]
    wanted += [(Requirement(text), dev) for text in project()["optional-dependencies"]["dev"]]  # type: ignore[index]
    for requirement, lock in wanted:
        name = canonicalize_name(requirement.name)
        assert name in lock, f"{name} is not in the lock: run 'make lock'"
        assert requirement.specifier.contains(lock[name][0], prereleases=True), (
            f"{name}=={lock[name][0]} does not satisfy {requirement}: run 'make lock'"
        )


def test_the_dev_lock_holds_the_runtime_lock_at_the_same_versions() -> None:
    runtime, dev = pins(ROOT / "requirements.lock"), pins(ROOT / "requirements-dev.lock")
    assert set(runtime) <= set(dev)
    assert {name: dev[name][0] for name in runtime} == {name: version for name, (version, _) in runtime.items()}


def test_this_environment_holds_exactly_the_dev_lock() -> None:
    """What CI tests is what the lock says (setup.sh installs from it)."""
    differing = {}
    for name, (version, marker) in pins(ROOT / "requirements-dev.lock").items():
        if marker is not None and not marker.evaluate():
            continue  # not for this interpreter or platform
        try:
            installed = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            differing[name] = f"locked {version}, not installed"
            continue
        if installed != version:
            differing[name] = f"locked {version}, installed {installed}"
    assert not differing, f"run 'make setup': {differing}"


def test_setup_and_the_image_install_from_the_locks() -> None:
    setup = (ROOT / "deploy" / "local" / "setup.sh").read_text()
    assert "uv pip install --python .venv/bin/python -r requirements-dev.lock" in setup
    assert "--no-deps -e '.[dev]'" in setup
    # a changed lock re-installs (the stamp covers it), and the tools are checked before the download
    assert "cat pyproject.toml requirements-dev.lock | sha256sum" in setup
    assert setup.index("for tool in java mvn") < setup.index("-r requirements-dev.lock")
    dockerfile = (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    assert "COPY pyproject.toml README.md requirements.lock ./" in dockerfile
    assert "-r requirements.lock" in dockerfile and "--no-deps -e ." in dockerfile
    for lock in ("requirements.lock", "requirements-dev.lock"):
        assert "#    make lock" in (ROOT / lock).read_text()
