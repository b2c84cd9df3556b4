"""The pipelines end to end through a Kedro session, on real images with the real weights."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.validation.exceptions import ParameterValidationError

from tests.support.helpers import PROJECT_ROOT, local_path, new_project, read_features, run
from tests.support.images import bad_files, good_files


@pytest.fixture(scope="module")
def project(spark, tmp_path_factory, test1_images):
    """A project that ran the default pipelines on the 20 real Test1 images."""
    root = new_project(tmp_path_factory.mktemp("project"))
    run(root, images_root=str(test1_images))
    return root


def data(project: Path, relative: str) -> Path:
    return project / "data" / relative


def test_one_row_of_1280_finite_features_per_image(project, spark, test1_images):
    features = read_features(spark, project)
    rows = features.toPandas()
    assert sorted(local_path(p) for p in rows["path"]) == sorted(test1_images.rglob("*.jpg"))
    assert sorted(set(rows["label"])) == ["apple", "lemon", "mango", "raspberry"]
    matrix = np.stack(rows["features"])
    assert matrix.shape == (20, 1280)
    assert np.isfinite(matrix).all()


def test_features_equal_a_direct_keras_computation(project, spark, weights_file):
    import keras  # noqa: PLC0415
    from keras.applications.mobilenet_v2 import preprocess_input  # noqa: PLC0415

    classifier = keras.applications.MobileNetV2(weights=str(weights_file), include_top=True)
    reference = keras.Model(classifier.input, classifier.get_layer("predictions").input)
    rows = read_features(spark, project).toPandas()
    pixels = np.stack(
        [
            keras.utils.img_to_array(
                keras.utils.load_img(
                    local_path(p), target_size=(224, 224), interpolation="bilinear"
                )
            )
            for p in rows["path"]
        ]
    )
    expected = reference.predict(preprocess_input(pixels), verbose=0)
    np.testing.assert_allclose(np.stack(rows["features"]), expected, rtol=1e-3, atol=1e-4)


def test_k_reaches_the_threshold_and_k_minus_1_does_not(project, spark):
    report = json.loads(data(project, "08_reporting/variance_report.json").read_text())
    rows = read_features(spark, project).toPandas()
    matrix = np.stack(rows["features"]).astype(np.float64)
    spread = matrix.std(axis=0, ddof=1)
    # Spark's scaler leaves constant features at 0 instead of dividing by 0.
    centred = matrix - matrix.mean(axis=0)
    standardized = np.divide(centred, spread, out=np.zeros_like(centred), where=spread > 0)
    variances = np.linalg.svd(standardized, compute_uv=False) ** 2
    cumulative = np.cumsum(variances / variances.sum())
    k = report["components"]
    assert report["variance_threshold"] == 0.8
    assert cumulative[k - 1] >= 0.8 > cumulative[k - 2]
    assert report["cumulative_variance_at_k"] == pytest.approx(cumulative[k - 1], abs=1e-4)
    assert report["image_count"] == 20
    assert len(report["explained_variance"]) == report["components_fitted"] == 19


def test_the_csv_has_path_label_and_k_components(project):
    report = json.loads(data(project, "08_reporting/variance_report.json").read_text())
    table = pd.read_csv(data(project, "05_model_input/pca_features.csv"))
    k = report["components"]
    assert list(table.columns) == ["path", "label", *[f"pc_{i}" for i in range(1, k + 1)]]
    assert len(table) == 20
    assert table.drop(columns=["path", "label"]).notna().all().all()


def test_the_reports_and_the_plot_are_written(project):
    summary = json.loads(data(project, "08_reporting/featurize_summary.json").read_text())
    assert summary["files_listed"] == summary["featurized"] == 20
    assert summary["rejected"] == 0
    assert data(project, "08_reporting/image_rejects.csv").read_text().strip() == (
        "path,label,reason,length,modificationTime"
    )
    assert data(project, "08_reporting/cumulative_variance.png").read_bytes()[:8] == (
        b"\x89PNG\r\n\x1a\n"
    )


@pytest.mark.parametrize("images", ["missing", "empty"])
def test_no_input_stops_the_run_and_keeps_earlier_outputs(project, tmp_path, images):
    outputs = [
        data(project, "05_model_input/pca_features.csv"),
        data(project, "08_reporting/variance_report.json"),
        *data(project, "04_feature/image_features").rglob("*.json"),
        *data(project, "04_feature/image_features").glob("*.parquet"),
    ]
    before = {path: path.read_bytes() for path in outputs}
    folder = tmp_path / images
    if images == "empty":
        (folder / "apple").mkdir(parents=True)
    with pytest.raises(Exception, match="Path does not exist|No image files found") as error:
        run(project, images_root=str(folder))
    assert str(folder) in str(error.value)
    assert {path: path.read_bytes() for path in outputs} == before


@pytest.mark.parametrize(
    ("pipeline", "parameters", "message"),
    [
        ("featurize", {"featurize": {"batchsize": 3}}, r"batchsize\n  Extra inputs"),
        ("train", {"train": {"seed": "forty-two"}}, r"seed\n  Input should be a valid integer"),
        ("reduce", {"reduce": {"variance_threshold": 1.5}}, r"variance_threshold\n  Input sh"),
    ],
)
def test_a_mistyped_parameter_stops_the_run_before_any_node(project, pipeline, parameters, message):
    # Even a featurize run with nothing new to embed: the settings are built as the run starts.
    outputs = sorted(data(project, "08_reporting").glob("*"))
    before = {path: path.read_bytes() for path in outputs}
    with pytest.raises(ParameterValidationError, match=message):
        run(project, pipeline, **parameters)
    assert {
        path: path.read_bytes() for path in sorted(data(project, "08_reporting").glob("*"))
    } == before


def test_a_folder_of_surprises_completes_and_accounts_for_every_file(spark, tmp_path):
    (tmp_path / "project").mkdir()
    project = new_project(tmp_path / "project")
    images = tmp_path / "images"
    (images / "Apple Golden 1").mkdir(parents=True)
    (images / "broken").mkdir()
    for name, content in good_files().items():
        (images / "Apple Golden 1" / name).write_bytes(content)
    for name, (content, _) in bad_files().items():
        (images / "broken" / name).write_bytes(content)
    (images / "broken" / "notes.txt").write_text("not listed: the glob takes image files only")

    run(project, pipeline="featurize", images_root=str(images), featurize={"weights": None})

    summary = json.loads((project / "data/08_reporting/featurize_summary.json").read_text())
    listed = len(good_files()) + len(bad_files())
    assert summary["files_listed"] == listed
    assert summary["featurized"] + summary["rejected"] == listed
    assert summary["images_by_label"] == {"Apple Golden 1": len(good_files())}
    rejects = pd.read_csv(project / "data/08_reporting/image_rejects.csv")
    assert sorted(local_path(p).name for p in rejects["path"]) == sorted(bad_files())
    assert set(rejects["label"]) == {"broken"}


def test_kedro_viz_build_lists_the_nodes_of_every_pipeline(tmp_path):
    project = new_project(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"], cwd=project, check=True, timeout=300
    )
    api = project / "build" / "api"
    main = json.loads((api / "main").read_text())
    assert {p["id"] for p in main["pipelines"]} == {
        "__default__",
        "featurize",
        "reduce",
        "train",
        "predict",
        "maintain",
    }

    def task_names(pipeline: str) -> set[str]:
        shown = json.loads((api / "pipelines" / pipeline).read_text())
        return {node["name"] for node in shown["nodes"] if node["type"] == "task"}

    def data_names(pipeline: str) -> set[str]:
        shown = json.loads((api / "pipelines" / pipeline).read_text())
        return {node["name"] for node in shown["nodes"] if node["type"] == "data"}

    featurize = {
        "label_images",
        "plan_featurization",
        "featurize_changes",
        "summarize_table_update",
    }
    reduce = {"fit_pca", "project_features", "plot_cumulative_variance"}
    assert task_names("__default__") == featurize | reduce
    assert task_names("featurize") == featurize
    # The lineage: the table as featurize found it, its update, and what reads it next.
    assert {"raw_images", "feature_table_state", "image_features"} <= data_names("featurize")
    assert task_names("reduce") == reduce
    assert task_names("train") == {
        "name_fruits",
        "assign_split",
        "select_classifier",
        "train_classifier",
        "evaluate_classifier",
        "identify_feature_model",
        "load_imagenet_head",
        "export_classifier",
        "plot_confusion_matrix",
        "plot_reliability",
    }
    assert task_names("predict") == {
        "featurize_like_the_classifier",
        "label_new_images",
        "featurize_new_images",
        "summarize_new_images",
        "predict_labels",
    }
    assert task_names("maintain") == {"maintain_feature_table"}


def test_the_notebook_plots_the_first_two_components_by_label(project, monkeypatch):
    import matplotlib  # noqa: PLC0415
    import nbformat  # noqa: PLC0415

    matplotlib.use("Agg")
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "explore_features.ipynb", as_version=4)
    nbformat.validate(notebook)
    monkeypatch.chdir(project / "notebooks" if (project / "notebooks").is_dir() else project)
    namespace: dict = {}
    for cell in notebook.cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, "explore_features.ipynb", "exec"), namespace)  # noqa: S102
    axes = namespace["axes"]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == [
        "apple",
        "lemon",
        "mango",
        "raspberry",
    ]
    assert sum(len(collection.get_offsets()) for collection in axes.collections) == 20
