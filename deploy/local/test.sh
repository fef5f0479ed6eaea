#!/usr/bin/env bash
# The whole test suite as two pytest runs side by side (`make test`; CI runs that):
#
#   shared   the integration tests on the shared stack (`pricewave stack up`), one at a time: they
#            share its fixed ports and its Flink cluster, and some stop or restart its services.
#            Streamed here as they run (and logged to .pricewave/logs/tests-shared.log).
#   beside   the unit tests, and the integration tests that touch no shared service (marker
#            `isolated`): the reliability modules that start a private stack of their own on free
#            ports, and tests on a MiniCluster alone. Logged to .pricewave/logs/tests-beside.log and
#            shown here when both runs are done.
#
# Each run gets its own output and exit status. On 2 cores they slow each other (measured 2026-12-06:
# the shared tests took 1.7x their serial time, the rest 1.5x), so the wall time is close to one
# serial run's; the gain is on machines with more cores.
#
# Usage: bash deploy/local/test.sh [PYTEST ARGS...]   (the same arguments go to both runs)
# Exit status: 0 when both runs pass (a run that selected no test counts as passed), else the
# shared run's status if it failed, else the beside run's.
set -uo pipefail
cd "$(dirname "$0")/../.."

# The JVMs the tests start (PyFlink's MiniCluster gateway, `flink run`, the private clusters) live
# for seconds to minutes: the C1 compiler alone halves the CPU they spend compiling (measured
# 2026-12-07: a MiniCluster test 48-59 CPU-s -> 30-31), and CI is CPU-bound on 2 cores. Flink's
# scripts and PyFlink's gateway read JVM_ARGS; a value of your own wins. Benchmarks do not use it.
export JVM_ARGS="${JVM_ARGS--XX:TieredStopAtLevel=1}"

log_dir="${PRICEWAVE_TEST_LOG_DIR:-.pricewave/logs}"  # where both runs log (a test of this script sets it)
mkdir -p "$log_dir"
beside_log="$log_dir/tests-beside.log"
shared_log="$log_dir/tests-shared.log"

# The beside run keeps its own cache so the two runs never write the same .pytest_cache entries.
.venv/bin/python -m pytest -m "not integration or isolated" -o cache_dir=.pytest_cache/beside "$@" \
  >"$beside_log" 2>&1 &
beside_pid=$!
trap 'kill "$beside_pid" 2>/dev/null' INT TERM

echo "[test] unit and private-stack tests run beside this one: $beside_log"
.venv/bin/python -m pytest -m "integration and not isolated" "$@" 2>&1 | tee "$shared_log"
shared=${PIPESTATUS[0]}

if kill -0 "$beside_pid" 2>/dev/null; then
  echo "[test] waiting for the unit and private-stack tests ($beside_log) ..."
fi
wait "$beside_pid"
beside=$?

echo
echo "================ unit and private-stack tests (ran beside the above) ================"
cat "$beside_log"
echo
summary() { grep -E "^=+ .*(passed|failed|error|no tests ran).* =+$" "$1" | tail -1; }
echo "[test] shared stack: exit $shared: $(summary "$shared_log")"
echo "[test] beside: exit $beside: $(summary "$beside_log")"

passed() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
if passed "$shared" && passed "$beside"; then
  exit 0
fi
passed "$shared" || exit "$shared"
exit "$beside"
