#!/usr/bin/env bash
# EMR bootstrap action of fruit_pipeline: runs on every node as the hadoop user, before Spark starts.
#   bootstrap.sh s3://<bucket>/<prefix>/deploy
# Installs python3.11 if missing, a virtual environment with the project's pinned dependencies
# (never pyspark: EMR's own Spark serves), the project wheel, the staged weights into the Keras
# cache, and on the primary node the project's conf/ and spark_env.sh for `kedro run --env=emr`.
# Running it again changes nothing that is already in place.
#
# Dry run, for tests: bootstrap.sh --dry-run <local folder laid out like the deploy/ prefix>
# resolves the install into a throw-away virtual environment and touches nothing else.
set -euo pipefail

dry_run=false
if [[ "${1:-}" == "--dry-run" ]]; then
  dry_run=true
  shift
fi
deploy_uri="${1:?usage: bootstrap.sh [--dry-run] s3://bucket/prefix/deploy}"
app_dir="${FRUIT_PIPELINE_HOME:-/home/hadoop/fruit_pipeline}"
python="${FRUIT_PIPELINE_PYTHON:-python3.11}"

log() { echo "[fruit_pipeline bootstrap $(date -u +%Y-%m-%dT%H:%M:%SZ)] $*"; }

fetch() {
  # fetch <name under the deploy prefix> <local path>
  if [[ "$dry_run" == true ]]; then
    cp "$deploy_uri/$1" "$2"
  else
    aws s3 cp --only-show-errors "$deploy_uri/$1" "$2"
  fi
}

if [[ "$dry_run" == true ]]; then
  app_dir="$(mktemp -d)"
  trap 'rm -rf "$app_dir"' EXIT
  log "dry run in $app_dir"
fi

if ! command -v "$python" >/dev/null 2>&1; then
  log "installing $python"
  sudo dnf install -y -q python3.11 python3.11-pip
fi

mkdir -p "$app_dir"
staging="$app_dir/staging"
mkdir -p "$staging"
fetch wheel.txt "$staging/wheel.txt"
wheel="$staging/$(cat "$staging/wheel.txt")"
fetch "$(basename "$wheel")" "$wheel"
fetch constraints.txt "$staging/constraints.txt"

if [[ ! -x "$app_dir/venv/bin/python" ]]; then
  log "creating the virtual environment $app_dir/venv with $("$python" --version)"
  "$python" -m venv "$app_dir/venv"
fi
# The wheel without its `spark` extra: EMR's own pyspark serves, a pip copy would shadow it.
install=("$app_dir/venv/bin/python" -m pip install -q -c "$staging/constraints.txt")
if [[ "$dry_run" == true ]]; then
  log "resolving the project wheel and its pinned dependencies (dry run)"
  "${install[@]}" --dry-run "$wheel"
  log "dry run resolved"
  exit 0
fi
log "installing the project wheel and its pinned dependencies"
"${install[@]}" --upgrade pip
"${install[@]}" --force-reinstall --no-deps "$wheel"
"${install[@]}" "$wheel"
# Delta Lake's Python API for the features table, over EMR's own Delta jars (delta-defaults).
"${install[@]}" --no-deps delta-spark

# Weights staged by `fruit-deploy package --weights`: `featurize.weights: imagenet` then works
# without internet too.
if aws s3 ls "$deploy_uri/models/" >/dev/null 2>&1; then
  log "staging the weights into the Keras cache"
  mkdir -p "$HOME/.keras/models"
  aws s3 cp --only-show-errors --recursive "$deploy_uri/models/" "$HOME/.keras/models/"
fi

if grep -q '"isMaster": *true' /mnt/var/lib/info/instance.json 2>/dev/null; then
  log "primary node: the project folder $app_dir (pyproject.toml, conf/) for kedro run"
  fetch conf-fruit_pipeline.tar.gz "$staging/conf.tar.gz"
  fetch pyproject.toml "$app_dir/pyproject.toml"
  tar -xzf "$staging/conf.tar.gz" -C "$app_dir"
  # Kedro checks that the source folder exists; the code itself is the installed wheel.
  mkdir -p "$app_dir/src"
  cat > "$app_dir/spark_env.sh" <<'ENV'
# Sourced by the `kedro run --env=emr` step: EMR's own pyspark for the driver.
export KEDRO_DISABLE_TELEMETRY=true
export SPARK_HOME=/usr/lib/spark
py4j_zip=$(ls "$SPARK_HOME"/python/lib/py4j-*-src.zip)
export PYTHONPATH="$SPARK_HOME/python:$py4j_zip${PYTHONPATH:+:$PYTHONPATH}"
ENV
fi
log "done"
