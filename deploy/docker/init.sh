#!/usr/bin/env bash
# The one-shot init step of a deployment: what must hold before the pricing job may start.
# Compose runs it as the `init` service (the job's submission waits for it to succeed); Kubernetes as
# an initContainer of the FlinkDeployment's JobManager pod. Same image, same script.
#
#   1. the Feast repo applied with the Redis profile: the registry on the shared volume, where the
#      job's driver and every TaskManager read it; without it the job refuses to start;
#   2. the shop's catalog loaded into Redis: base prices are what channels show when no dynamic price
#      is fresh, and cost/MAP/ceiling bound every price (without them every price fails closed);
#   3. a fresh demand model in the model directory: with none, or one older than models.max_age_h,
#      the kill switch prices everything at base.
#
# Idempotent: every step may run again (a restarted pod, `docker compose up` twice) and leaves the
# same state: `feast apply` converges, a catalog row is only rewritten with data at least as new,
# and a fresh model is kept, not retrained.
#
# Environment (settings are pricewave's own, read by every `pricewave` command below):
#   PRICEWAVE_STORE_PROFILE        online store profile; unset means redis (an SQLite store is
#                                  refused: it would live inside this container only)
#   PRICEWAVE_REDIS__HOST/__PORT   the Redis server
#   PRICEWAVE_REDIS_PASSWORD       its password; or PRICEWAVE_REDIS_PASSWORD_FILE, a file holding it
#                                  (a Compose/Kubernetes secret), read when the variable is unset
#   PRICEWAVE_FEATURE_REPO         the feature repo to apply (on the shared volume)
#   PRICEWAVE_FEATURE_REPO_SOURCE  optional: the image's feature repo; its definitions are copied to
#                                  PRICEWAVE_FEATURE_REPO first (its data/ is kept), so an upgraded
#                                  image's definitions are what gets applied
#   PRICEWAVE_MODELS__MODEL_DIR    the model directory (shared volume); PRICEWAVE_MODELS__MAX_AGE_H
#   PRICEWAVE_CATALOG_FILE         the shop's catalog (.csv or .parquet); unset or empty: the
#                                  simulator's catalog of PRICEWAVE_DEMO_SCENARIO (default small)
#                                  with seed PRICEWAVE_DEMO_SEED (default 7, the quickstart's)
#   PRICEWAVE_INIT_TRAIN           0: never train here, fail instead when no fresh model exists;
#                                  otherwise train one (`pricewave train`, about a minute on CPU)
#   PRICEWAVE_INIT_TRAIN_EVENTS / PRICEWAVE_INIT_TRAIN_EPOCHS   that training's size (20000 / 15)
#   PRICEWAVE_INIT_REDIS_WAIT_S    how long to wait for Redis to answer (default 120)
set -euo pipefail

say() { printf '[init] %s\n' "$*"; }
fail() {
  printf '[init] error: %s\n' "$*" >&2
  exit 1
}

command -v pricewave >/dev/null 2>&1 || fail "the 'pricewave' command is not on PATH ($PATH)"
# The interpreter of that pricewave installation (the venv's python next to its entry point): the
# checks below read pricewave's settings exactly as the commands do.
PYTHON="$(dirname "$(command -v pricewave)")/python"
[[ -x "$PYTHON" ]] || PYTHON=python3

# --- 0. settings --------------------------------------------------------------------------------
if [[ -z "${PRICEWAVE_STORE_PROFILE:-}" ]]; then
  export PRICEWAVE_STORE_PROFILE=redis
  say "PRICEWAVE_STORE_PROFILE is not set: using the redis profile"
fi
if [[ -z "${PRICEWAVE_REDIS_PASSWORD+set}" && -n "${PRICEWAVE_REDIS_PASSWORD_FILE:-}" ]]; then
  [[ -r "$PRICEWAVE_REDIS_PASSWORD_FILE" ]] || fail "PRICEWAVE_REDIS_PASSWORD_FILE=$PRICEWAVE_REDIS_PASSWORD_FILE cannot be read"
  # $(<file) is bash's own read: the password never appears in a command line.
  PRICEWAVE_REDIS_PASSWORD="$(<"$PRICEWAVE_REDIS_PASSWORD_FILE")"
  export PRICEWAVE_REDIS_PASSWORD
  say "Redis password read from $PRICEWAVE_REDIS_PASSWORD_FILE"
fi

# --- 1. the feature repo: the image's definitions, then `feast apply` -----------------------------
if [[ -n "${PRICEWAVE_FEATURE_REPO_SOURCE:-}" ]]; then
  source_repo="$PRICEWAVE_FEATURE_REPO_SOURCE"
  target_repo="${PRICEWAVE_FEATURE_REPO:?PRICEWAVE_FEATURE_REPO_SOURCE needs PRICEWAVE_FEATURE_REPO, the copy to apply}"
  [[ -d "$source_repo" ]] || fail "PRICEWAVE_FEATURE_REPO_SOURCE=$source_repo is not a directory"
  mkdir -p "$target_repo"
  if [[ "$(cd "$source_repo" && pwd -P)" != "$(cd "$target_repo" && pwd -P)" ]]; then
    say "copying the feature repo definitions from $source_repo to $target_repo (its data/ is kept)"
    # Overwrite in place first, then drop the files the image no longer has (a removed feature view
    # must not be applied again); data/ (registry, offline parquet) belongs to the volume and stays.
    tar -C "$source_repo" --exclude=./data --exclude=__pycache__ -cf - . | tar -C "$target_repo" -xf -
    copied="$(cd "$target_repo" && find . -path ./data -prune -o -name __pycache__ -prune -o -type f -print)"
    while IFS= read -r file; do
      if [[ -n "$file" && ! -e "$source_repo/$file" ]]; then
        say "removing $file (no longer in $source_repo)"
        rm -f "$target_repo/$file"
      fi
    done <<<"$copied"
  fi
fi

# What pricewave resolves (the password is never printed). An SQLite online store is refused: it would
# live inside this container only, and the job's pods would never see it.
store_type="$(
  "$PYTHON" - <<'EOF'
import sys

from pricewave.config import load_settings
from pricewave.errors import PricewaveError
from pricewave.feature_store.store import default_repo_path, load_repo_config

s = load_settings()
repo = default_repo_path(s)
try:
    config = load_repo_config(repo, settings=s)
except PricewaveError as exc:
    sys.exit(f"[init] error: {exc}")
kind = config.online_store.type
print(f"[init] feature repo {repo}: project {config.project}, {kind} online store", file=sys.stderr)
if kind == "redis":
    password = "set" if s.redis.password else "not set"
    print(f"[init] Redis at {s.redis.host}:{s.redis.port} (password {password})", file=sys.stderr)
print(f"[init] model directory {s.model_dir} (max age {s.models.max_age_h:g} h)", file=sys.stderr)
if kind == "sqlite":
    sys.exit(f"[init] error: PRICEWAVE_STORE_PROFILE={s.store_profile} selects an SQLite online store, which "
             "lives inside this container only: use PRICEWAVE_STORE_PROFILE=redis")
print(kind)
EOF
)"

if [[ "$store_type" == redis ]]; then
  wait_s="${PRICEWAVE_INIT_REDIS_WAIT_S:-120}"
  say "waiting up to ${wait_s} s for Redis to answer"
  # A pod may start before Redis is ready; a wrong password fails at once rather than after the wait.
  "$PYTHON" - "$wait_s" <<'EOF'
import sys
import time

import redis

from pricewave.config import load_settings

r = load_settings().redis
deadline = time.monotonic() + float(sys.argv[1])
client = redis.Redis(host=r.host, port=r.port, password=r.password, socket_connect_timeout=2)
while True:
    try:
        client.ping()
        break
    except redis.AuthenticationError:
        sys.exit(f"[init] error: Redis at {r.host}:{r.port} refused the password: set PRICEWAVE_REDIS_PASSWORD "
                 "(or PRICEWAVE_REDIS_PASSWORD_FILE) to its password")
    except redis.ConnectionError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"[init] error: Redis at {r.host}:{r.port} did not answer within {sys.argv[1]} s: {exc}")
        time.sleep(1)
print(f"[init] Redis at {r.host}:{r.port} answers")
EOF
fi

say "applying the Feast feature repo (pricewave features apply)"
pricewave features apply

# --- 2. the catalog -----------------------------------------------------------------------------
if [[ -n "${PRICEWAVE_CATALOG_FILE:-}" ]]; then
  [[ -r "$PRICEWAVE_CATALOG_FILE" ]] || fail "PRICEWAVE_CATALOG_FILE=$PRICEWAVE_CATALOG_FILE cannot be read"
  say "loading the catalog $PRICEWAVE_CATALOG_FILE (pricewave catalog load)"
  pricewave catalog load "$PRICEWAVE_CATALOG_FILE"
else
  scenario="${PRICEWAVE_DEMO_SCENARIO:-small}"
  seed="${PRICEWAVE_DEMO_SEED:-7}"
  scratch="$(mktemp -d)"
  trap 'rm -rf "$scratch"' EXIT
  say "PRICEWAVE_CATALOG_FILE is not set: loading the simulator's demo catalog (scenario $scenario, seed $seed); set it to your shop's catalog for real base prices"
  pricewave catalog export --scenario "$scenario" --seed "$seed" --out "$scratch/catalog.csv"
  pricewave catalog load "$scratch/catalog.csv"
fi

# --- 3. a fresh model ---------------------------------------------------------------------------
# Prints "fresh|missing|stale<TAB>what was found", with the job's own age limit (models.max_age_h).
model_state() {
  "$PYTHON" - <<'EOF'
from pricewave.config import load_settings
from pricewave.pricing.artifact import POINTER, artifact_age_s

s = load_settings()
model_dir, limit = s.model_dir, s.models.max_age_s
age = artifact_age_s(model_dir)
if age is None:
    print(f"missing\tno model in {model_dir}")
else:
    version = (model_dir / POINTER).read_text().strip()
    state = "fresh" if age <= limit else "stale"
    print(f"{state}\tmodel {version} in {model_dir} is {age / 3600:.1f} h old (limit {limit / 3600:g} h)")
EOF
}

# An assignment, so that a failing check stops the script (set -e) instead of reading as "missing".
found="$(model_state)"
IFS=$'\t' read -r state detail <<<"$found"
if [[ "$state" == fresh ]]; then
  say "$detail: keeping it"
else
  case "${PRICEWAVE_INIT_TRAIN:-1}" in
  0 | false | no)
    fail "$detail and PRICEWAVE_INIT_TRAIN=0: publish a fresh model there first (pricewave train --out DIR); without one the job's kill switch prices everything at base"
    ;;
  esac
  scenario="${PRICEWAVE_DEMO_SCENARIO:-small}"
  events="${PRICEWAVE_INIT_TRAIN_EVENTS:-20000}"
  epochs="${PRICEWAVE_INIT_TRAIN_EPOCHS:-15}"
  say "$detail: training one (pricewave train --scenario $scenario --events $events --epochs $epochs; about a minute)"
  pricewave train --scenario "$scenario" --events "$events" --epochs "$epochs" --no-progress
  found="$(model_state)"
  IFS=$'\t' read -r state detail <<<"$found"
  [[ "$state" == fresh ]] || fail "after training: $detail"
  say "$detail: published"
fi

say "done: the pricing job may start"
