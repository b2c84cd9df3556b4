"""Cheap additions to the embedding, compared on validation images with the train pipeline's code.

For every image of a folder of class folders it computes, with the project's decode and ONNX
feature model: the embedding, the embedding of the mirror image, and an HSV colour histogram of
the fruit (the white background left out). Then, for each option
  base: the embedding; mirror: the mean of both embeddings; hsv: the embedding and the histogram,
it runs the train pipeline's own split and candidate selection (`assign_split`,
`select_classifier` with the project's parameters) and prints every candidate's validation
accuracy and log loss. The test images take part in nothing.

    python benchmarks/feature_options.py --images <folder of class folders> --every 3
"""

import argparse
import os
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from scratch_project import PROJECT_ROOT

from fruit_pipeline import embedding, feature_model
from fruit_pipeline.images import decode_image
from fruit_pipeline.pipelines.train.nodes import assign_split, select_classifier
from fruit_pipeline.spark_session import start_spark

HUE_BINS, SATURATION_BINS, VALUE_BINS = 12, 4, 4


def hsv_histogram(pixels: np.ndarray) -> np.ndarray:
    """Share of the fruit's pixels in each (hue, saturation, value) bin; white pixels skipped."""
    hsv = np.asarray(Image.fromarray(pixels).convert("HSV"), dtype=np.float64) / 256.0
    fruit = ~((pixels.min(axis=2) > 235) & (hsv[..., 1] < 0.1))
    bins = (
        (hsv[..., 0] * HUE_BINS).astype(int) * SATURATION_BINS * VALUE_BINS
        + (hsv[..., 1] * SATURATION_BINS).astype(int) * VALUE_BINS
        + (hsv[..., 2] * VALUE_BINS).astype(int)
    )[fruit]
    counts = np.bincount(bins, minlength=HUE_BINS * SATURATION_BINS * VALUE_BINS)
    return counts / max(counts.sum(), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--every", type=int, default=1, help="every n-th image of each class")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "fruit_pipeline"))
    args = parser.parse_args()
    paths = [
        image
        for folder in sorted(p for p in args.images.iterdir() if p.is_dir())
        for image in sorted(folder.glob("*.jpg"))[:: args.every]
    ]
    predict = embedding.onnx_predictor(
        feature_model.onnx_feature_model("imagenet", args.cache), threads=os.cpu_count() or 1
    )
    pixels = [
        decode_image(path.read_bytes(), feature_model.INPUT_SIZE, 25_000_000) for path in paths
    ]
    base, mirror = [], []
    for start in range(0, len(pixels), 32):
        batch = np.stack(pixels[start : start + 32]).astype(np.float32)
        base.append(predict(batch))
        mirror.append(predict(batch[:, :, ::-1, :].copy()))
    base_features, mirror_features = np.concatenate(base), np.concatenate(mirror)
    histograms = np.stack([hsv_histogram(p) for p in pixels])
    options = {
        "base": base_features,
        "mirror": (base_features + mirror_features) / 2,
        "hsv": np.hstack([base_features, histograms]),
    }
    parameters = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_train.yml").read_text())
    spark_settings = yaml.safe_load((PROJECT_ROOT / "conf/base/spark.yml").read_text())
    spark = start_spark(spark_settings)
    print(f"{len(paths)} images of {len({p.parent.name for p in paths})} classes")
    for name, matrix in options.items():
        rows = [
            (f"file:{path}", path.parent.name, vector.astype(float).tolist())
            for path, vector in zip(paths, matrix, strict=True)
        ]
        frame = spark.createDataFrame(rows, "path string, label string, features array<double>")
        selection = select_classifier(assign_split(frame, parameters["train"]), parameters["train"])
        for candidate in selection["candidates"]:
            print(
                f"{name:>6} | {candidate['name']:<26} | validation accuracy "
                f"{candidate['validation_accuracy']:.4f} | log loss "
                f"{candidate['validation_log_loss']:.4f}"
            )


if __name__ == "__main__":
    main()
