#!/usr/bin/env bash
# EMR bootstrap action of fruit_pipeline: runs on every node as the hadoop user, before EMR
# installs Spark.
#   bootstrap.sh <s3://bucket/prefix/deploy> <node home>
# `fruit-deploy create-cluster` passes both, from conf/emr/globals.yml (deploy_root, node_home).
# With no package index (nodes in private subnets have no internet), it installs:
#   - python3.11 from the distribution's own repository, if missing;
#   - <node home>/venv, readable by every user (YARN runs executors as another user), with the
#     project wheel and its pinned dependencies from the wheelhouse staged by `fruit-deploy
#     package` (never pyspark: EMR's own Spark serves); TensorFlow, Keras and tf2onnx (the keras
#     extra) on the primary node only, where the featurize driver converts the weights to ONNX;
#   - then deletes the staged wheelhouse, which the root volume need not keep;
#   - the staged weights into <node home>/keras, the Keras cache of the step;
#   - on the primary node, the project folder of `kedro run --env=emr`: pyproject.toml, conf/,
#     and spark_env.sh, which the step sources.
# Running it again changes nothing that is already in place.
# Read from the environment where a test lays a node out elsewhere: FRUIT_PIPELINE_SPARK_HOME
# (where Spark will be, default /usr/lib/spark), FRUIT_PIPELINE_INSTANCE_INFO (EMR's instance.json).
set -euo pipefail
umask 022

deploy_uri="${1:?usage: bootstrap.sh <s3://bucket/prefix/deploy> <node home>}"
node_home="${2:?usage: bootstrap.sh <s3://bucket/prefix/deploy> <node home>}"
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
aws s3 cp --only-show-errors "$deploy_uri/wheel.txt" "$staging/wheel.txt"
wheel="$staging/$(cat "$staging/wheel.txt")"
aws s3 cp --only-show-errors "$deploy_uri/$(basename "$wheel")" "$wheel"
aws s3 cp --only-show-errors "$deploy_uri/constraints.txt" "$staging/constraints.txt"
aws s3 sync --only-show-errors "$deploy_uri/wheelhouse/" "$staging/wheelhouse/"

if [[ ! -x "$node_home/venv/bin/python" ]]; then
  log "creating the virtual environment $node_home/venv with $("$python" --version)"
  "$python" -m venv "$node_home/venv"
fi
install=("$node_home/venv/bin/python" -m pip install -q --disable-pip-version-check --no-index
  --find-links "$staging/wheelhouse" -c "$staging/constraints.txt")
log "installing the project wheel and its pinned dependencies from the wheelhouse"
"${install[@]}" --force-reinstall --no-deps "$wheel"
# The executors' Python workers need the base install only (pyspark is EMR's own); the keras
# extra is for the featurize driver, on the primary node.
if [[ "$primary" == true ]]; then
  "${install[@]}" "${wheel}[keras]"
else
  "${install[@]}" "$wheel"
fi
# Delta Lake's Python API for the features table, over EMR's own Delta jars (delta-defaults).
"${install[@]}" --no-deps delta-spark
rm -rf "$staging/wheelhouse"

if aws s3 ls "$deploy_uri/models/" >/dev/null 2>&1; then
  log "staging the weights into the Keras cache $node_home/keras"
  aws s3 sync --only-show-errors "$deploy_uri/models/" "$node_home/keras/models/"
fi

if [[ "$primary" == true ]]; then
  log "primary node: the project folder $node_home (pyproject.toml, conf/) for kedro run"
  aws s3 cp --only-show-errors "$deploy_uri/conf-fruit_pipeline.tar.gz" "$staging/conf.tar.gz"
  aws s3 cp --only-show-errors "$deploy_uri/pyproject.toml" "$node_home/pyproject.toml"
  tar -xzf "$staging/conf.tar.gz" -C "$node_home"
  # Kedro checks that the source folder exists; the code itself is the installed wheel.
  mkdir -p "$node_home/src"
  {
    echo "# Sourced by the \`kedro run --env=emr\` step: EMR's own pyspark for the driver, and the"
    echo "# cluster's spark-env.sh (PYSPARK_PYTHON, JDK_JAVA_OPTIONS: the spark-env classification)."
    echo "export KEDRO_DISABLE_TELEMETRY=true"
    printf 'export KERAS_HOME=%q\n' "$node_home/keras"
    printf 'export SPARK_HOME=%q\n' "$spark_home"
    # shellcheck disable=SC2016 # expanded when the step sources the file, after Spark is installed
    echo '. "${SPARK_CONF_DIR:-$SPARK_HOME/conf}/spark-env.sh"'
    # shellcheck disable=SC2016
    echo 'py4j_zip=$(ls "$SPARK_HOME"/python/lib/py4j-*-src.zip)'
    # shellcheck disable=SC2016
    echo 'export PYTHONPATH="$SPARK_HOME/python:$py4j_zip${PYTHONPATH:+:$PYTHONPATH}"'
  } >"$node_home/spark_env.sh"
fi
log "done"
