"""Cheap additions to the embedding, compared on validation images with the train pipeline's code.

For every image of a folder of class folders it computes, with the project's decode and ONNX
feature model: the embedding, the embedding of the mirror image, and the colour histogram the
pipeline computes (fruit_pipeline.core.colour). Then, for each embedding option
  base: the embedding; mirror: the mean of both embeddings,
it runs the train pipeline's own split and candidate selection (`assign_split`,
`select_classifier` with the project's parameters, whose candidates take the colour histogram or
not) and prints every candidate's validation accuracy and log loss. The test images take part
in nothing.

    python benchmarks/feature_options.py --images <folder of class folders> --every 3
"""

import argparse
import os
from pathlib import Path

import numpy as np
from scratch_project import PROJECT_ROOT

from fruit_pipeline.config import config_loader
from fruit_pipeline.core import feature_model, predictors
from fruit_pipeline.core.colour import colour_histogram
from fruit_pipeline.core.images import decode_image
from fruit_pipeline.parameters import TrainSettings
from fruit_pipeline.pipelines.train.nodes import assign_split, select_classifier
from fruit_pipeline.spark.session import start_spark


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
    config = config_loader(PROJECT_ROOT)
    parameters = config["parameters"]
    framing = parameters["featurize"]["framing"]
    predict = predictors.onnx_predictor(
        feature_model.onnx_feature_model("imagenet", args.cache), threads=os.cpu_count() or 1
    )
    pixels = [
        decode_image(path.read_bytes(), feature_model.INPUT_SIZE, 25_000_000, framing)
        for path in paths
    ]
    base, mirror = [], []
    for start in range(0, len(pixels), 32):
        batch = np.stack(pixels[start : start + 32]).astype(np.float32)
        base.append(predict(batch))
        mirror.append(predict(batch[:, :, ::-1, :].copy()))
    base_features, mirror_features = np.concatenate(base), np.concatenate(mirror)
    histograms = [colour_histogram(image) for image in pixels]
    options = {"base": base_features, "mirror": (base_features + mirror_features) / 2}
    spark = start_spark(dict(config["spark"]))
    print(f"{len(paths)} images of {len({p.parent.name for p in paths})} classes")
    for name, matrix in options.items():
        rows = [
            (f"file:{path}", path.parent.name, vector.tolist(), histogram.tolist())
            for path, vector, histogram in zip(paths, matrix, histograms, strict=True)
        ]
        frame = spark.createDataFrame(
            rows, "path string, label string, features array<float>, colour array<float>"
        )
        train = TrainSettings.model_validate(parameters["train"])
        selection = select_classifier(assign_split(frame, train), train)
        for candidate in selection["candidates"]:
            print(
                f"{name:>6} | {candidate['name']:<35} | validation accuracy "
                f"{candidate['validation_accuracy']:.4f} | log loss "
                f"{candidate['validation_log_loss']:.4f}"
            )


if __name__ == "__main__":
    main()
