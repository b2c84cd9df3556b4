"""Featurize settings of the node tests: random weights, an in-memory model cache, small batches."""

from fruit_pipeline.parameters import FeaturizeSettings

PARAMETERS = {
    "full_refresh": False,
    "weights": None,
    "engine": "onnxruntime",
    "model_cache": "memory://feature_model_cache",
    "batch_size": 3,
    "max_image_pixels": 25_000_000,
    "framing": "pad",
    "threads_per_worker": 1,
    "images_per_task": 500,
    "partitions": 2,
    "augment": {
        "copies": 0,
        "seed": 0,
        "min_side": 200,
        "min_scale": 0.6,
        "max_scale": 0.9,
        "jitter": 0.3,
    },
}
FEATURIZE = FeaturizeSettings.model_validate(PARAMETERS)
