"""How well the train pipeline names the fruit in real photos of a source it never trained on.

Sources (from ../shared/data or --data): `studio` (the 95-class Fruits-360 subset), `grocery`
(real-photos/grocery-train) and `bowl` (real-photos/bowl-train). Every image is embedded once with
the project's decode, ONNX feature model and colour histogram. Each option trains the train
pipeline's own nodes at `label_level: fruit` (fruit_names), with the project's candidates,
calibration and "not sure" threshold, on some sources; then it names the photos of each held-out
real source whose fruit the option's training set has, and prints per source: the share right
(a "not sure" counts as not right), the share answered and the accuracy of the answers. For the
options that train on studio frames, the same model's accuracy on the studio test images too;
the candidate the selection chose, its temperature and "not sure" threshold. With
--real-validates, an option of two sources takes every photo of its real one as validation
images (`train.selection.validation_source`). With --beta, each option is trained and measured
once for each weight of the ImageNet prior given (`train.imagenet_prior.beta`; 0: without it).

    python benchmarks/real_photos.py                    # every image
    python benchmarks/real_photos.py --every 2          # every 2nd image of each folder
    python benchmarks/real_photos.py --real-validates --answer-precision 0.95
    python benchmarks/real_photos.py --beta 0 0.5       # without and with the prior
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scratch_project import PROJECT_ROOT

from fruit_pipeline.config import config_loader
from fruit_pipeline.contracts import IMAGE_SUFFIXES, INT8_ENGINE, SPLIT, TEST
from fruit_pipeline.core import feature_model, predictors, quantization
from fruit_pipeline.core.augmentation import view_key, views_of
from fruit_pipeline.core.colour import colour_histogram
from fruit_pipeline.core.fruit_names import FruitNames
from fruit_pipeline.core.imagenet_prior import head_of_weights
from fruit_pipeline.core.images import ImageRejected, decode_image, frame, open_photo
from fruit_pipeline.parameters import (
    FRAMINGS,
    INPUTS,
    AugmentSettings,
    Candidate,
    TrainSettings,
)
from fruit_pipeline.pipelines.train.nodes import (
    PriorHead,
    assign_split,
    label_prior,
    name_fruits,
    score,
    select_classifier,
    train_classifier,
)
from fruit_pipeline.spark.pca import as_vectors
from fruit_pipeline.spark.session import start_spark
from fruit_pipeline.spark.views import without_views

SOURCES = {
    "studio": "fruits-360-95",
    "grocery": "real-photos/grocery-train",
    "bowl": "real-photos/bowl-train",
}
# Training sources of each option; every real source it leaves out is held out.
OPTIONS = {
    "studio": ("studio",),
    "grocery": ("grocery",),
    "bowl": ("bowl",),
    "studio + grocery": ("studio", "grocery"),
    "studio + bowl": ("studio", "bowl"),
}
SCHEMA = (
    "path string, label string, source string, features array<float>, colour array<float>, "
    "views array<array<float>>, view_colours array<array<float>>"
)


def views(pixels: np.ndarray) -> list[np.ndarray]:
    """Multi-crop: the framed photo, its mirror, and crops of 0.8 of its side at the four corners
    and the centre, each resized back to the model's input."""
    size = len(pixels)
    side = round(0.8 * size)
    corners = [(0, 0), (0, size - side), (size - side, 0), (size - side, size - side)]
    starts = [*corners, ((size - side) // 2, (size - side) // 2)]
    crops = [
        np.asarray(
            Image.fromarray(pixels[top : top + side, left : left + side]).resize(
                (size, size), Image.Resampling.BILINEAR
            )
        )
        for top, left in starts
    ]
    return [pixels, pixels[:, ::-1], *crops]


def feature_onnx(
    weights: str, engine: str, cache: str, calibration_folder: Path, framing: str
) -> bytes:
    """The engine's ONNX model of the weights; INT8 quantized (if not cached) on a seeded sample
    of a folder, as featurize calibrates on the images it embeds."""
    if engine != INT8_ENGINE:
        return feature_model.onnx_feature_model(weights, cache)
    paths = sorted(p for p in calibration_folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    sample = np.random.default_rng(quantization.CALIBRATION_SEED).choice(
        len(paths), min(quantization.CALIBRATION_IMAGES, len(paths)), replace=False
    )

    def calibration() -> np.ndarray:
        pixels = [
            decode_image(paths[i].read_bytes(), feature_model.INPUT_SIZE, 25_000_000, framing)
            for i in sorted(sample)
        ]
        return np.stack(pixels).astype(np.float32)

    return feature_model.int8_feature_model(weights, cache, calibration)


def embed(
    folder: Path,
    every: int,
    model: bytes,
    framing: str,
    *,
    multi_crop: bool,
    augment: AugmentSettings,
) -> tuple[list[tuple], dict[str, float]]:
    """(path, folder name, embedding, colour histogram, views' embeddings, views' histograms) of
    every `every`-th image of a folder, and the model's milliseconds per image: the framed photo
    alone, and all its multi-crop views."""
    paths = [
        path
        for label in sorted(p for p in folder.iterdir() if p.is_dir())
        for path in sorted(p for p in label.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[
            ::every
        ]
    ]
    predict = predictors.onnx_predictor(model, threads=os.cpu_count() or 1)
    rows, seconds = [], {"photo": 0.0, "views": 0.0}
    for start in range(0, len(paths), 32):
        batch, kept, augmented = [], [], []
        for path in paths[start : start + 32]:
            try:
                photo = open_photo(path.read_bytes(), 25_000_000)
            except ImageRejected as rejected:
                print(f"rejected {path}: {rejected}")
                continue
            batch.append(frame(photo, feature_model.INPUT_SIZE, framing))
            augmented.append(
                [
                    frame(view, feature_model.INPUT_SIZE, framing)
                    for view in views_of(photo, view_key(str(path)), augment)
                ]
            )
            kept.append(path)
        started = time.perf_counter()
        features = predict(np.stack(batch).astype(np.float32))
        seconds["photo"] += time.perf_counter() - started
        if multi_crop:
            started = time.perf_counter()
            shown = [view for pixels in batch for view in views(pixels)]
            embedded = predict(np.stack(shown).astype(np.float32))
            seconds["views"] += time.perf_counter() - started
            features = embedded.reshape(len(batch), -1, embedded.shape[-1]).mean(axis=1)
        for path, vector, pixels, extra in zip(kept, features, batch, augmented, strict=True):
            extra_features = predict(np.stack(extra).astype(np.float32)) if extra else []
            rows.append(
                (
                    f"file:{path}",
                    path.parent.name,
                    vector.tolist(),
                    colour_histogram(pixels).tolist(),
                    [view.tolist() for view in extra_features],
                    [colour_histogram(view).tolist() for view in extra],
                )
            )
    return rows, {kind: 1000 * total / len(rows) for kind, total in seconds.items()}


def named(scored, selection: dict) -> dict[str, float]:
    """Right (not sure = not right), answered, accuracy of the answers and of the top answer
    (with no "not sure"), over the images."""
    temperature = selection["temperature"]
    answered = scored.probabilities(temperature).max(axis=1) >= selection["unknown_threshold"]
    right = scored.predicted(temperature) == scored.labels
    return {
        "images": len(right),
        "top": float(np.mean(right)),
        "right": float(np.mean(right & answered)),
        "answered": float(np.mean(answered)),
        "accuracy_answered": float(np.mean(right[answered])) if answered.any() else float("nan"),
    }


def arguments() -> argparse.Namespace:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--weights",
        type=Path,
        default=PROJECT_ROOT.parent / "shared" / "models" / feature_model.WEIGHTS_FILE_NAME,
        help="the MobileNetV2 weights file with its top: the ImageNet prior's head",
    )
    parser.add_argument("--every", type=int, default=1, help="every n-th image of each folder")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "fruit_pipeline"))
    parser.add_argument("--framing", choices=FRAMINGS, help="default: featurize.framing")
    parser.add_argument(
        "--engine",
        choices=("onnxruntime", INT8_ENGINE),
        default="onnxruntime",
        help="the feature model's engine (INT8: calibrated on the studio images)",
    )
    parser.add_argument(
        "--multi-crop", action="store_true", help="embed each image as the mean of 7 views"
    )
    parser.add_argument(
        "--copies", type=int, help="views of each photo (default: featurize.augment.copies)"
    )
    parser.add_argument(
        "--without-colour", action="store_true", help="the candidates without the colour histogram"
    )
    parser.add_argument(
        "--real-validates",
        action="store_true",
        help="options of two sources: every photo of the real one is a validation image "
        "(train.selection.validation_source)",
    )
    parser.add_argument(
        "--answer-precision",
        type=float,
        help="the threshold: this accuracy of the validation answers (default: as configured)",
    )
    parser.add_argument(
        "--beta",
        type=float,
        nargs="+",
        help="the ImageNet prior's weights to measure (default: as configured; 0: without it)",
    )
    parser.add_argument(
        "--inputs",
        choices=INPUTS,
        help="the candidates' inputs, all of them (default: as configured)",
    )
    return parser.parse_args()


def main() -> None:
    args = arguments()
    config = config_loader(PROJECT_ROOT)
    parameters = config["parameters"]
    framing = args.framing or parameters["featurize"]["framing"]
    augment = AugmentSettings.model_validate(parameters["featurize"]["augment"])
    if args.copies is not None:
        augment = augment.model_copy(update={"copies": args.copies})
    train = TrainSettings.model_validate({**parameters["train"], "label_level": "fruit"})
    if args.without_colour or args.inputs:
        changed = {"colour": False} if args.without_colour else {}
        changed |= {"inputs": args.inputs} if args.inputs else {}
        candidates = {
            Candidate.model_validate({**c.model_dump(), **changed})
            for c in train.selection.candidates
        }
        candidates = sorted(candidates, key=Candidate.name)
        selection = train.selection.model_copy(update={"candidates": tuple(candidates)})
        train = train.model_copy(update={"selection": selection})
    if args.answer_precision is not None:
        train = train.model_copy(update={"answer_precision": args.answer_precision})
    print(
        f"engine: {args.engine}; framing: {framing}; multi-crop: {args.multi_crop}; "
        f"views: {augment.name()}; "
        f"candidates: {[c.name() for c in train.selection.candidates]}; "
        + (
            f"threshold: validation answers right {train.answer_precision}"
            if train.answer_precision is not None
            else f"threshold: keeps {train.keep_correct} of the right validation answers"
        )
        + ("; the real source validates" if args.real_validates else "")
    )
    betas = args.beta if args.beta is not None else [train.imagenet_prior.beta]
    print(f"ImageNet prior: beta {', '.join(str(beta) for beta in betas)}")
    head = head_of_weights(str(args.weights)) if any(betas) else None
    fruit_names = FruitNames.model_validate(parameters["fruit_names"])
    spark = start_spark(dict(config["spark"]))
    model = feature_onnx(
        str(args.weights), args.engine, args.cache, args.data / SOURCES["studio"], framing
    )
    rows = {}
    for source, path in SOURCES.items():
        embedded, milliseconds = embed(
            args.data / path,
            args.every,
            model,
            framing,
            multi_crop=args.multi_crop,
            augment=augment,
        )
        rows[source] = [(*row[:2], source, *row[2:]) for row in embedded]
        folders = len({row[1] for row in embedded})
        print(
            f"{source}: {len(embedded)} images of {folders} folders, "
            f"the model's ms per image: {milliseconds['photo']:.1f} for the photo"
            + (f", {milliseconds['views']:.1f} for its 7 views" if args.multi_crop else "")
        )
    frames = {
        source: name_fruits(spark.createDataFrame(source_rows, SCHEMA), fruit_names, train)
        for source, source_rows in rows.items()
    }
    measure(frames, train, betas, head, real_validates=args.real_validates)


def measure(
    frames: dict, train: TrainSettings, betas: list[float], head, *, real_validates: bool
) -> None:
    """Train each option with each weight of the prior; print what it names of each held-out
    real source, and of the studio test images."""
    print(
        f"{'trained on':<36} | {'beta':>4} | {'held out':<8} | {'images':>6} | {'top-1':>5} | "
        f"{'right':>5} | {'answered':>8} | {'right when answered':>19} | studio test accuracy | "
        "chosen; temperature, threshold"
    )
    for (name, sources), beta in ((option, beta) for option in OPTIONS.items() for beta in betas):
        option = name
        training = frames[sources[0]]
        for source in sources[1:]:
            training = training.unionByName(frames[source])
        prior = train.imagenet_prior.model_copy(update={"beta": beta})
        settings = train.model_copy(update={"imagenet_prior": prior})
        if real_validates and len(sources) == 2:
            validating = Path(SOURCES[sources[-1]]).name
            selection = train.selection.model_copy(update={"validation_source": validating})
            settings = settings.model_copy(update={"selection": selection})
            option = f"{name} ({sources[-1]} validates)"
        split = assign_split(training, settings).persist()
        option_head = head if beta else None
        selection = select_classifier(split, settings, PriorHead(option_head))
        classifier, _ = train_classifier(split, selection, settings)
        prior = label_prior(classifier, option_head, selection["imagenet_prior"])
        fruits = {row[0] for row in training.select("label").distinct().collect()}
        studio = "-"
        if "studio" in sources:
            tested = named(
                score(
                    classifier,
                    as_vectors(without_views(split.where(f"{SPLIT} = '{TEST}'"))),
                    prior,
                ),
                selection,
            )
            studio = (
                f"{tested['top']:.3f} top-1, {tested['right']:.3f} right, "
                f"{tested['accuracy_answered']:.3f} when answered"
            )
        for held_out in (s for s in ("grocery", "bowl") if s not in sources):
            held = frames[held_out].where(frames[held_out].label.isin(sorted(fruits)))
            photos = as_vectors(without_views(held))
            result = named(score(classifier, photos, prior), selection)
            print(
                f"{option:<36} | {beta:>4} | {held_out:<8} | {result['images']:>6} | "
                f"{result['top']:.3f} | {result['right']:.3f} | "
                f"{result['answered']:>8.3f} | {result['accuracy_answered']:>19.3f} | {studio} | "
                f"{selection['chosen']['name']}; T {selection['temperature']:.2f}, "
                f"threshold {selection['unknown_threshold']:.3f}"
            )
        split.unpersist()


if __name__ == "__main__":
    main()
