# Sourced by setup.sh from the repository root: chooses the Python for .venv and sets python_bin.
#   PRICEWAVE_PYTHON when set (3.11 or 3.12); else the Python of an existing .venv, so that
#   `make run` after a 3.12 setup needs no variable; else python3.11, python3.12, python3.
# Standalone, for a look: bash deploy/local/python.sh   (prints the choice)
# PyFlink 2.2 supports Python 3.9-3.12; pricewave is tested on 3.11 (CI) and 3.12 (README, "Python 3.12").
supported='import sys; sys.exit(sys.version_info[:2] not in ((3, 11), (3, 12)))'
python_bin=""
if [ -n "${PRICEWAVE_PYTHON:-}" ]; then
  command -v "$PRICEWAVE_PYTHON" >/dev/null 2>&1 && "$PRICEWAVE_PYTHON" -c "$supported" \
    || { echo "[setup] error: PRICEWAVE_PYTHON=$PRICEWAVE_PYTHON is not a Python 3.11 or 3.12 interpreter" >&2; exit 1; }
  python_bin=$(command -v "$PRICEWAVE_PYTHON")
elif [ -x .venv/bin/python ] && .venv/bin/python -c "$supported" 2>/dev/null; then
  # An existing .venv keeps its Python: `make run` after a 3.12 setup needs no variable.
  python_bin=$(.venv/bin/python -c 'import sys; print(sys._base_executable)')
else
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c "$supported"; then
      python_bin=$(command -v "$candidate"); break
    fi
  done
fi
[ -n "$python_bin" ] || { echo "[setup] error: Python 3.11 or 3.12 is required (python3.11 not found): apt-get install python3.11" >&2; exit 1; }
if [ "${BASH_SOURCE[0]}" = "$0" ]; then echo "$python_bin"; fi
