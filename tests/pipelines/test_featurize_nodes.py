import math
import os
import shutil
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from fruit_pipeline.config import config_loader
from fruit_pipeline.contracts import AUGMENTATION, ENGINE, FRAMING, IMAGE_SUFFIXES, WEIGHTS_SHA256
from fruit_pipeline.core import feature_model, predictors
from fruit_pipeline.core.augmentation import views_of
from fruit_pipeline.core.colour import colour_histogram
from fruit_pipeline.core.images import decode_image, frame
from fruit_pipeline.core.progress import ProgressLog
from fruit_pipeline.datasets.feature_table import INDEX_COLUMNS, FeatureTableIndex
from fruit_pipeline.datasets.image_files import ImageFiles
from fruit_pipeline.parameters import FeaturizeSettings
from fruit_pipeline.pipelines.featurize.nodes import (
    CHANGE,
    featurize_changes,
    featurize_images,
    label_images,
    label_listed_images,
    plan_featurization,
    summarize_featurization,
    summarize_table_update,
)
from fruit_pipeline.spark import embedding
from tests.support.helpers import PROJECT_ROOT, SAMPLE
from tests.support.images import bad_files, encode, fruit, good_files, photo_formats
from tests.support.settings import FEATURIZE, PARAMETERS

IMAGE_FILES = config_loader(PROJECT_ROOT)["globals"]["image_files"]


def binary_files(spark, folder: Path | list[str]):
    """Read a folder (or several) the way the catalog's raw_images entry does."""
    return (
        spark.read.format("binaryFile")
        .option("pathGlobFilter", IMAGE_FILES)
        .option("recursiveFileLookup", "true")
        .load(folder if isinstance(folder, list) else str(folder))
    )


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def listed(folder: Path) -> pd.DataFrame:
    """The featurize pipeline's labelled listing of a folder (no Spark)."""
    return label_listed_images(ImageFiles(str(folder), IMAGE_FILES), str(folder))


def test_labels_are_the_parent_folder_names_as_written(spark, tmp_path):
    names = ["Apple Golden 1/0_100.jpg", "Pear+Kaiser/1_100.jpg", "lemon%41/r_2_100.jpg"]
    folder = write_files(tmp_path, dict.fromkeys(names, b"x"))
    expected = {
        "0_100.jpg": "Apple Golden 1",
        "1_100.jpg": "Pear+Kaiser",
        "r_2_100.jpg": "lemon%41",
    }
    spark_labels = label_images(binary_files(spark, folder), str(folder)).select("path", "label")
    assert {Path(path).name: label for path, label in spark_labels.collect()} == expected
    listing = listed(folder)
    assert dict(
        zip(listing["path"].map(lambda p: Path(p).name), listing["label"], strict=True)
    ) == (expected)


def test_the_listing_names_the_files_spark_reads_as_spark_does(spark, tmp_path):
    # What Spark lists is the table's key: the listing without Spark must give the same rows.
    names = [
        "Apple Golden 1/0 100.jpg",
        "Pear+Kaiser/1_100.JPG",
        "lemon%41/r_2_100.png",
        "déjà vu/photo #1.heic",
        "nested/deeper/x.webp",
        "kiwi/.hidden.jpg",
        "kiwi/_partial.jpg",
        "_staging/kiwi/x.jpg",
        ".trash/kiwi/y.jpg",
        "kiwi/mixed.Jpg",
        "kiwi/notes.txt",
        "kiwi/empty.jpg",
    ]
    folder = write_files(
        tmp_path / "images", {name: b"" if "empty" in name else b"xy" for name in names}
    )
    # Links are followed (the size and time are the target's), as a linked slice of a data set.
    outside = write_files(tmp_path / "outside", {"plum/z.jpg": b"xyz"})
    os.utime(outside / "plum" / "z.jpg", (0, 1_600_000_000.123))
    (folder / "plum").mkdir()
    (folder / "plum" / "link.jpg").symlink_to(outside / "plum" / "z.jpg")
    (folder / "linked plums").symlink_to(outside / "plum")
    spark_rows = binary_files(spark, folder).select("path", "length", "modificationTime").toPandas()
    listing = ImageFiles(str(folder), IMAGE_FILES).listing()
    # Spark lists a file of 0 bytes but yields no row for it; featurize rejects it by its size.
    empty = listing["length"] == 0
    assert [Path(path).name for path in listing["path"][empty]] == ["empty.jpg"]
    listing = listing[~empty]
    assert list(listing["path"]) == sorted(spark_rows["path"])
    linked = listing[listing["path"].str.contains("plum")]
    assert [path.removeprefix(f"file:{folder}/") for path in linked["path"]] == [
        "linked plums/z.jpg",
        "plum/link.jpg",
    ]
    assert list(linked["length"]) == [3, 3]
    by_path = spark_rows.set_index("path").loc[listing["path"]]
    assert list(listing["length"]) == list(by_path["length"])
    # Spark's times are in the session's time zone, UTC (conf/base/spark.yml).
    spark_times = by_path["modificationTime"].dt.tz_localize("UTC")
    assert list(listing["modificationTime"]) == list(spark_times)
    # Read by the listing's names, the files are the same rows.
    named = ImageFiles(str(folder), IMAGE_FILES).read(list(listing["path"]))
    named_rows = named.select("path", "length", "modificationTime").toPandas()
    pd.testing.assert_frame_equal(
        named_rows.sort_values("path", ignore_index=True),
        spark_rows.sort_values("path", ignore_index=True),
    )


def test_files_read_by_name_are_those_named_and_a_gone_one_is_left_out(spark, tmp_path):
    folder = write_files(
        tmp_path, {"kiwi/a.jpg": b"a", "kiwi/b *.jpg": b"bb", "kiwi/c.jpg": b"ccc"}
    )
    files = ImageFiles(str(folder), IMAGE_FILES)
    names = list(files.listing()["path"])
    # A glob's characters in a name are the name's own: no other file is read.
    named = files.read(names[1:2]).select("path", "content").collect()
    assert [(row["path"], bytes(row["content"])) for row in named] == [(names[1], b"bb")]
    # A file gone since the listing: Spark refuses the names, the folder is read without it.
    (folder / "kiwi" / "c.jpg").unlink()
    assert sorted(row["path"] for row in files.read(names).select("path").collect()) == names[:2]


def test_no_images_stops_with_a_clear_message(tmp_path):
    (tmp_path / "apple").mkdir()
    with pytest.raises(ValueError, match=f"No image files found under {tmp_path}"):
        listed(tmp_path)
    with pytest.raises(ValueError, match="No image files found under /no/such/folder"):
        listed(Path("/no/such/folder"))


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


def test_good_files_get_the_colour_histogram_of_their_decoded_pixels(featurized):
    features, _ = featurized
    for path, histogram in zip(features["path"], features["colour"], strict=True):
        content = good_files()[Path(path).name]
        pixels = decode_image(content, feature_model.INPUT_SIZE, 25_000_000, FEATURIZE.framing)
        np.testing.assert_allclose(histogram, colour_histogram(pixels), rtol=0, atol=1e-7)


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
    summary = summarize_featurization(corpus, spark.createDataFrame(features), rejects, FEATURIZE)
    listed = len(good_files()) + len(bad_files())
    assert summary["files_listed"] == listed == summary["featurized"] + summary["rejected"]
    assert summary["rejected"] == len(bad_files())
    assert summary["images_by_label"] == {"good": len(good_files())}
    assert sum(summary["rejected_by_reason"].values()) == len(bad_files())
    assert summary["feature_model"]["engine"] == "onnxruntime"
    assert summary["feature_model"]["weights_sha256"] is None  # random weights


def test_a_lost_file_fails_the_summary(spark, tmp_path):
    raw = binary_files(spark, write_files(tmp_path, {"x/1.jpg": b"x", "x/2.jpg": b"x"}))
    features = spark.createDataFrame(
        [("file:/a/x/1.jpg", "x", [0.0])], "path string, label string, features array<float>"
    )
    no_rejects = pd.DataFrame(columns=["path", "label", "reason"])
    with pytest.raises(RuntimeError, match="2 files were listed but 1 featurized"):
        summarize_featurization(raw, features, no_rejects, FEATURIZE)


REMOVED_FILE = "file:/gone/x/4.jpg"
NO_REJECTS = pd.DataFrame(columns=["path", "label", "reason"])


def table_update_case(tmp_path, table: list[int | None]):
    """Three listed files (two new, one unchanged), one removed; the committed table holds the
    listed files of these indexes (None: the removed file)."""
    paths = list(listed(write_files(tmp_path, {f"x/{n}.jpg": b"x" for n in (1, 2, 3)}))["path"])
    plan = pd.DataFrame(
        {"path": [*paths, REMOVED_FILE], CHANGE: ["new", "new", "unchanged", "removed"]}
    )
    rows = [REMOVED_FILE if index is None else paths[index] for index in table]
    committed = FeatureTableIndex(pd.DataFrame({"path": rows, "label": "x"}), version=3)
    return plan, NO_REJECTS, committed


def test_the_table_update_summary_counts_what_the_plan_said(tmp_path):
    summary = summarize_table_update(*table_update_case(tmp_path, [0, 1, 2]), FEATURIZE)
    assert summary["files_listed"] == summary["table_rows"] == 3
    assert (summary["files_new"], summary["files_unchanged"], summary["files_removed"]) == (2, 1, 1)
    assert summary["featurized"] == 2
    assert summary["images_by_label"] == {"x": 3}
    assert summary["table_version"] == 3


@pytest.mark.parametrize(
    "table",
    [
        [0, 1, 2, 2],  # a file twice
        [0, 1, 2, None],  # a removed file kept
        [0, 1],  # a listed file lost
    ],
)
def test_a_table_that_breaks_once_each_fails_the_summary(tmp_path, table):
    with pytest.raises(RuntimeError, match="must be in the table or the rejects, once"):
        summarize_table_update(*table_update_case(tmp_path, table), FEATURIZE)


def table_state(
    framing: str | None, length: int = 1, augmentation: str | None = "none"
) -> FeatureTableIndex:
    # One row of random weights (what FEATURIZE embeds with), framed so and with these views;
    # None: no such column.
    row = {
        "path": "file:/elsewhere/a/1.jpg",
        "label": "a",
        "length": length,
        "modificationTime": pd.Timestamp("2026-01-01", tz="UTC"),
        WEIGHTS_SHA256: None,
        ENGINE: "onnxruntime",
    }
    recorded = {FRAMING: framing, AUGMENTATION: augmentation}
    row |= {column: value for column, value in recorded.items() if value is not None}
    return FeatureTableIndex(pd.DataFrame([row]), version=0)


@pytest.mark.parametrize(
    ("framing", "refusal"),
    [("crop", "framed by \\['crop'\\].*featurize.framing is 'pad'"), (None, "predates")],
)
def test_a_table_of_another_framing_is_refused_unless_refreshed(tmp_path, framing, refusal):
    files = listed(write_files(tmp_path, {"a/1.jpg": b"x"}))
    with pytest.raises(ValueError, match=f"{refusal}.*full_refresh=true"):
        plan_featurization(files, table_state(framing), None, FEATURIZE)
    refreshing = FEATURIZE.model_copy(update={"full_refresh": True})
    assert len(plan_featurization(files, table_state(framing), None, refreshing)) == 2
    assert len(plan_featurization(files, table_state("pad"), None, FEATURIZE)) == 2


@pytest.mark.parametrize(
    ("augmentation", "refusal"),
    [
        ("crops 2, seed 1, min side 200, scale 0.6-0.9, jitter 0.3", "views \\['crops 2, seed 1"),
        (None, "predates featurize.augment"),
    ],
)
def test_a_table_of_other_views_is_refused_unless_refreshed(tmp_path, augmentation, refusal):
    files = listed(write_files(tmp_path, {"a/1.jpg": b"x"}))
    table = table_state("pad", augmentation=augmentation)
    with pytest.raises(ValueError, match=f"{refusal}.*full_refresh=true"):
        plan_featurization(files, table, None, FEATURIZE)
    refreshing = FEATURIZE.model_copy(update={"full_refresh": True})
    assert len(plan_featurization(files, table, None, refreshing)) == 2


def test_the_plan_says_new_changed_unchanged_and_removed(tmp_path):
    files = listed(write_files(tmp_path, {"a/1.jpg": b"x", "a/2.jpg": b"xy", "a/3.jpg": b"z"}))
    state = pd.concat(
        [
            files.iloc[1:].assign(
                **{
                    WEIGHTS_SHA256: None,
                    ENGINE: "onnxruntime",
                    FRAMING: "pad",
                    AUGMENTATION: "none",
                }
            )
        ]
    )
    state.loc[state.index[0], "length"] = 1  # 2.jpg had one byte when it was embedded
    gone = table_state("pad").rows
    index = FeatureTableIndex(pd.concat([state, gone], ignore_index=True), version=0)
    plan = plan_featurization(files, index, None, FEATURIZE).set_index("path")[CHANGE]
    assert plan.to_dict() == {
        files["path"][0]: "new",
        files["path"][1]: "changed",
        files["path"][2]: "unchanged",
        gone["path"][0]: "removed",
    }
    before_the_first_run = FeatureTableIndex(pd.DataFrame(columns=list(INDEX_COLUMNS)), None)
    assert set(plan_featurization(files, before_the_first_run, None, FEATURIZE)[CHANGE]) == {"new"}


class UnreadableFolder(ImageFiles):
    """Image files whose contents must not be read."""

    def read(self, paths=None):
        raise AssertionError("the images were read")


def test_a_file_rejected_before_and_unchanged_is_rejected_again_unread(tmp_path):
    folder = write_files(tmp_path, {"a/bad.jpg": b"not an image", "a/worse.jpg": b"x"})
    files = listed(folder)
    no_table = FeatureTableIndex(pd.DataFrame(columns=list(INDEX_COLUMNS)), None)
    assert set(plan_featurization(files, no_table, None, FEATURIZE)[CHANGE]) == {"new"}
    reason = "not an image: its bytes are no format Pillow can read"
    # The last run's rejects as their CSV file gives them back: times as text.
    previous = files.assign(reason=reason, modificationTime=files["modificationTime"].astype(str))
    plan = plan_featurization(files, no_table, previous, FEATURIZE)
    assert set(plan[CHANGE]) == {"rejected_before"}
    update, rejects = featurize_changes(UnreadableFolder(str(folder), IMAGE_FILES), plan, FEATURIZE)
    assert update.is_empty
    assert list(rejects.columns) == ["path", "label", "reason", "length", "modificationTime"]
    assert list(rejects["reason"]) == [reason, reason]
    summary = summarize_table_update(plan, rejects, no_table, FEATURIZE)
    assert (summary["files_rejected_before"], summary["rejected"]) == (2, 2)
    # A full refresh reads every file again; a file rewritten since is new again.
    refreshing = FEATURIZE.model_copy(update={"full_refresh": True})
    with pytest.raises(AssertionError, match="the images were read"):
        featurize_changes(UnreadableFolder(str(folder), IMAGE_FILES), plan, refreshing)
    (folder / "a" / "bad.jpg").write_bytes(b"still not an image")
    again = plan_featurization(listed(folder), no_table, previous, FEATURIZE)
    assert list(again[CHANGE]) == ["new", "rejected_before"]


def test_batches_split_inside_a_partition_give_the_same_features():
    model = feature_model.build_feature_model(None)
    batch = pd.DataFrame(
        {
            "path": list(good_files()),
            "label": "good",
            "content": list(good_files().values()),
        }
    )
    one_call = embedding.embed_batch(
        batch, model.predict_on_batch, FEATURIZE.model_copy(update={"batch_size": 64})
    )
    small_calls = embedding.embed_batch(
        batch, model.predict_on_batch, FEATURIZE.model_copy(update={"batch_size": 2})
    )
    np.testing.assert_allclose(
        np.stack(one_call["features"]), np.stack(small_calls["features"]), rtol=1e-4, atol=1e-5
    )


def test_a_photo_gets_the_features_of_each_of_its_views_and_a_studio_frame_none():
    model = feature_model.build_feature_model(None)
    photo, frame_size = fruit(size=(300, 240), seed=7), fruit(size=(100, 100), seed=8)
    batch = pd.DataFrame(
        {
            "path": ["file:/images/kiwi/photo.jpg", "file:/images/kiwi/frame.jpg"],
            "label": "kiwi",
            "content": [encode(photo, "PNG"), encode(frame_size, "PNG")],
        }
    )
    augment = FEATURIZE.augment.model_copy(update={"copies": 2})
    settings = FEATURIZE.model_copy(update={"augment": augment})
    embedded = embedding.embed_batch(batch, model.predict_on_batch, settings)
    views = views_of(photo, "kiwi/photo.jpg", augment)
    pixels = np.stack([frame(view, feature_model.INPUT_SIZE, "pad") for view in views])
    np.testing.assert_allclose(
        np.stack(embedded["views"][0]),
        model.predict_on_batch(pixels.astype(np.float32)),
        rtol=1e-4,
        atol=1e-5,
    )
    for histogram, view_pixels in zip(embedded["view_colours"][0], pixels, strict=True):
        np.testing.assert_allclose(histogram, colour_histogram(view_pixels), atol=1e-7)
    assert embedded["views"][1] == [] and embedded["view_colours"][1] == []
    # The photo's own features are those of the photo, as without views.
    alone = embedding.embed_batch(batch, model.predict_on_batch, FEATURIZE)
    np.testing.assert_allclose(
        np.stack(embedded["features"]), np.stack(alone["features"]), rtol=1e-4, atol=1e-5
    )


def test_weights_load_from_a_keras_file_and_from_a_url(weights_file):
    from_path = feature_model.load_feature_weights(str(weights_file))
    with fsspec.open("memory://models/mobilenet_v2.h5", "wb") as remote:
        remote.write(weights_file.read_bytes())
    from_url = feature_model.load_feature_weights("memory://models/mobilenet_v2.h5")
    assert len(from_path) == len(from_url) == len(feature_model.build_feature_model(None).weights)
    for path_array, url_array in zip(from_path, from_url, strict=True):
        np.testing.assert_array_equal(path_array, url_array)


def test_imagenet_weights_come_from_the_keras_cache(weights_file):
    from_cache = feature_model.load_feature_weights("imagenet")
    from_file = feature_model.load_feature_weights(str(weights_file))
    np.testing.assert_array_equal(from_cache[0], from_file[0])
    np.testing.assert_array_equal(from_cache[-1], from_file[-1])


def test_imagenet_without_internet_names_the_parameter_and_the_alternatives(monkeypatch, tmp_path):
    from keras.src.applications import mobilenet_v2  # noqa: PLC0415

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    # An empty Keras cache: the weights are not there.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="featurize.weights is 'imagenet'") as error:
        feature_model.load_feature_weights("imagenet")
    assert "$KERAS_HOME/models/" in str(error.value)
    assert "null for random weights" in str(error.value)


@pytest.mark.parametrize("source", ["/no/such/weights.h5", "memory://no/such/weights.h5"])
def test_a_missing_weights_file_names_the_parameter(source):
    with pytest.raises(FileNotFoundError, match="featurize.weights names"):
        feature_model.load_feature_weights(source)


def test_settings_are_checked_by_name():
    with pytest.raises(ValidationError, match=r"tf_intra_op_threads\n  Extra inputs"):
        FeaturizeSettings.model_validate({**PARAMETERS, "tf_intra_op_threads": 1})
    with pytest.raises(ValidationError, match=r"engine\n  Field required"):
        FeaturizeSettings.model_validate({k: v for k, v in PARAMETERS.items() if k != "engine"})
    with pytest.raises(
        ValidationError,
        match=r"engine\n  Input should be 'onnxruntime', 'onnxruntime-int8' or 'keras'",
    ):
        FeaturizeSettings.model_validate({**PARAMETERS, "engine": "tensorrt"})
    with pytest.raises(ValidationError, match=r"batch_size\n  Input should be greater than 0"):
        FeaturizeSettings.model_validate({**PARAMETERS, "batch_size": 0})


def test_the_progress_line_gives_done_of_total_rate_and_time_left():
    progress = ProgressLog(lambda: 0, 90_483, "images embedded")
    assert progress.line(9_048, 60.0) == (
        "images embedded 9048 of 90483 (10%), 150.8/s, about 9.0 min left"
    )
    assert progress.line(0, 5.0).endswith("0.0/s, starting")


@pytest.fixture(scope="module")
def real_images(spark, test1_images):
    """The 20 Test1 images and the 135 of the sample's Test split, labelled."""
    folders = [str(test1_images), str(SAMPLE / "Test")]
    return label_images(binary_files(spark, folders), ", ".join(folders))


def features_by_path(image_features) -> dict[str, np.ndarray]:
    return {row["path"]: np.asarray(row["features"]) for row in image_features.collect()}


def test_onnx_runtime_and_keras_give_the_same_features_on_real_images(
    real_images, weights_file, tmp_path
):
    real = FEATURIZE.model_copy(update={"weights": str(weights_file), "model_cache": str(tmp_path)})
    from_onnx, _ = featurize_images(real_images, real)
    from_keras, _ = featurize_images(real_images, real.model_copy(update={"engine": "keras"}))
    onnx_features, keras_features = features_by_path(from_onnx), features_by_path(from_keras)
    assert len(onnx_features) == 155
    assert onnx_features.keys() == keras_features.keys()
    difference = max(
        float(np.max(np.abs(onnx_features[path] - keras_features[path]))) for path in onnx_features
    )
    assert difference <= 1e-4


def test_the_onnx_model_is_converted_once_per_weights_file(weights_file, tmp_path, monkeypatch):
    converted = feature_model.onnx_feature_model(str(weights_file), str(tmp_path))
    cached = list(tmp_path.glob("mobilenet_v2_features-*.onnx"))
    assert len(cached) == 1
    assert cached[0].read_bytes() == converted

    def no_conversion(model):
        raise AssertionError("converted again")

    monkeypatch.setattr(feature_model, "to_onnx", no_conversion)
    assert feature_model.onnx_feature_model(str(weights_file), str(tmp_path)) == converted
    copy = tmp_path / "copy" / weights_file.name
    copy.parent.mkdir()
    copy.write_bytes(weights_file.read_bytes())
    # The same bytes under another name: the same model, from the cache.
    assert feature_model.onnx_feature_model(str(copy), str(tmp_path)) == converted


def test_without_keras_the_one_cached_conversion_is_used_else_a_clear_error(
    weights_file, tmp_path, monkeypatch
):
    converted = feature_model.onnx_feature_model(str(weights_file), str(tmp_path / "cache"))
    real_find_spec = feature_model.importlib.util.find_spec
    monkeypatch.setattr(
        feature_model.importlib.util,
        "find_spec",
        lambda name, *args: None if name == "keras" else real_find_spec(name, *args),
    )
    # A serving install: no converter, so its versions are unknown; the one conversion is used.
    assert feature_model.onnx_feature_model(str(weights_file), str(tmp_path / "cache")) == converted
    with pytest.raises(RuntimeError, match="0 ONNX models of these weights.*no Keras"):
        feature_model.onnx_feature_model(str(weights_file), str(tmp_path / "empty"))
    (cached,) = (tmp_path / "cache").glob("*.onnx")
    shutil.copy(cached, cached.with_name(cached.name.replace(".onnx", "0.onnx")))
    with pytest.raises(RuntimeError, match="2 ONNX models of these weights"):
        feature_model.onnx_feature_model(str(weights_file), str(tmp_path / "cache"))


def test_onnx_features_of_real_images_equal_keras_on_the_same_pixels(weights_file, tmp_path):
    pixels = np.stack(
        [
            decode_image(path.read_bytes(), feature_model.INPUT_SIZE, 25_000_000, "pad")
            for path in sorted((SAMPLE / "Training").rglob("*.jpg"))[::10]
        ]
    ).astype(np.float32)
    keras_model = feature_model.build_feature_model(str(weights_file))
    onnx_model = feature_model.onnx_feature_model(str(weights_file), str(tmp_path))
    predict = predictors.onnx_predictor(onnx_model, threads=2)
    expected = np.asarray(keras_model.predict_on_batch(pixels))
    assert expected.shape == (len(pixels), feature_model.FEATURE_SIZE)
    assert float(np.max(np.abs(predict(pixels) - expected))) <= 1e-4


def test_every_photo_format_is_listed_and_featurized_and_only_those(spark, tmp_path):
    write_files(tmp_path / "images" / "pear", {**photo_formats(), "notes.txt": b"not an image"})
    corpus = binary_files(spark, tmp_path / "images")
    image_features, image_rejects = featurize_images(label_images(corpus, "images"), FEATURIZE)
    featurized = sorted(Path(row["path"]).name for row in image_features.collect())
    assert featurized == sorted(photo_formats())
    assert image_rejects.empty


def test_the_glob_and_the_python_side_list_the_same_suffixes_in_both_cases():
    listed = IMAGE_FILES.removeprefix("*.{").removesuffix("}").split(",")
    assert sorted(listed) == sorted(
        [suffix[1:] for suffix in IMAGE_SUFFIXES]
        + [suffix[1:].upper() for suffix in IMAGE_SUFFIXES]
    )
