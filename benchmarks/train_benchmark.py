"""Train pipeline speed with the JVM's pure-Java BLAS/LAPACK against the machine's native ones.

Spark ML (netlib) loads the system's libblas.so.3 and liblapack.so.3 when it finds them, else
runs pure Java. This times `kedro run --pipelines train` as a whole process both ways, on the
features of an earlier featurize run (repeated, under new paths, up to the sizes asked), and
prints wall time, test accuracy and PCA k of each run.

    python benchmarks/train_benchmark.py --project <a project that ran featurize> \
        --sizes 0 8000     # 0: the features as they are

`--blas native` times the native libraries only; `--params` gives runtime parameters, one run
each (`--params "" train.selection.tol=1e-6`: the project's settings, then Spark's default
tolerance), so settings are compared in one run of the benchmark. `--grids` does the same for
candidate grids, which runtime parameters cannot carry (a list): each YAML list is written to a
Kedro environment of the scratch project and run with `--env`, after the `--params` runs. With
neither, one run has the project's settings; with `--grids` alone, only the grids run (add
`--params ""` to time the project's settings beside them).
`--blas-threads 1 2` runs each of those with that many native BLAS threads a task instead of
the project's setting:

    python benchmarks/train_benchmark.py --project <...> --sizes 48905 --blas native \
        --grids "[{inputs: features, colour: true, reg_param: 0.01}]"
"""

import argparse
import ctypes
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from scratch_project import PROJECT_ROOT, new_project

from fruit_pipeline.config import config_loader
from fruit_pipeline.spark import feature_table
from fruit_pipeline.spark.session import start_spark

NATIVE_LIBRARIES = ("libblas.so.3", "liblapack.so.3")
FEATURES = Path("data/04_feature/image_features")
SUMMARY = Path("data/08_reporting/featurize_summary.json")
METRICS = Path("data/08_reporting/classification_metrics.json")


def native_libraries_load() -> bool:
    try:
        for library in NATIVE_LIBRARIES:
            ctypes.CDLL(library)
    except OSError:
        return False
    return True


def pure_java_environment(folder: Path) -> dict[str, str]:
    """Empty placeholders found first on the library path: netlib falls back to pure Java."""
    folder.mkdir(parents=True, exist_ok=True)
    for library in NATIVE_LIBRARIES:
        (folder / library).write_bytes(b"")
    library_path = [str(folder), *filter(None, [os.environ.get("LD_LIBRARY_PATH")])]
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "LD_LIBRARY_PATH": os.pathsep.join(library_path),
    }


def project_with_features(spark: SparkSession, root: Path, source: Path, size: int) -> Path:
    """A project copy whose features table has `size` rows (0: all), repeated under new paths."""
    new_project(root)
    features = feature_table.read(spark, str(source / FEATURES))
    copies = 1 if size == 0 else math.ceil(size / features.count())
    rows = features.crossJoin(spark.range(copies).withColumnRenamed("id", "copy"))
    if size:
        rows = rows.orderBy("copy", "path").limit(size)
    folder, name = (
        F.regexp_extract("path", "^(.*/)[^/]+$", 1),
        F.regexp_extract("path", "[^/]+$", 0),
    )
    # The n-th copy of an image keeps its class folder (copy 0: the image itself).
    copied = F.when(F.col("copy") == 0, F.col("path")).otherwise(
        F.concat(folder, F.lit("copy"), F.col("copy").cast("string"), F.lit("_"), name)
    )
    rows.withColumn("path", copied).select(*feature_table.COLUMNS).write.format("delta").save(
        str(root / FEATURES)
    )
    (root / SUMMARY).parent.mkdir(parents=True)
    shutil.copy(source / SUMMARY, root / SUMMARY)
    return root


def grid_environment(project: Path, index: int, grid: str) -> str:
    """A Kedro environment of the project whose only change is this candidate grid (YAML)."""
    candidates = yaml.safe_load(grid)
    if not isinstance(candidates, list):
        raise SystemExit(f"--grids takes YAML lists of candidates, not {grid!r}")
    name = f"grid{index}"
    (project / "conf" / name).mkdir()
    parameters = {"train": {"selection": {"candidates": candidates}}}
    (project / "conf" / name / "parameters_train.yml").write_text(yaml.safe_dump(parameters))
    return name


def timed_train(
    project: Path, env: dict[str, str], params: str, kedro_env: str | None = None
) -> tuple[float, dict, str]:
    start = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines",
            "train",
            *(["--params", params] if params else []),
            *(["--env", kedro_env] if kedro_env else []),
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"kedro run --pipelines train failed:\n{result.stdout}\n{result.stderr}")
    fallback = [
        kind
        for kind in ("blas.JNIBLAS", "lapack.JNILAPACK")
        if f"Failed to load implementation from:dev.ludovic.netlib.{kind}" in result.stderr
    ]
    used = "pure Java (" + ", ".join(fallback) + " not loaded)" if fallback else "native"
    return seconds, json.loads((project / METRICS).read_text()), used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="a project that ran featurize")
    parser.add_argument("--sizes", type=int, nargs="+", default=[0], help="0: as they are")
    parser.add_argument("--blas", choices=("both", "native", "pure"), default="both")
    parser.add_argument("--params", nargs="+", help="runtime parameters, a run each")
    parser.add_argument("--grids", nargs="+", default=[], help="YAML candidate lists, a run each")
    parser.add_argument(
        "--blas-threads",
        nargs="+",
        default=[""],
        help="OMP_NUM_THREADS of the train process, a run each ('': the project's setting)",
    )
    args = parser.parse_args()
    spark = start_spark(dict(config_loader(PROJECT_ROOT)["spark"]))
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    native = native_libraries_load()
    if not native and args.blas != "pure":
        print("No native libblas.so.3 / liblapack.so.3 on this machine: pure Java only.")
    print(
        f"{'images':>7} | {'JVM BLAS/LAPACK':<45} | {'run':<28} | {'train s':>7} | "
        f"{'accuracy':>8} | chosen"
    )
    with tempfile.TemporaryDirectory(prefix="train_benchmark_") as scratch:
        for size in args.sizes:
            project = project_with_features(spark, Path(scratch) / f"p{size}", args.project, size)
            environments = []
            if args.blas in ("both", "pure") or not native:
                environments.append(pure_java_environment(Path(scratch) / "no_native"))
            if native and args.blas in ("both", "native"):
                environments.append(env)
            # (what the row says, runtime parameters, Kedro environment)
            plain = args.params if args.params is not None else ([] if args.grids else [""])
            runs = [(params or "-", params, None) for params in plain]
            runs += [
                (f"grid {index}", "", grid_environment(project, index, grid))
                for index, grid in enumerate(args.grids)
            ]
            runs = [
                (f"{label}, {threads} threads" if threads else label, params, kedro_env, threads)
                for label, params, kedro_env in runs
                for threads in args.blas_threads
            ]
            for environment in environments:
                for label, params, kedro_env, threads in runs:
                    threaded = {"OMP_NUM_THREADS": threads} if threads else {}
                    run_env = {**environment, **threaded}
                    seconds, metrics, used = timed_train(project, run_env, params, kedro_env)
                    images = metrics["train_images"] + metrics["test_images"]
                    candidates = ", ".join(
                        f"{c['name']} {c['seconds']:.0f} s, {c['iterations']} passes, "
                        f"validation {c['validation_accuracy']:.4f}"
                        for c in metrics["selection"]["candidates"]
                    )
                    print(
                        f"{images:>7} | {used:<45} | {label:<28} | {seconds:>7.1f} | "
                        f"{metrics['accuracy']:>8.4f} | {metrics['selection']['chosen']['name']} "
                        f"(candidates: {candidates})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
