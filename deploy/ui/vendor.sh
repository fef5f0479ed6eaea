#!/usr/bin/env bash
# Reproduce the vendored charting library of the monitoring dashboard (pricewave monitor):
# uPlot, pinned in package.json / package-lock.json, installed from npm into a temporary folder,
# its built files copied into pricewave/monitor/static/vendor/ (committed: the page needs no internet).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="$here/../../pricewave/monitor/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
(cd "$work" && npm ci --no-audit --no-fund --ignore-scripts --silent)
mkdir -p "$target"
cp "$work/node_modules/uplot/dist/uPlot.iife.min.js" "$target/uPlot.iife.min.js"
cp "$work/node_modules/uplot/dist/uPlot.min.css" "$target/uPlot.min.css"
cp "$work/node_modules/uplot/LICENSE" "$target/LICENSE.uPlot"
version="$(node -p "require('$work/node_modules/uplot/package.json').version")"
echo "uPlot $version" > "$target/VERSION"
echo "vendored uPlot $version into $target"
