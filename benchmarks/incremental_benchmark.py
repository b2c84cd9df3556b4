"""Incremental featurize: reruns of `kedro run --pipelines featurize` against the first full run.

For each of --sizes, on a corpus of that many real images copied round-robin (class folders
kept), whole processes, the ONNX model already in the cache (--cache; converted beforehand if
missing, not timed), one after the other on the same features table:
  full: the first run, every image embedded;
  unchanged: a rerun with nothing changed;
  added: a rerun after adding --change-share new images;
  removed: a rerun after deleting as many images.
It prints each run's wall time, peak memory, what its summary counted, and its share of the full
run's time against the targets (an unchanged rerun: 8 s and 10 %; added: 20 %; removed: 15 %).

    python benchmarks/incremental_benchmark.py --source ../shared/data/fruits-360/sample/Training
"""

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from scratch_project import IMAGE_SUFFIXES, build_corpus, measure, new_project

from fruit_pipeline.core import feature_model

TARGETS = {"unchanged": 0.10, "added": 0.20, "removed": 0.15}
NOTHING_NEW_SECONDS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder of class folders")
    parser.add_argument("--sizes", type=int, nargs="+", default=[8000, 20000])
    parser.add_argument("--change-share", type=float, default=0.10, help="added, then removed")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "fruit_pipeline"))
    args = parser.parse_args()
    # The ONNX conversion, once, before the timed runs, which find it cached.
    feature_model.onnx_feature_model("imagenet", args.cache)
    reports = [
        incremental_runs(args.source, size, args.change_share, args.cache) for size in args.sizes
    ]
    for report in reports:
        print_runs(*report)


def incremental_runs(source: Path, size: int, change_share: float, cache: str):
    """The four runs on one table of `size` images; their measures and summaries."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KEDRO_DISABLE_TELEMETRY": "true"}
    change = round(size * change_share)
    with tempfile.TemporaryDirectory(prefix="incremental_benchmark_") as scratch:
        project = new_project(Path(scratch) / "project")
        corpus = build_corpus(source, size, Path(scratch) / "images")

        def featurize(images: Path):
            params = f"images_root={images},featurize.model_cache={cache}"
            command = [sys.executable, "-m", "kedro", "run", "--pipelines", "featurize"]
            run = measure([*command, "--params", params], project, env)
            summary = project / "data/08_reporting/featurize_summary.json"
            return run, json.loads(summary.read_text())

        runs = {"full": featurize(corpus)}
        runs["unchanged"] = featurize(corpus)
        build_corpus(source, change, corpus, start=size)
        runs["added"] = featurize(corpus)
        images = sorted(p for p in corpus.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for image in images[:: len(images) // change][:change]:
            image.unlink()
        runs["removed"] = featurize(corpus)
    return size, change, runs


def print_runs(size: int, change: int, runs: dict) -> None:
    """One table: each run against the full one."""
    full_seconds = runs["full"][0].seconds
    print(f"\n{size} images, {change} added then removed; whole processes")
    print(
        f"{'run':>9} | {'wall s':>6} | {'of full':>7} | {'target':>6} | {'peak MiB':>8} | "
        f"{'new':>5} | {'changed':>7} | {'removed':>7} | {'featurized':>10} | table version"
    )
    for name, (run, summary) in runs.items():
        target = f"{TARGETS[name]:.0%}" if name in TARGETS else "-"
        print(
            f"{name:>9} | {run.seconds:>6.1f} | {run.seconds / full_seconds:>7.0%} | "
            f"{target:>6} | {run.peak_rss_mib:>8.0f} | {summary['files_new']:>5} | "
            f"{summary['files_changed']:>7} | {summary['files_removed']:>7} | "
            f"{summary['featurized']:>10} | {summary['table_version']}"
        )
    unchanged = runs["unchanged"][0].seconds
    verdict = "met" if unchanged <= NOTHING_NEW_SECONDS else "not met"
    print(f"a run with nothing new: {unchanged:.1f} s (target {NOTHING_NEW_SECONDS} s: {verdict})")


if __name__ == "__main__":
    main()
