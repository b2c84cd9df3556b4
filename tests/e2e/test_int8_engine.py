"""`featurize.engine: onnxruntime-int8`: the FP32 model quantized once, calibrated on the run's
own images, cached beside it under its own checksum; its rows never mix with FP32 ones."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fruit_pipeline.apps.serve.app import ServiceOptions, create_app, load_service
from fruit_pipeline.config import config_loader
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.int8_support import int8_refusal
from tests.support.helpers import PROJECT_ROOT, new_project, read_features, run

# On a CPU without VNNI the engine is refused (tests/unit/test_int8_support.py): nothing to run.
REFUSAL = int8_refusal()
pytestmark = pytest.mark.skipif(
    REFUSAL is not None, reason=f"the INT8 engine is refused here: {REFUSAL}"
)

SUMMARY = Path("data/08_reporting/featurize_summary.json")
INT8 = {"weights": "imagenet", "engine": "onnxruntime-int8"}
# The runs' model cache (relative: the tests' working folder), which holds the FP32 model.
CACHE = Path(config_loader(PROJECT_ROOT)["parameters"]["featurize"]["model_cache"])


def features_of(spark, project: Path) -> dict[str, np.ndarray]:
    rows = read_features(spark, project).select("path", "features").collect()
    return {row["path"]: np.asarray(row["features"]) for row in rows}


@pytest.fixture(scope="module")
def int8_project(spark, test1_images, tmp_path_factory) -> Path:
    # The quantized model is the one this module's first run makes.
    for stale in CACHE.glob("*-int8-*.onnx"):
        stale.unlink()
    project = new_project(tmp_path_factory.mktemp("int8"))
    run(project, "featurize", images_root=str(test1_images), featurize=INT8)
    return project


def cached_models() -> tuple[Path, Path]:
    (int8,) = sorted(CACHE.glob("*-int8-*.onnx"))
    return CACHE / f"{int8.name.split('-int8-')[0]}.onnx", int8


def test_int8_rows_carry_the_quantized_models_checksum(spark, int8_project):
    fp32, int8 = cached_models()
    assert fp32.is_file()
    checksum = hashlib.sha256(int8.read_bytes()).hexdigest()
    rows = read_features(spark, int8_project).select("weights_sha256", "engine").distinct()
    assert [tuple(row) for row in rows.collect()] == [(checksum, "onnxruntime-int8")]
    summary = json.loads((int8_project / SUMMARY).read_text())
    assert summary["feature_model"]["weights_sha256"] == checksum
    assert summary["feature_model"]["engine"] == "onnxruntime-int8"
    # The quantized model is a QOperator model: integer convolutions, far fewer bytes.
    assert b"QLinearConv" in int8.read_bytes()
    assert int8.stat().st_size < fp32.stat().st_size / 2


def test_int8_features_are_close_to_fp32_ones(spark, int8_project, test1_images, tmp_path):
    fp32_project = new_project(tmp_path)
    run(fp32_project, "featurize", images_root=str(test1_images), featurize={"weights": "imagenet"})
    int8, fp32 = features_of(spark, int8_project), features_of(spark, fp32_project)
    assert sorted(int8) == sorted(fp32) and len(fp32) == 20
    a, b = np.stack([int8[p] for p in sorted(fp32)]), np.stack([fp32[p] for p in sorted(fp32)])
    cosine = np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.9, cosine
    assert not np.allclose(a, b, atol=1e-3)


def test_an_fp32_run_on_an_int8_table_is_refused(int8_project, test1_images):
    with pytest.raises(Exception, match="INT8 features are close to FP32 ones"):
        run(
            int8_project,
            "featurize",
            images_root=str(test1_images),
            featurize={"weights": "imagenet"},
        )


def test_the_quantization_is_reproducible_and_the_cache_used(int8_project, test1_images):
    _, int8 = cached_models()
    first = int8.read_bytes()
    # A rerun with nothing new reads the cached model's checksum and embeds nothing.
    run(
        int8_project,
        "featurize",
        images_root=str(test1_images),
        featurize=INT8,
    )
    summary = json.loads((int8_project / SUMMARY).read_text())
    assert summary["featurized"] == 0
    # Quantized again from the same images, the model is the same, byte for byte.
    int8.unlink()
    run(
        int8_project,
        "featurize",
        images_root=str(test1_images),
        featurize={**INT8, "full_refresh": True},
    )
    assert int8.read_bytes() == first


def test_predict_and_serve_without_the_cached_int8_model_say_so(tmp_path):
    cache = str(tmp_path / "empty_cache")
    with pytest.raises(RuntimeError, match="holds no INT8 model of these weights"):
        feature_model.int8_feature_model("imagenet", cache, None)


def test_the_service_answers_with_the_int8_model_the_classifier_learnt_from(
    int8_project, test1_images
):
    one_candidate = [{"inputs": "features", "colour": True, "reg_param": 0.01}]
    run(int8_project, "train", train={"selection": {"candidates": one_candidate}})
    options = ServiceOptions(
        export=str(int8_project / "data/06_models/classifier_export.json"),
        weights=None,
        model_cache=str(CACHE),
        max_image_pixels=25_000_000,
        max_upload_bytes=2**20,
        top=3,
        threads=1,
    )
    service = load_service(options, {})
    assert service.identity["feature_model"]["engine"] == "onnxruntime-int8"
    photo = next(test1_images.rglob("*.jpg"))
    answer = TestClient(create_app(service)).post(
        "/predict", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["top"][0]["label"] in service.classifier.labels
    # Without its quantized model the service refuses to start, and says where it looked.
    _, int8 = cached_models()
    moved = int8.rename(int8.with_suffix(".kept"))
    try:
        with pytest.raises(SystemExit, match="holds no INT8 model of these weights"):
            load_service(options, {})
    finally:
        moved.rename(int8)
