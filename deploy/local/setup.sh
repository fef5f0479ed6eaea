#!/usr/bin/env bash
# Set up pricewave's environment in .venv/ (idempotent, fast when the caches are warm).
#   - Python 3.11 virtual environment with the project installed editable, via uv
#     (uv's cache in ~/.cache/uv makes a re-install a matter of seconds);
#   - checks for the JDK and Maven the local stack needs (jars are resolved by `pricewave stack up`).
set -euo pipefail
cd "$(dirname "$0")/../.."
say() { echo "[setup] $*"; }

python_bin=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python_bin=$(command -v "$candidate"); break
  fi
done
[ -n "$python_bin" ] || { echo "[setup] error: Python 3.11 is required (python3.11 not found)" >&2; exit 1; }

if "$python_bin" -m uv --version >/dev/null 2>&1; then
  uv() { "$python_bin" -m uv "$@"; }
else
  # A distribution's Python is often "externally managed" (PEP 668) and refuses a pip install:
  # uv goes into the project's own virtual environment instead, made with the standard library.
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv (Python 3.11) ..."
    "$python_bin" -m venv .venv || { echo "[setup] error: 'python3.11 -m venv' failed: apt-get install python3-venv" >&2; exit 1; }
  fi
  if ! .venv/bin/python -m uv --version >/dev/null 2>&1; then
    say "installing uv (fast, cached Python installs) into .venv with pip ..."
    .venv/bin/python -m pip install -q --disable-pip-version-check uv
  fi
  uv() { .venv/bin/python -m uv "$@"; }
fi

stamp=".venv/.pricewave-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { say "creating .venv (Python 3.11) ..."; uv venv -q --seed --python "$python_bin" .venv; }
  say "installing pricewave and its dependencies into .venv (first run downloads torch, flink, feast: a few GB) ..."
  uv pip install -q --python .venv/bin/python -e '.[dev]'
  uv pip check --python .venv/bin/python
  rm -f .venv/.pricewave-installed-*
  touch "$stamp"
fi

for tool in java mvn; do
  command -v "$tool" >/dev/null 2>&1 || { echo "[setup] error: $tool is required: apt-get install openjdk-17-jdk-headless maven" >&2; exit 1; }
done
say "ready: .venv/bin/pricewave, .venv/bin/feast"
