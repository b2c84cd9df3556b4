"""The feature model the cluster's featurize reads, converted to ONNX by `fruit-deploy package`.

The nodes install no TensorFlow (1.4 GB and about 20 s of install on the primary node, for one
conversion): the weights are converted where the package is made, and the model is staged in the
emr environment's model cache (featurize.model_cache), where the driver, having no converter,
takes the one conversion of its weights that the cache must hold.
"""

from collections.abc import Iterable
from pathlib import Path

from fruit_pipeline.core import feature_model


def convert(weights: Path, scratch: Path) -> Path:
    """The weights' ONNX model, converted into an empty folder under the name the nodes look for."""
    if not weights.is_file():
        raise ValueError(f"package --weights {weights}: no such file")
    if not feature_model.can_convert():
        raise ValueError(
            "package --weights converts the weights to ONNX for the nodes, which have no "
            "TensorFlow: install the keras extra here (pip install 'fruit_pipeline[keras]')."
        )
    feature_model.onnx_feature_model(str(weights), str(scratch))
    (converted,) = scratch.glob("*.onnx")
    return converted


def other_conversions(cached: Iterable[str], converted: Path, weights: Path) -> list[str]:
    """The cached names of conversions of the same weights other than this one: the nodes need
    exactly one."""
    checksum = feature_model.weights_sha256(str(weights))
    return sorted(
        name
        for name in cached
        if name != converted.name and feature_model.is_conversion_of(name, checksum)
    )
