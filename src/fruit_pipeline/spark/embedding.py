"""Images to MobileNetV2 features on Spark: the model broadcast once, one model per Python worker.

Two engines compute the same features: `onnxruntime` (the default: about twice as fast on a
CPU, and its workers never import TensorFlow) and `keras` (TensorFlow, kept for comparison).
`onnxruntime-int8` runs the model quantized to INT8: faster again, features close to but not
those of FP32 (docs/performance.md), so its rows never mix with theirs.
"""

import logging
import math
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from fruit_pipeline.contracts import (
    COLOUR,
    DESCRIPTION,
    FEATURES,
    INT8_ENGINE,
    SOURCE_FILE,
    VIEW_COLOURS,
    VIEWS,
    ddl,
)
from fruit_pipeline.core import feature_model, int8_support
from fruit_pipeline.core.augmentation import view_key, views_of
from fruit_pipeline.core.colour import colour_histogram
from fruit_pipeline.core.feature_model import INPUT_SIZE
from fruit_pipeline.core.images import ImageRejected, frame, open_photo
from fruit_pipeline.core.predictors import Predictor, keras_predictor, onnx_predictor
from fruit_pipeline.core.progress import ProgressLog
from fruit_pipeline.parameters import FeaturizeSettings

logger = logging.getLogger(__name__)

# The identity of each source file travels with its row (`length`, `modificationTime`: Spark's
# binaryFile columns), so the features table needs no join with the listing afterwards.
PASSED_THROUGH = tuple(SOURCE_FILE)
# A row that could not be described has no features and says why.
EMBEDDING_SCHEMA = ddl(SOURCE_FILE | DESCRIPTION | {"reason": "string"})

# One predictor per Python worker process, reused by the tasks it runs.
_worker_predictors: dict[str, Predictor] = {}


@dataclass(frozen=True)
class WorkerModel:
    """What each worker needs to build its predictor: ONNX bytes or Keras weights."""

    engine: str
    payload: bytes | list[np.ndarray]


def load_worker_model(
    settings: FeaturizeSettings, calibration: Callable[[], np.ndarray] | None = None
) -> WorkerModel:
    """On the driver: the model of the chosen engine, from the weights (INT8: quantized on the
    `calibration` pixels if the cache has no INT8 model yet)."""
    if settings.engine == "onnxruntime":
        model = feature_model.onnx_feature_model(settings.weights, settings.model_cache)
        return WorkerModel(settings.engine, model)
    if settings.engine == INT8_ENGINE:
        model = feature_model.int8_feature_model(
            settings.weights, settings.model_cache, calibration
        )
        return WorkerModel(settings.engine, model)
    return WorkerModel("keras", feature_model.load_feature_weights(settings.weights))


def embed_images(
    images: DataFrame,
    settings: FeaturizeSettings,
    total: int,
    calibration: Callable[[], np.ndarray] | None = None,
) -> DataFrame:
    """Embed (PASSED_THROUGH, content) rows into (PASSED_THROUGH, DESCRIPTION, reason), once.

    The model is broadcast once; each Python worker builds its predictor once. A row either
    has its features or the reason it was rejected. The result is persisted and computed here,
    with a progress line in the log every ten seconds.
    """
    model = load_worker_model(settings, calibration)
    context = images.sparkSession.sparkContext
    broadcast_model = context.broadcast(model.payload)
    embedded_count = context.accumulator(0)
    embed_partition = _partition_embedder(
        model.engine, broadcast_model, uuid.uuid4().hex, settings, embedded_count
    )
    tasks = settings.partitions or max(
        context.defaultParallelism, math.ceil(total / settings.images_per_task)
    )
    embedded = (
        _with_partitions(images, tasks)
        .select(*PASSED_THROUGH, "content")
        .mapInPandas(embed_partition, schema=EMBEDDING_SCHEMA)
        # Both the features and the rejects are written from this one pass over the images.
        .persist(StorageLevel.DISK_ONLY)
    )
    with ProgressLog(lambda: embedded_count.value, total, f"{model.engine}: images embedded"):
        embedded.count()
    return embedded


def _with_partitions(images: DataFrame, partitions: int) -> DataFrame:
    # Spark's file splits give one task per ~30 small images; merging them needs no shuffle.
    current = images.rdd.getNumPartitions()
    if partitions < current:
        return images.coalesce(partitions)
    return images.repartition(partitions) if partitions > current else images


def _partition_embedder(
    engine: str,
    broadcast_model: Any,
    model_key: str,
    settings: FeaturizeSettings,
    embedded_count: Any,
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    def embed_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        predict = worker_predictor(engine, broadcast_model, model_key, settings.threads_per_worker)
        for batch in batches:
            yield embed_batch(batch, predict, settings)
            embedded_count.add(len(batch))

    return embed_partition


def worker_predictor(engine: str, broadcast_model: Any, model_key: str, threads: int) -> Predictor:
    """This worker's predictor for the broadcast model, built on first use."""
    predict = _worker_predictors.get(model_key)
    if predict is None:
        if engine == INT8_ENGINE:
            # The driver checked its own CPU; an executor may run on another instance type.
            int8_support.require_int8_support()
        build = keras_predictor if engine == "keras" else onnx_predictor
        predict = build(broadcast_model.value, threads)
        _worker_predictors.clear()
        _worker_predictors[model_key] = predict
    return predict


def embed_batch(
    batch: pd.DataFrame, predict: Predictor, settings: FeaturizeSettings
) -> pd.DataFrame:
    """Decode, embed and colour-describe one batch of rows and the views of each (other columns
    kept); undecodable rows get their reason."""
    reasons: list[str | None] = []
    pixels: list[np.ndarray] = []
    view_counts: list[int] = []
    for path, content in zip(batch["path"], batch["content"], strict=True):
        try:
            photo = open_photo(content, settings.max_image_pixels)
        except ImageRejected as rejection:
            reasons.append(str(rejection))
            continue
        views = views_of(photo, view_key(path), settings.augment)
        pixels += [frame(image, INPUT_SIZE, settings.framing) for image in (photo, *views)]
        view_counts.append(len(views))
        reasons.append(None)
    vectors = iter(predict_in_batches(predict, pixels, settings.batch_size))
    histograms = iter([colour_histogram(image) for image in pixels])
    counts = iter(view_counts)
    features, colours, views, view_colours = [], [], [], []
    for reason in reasons:
        if reason:
            for column in (features, colours, views, view_colours):
                column.append(None)
            continue
        features.append(next(vectors))
        colours.append(next(histograms))
        count = next(counts)
        views.append([next(vectors) for _ in range(count)])
        view_colours.append([next(histograms) for _ in range(count)])
    return batch.drop(columns="content").assign(
        **{FEATURES: features, COLOUR: colours, VIEWS: views, VIEW_COLOURS: view_colours},
        reason=reasons,
    )


def predict_in_batches(
    predict: Predictor, pixels: list[np.ndarray], batch_size: int
) -> list[np.ndarray]:
    """Features of decoded images, `batch_size` images per model call."""
    vectors: list[np.ndarray] = []
    for start in range(0, len(pixels), batch_size):
        chunk = np.stack(pixels[start : start + batch_size]).astype(np.float32)
        vectors.extend(np.asarray(predict(chunk), dtype=np.float32))
    return vectors
