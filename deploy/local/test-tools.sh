#!/usr/bin/env bash
# What the test suite needs beyond .venv: Redis, the JDK and Maven (the stack), Chromium (the
# dashboard's browser test), npm (Kubernetes manifest schemas) and Go (Docker Compose's own loader).
# Installs the missing ones with apt when it can (root); otherwise says what to install and fails,
# rather than letting tests skip silently.
set -euo pipefail
say() { echo "[test-tools] $*"; }

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ] || need+=(golang)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  say "apt-get install ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
else
  echo "[test-tools] error: the test suite needs ${need[*]}: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
