#!/usr/bin/env bash
# Set up pricewave's environment in .venv/ (idempotent, fast when the caches are warm).
#   - checks for the JDK and Maven the local stack needs first (jars are resolved by `pricewave stack up`);
#   - Python 3.11 (CI's; 3.12 works too, PRICEWAVE_PYTHON=python3.12 picks it) virtual environment
#     with the exact versions of requirements-dev.lock (the same as CI
#     and, for the runtime part, requirements.lock, the image), then the project itself, editable,
#     via uv (uv's cache in ~/.cache/uv makes a re-install a matter of seconds).
#   bash deploy/local/setup.sh lock    re-resolves both lock files from pyproject.toml (`make lock`).
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "[setup] $*"; }

source deploy/local/python.sh  # sets python_bin: PRICEWAVE_PYTHON, else the .venv's, else 3.11
python_version=$("$python_bin" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [ -x .venv/bin/python ] && [ "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$python_version" ]; then
  echo "[setup] error: .venv is Python $(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])'), not $python_version: remove .venv to switch" >&2; exit 1
fi

# Before the multi-GB download: the local stack cannot run without them.
for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[setup] error: $tool is required: apt-get install openjdk-17-jdk-headless maven" >&2; exit 1; }
done

if "$python_bin" -m uv --version >/dev/null 2>&1; then
  uv() { "$python_bin" -m uv "$@"; }
else
  # A distribution's Python is often "externally managed" (PEP 668) and refuses a pip install:
  # uv goes into the project's own virtual environment instead, made with the standard library.
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv (Python $python_version) ..."
    "$python_bin" -m venv .venv || { echo "[setup] error: 'python$python_version -m venv' failed: apt-get install python$python_version-venv" >&2; exit 1; }
  fi
  if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
    say "installing uv (fast, cached Python installs) into .venv with pip ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check uv
  fi
  uv() { .venv/bin/python -m uv "$@"; }
fi

if [ "${1:-}" = "lock" ]; then
  # Universal (any OS, markers kept) from Python 3.11 up (requires-python: 3.11 and 3.12); the dev lock
  # keeps the runtime lock's versions.
  compile=(pip compile pyproject.toml --universal --python-version 3.11 --no-annotate -q --custom-compile-command "make lock")
  uv "${compile[@]}" -o requirements.lock
  uv "${compile[@]}" --extra dev -c requirements.lock -o requirements-dev.lock
  say "locked: requirements.lock ($(grep -c '==' requirements.lock) packages), requirements-dev.lock ($(grep -c '==' requirements-dev.lock))"
  exit 0
fi

stamp=".venv/.pricewave-installed-$(cat pyproject.toml requirements-dev.lock | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { say "creating .venv (Python $python_version) ..."; uv venv -q --seed --python "$python_bin" .venv; }
  say "installing the $(grep -c '==' requirements-dev.lock) locked packages of requirements-dev.lock into .venv (the first run downloads torch with its CUDA libraries, flink and feast: 6.8 GB installed, 3.1 GB of it CUDA) ..."
  uv pip install --python .venv/bin/python -r requirements-dev.lock
  uv pip install --python .venv/bin/python --no-deps -e '.[dev]'
  uv pip check --python .venv/bin/python
  rm -f .venv/.pricewave-installed-* .venv/.pricewave-bytecode
  touch "$stamp"
fi
# Bytecode for every installed module, once per install. Where PYTHONDONTWRITEBYTECODE is set (CI
# images often set it) Python never caches it, so each process compiled torch, feast, pyflink and
# pandas from source again: 16 s instead of 10 s to import them, for every CLI call, every Python
# worker of a job and every test subprocess. (|| true: torch ships a Python 3.12-only test module.)
if [ ! -f .venv/.pricewave-bytecode ]; then
  say "compiling the installed packages to bytecode (once per install, about a minute) ..."
  .venv/bin/python -m compileall -q -j 0 .venv/lib/python*/site-packages >/dev/null 2>&1 || true
  touch .venv/.pricewave-bytecode
fi
say "ready: .venv/bin/pricewave, .venv/bin/feast"
