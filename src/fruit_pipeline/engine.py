"""Spark and TensorFlow plumbing: the session, the MobileNetV2 weights and the batched inference.

TensorFlow is imported inside functions so that `kedro viz`, `kedro catalog` and the reduce
pipeline never pay for it.
"""

import logging
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from fruit_pipeline.images import ImageRejected, decode_image

logger = logging.getLogger(__name__)

INPUT_SIZE = 224  # MobileNetV2's ImageNet input, width and height
EMBEDDING_SCHEMA = "path string, label string, features array<float>, reason string"

# One feature model per Python worker process, reused by the tasks it runs.
_worker_models: dict[str, Any] = {}


def start_spark(settings: dict[str, Any]) -> SparkSession:
    """Return the active Spark session, or start one with the environment's settings."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Local Python workers must run this interpreter, which has the project's packages.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, str(value).lower() if isinstance(value, bool) else str(value))
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def release_cached_data() -> None:
    """Drop what a run persisted, so a long-lived session does not keep it."""
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()


def build_feature_model(weights: str | None) -> Any:
    """MobileNetV2 with its ImageNet top, cut at the 1280-d global-average-pooled layer."""
    import keras  # noqa: PLC0415

    classifier = keras.applications.MobileNetV2(
        weights=weights, include_top=True, input_shape=(INPUT_SIZE, INPUT_SIZE, 3)
    )
    return keras.Model(classifier.input, classifier.layers[-2].output, name="mobilenet_v2_features")


def load_feature_weights(source: str | None) -> list[np.ndarray]:
    """Load the feature model's weights on the driver: `imagenet`, a .h5 path or URL, or None."""
    if source is None:
        logger.warning(
            "featurize.weights is null: MobileNetV2 gets RANDOM weights, the features are "
            "meaningless (meant for tests only)."
        )
        return build_feature_model(None).get_weights()
    if source == "imagenet":
        return _imagenet_weights()
    return _file_weights(str(source))


def _imagenet_weights() -> list[np.ndarray]:
    try:
        return build_feature_model("imagenet").get_weights()
    except Exception as error:
        raise RuntimeError(
            "featurize.weights is 'imagenet' but Keras could not get the MobileNetV2 ImageNet "
            f"weights ({error}). Without internet: copy "
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5 into "
            "$KERAS_HOME/models/ (default ~/.keras/models/), or set featurize.weights to the "
            "path or URL (s3://...) of that .h5 file, or to null for random weights (tests only)."
        ) from error


def _file_weights(source: str) -> list[np.ndarray]:
    filesystem, path = fsspec.core.url_to_fs(source)
    if not filesystem.isfile(path):
        raise FileNotFoundError(
            f"featurize.weights names {source!r}, which is not a file. Give the path or URL "
            "of a MobileNetV2 .h5 weights file (with its top), 'imagenet' or null."
        )
    if isinstance(filesystem, LocalFileSystem):
        return build_feature_model(path).get_weights()
    # Keras reads local files only: remote weights are copied once, on the driver.
    with tempfile.TemporaryDirectory() as folder:
        local_path = os.path.join(folder, os.path.basename(path))
        filesystem.get(path, local_path)
        return build_feature_model(local_path).get_weights()


def embed_images(
    images: DataFrame,
    *,
    weights: list[np.ndarray],
    batch_size: int,
    max_image_pixels: int,
    tf_threads: int,
    partitions: int | None,
) -> DataFrame:
    """Embed (path, label, content) rows into (path, label, features, reason), persisted once.

    The weights are broadcast once; each Python worker builds the network without weights and
    sets the broadcast ones. A row either has its features or the reason it was rejected.
    """
    spark = images.sparkSession
    broadcast_weights = spark.sparkContext.broadcast(weights)
    embed_partition = _partition_embedder(
        broadcast_weights, uuid.uuid4().hex, (batch_size, max_image_pixels, tf_threads)
    )
    images = _with_partitions(images, partitions or spark.sparkContext.defaultParallelism)
    embedded = images.select("path", "label", "content").mapInPandas(
        embed_partition, schema=EMBEDDING_SCHEMA
    )
    # Both the features and the rejects are written from this one pass over the images.
    return embedded.persist(StorageLevel.DISK_ONLY)


def _with_partitions(images: DataFrame, partitions: int) -> DataFrame:
    # Few large tasks: each task start costs the Python worker about a second, and Spark's
    # file splits give one task per ~30 small images. Merging splits needs no shuffle.
    current = images.rdd.getNumPartitions()
    if partitions < current:
        return images.coalesce(partitions)
    return images.repartition(partitions) if partitions > current else images


def unread_files(images: DataFrame, embedded: DataFrame) -> DataFrame:
    """Paths that Spark listed for a file source but never read (it skips files of 0 bytes)."""
    listed = [(_spark_path(uri),) for uri in images.inputFiles()]
    listed_files = images.sparkSession.createDataFrame(listed, "path string")
    # The embedded rows are persisted: comparing with them reads no image file again.
    return listed_files.join(embedded.select("path"), "path", "left_anti")


def _spark_path(uri: str) -> str:
    # inputFiles() gives percent-encoded URIs; the path column holds Hadoop's plain form.
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"


def _partition_embedder(
    broadcast_weights: Any, weights_key: str, settings: tuple[int, int, int]
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    batch_size, max_image_pixels, tf_threads = settings

    def embed_partition(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _worker_model(broadcast_weights, weights_key, tf_threads)
        for batch in batches:
            yield embed_batch(batch, model, batch_size, max_image_pixels)

    return embed_partition


def _worker_model(broadcast_weights: Any, weights_key: str, tf_threads: int) -> Any:
    model = _worker_models.get(weights_key)
    if model is None:
        import tensorflow as tf  # noqa: PLC0415

        try:
            tf.config.threading.set_intra_op_parallelism_threads(tf_threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            logger.debug("TensorFlow already initialised in this worker; thread settings kept")
        model = build_feature_model(None)
        model.set_weights(broadcast_weights.value)
        _worker_models.clear()
        _worker_models[weights_key] = model
    return model


def embed_batch(
    batch: pd.DataFrame, model: Any, batch_size: int, max_image_pixels: int
) -> pd.DataFrame:
    """Decode, preprocess and embed one batch of rows; undecodable rows get their reason."""
    from keras.applications.mobilenet_v2 import preprocess_input  # noqa: PLC0415

    reasons: list[str | None] = []
    pixels: list[np.ndarray] = []
    for content in batch["content"]:
        try:
            pixels.append(decode_image(content, INPUT_SIZE, max_image_pixels))
            reasons.append(None)
        except ImageRejected as rejection:
            reasons.append(str(rejection))
    vectors = iter(_predict(model, pixels, batch_size, preprocess_input))
    features = [None if reason else next(vectors) for reason in reasons]
    return pd.DataFrame(
        {"path": batch["path"], "label": batch["label"], "features": features, "reason": reasons}
    )


def _predict(
    model: Any, pixels: list[np.ndarray], batch_size: int, preprocess: Callable
) -> list[np.ndarray]:
    vectors: list[np.ndarray] = []
    for start in range(0, len(pixels), batch_size):
        chunk = preprocess(np.stack(pixels[start : start + batch_size]).astype(np.float32))
        vectors.extend(np.asarray(model.predict_on_batch(chunk), dtype=np.float32))
    return vectors
