#!/usr/bin/env bash
# EMR bootstrap action of fruit_pipeline: runs on every node as the hadoop user, before EMR
# installs Spark.
#   bootstrap.sh <s3://bucket/prefix/deploy/staged.env> <node home>
# `fruit-deploy create-cluster` passes both, from conf/emr/globals.yml (deploy_root, node_home).
# The manifest (written by `fruit-deploy package`, fruit_pipeline.apps.deploy.staging) names what
# is staged beside it and the node's folders: `role=name` lines, read below into the array `staged`.
# With no package index (nodes in private subnets have no internet), it installs:
#   - python3.11 from the distribution's own repository, if missing;
#   - the virtual environment under <node home>, readable by every user (YARN runs executors as
#     another user), with the project wheel and its pinned dependencies from the wheelhouse
#     staged by `fruit-deploy package` (never pyspark: EMR's own Spark serves; never TensorFlow:
#     `package` converted the weights to ONNX, which the featurize driver reads from the bucket);
#   - then deletes the staged wheelhouse, which the root volume need not keep;
#   - the staged weights into the Keras cache of the step, under <node home>;
#   - on the primary node, the project folder of `kedro run --env=emr`: pyproject.toml, conf/,
#     and the environment file the step sources.
# Running it again changes nothing that is already in place.
# Read from the environment where a test lays a node out elsewhere: FRUIT_PIPELINE_SPARK_HOME
# (where Spark will be, default /usr/lib/spark), FRUIT_PIPELINE_INSTANCE_INFO (EMR's instance.json).
set -euo pipefail
umask 022

usage="usage: bootstrap.sh <s3://bucket/prefix/deploy/staged.env> <node home>"
manifest_uri="${1:?$usage}"
node_home="${2:?$usage}"
deploy_uri="${manifest_uri%/*}"
spark_home="${FRUIT_PIPELINE_SPARK_HOME:-/usr/lib/spark}"
instance_info="${FRUIT_PIPELINE_INSTANCE_INFO:-/mnt/var/lib/info/instance.json}"
python=python3.11

log() { echo "[fruit_pipeline bootstrap $(date -u +%Y-%m-%dT%H:%M:%SZ)] $*"; }
primary=false
if grep -q '"isMaster": *true' "$instance_info" 2>/dev/null; then
  primary=true
fi

if ! command -v "$python" >/dev/null 2>&1; then
  log "installing $python from the distribution's repository"
  sudo dnf install -y -q python3.11 python3.11-pip
fi

if ! mkdir -p "$node_home" 2>/dev/null; then
  sudo install -d -m 755 -o "$(id -un)" -g "$(id -gn)" "$node_home"
fi
staging="$node_home/staging"
mkdir -p "$staging"
log "fetching the package and the wheelhouse from $deploy_uri"
aws s3 cp --only-show-errors "$manifest_uri" "$staging/manifest"
declare -A staged
while IFS='=' read -r role name; do
  [[ -n "$role" ]] && staged[$role]="$name"
done <"$staging/manifest"
for role in wheel constraints conf_archive pyproject wheelhouse models venv keras_home \
  step_environment; do
  if [[ -z "${staged[$role]:-}" ]]; then
    echo "$manifest_uri names no $role: run \`fruit-deploy package\` again" >&2
    exit 1
  fi
done
venv="$node_home/${staged[venv]}"
wheel="$staging/${staged[wheel]}"
aws s3 cp --only-show-errors "$deploy_uri/${staged[wheel]}" "$wheel"
aws s3 cp --only-show-errors "$deploy_uri/${staged[constraints]}" "$staging/${staged[constraints]}"
aws s3 sync --only-show-errors "$deploy_uri/${staged[wheelhouse]}/" \
  "$staging/${staged[wheelhouse]}/"

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating the virtual environment $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi
install=("$venv/bin/python" -m pip install -q --disable-pip-version-check --no-index
  --find-links "$staging/${staged[wheelhouse]}" -c "$staging/${staged[constraints]}")
log "installing the project wheel and its pinned dependencies from the wheelhouse"
"${install[@]}" --force-reinstall --no-deps "$wheel"
"${install[@]}" "$wheel"
# Delta Lake's Python API for the features table, over EMR's own Delta jars (delta-defaults).
"${install[@]}" --no-deps delta-spark
rm -rf "${staging:?}/${staged[wheelhouse]:?}"

keras_home="$node_home/${staged[keras_home]}"
if aws s3 ls "$deploy_uri/${staged[models]}/" >/dev/null 2>&1; then
  log "staging the weights into the Keras cache $keras_home"
  aws s3 sync --only-show-errors "$deploy_uri/${staged[models]}/" "$keras_home/models/"
fi

if [[ "$primary" == true ]]; then
  log "primary node: the project folder $node_home (pyproject.toml, conf/) for kedro run"
  aws s3 cp --only-show-errors "$deploy_uri/${staged[conf_archive]}" "$staging/conf.tar.gz"
  aws s3 cp --only-show-errors "$deploy_uri/${staged[pyproject]}" "$node_home/pyproject.toml"
  tar -xzf "$staging/conf.tar.gz" -C "$node_home"
  # Kedro checks that the source folder exists; the code itself is the installed wheel.
  mkdir -p "$node_home/src"
  {
    echo "# Sourced by the \`kedro run --env=emr\` step: EMR's own pyspark for the driver, and the"
    echo "# cluster's spark-env.sh (PYSPARK_PYTHON, JDK_JAVA_OPTIONS: the spark-env classification)."
    echo "export KEDRO_DISABLE_TELEMETRY=true"
    printf 'export KERAS_HOME=%q\n' "$keras_home"
    printf 'export SPARK_HOME=%q\n' "$spark_home"
    # shellcheck disable=SC2016 # expanded when the step sources the file, after Spark is installed
    echo '. "${SPARK_CONF_DIR:-$SPARK_HOME/conf}/spark-env.sh"'
    # shellcheck disable=SC2016
    echo 'py4j_zip=$(ls "$SPARK_HOME"/python/lib/py4j-*-src.zip)'
    # shellcheck disable=SC2016
    echo 'export PYTHONPATH="$SPARK_HOME/python:$py4j_zip${PYTHONPATH:+:$PYTHONPATH}"'
  } >"$node_home/${staged[step_environment]}"
fi
log "done"
