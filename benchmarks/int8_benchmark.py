"""INT8 against FP32, in one run: speed (loop and pipeline), features, and the classifier's answers.

On one folder of class folders (default: the 95-class subset) it runs, on the same machine:
  - `kedro run --pipelines featurize` with `featurize.engine` onnxruntime, then onnxruntime-int8,
    whole processes: a first run, which prepares the model (the ONNX conversion; the quantization
    on a seeded sample of these images) and caches it, then the same run again with
    `featurize.full_refresh=true`, the model from the cache;
  - the plain ONNX Runtime loop (the project's decode, one session with all cores) with the FP32
    model and with that cached INT8 model, alternately, in child processes;
  - the cosine of each image's INT8 features to its FP32 ones, from the two tables;
  - `kedro run --pipelines train` on each table: the test images' accuracy and "not sure" share.

    python benchmarks/int8_benchmark.py --source ../shared/data/fruits-360-95
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scratch_project import IMAGE_SUFFIXES, PROJECT_ROOT, measure, new_project

from fruit_pipeline.config import config_loader
from fruit_pipeline.core.int8_support import int8_refusal

ENGINES = ("onnxruntime", "onnxruntime-int8")
REPORTS = Path("data/08_reporting")


def loop(engine: str, images: Path, cache: str, batch_size: int) -> None:
    """Child process: prints the seconds of the decode + predict loop as JSON."""
    from fruit_pipeline.core import feature_model, predictors  # noqa: PLC0415
    from fruit_pipeline.core.images import decode_image  # noqa: PLC0415

    model = (
        feature_model.int8_feature_model("imagenet", cache, None)
        if engine == "onnxruntime-int8"
        else feature_model.onnx_feature_model("imagenet", cache)
    )
    predict = predictors.onnx_predictor(model, threads=os.cpu_count() or 1)
    paths = sorted(p for p in images.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    # The project's own decode settings, as featurize uses them.
    featurize = config_loader(PROJECT_ROOT)["parameters"]["featurize"]
    max_pixels, framing = featurize["max_image_pixels"], featurize["framing"]
    start = time.perf_counter()
    for first in range(0, len(paths), batch_size):
        pixels = np.stack(
            [
                decode_image(path.read_bytes(), feature_model.INPUT_SIZE, max_pixels, framing)
                for path in paths[first : first + batch_size]
            ]
        )
        predict(pixels.astype(np.float32))
    print(json.dumps({"seconds": time.perf_counter() - start, "images": len(paths)}))


def features(project: Path) -> dict[str, np.ndarray]:
    """Each path's features, from the project's features table (delta-rs, no Spark)."""
    from deltalake import DeltaTable  # noqa: PLC0415

    table = DeltaTable(str(project / "data/04_feature/image_features")).to_pandas(
        columns=["path", "features"]
    )
    return {
        path: np.asarray(row) for path, row in zip(table["path"], table["features"], strict=True)
    }


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of class folders")
    parser.add_argument("--loop-rounds", type=int, default=2, help="loop runs of each engine")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loop", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.source = args.source.resolve()
    return args


def main() -> None:
    args = parse_arguments()
    if args.loop:
        loop(args.loop, args.source, args.cache, args.batch_size)
        return
    refusal = int8_refusal()
    if refusal is not None:
        raise SystemExit(f"Nothing to compare: the INT8 engine is refused here, {refusal}.")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KEDRO_DISABLE_TELEMETRY": "true"}
    kedro = [sys.executable, "-m", "kedro", "run"]
    with tempfile.TemporaryDirectory(prefix="int8_benchmark_") as scratch:
        cache = str(Path(scratch) / "model_cache")
        runs, projects, tables = {}, {}, {}
        for engine in ENGINES:
            project = new_project(Path(scratch) / engine)
            params = f"images_root={args.source},featurize.engine={engine},"
            params += f"featurize.model_cache={cache}"
            featurize = [*kedro, "--pipelines", "featurize", "--params"]
            first = measure([*featurize, params], project, env)
            refresh = f"{params},featurize.full_refresh=true"
            featurized = measure([*featurize, refresh], project, env)
            trained = measure([*kedro, "--pipelines", "train"], project, env)
            runs[engine] = (first, featurized, trained)
            projects[engine], tables[engine] = project, features(project)
        child = [sys.executable, __file__, "--source", str(args.source), "--cache", cache]
        loops = {engine: [] for engine in ENGINES}
        for _ in range(args.loop_rounds):
            for engine in ENGINES:
                output = measure([*child, "--loop", engine], Path.cwd(), env).output
                result = json.loads(output.strip().splitlines()[-1])
                loops[engine].append(result["images"] / result["seconds"])
        metrics = {
            engine: json.loads((project / REPORTS / "classification_metrics.json").read_text())
            for engine, project in projects.items()
        }
        summary = json.loads(
            (projects[ENGINES[1]] / REPORTS / "featurize_summary.json").read_text()
        )

    fp32, int8 = tables[ENGINES[0]], tables[ENGINES[1]]
    paths = sorted(fp32)
    a, b = np.stack([fp32[p] for p in paths]), np.stack([int8[p] for p in paths])
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"\n{len(paths)} images of {args.source}; {os.cpu_count()} cores")
    print(f"INT8 model: SHA-256 {summary['feature_model']['weights_sha256'][:16]}...")
    print(
        f"{'engine':<17} | {'loop img/s':>18} | {'first run s':>11} | {'featurize s':>11} | "
        f"{'img/s':>6} | "
        f"{'train s':>7} | {'test accuracy':>13} | {'not sure':>8} | {'right when answered':>19}"
    )
    for engine in ENGINES:
        first, featurized, trained = runs[engine]
        test, unknown = metrics[engine], metrics[engine]["unknown_answer"]
        rates = " ".join(f"{rate:.0f}" for rate in loops[engine])
        print(
            f"{engine:<17} | {rates:>18} | {first.seconds:>11.1f} | {featurized.seconds:>11.1f} | "
            f"{len(paths) / featurized.seconds:>6.1f} | {trained.seconds:>7.1f} | "
            f"{test['accuracy']:>13.4f} | {1 - unknown['answered_share']:>8.4f} | "
            f"{unknown['answered_accuracy']:>19.4f}"
        )
    speed = np.mean(loops[ENGINES[1]]) / np.mean(loops[ENGINES[0]])
    pipeline = runs[ENGINES[0]][1].seconds / runs[ENGINES[1]][1].seconds
    print(
        f"INT8 / FP32 speed: loop {speed:.2f}x, featurize whole process (model cached) "
        f"{pipeline:.2f}x"
    )
    for engine in ENGINES:
        rate = len(paths) / runs[engine][1].seconds
        print(f"{engine}: featurize (model cached) / its loop: {rate / np.mean(loops[engine]):.2f}")
    print(
        f"cosine of INT8 to FP32 features: mean {cosine.mean():.4f}, "
        f"5th percentile {np.percentile(cosine, 5):.4f}, min {cosine.min():.4f}"
    )


if __name__ == "__main__":
    main()
