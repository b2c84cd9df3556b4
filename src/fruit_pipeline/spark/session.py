"""The Spark session of a run: started when first needed, with the environment's settings.

A run that needs no Spark (a featurize run that finds nothing new) never starts the JVM: the
hooks only `configure` the settings, and the session starts at the first `spark()` call (the
project's datasets) or before the first kedro-datasets Spark dataset is read or written.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import SparkSession

# The active environment's `spark*.yml`, set by the hooks when a run starts.
_settings: dict[str, Any] = {}
EXECUTOR_ENV = "spark.executorEnv."


def configure(settings: dict[str, Any]) -> None:
    """Keep the settings the session starts with, without starting it."""
    _settings.clear()
    _settings.update(settings)


def spark() -> SparkSession:
    """The active Spark session, or one started now with the configured settings."""
    return start_spark(_settings)


def start_spark(settings: dict[str, Any]) -> SparkSession:
    """Return the active Spark session, or start one with these settings."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Local Python workers must run this interpreter, which has the project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in settings.items():
        # An environment unsets a base setting with null.
        if value is not None:
            builder = builder.config(
                key, str(value).lower() if isinstance(value, bool) else str(value)
            )
    with environment(local_executor_environment(settings)):
        session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def local_executor_environment(settings: dict[str, Any]) -> dict[str, str]:
    """The executors' environment (`spark.executorEnv.*`) when the driver's JVM is the executor
    (a local master), where Spark itself gives it to no process; else none."""
    if not str(settings.get("spark.master", "")).startswith("local"):
        return {}
    return {
        key.removeprefix(EXECUTOR_ENV): str(value)
        for key, value in settings.items()
        if key.startswith(EXECUTOR_ENV) and value is not None
    }


@contextmanager
def environment(variables: dict[str, str]) -> Iterator[None]:
    """These variables, where the process has none of its own, for a JVM started meanwhile."""
    added = {name: value for name, value in variables.items() if name not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for name in added:
            del os.environ[name]


def release_cached_data() -> None:
    """Drop what a run persisted, so a long-lived session does not keep it."""
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()
