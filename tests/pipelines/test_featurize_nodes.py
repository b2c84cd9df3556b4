import math
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest

from fruit_pipeline import engine
from fruit_pipeline.pipelines.featurize.nodes import (
    featurize_images,
    label_images,
    summarize_featurization,
)
from tests.images import bad_files, good_files

FEATURIZE = {
    "weights": None,
    "batch_size": 3,
    "max_image_pixels": 25_000_000,
    "tf_intra_op_threads": 1,
    "partitions": 2,
}


def binary_files(spark, folder: Path):
    """Read a folder the way the catalog's raw_images entry does."""
    return (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", "*.jpg")
        .option("recursiveFileLookup", "true")
        .load(str(folder))
    )


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def test_labels_are_the_parent_folder_names_as_written(spark, tmp_path):
    names = ["Apple Golden 1/0_100.jpg", "Pear+Kaiser/1_100.jpg", "lemon%41/r_2_100.jpg"]
    raw = binary_files(spark, write_files(tmp_path, dict.fromkeys(names, b"x")))
    labels = {
        Path(path).name: label
        for path, label in label_images(raw, str(tmp_path)).select("path", "label").collect()
    }
    assert labels == {
        "0_100.jpg": "Apple Golden 1",
        "1_100.jpg": "Pear+Kaiser",
        "r_2_100.jpg": "lemon%41",
    }


def test_no_images_stops_with_a_clear_message(spark, tmp_path):
    (tmp_path / "apple").mkdir()
    with pytest.raises(ValueError, match=f"No image files found under {tmp_path}"):
        label_images(binary_files(spark, tmp_path), str(tmp_path))


@pytest.fixture(scope="module")
def corpus(spark, tmp_path_factory):
    files = {f"good/{name}": content for name, content in good_files().items()}
    files |= {f"bad/{name}": content for name, (content, _) in bad_files().items()}
    return binary_files(spark, write_files(tmp_path_factory.mktemp("images"), files))


@pytest.fixture(scope="module")
def featurized(corpus):
    image_features, image_rejects = featurize_images(label_images(corpus, "images"), FEATURIZE)
    return image_features.toPandas(), image_rejects


def test_good_files_get_1280_finite_features(featurized):
    features, _ = featurized
    assert sorted(Path(p).name for p in features["path"]) == sorted(good_files())
    assert set(features["label"]) == {"good"}
    for vector in features["features"]:
        assert len(vector) == 1280
        assert all(math.isfinite(value) for value in vector)


def test_bad_files_are_rejected_with_their_reason(featurized):
    _, rejects = featurized
    assert list(rejects.columns) == ["path", "label", "reason"]
    reasons = {
        Path(path).name: reason
        for path, reason in zip(rejects["path"], rejects["reason"], strict=True)
    }
    assert reasons.keys() == bad_files().keys()
    for name, (_, reason) in bad_files().items():
        assert reason in reasons[name]
    assert set(rejects["label"]) == {"bad"}


def test_every_file_is_either_featurized_or_rejected(featurized, corpus, spark):
    features, rejects = featurized
    summary = summarize_featurization(corpus, spark.createDataFrame(features), rejects)
    listed = len(good_files()) + len(bad_files())
    assert summary["files_listed"] == listed == summary["featurized"] + summary["rejected"]
    assert summary["rejected"] == len(bad_files())
    assert summary["images_by_label"] == {"good": len(good_files())}
    assert sum(summary["rejected_by_reason"].values()) == len(bad_files())


def test_a_lost_file_fails_the_summary(spark, tmp_path):
    raw = binary_files(spark, write_files(tmp_path, {"x/1.jpg": b"x", "x/2.jpg": b"x"}))
    features = spark.createDataFrame(
        [("file:/a/x/1.jpg", "x", [0.0])], "path string, label string, features array<float>"
    )
    no_rejects = pd.DataFrame(columns=["path", "label", "reason"])
    with pytest.raises(RuntimeError, match="2 files were listed but 1 featurized"):
        summarize_featurization(raw, features, no_rejects)


def test_batches_split_inside_a_partition_give_the_same_features():
    model = engine.build_feature_model(None)
    batch = pd.DataFrame(
        {
            "path": list(good_files()),
            "label": "good",
            "content": list(good_files().values()),
        }
    )
    one_call = engine.embed_batch(batch, model, batch_size=64, max_image_pixels=25_000_000)
    small_calls = engine.embed_batch(batch, model, batch_size=2, max_image_pixels=25_000_000)
    np.testing.assert_allclose(
        np.stack(one_call["features"]), np.stack(small_calls["features"]), rtol=1e-4, atol=1e-5
    )


def test_weights_load_from_a_keras_file_and_from_a_url(weights_file):
    from_path = engine.load_feature_weights(str(weights_file))
    with fsspec.open("memory://models/mobilenet_v2.h5", "wb") as remote:
        remote.write(weights_file.read_bytes())
    from_url = engine.load_feature_weights("memory://models/mobilenet_v2.h5")
    assert len(from_path) == len(from_url) == len(engine.build_feature_model(None).weights)
    for path_array, url_array in zip(from_path, from_url, strict=True):
        np.testing.assert_array_equal(path_array, url_array)


def test_imagenet_weights_come_from_the_keras_cache(weights_file):
    from_cache = engine.load_feature_weights("imagenet")
    from_file = engine.load_feature_weights(str(weights_file))
    np.testing.assert_array_equal(from_cache[0], from_file[0])
    np.testing.assert_array_equal(from_cache[-1], from_file[-1])


def test_imagenet_without_internet_names_the_parameter_and_the_alternatives(monkeypatch):
    from keras.src.applications import mobilenet_v2  # noqa: PLC0415

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match="featurize.weights is 'imagenet'") as error:
        engine.load_feature_weights("imagenet")
    assert "$KERAS_HOME/models/" in str(error.value)
    assert "null for random weights" in str(error.value)


@pytest.mark.parametrize("source", ["/no/such/weights.h5", "memory://no/such/weights.h5"])
def test_a_missing_weights_file_names_the_parameter(source):
    with pytest.raises(FileNotFoundError, match="featurize.weights names"):
        engine.load_feature_weights(source)
