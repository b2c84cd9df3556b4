"""The feature model run on a batch of pixels: ONNX Runtime (the default) or Keras on TensorFlow.

No Spark here: the workers of featurize and predict and the service build their predictor alike.
"""

import logging
from collections.abc import Callable

import numpy as np

from fruit_pipeline.core import feature_model
from fruit_pipeline.core.feature_model import INPUT_NAME

logger = logging.getLogger(__name__)

# Pixels (n, 224, 224, 3) float32 -> features (n, 1280).
Predictor = Callable[[np.ndarray], np.ndarray]


def onnx_predictor(model: bytes, threads: int) -> Predictor:
    """An ONNX Runtime session on the CPU: pixels (n, 224, 224, 3) float32 -> features (n, 1280)."""
    import onnxruntime  # noqa: PLC0415

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda pixels: session.run(None, {INPUT_NAME: pixels})[0]


def keras_predictor(weights: list[np.ndarray], threads: int) -> Predictor:
    """The Keras network with the broadcast weights, on TensorFlow with `threads` threads."""
    import tensorflow as tf  # noqa: PLC0415

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        logger.debug("TensorFlow already initialised in this worker; thread settings kept")
    model = feature_model.build_feature_model(None)
    model.set_weights(weights)
    return lambda pixels: np.asarray(model.predict_on_batch(pixels))
