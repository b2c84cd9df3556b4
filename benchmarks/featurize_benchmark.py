"""Featurization speed and memory: plain loops in one process against the Kedro + Spark pipeline.

For each corpus size it builds a corpus by copying real images round-robin (keeping the class
folders), then measures in child processes, on the same machine and in the same run:
  (k) plain Keras: the project's decode + resize and feature model, batched `predict_on_batch`
      with all cores, the model built once (its build time is not counted);
  (o) plain ONNX Runtime: the same decode and the same converted model in one session with all
      cores (its creation is not counted);
  (b) `kedro run --pipelines featurize` on a local Spark session with all cores, Parquet included,
      the ONNX model already in the cache (the conversion is timed once, apart).
It prints images/second, the ratios of (b) to the loops, the fixed overhead and marginal rate of
(b) from the two sizes, the peak resident memory of each process tree, the time of
`kedro run --pipelines reduce` at the largest size and a projection for the full data set on a
cluster.

    python benchmarks/featurize_benchmark.py --source ../shared/data/fruits-360/sample/Training
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scratch_project import (
    IMAGE_SUFFIXES,
    PROJECT_ROOT,
    Measure,
    build_corpus,
    measure,
    new_project,
)

from fruit_pipeline.config import config_loader


def loop_limit(engine: str, images: Path, batch_size: int, weights: str | None, cache: str) -> None:
    """Child process of (k) and (o): prints the seconds of the decode + predict loop as JSON."""
    import numpy as np  # noqa: PLC0415

    from fruit_pipeline.core import feature_model, predictors  # noqa: PLC0415
    from fruit_pipeline.core.images import decode_image  # noqa: PLC0415

    if engine == "keras":
        predict = feature_model.build_feature_model(weights).predict_on_batch
    else:
        model = feature_model.onnx_feature_model(weights, cache)
        predict = predictors.onnx_predictor(model, threads=os.cpu_count() or 1)
    paths = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    max_pixels, framing = configured("max_image_pixels"), configured("framing")
    start = time.perf_counter()
    count = 0
    for first in range(0, len(paths), batch_size):
        pixels = np.stack(
            [
                decode_image(path.read_bytes(), feature_model.INPUT_SIZE, max_pixels, framing)
                for path in paths[first : first + batch_size]
            ]
        )
        count += len(predict(pixels.astype(np.float32)))
    print(json.dumps({"seconds": time.perf_counter() - start, "images": count}))


def convert(weights: str | None, cache: str) -> None:
    """Child process: the ONNX conversion into the cache, timed from process start."""
    from fruit_pipeline.core import feature_model  # noqa: PLC0415

    feature_model.onnx_feature_model(weights, cache)


def configured(name: str) -> Any:
    """A featurize parameter of the project's defaults: the benchmark measures them."""
    return config_loader(PROJECT_ROOT)["parameters"]["featurize"][name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of class folders")
    parser.add_argument("--sizes", type=int, nargs=2, default=[8000, 20000])
    parser.add_argument(
        "--batch-size", type=int, default=configured("batch_size"), help="default: conf/base"
    )
    parser.add_argument("--weights", default="imagenet", help="as featurize.weights")
    parser.add_argument("--params", default="", help="extra kedro --params for (b)")
    parser.add_argument("--cluster-cores", type=int, default=8, help="cores of the projection")
    parser.add_argument("--full-size", type=int, default=90_483)
    parser.add_argument("--loop", choices=["keras", "onnxruntime"], help=argparse.SUPPRESS)
    parser.add_argument("--convert", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    model_weights = None if args.weights in ("None", "null") else args.weights
    if args.loop:
        loop_limit(args.loop, args.images, args.batch_size, model_weights, args.cache)
        return
    if args.convert:
        convert(model_weights, args.cache)
        return

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KEDRO_DISABLE_TELEMETRY": "true"}
    kedro = [sys.executable, "-m", "kedro", "run"]
    rows = []
    with tempfile.TemporaryDirectory(prefix="featurize_benchmark_") as scratch:
        cache = str(Path(scratch) / "model_cache")
        child = [sys.executable, __file__, "--source", str(args.source), "--cache", cache]
        child += ["--batch-size", str(args.batch_size), "--weights", args.weights]
        conversion = measure([*child, "--convert"], PROJECT_ROOT, env)
        weights = "null" if model_weights is None else model_weights
        params = ",".join(
            p
            for p in [
                f"featurize.weights={weights}",
                f"featurize.batch_size={args.batch_size}",
                f"featurize.model_cache={cache}",
                args.params,
            ]
            if p
        )
        for size in args.sizes:
            corpus = build_corpus(args.source, size, Path(scratch) / f"images_{size}")
            loops = {
                engine: measure(
                    [*child, "--loop", engine, "--images", str(corpus)], PROJECT_ROOT, env
                )
                for engine in ("keras", "onnxruntime")
            }
            loop_rates = {
                engine: size / json.loads(loop.output.strip().splitlines()[-1])["seconds"]
                for engine, loop in loops.items()
            }
            project = new_project(Path(scratch) / f"project_{size}")
            pipeline = measure(
                [*kedro, "--pipelines", "featurize", "--params", f"images_root={corpus},{params}"],
                project,
                env,
            )
            summary = json.loads((project / "data/08_reporting/featurize_summary.json").read_text())
            if summary["featurized"] != size:
                raise SystemExit(f"featurized {summary['featurized']} of {size} images")
            rows.append((size, loop_rates, loops, pipeline, project))
        reduce = measure([*kedro, "--pipelines", "reduce"], rows[-1][4], env)

    print_report(args, rows, conversion, reduce)


def print_report(
    args: argparse.Namespace, rows: list, conversion: Measure, reduce: Measure
) -> None:
    """The figures of one benchmark run, side by side."""
    cores = os.cpu_count() or 1
    memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    print(
        f"\nmachine: {cores} cores, {memory_gib:.0f} GiB; batch size {args.batch_size}; "
        f"weights {args.weights}; extra params: {args.params or '-'}"
    )
    print(
        f"ONNX conversion (once per weights file, then cached): {conversion.seconds:.1f} s "
        "as a whole process"
    )
    # Loop rates leave out the start (imports, model build); (b) is timed as a whole process.
    print(
        f"{'images':>7} | {'(k) keras loop':>14} | {'(o) onnx loop':>13} | {'(b) run img/s':>13} | "
        f"{'(b)/(o)':>7} | {'(b)/(k)':>7} | {'(k) MiB':>7} | {'(o) MiB':>7} | "
        f"{'(b) MiB':>7} | {'(b) wall s':>10}"
    )
    for size, loop_rates, loops, pipeline, _ in rows:
        pipeline_rate = size / pipeline.seconds
        print(
            f"{size:>7} | {loop_rates['keras']:>14.1f} | {loop_rates['onnxruntime']:>13.1f} | "
            f"{pipeline_rate:>13.1f} | {pipeline_rate / loop_rates['onnxruntime']:>7.2f} | "
            f"{pipeline_rate / loop_rates['keras']:>7.2f} | {loops['keras'].peak_rss_mib:>7.0f} | "
            f"{loops['onnxruntime'].peak_rss_mib:>7.0f} | {pipeline.peak_rss_mib:>7.0f} | "
            f"{pipeline.seconds:>10.1f}"
        )
    (small, _, _, small_run, _), (large, large_loops, _, large_run, _) = rows
    marginal_rate = (large - small) / (large_run.seconds - small_run.seconds)
    overhead = small_run.seconds - small / marginal_rate
    print(
        f"(b) marginal rate {marginal_rate:.1f} img/s = "
        f"{marginal_rate / large_loops['onnxruntime']:.2f} of the onnx loop at {large}; "
        f"fixed overhead {overhead:.1f} s (process start, Kedro, Spark, model from the cache and "
        "broadcast, first batch, summary)"
    )
    memory_growth = large_run.peak_rss_mib / small_run.peak_rss_mib
    print(f"(b) peak RSS at {large} / at {small}: {memory_growth:.2f}")
    for size, _, _, pipeline, _ in rows:
        kinds = ", ".join(f"{k} {v:.0f}" for k, v in sorted(pipeline.peak_by_kind_mib.items()))
        print(f"(b) peak MiB by process at {size}: {kinds}")
    print(
        f"reduce at {large} images: {reduce.seconds:.1f} s = "
        f"{reduce.seconds / large_run.seconds:.0%} of featurize's {large_run.seconds:.1f} s"
    )
    per_core = marginal_rate / cores
    cluster_seconds = (
        overhead + conversion.seconds + args.full_size / (per_core * args.cluster_cores)
    )
    print(
        f"projection: {args.full_size} images on {args.cluster_cores} cores "
        f"(2 core nodes x 4 vCPU) at {per_core:.1f} img/s per core: "
        f"{cluster_seconds / 60:.1f} min. Assumes a cluster vCPU does what a core here does, "
        "linear scaling over executors, S3 reads and Parquet writes not the bottleneck, this "
        "run's fixed overhead, and one conversion (a new cluster starts with an empty cache "
        "unless featurize.model_cache is in the bucket, as in the emr environment)."
    )


if __name__ == "__main__":
    main()
