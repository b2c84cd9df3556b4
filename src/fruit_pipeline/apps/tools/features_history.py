"""`fruit-features`: the features table's history, read with the project's own configuration.

fruit-features                # every commit, latest first
fruit-features --env emr      # the table under the emr environment's data root
"""

import argparse
import json
import sys
from pathlib import Path

from fruit_pipeline.config import config_loader
from fruit_pipeline.spark import feature_table
from fruit_pipeline.spark.session import start_spark


def main(argv: list[str] | None = None) -> int:
    """Print one line per commit of the features table: version, time, operation, figures."""
    parser = argparse.ArgumentParser(prog="fruit-features", description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the project folder")
    parser.add_argument("--env", help="the configuration environment (default: local)")
    parser.add_argument("--limit", type=int, help="the latest commits only")
    args = parser.parse_args(argv)
    loader = config_loader(args.project, env=args.env)
    path = loader["catalog"]["image_features"]["filepath"]
    if "://" not in path and not Path(path).is_absolute():
        path = str(args.project / path)
    spark = start_spark(dict(loader["spark"]))
    if not feature_table.exists(spark, path):
        parser.exit(1, f"No features table at {path}: run `kedro run --pipelines featurize`.\n")
    for commit in feature_table.history(spark, path, args.limit):
        figures = json.dumps(commit["operationMetrics"] or {}, sort_keys=True)
        sys.stdout.write(
            f"{commit['version']:>5}  {commit['timestamp']}  {commit['operation']:<14} {figures}\n"
        )
    return 0
