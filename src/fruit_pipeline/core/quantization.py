"""The INT8 feature model: the FP32 ONNX model quantized with ONNX Runtime's own tools.

Static quantization: each activation's range is calibrated once on real images (the 99.999th
percentile of its values, which clips the rare outliers a min-max range spends the 256 levels
on), weights per output channel in int8, activations in uint8, in the operator form (QLinearConv):
on this project's CPUs about twice as fast as FP32, where int8 activations ran no faster than
FP32 (docs/performance.md). Imported only where a model is quantized: serving an INT8 model
needs ONNX Runtime alone.
"""

import tempfile
from pathlib import Path

import numpy as np

from fruit_pipeline.core.feature_model import INPUT_NAME

# Images the calibration runs on: a sample drawn with this seed.
CALIBRATION_IMAGES = 128
CALIBRATION_SEED = 0
PERCENTILE = 99.999
# What shapes the quantized model besides the FP32 model and the images: a new value is a new
# model (fruit_pipeline.core.feature_model names the cached file after these).
SETTINGS = (
    "static",
    "QOperator",
    "per-channel",
    "weights QInt8",
    "activations QUInt8",
    f"percentile {PERCENTILE}",
    f"images {CALIBRATION_IMAGES}, seed {CALIBRATION_SEED}",
)


def quantize(fp32_model: bytes, calibration_pixels: np.ndarray) -> bytes:
    """The FP32 feature model quantized to INT8, its activations calibrated on these pixels
    ((n, 224, 224, 3) float32, 0-255)."""
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    if not len(calibration_pixels):
        raise ValueError("Quantizing the feature model needs at least one calibration image.")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            # One image a call: the calibrator stacks the calls' outputs, which need one shape.
            self._batches = iter(
                {INPUT_NAME: calibration_pixels[index : index + 1]}
                for index in range(len(calibration_pixels))
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as folder:
        fp32, prepared, int8 = (Path(folder) / name for name in ("fp32", "prepared", "int8"))
        fp32.write_bytes(fp32_model)
        # ONNX Runtime's own pre-processing (shape inference, graph fusion) before quantizing.
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(int8),
            Batches(),
            quant_format=QuantFormat.QOperator,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": PERCENTILE},
        )
        return int8.read_bytes()
