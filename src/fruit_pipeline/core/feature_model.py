"""The MobileNetV2 feature model on the driver: its weights file, the Keras network, its ONNX form.

TensorFlow is imported inside functions only: `kedro viz`, the reduce and train pipelines and,
when the ONNX model is cached, the whole featurize run never import it.
"""

import contextlib
import functools
import hashlib
import importlib.util
import logging
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from fsspec.implementations.local import LocalFileSystem

from fruit_pipeline.contracts import INT8_ENGINE
from fruit_pipeline.core import int8_support

logger = logging.getLogger(__name__)

INPUT_SIZE = 224  # MobileNetV2's ImageNet input, width and height
FEATURE_SIZE = 1280  # its global-average-pooled layer, before the classifier
WEIGHTS_FILE_NAME = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
ONNX_OPSET = 17
# The model's input: RGB pixels 0-255 as float32, (images, 224, 224, 3).
INPUT_NAME = "pixels"
# The cached INT8 model is named after the FP32 one, with this and its quantization settings.
_INT8_MARK = "-int8-"


def build_feature_model(weights: str | None) -> Any:
    """Pixels 0-255 -> MobileNetV2's preprocessing and network -> its 1280-d pooled layer."""
    try:
        import keras  # noqa: PLC0415
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "The Keras model (featurize.engine keras, random weights, or a conversion to ONNX) "
            "needs the keras extra, which this install lacks (a cluster's nodes have none: "
            "use the onnxruntime engines there, with the model `fruit-deploy package` converted)."
        ) from error

    classifier = keras.applications.MobileNetV2(
        weights=weights, include_top=True, input_shape=(INPUT_SIZE, INPUT_SIZE, 3)
    )
    features = keras.Model(classifier.input, classifier.layers[-2].output)
    pixels = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name=INPUT_NAME)
    # MobileNetV2's preprocess_input ("tf" mode), inside the model: every engine gets raw pixels.
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(pixels)
    return keras.Model(pixels, features(scaled), name="mobilenet_v2_features")


def load_feature_weights(source: str | None) -> list[np.ndarray]:
    """The feature model's weights, on the driver: `imagenet`, a .h5 path or URL, or None."""
    if source is None:
        warn_random_weights()
        return build_feature_model(None).get_weights()
    with weights_file(source) as path:
        return build_feature_model(str(path)).get_weights()


def onnx_feature_model(source: str | None, cache: str) -> bytes:
    """The feature model as ONNX, converted from Keras once per weights file and cached."""
    if source is None:
        warn_random_weights()
        return to_onnx(build_feature_model(None))
    checksum = weights_sha256(source)
    filesystem, folder = fsspec.core.url_to_fs(cache.rstrip("/"))
    if not can_convert():
        return _converted_elsewhere(filesystem, folder, checksum, cache)
    cached = f"{folder}/{_onnx_name(checksum)}"
    if filesystem.isfile(cached):
        logger.info("Feature model: ONNX from the cache, %s", cached)
        return filesystem.cat_file(cached)
    logger.info("Feature model: converting the Keras model to ONNX (once per weights file)")
    with weights_file(source) as path:
        model = to_onnx(build_feature_model(str(path)))
    _write_once(filesystem, cached, model)
    return model


def can_convert() -> bool:
    """Whether this install has Keras and tf2onnx, which convert the weights to ONNX."""
    return all(importlib.util.find_spec(name) is not None for name in ("keras", "tf2onnx"))


def is_conversion_of(name: str, weights_checksum: str) -> bool:
    """Whether a file name in a model cache is an FP32 ONNX conversion of those weights."""
    return (
        name.startswith(_onnx_prefix(weights_checksum))
        and name.endswith(".onnx")
        and _INT8_MARK not in name
    )


def int8_feature_model(
    source: str | None, cache: str, calibration: Callable[[], np.ndarray] | None
) -> bytes:
    """The feature model quantized to INT8, once per FP32 model, cached beside it.

    `calibration` gives the pixels to calibrate on when the cache has no INT8 model yet; without
    it (predict, the service) the model must be in the cache: the features it makes are those of
    that one quantized model, which a new calibration would not reproduce.
    """
    from fruit_pipeline.core import quantization  # noqa: PLC0415

    int8_support.require_int8_support()
    if source is None:
        warn_random_weights()
        if calibration is None:
            raise RuntimeError(
                "featurize.weights is null: an INT8 model of random weights is quantized anew by "
                "each featurize run and never cached, so predict and the service cannot use it."
            )
        return quantization.quantize(onnx_feature_model(None, cache), calibration())
    filesystem, folder = fsspec.core.url_to_fs(cache.rstrip("/"))
    fp32_name = _cached_onnx_name(filesystem, folder, weights_sha256(source), cache)
    settings = hashlib.sha256("/".join(quantization.SETTINGS).encode()).hexdigest()
    cached = f"{folder}/{fp32_name.removesuffix('.onnx')}{_INT8_MARK}{settings[:16]}.onnx"
    if filesystem.isfile(cached):
        logger.info("Feature model: INT8 ONNX from the cache, %s", cached)
        return filesystem.cat_file(cached)
    if calibration is None:
        raise RuntimeError(
            f"featurize.engine is onnxruntime-int8 but {cache} holds no INT8 model of these "
            f"weights ({cached}). The featurize run that embeds images with that engine "
            "quantizes the model and caches it: run it, or point featurize.model_cache at the "
            "cache it filled."
        )
    logger.info("Feature model: quantizing the ONNX model to INT8 (once per model)")
    model = quantization.quantize(onnx_feature_model(source, cache), calibration())
    _write_once(filesystem, cached, model)
    return model


def _cached_onnx_name(
    filesystem: fsspec.AbstractFileSystem, folder: str, checksum: str, cache: str
) -> str:
    # The FP32 model's cached name: converted here if this install can, else the one there is.
    if not can_convert():
        return os.path.basename(_converted_elsewhere_path(filesystem, folder, checksum, cache))
    return _onnx_name(checksum)


def _write_once(filesystem: fsspec.AbstractFileSystem, path: str, model: bytes) -> None:
    filesystem.makedirs(filesystem._parent(path), exist_ok=True)
    # A run killed while writing leaves a temporary file, never a truncated model.
    partial = f"{path}.{uuid.uuid4().hex}.partial"
    filesystem.pipe_file(partial, model)
    filesystem.mv(partial, path)


def identity(
    source: str | None, engine: str, framing: str, cache: str | None = None
) -> dict[str, Any]:
    """What identifies the features a model makes: the SHA-256 of the weights that compute them
    (the weights file; for `onnxruntime-int8`, the quantized model in `cache`), the engine and
    the framing of its input."""
    if source is None:
        checksum = None
    elif engine == INT8_ENGINE:
        if cache is None:
            raise ValueError("The INT8 feature model's identity needs the model cache.")
        checksum = hashlib.sha256(int8_feature_model(source, cache, None)).hexdigest()
    else:
        checksum = weights_sha256(source)
    return described(source, checksum, engine, framing)


def described(
    source: str | None, checksum: str | None, engine: str, framing: str
) -> dict[str, Any]:
    """A feature model as the summaries and the export name it (source None: not known)."""
    return {
        "weights": source,
        "weights_sha256": checksum,
        "engine": engine,
        "framing": framing,
        "input_size": INPUT_SIZE,
        "feature_size": FEATURE_SIZE,
    }


def to_onnx(model: Any) -> bytes:
    """Keras' own ONNX export (tf2onnx) of a model taking a batch of pixels of any length."""
    import keras  # noqa: PLC0415

    shape = (None, INPUT_SIZE, INPUT_SIZE, 3)
    signature = [keras.InputSpec(shape=shape, dtype="float32", name=INPUT_NAME)]
    with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
        # Keras patches tf2onnx for numpy 2 with a probe of `np.object` that warns.
        warnings.simplefilter("ignore", FutureWarning)
        target = Path(folder) / "feature_model.onnx"
        model.export(
            str(target),
            format="onnx",
            input_signature=signature,
            opset_version=ONNX_OPSET,
            verbose=False,
        )
        return target.read_bytes()


def warn_random_weights() -> None:
    logger.warning(
        "featurize.weights is null: MobileNetV2 gets RANDOM weights, the features are "
        "meaningless (meant for tests only)."
    )


@contextlib.contextmanager
def weights_file(source: str) -> Iterator[Path]:
    """A local path of the weights: `imagenet` (Keras' cache), a local path, or a URL copied."""
    if source == "imagenet":
        yield _imagenet_file()
        return
    filesystem, path = fsspec.core.url_to_fs(source)
    if not filesystem.isfile(path):
        raise FileNotFoundError(
            f"featurize.weights names {source!r}, which is not a file. Give the path or URL "
            "of a MobileNetV2 .h5 weights file (with its top), 'imagenet' or null."
        )
    if isinstance(filesystem, LocalFileSystem):
        yield Path(path)
        return
    # Keras reads local files only: remote weights are copied once, on the driver.
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / os.path.basename(path)
        filesystem.get(path, str(local))
        yield local


def _imagenet_file() -> Path:
    cached = _keras_cache_file()
    if cached is not None:
        return cached
    try:
        # Keras' own loader downloads the file into its cache.
        build_feature_model("imagenet")
    except Exception as error:
        raise RuntimeError(
            "featurize.weights is 'imagenet' but Keras could not get the MobileNetV2 ImageNet "
            f"weights ({error}). Without internet: copy {WEIGHTS_FILE_NAME} into "
            "$KERAS_HOME/models/ (default ~/.keras/models/), or set featurize.weights to the "
            "path or URL (s3://...) of that .h5 file, or to null for random weights (tests only)."
        ) from error
    cached = _keras_cache_file()
    if cached is None:
        raise RuntimeError(f"Keras loaded the ImageNet weights but not into {WEIGHTS_FILE_NAME}.")
    return cached


def _keras_cache_file() -> Path | None:
    # Where Keras keeps downloads: $KERAS_HOME, else ~/.keras; /tmp/.keras if that is read-only.
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    if home.exists() and not os.access(home, os.W_OK):
        home = Path(tempfile.gettempdir()) / ".keras"
    candidate = home / "models" / WEIGHTS_FILE_NAME
    return candidate if candidate.is_file() else None


def weights_sha256(source: str) -> str:
    """The weights file's SHA-256, read once per version of the file in a process (on S3 each
    read is a download)."""
    if source == "imagenet":
        path = _imagenet_file()
        stat = path.stat()
        return _sha256_of_version(source, (str(path), stat.st_size, stat.st_mtime_ns))
    filesystem, path = fsspec.core.url_to_fs(source)
    try:
        info = filesystem.info(path)
    except FileNotFoundError:
        # weights_file says what is wrong with the name.
        with weights_file(source):
            pass
        raise
    stamp = tuple(str(info.get(key)) for key in ("size", "mtime", "LastModified", "ETag"))
    return _sha256_of_version(source, stamp)


@functools.lru_cache(maxsize=16)
def _sha256_of_version(source: str, stamp: tuple) -> str:
    with weights_file(source) as path:
        return _sha256(path)


def _onnx_name(weights_checksum: str) -> str:
    # The weights' bytes, then everything that shapes the conversion: a new one misses the cache.
    parts = (version("keras"), version("tf2onnx"), ONNX_OPSET, INPUT_SIZE, INPUT_NAME)
    converter = hashlib.sha256("/".join(str(part) for part in parts).encode()).hexdigest()
    return f"{_onnx_prefix(weights_checksum)}{converter[:16]}.onnx"


def _onnx_prefix(weights_checksum: str) -> str:
    return f"mobilenet_v2_features-{weights_checksum[:16]}-"


def _converted_elsewhere(
    filesystem: fsspec.AbstractFileSystem, folder: str, checksum: str, cache: str
) -> bytes:
    found = _converted_elsewhere_path(filesystem, folder, checksum, cache)
    logger.info("Feature model: ONNX from the cache, %s (converted elsewhere)", found)
    return filesystem.cat_file(found)


def _converted_elsewhere_path(
    filesystem: fsspec.AbstractFileSystem, folder: str, checksum: str, cache: str
) -> str:
    # Without the converter (a serving install) its versions are unknown: the cache must hold
    # exactly one conversion of these weights, made where it is installed.
    found = (
        sorted(
            path
            for path in filesystem.glob(f"{folder}/{_onnx_prefix(checksum)}*.onnx")
            if is_conversion_of(os.path.basename(path), checksum)
        )
        if filesystem.isdir(folder)
        else []
    )
    if len(found) != 1:
        raise RuntimeError(
            f"{len(found)} ONNX models of these weights in {cache} ({found}); this install has "
            "no Keras and tf2onnx to convert one. Run `kedro run --pipelines featurize` with the "
            "same weights where they are installed (it fills that cache; for a cluster, "
            "`fruit-deploy package --weights` does) and keep its one model, or point the model "
            "cache at a folder that holds exactly one."
        )
    return found[0]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
