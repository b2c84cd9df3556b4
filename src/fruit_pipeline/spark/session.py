"""The Spark session of a run: started with the environment's settings, its cache dropped after."""

import os
import sys
from typing import Any

from pyspark.sql import SparkSession


def start_spark(settings: dict[str, Any]) -> SparkSession:
    """Return the active Spark session, or start one with the environment's settings."""
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
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def release_cached_data() -> None:
    """Drop what a run persisted, so a long-lived session does not keep it."""
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()
