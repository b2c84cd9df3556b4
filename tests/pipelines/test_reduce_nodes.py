import numpy as np
import pytest
from matplotlib.figure import Figure

from fruit_pipeline.pca import choose_components
from fruit_pipeline.pipelines.reduce.nodes import (
    fit_pca,
    plot_cumulative_variance,
    project_features,
)

REDUCE = {"variance_threshold": 0.8, "max_components": 50}


def features_frame(spark, matrix: np.ndarray):
    rows = [
        (f"file:/img/c{i % 3}/{i}.jpg", f"c{i % 3}", row.tolist()) for i, row in enumerate(matrix)
    ]
    return spark.createDataFrame(rows, "path string, label string, features array<float>")


@pytest.fixture(scope="module")
def matrix() -> np.ndarray:
    """40 images, 12 features with a few strong directions and some noise."""
    rng = np.random.default_rng(7)
    latent = rng.normal(size=(40, 3)) * np.array([5.0, 3.0, 2.0])
    return (latent @ rng.normal(size=(3, 12)) + rng.normal(scale=0.5, size=(40, 12))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def fitted(spark, matrix):
    image_features = features_frame(spark, matrix)
    return image_features, *fit_pca(image_features, REDUCE)


def numpy_explained_variance(matrix: np.ndarray) -> np.ndarray:
    standardized = (matrix - matrix.mean(axis=0)) / matrix.std(axis=0, ddof=1)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(standardized, rowvar=False)))[::-1]
    return eigenvalues / eigenvalues.sum()


def test_choose_components_takes_the_smallest_k_reaching_the_threshold():
    assert choose_components(np.array([0.5, 0.2, 0.1, 0.1, 0.1]), 0.8) == 3
    assert choose_components(np.array([0.9, 0.1]), 0.8) == 1
    assert choose_components(np.array([0.3, 0.3]), 0.8) == 2


def test_variance_matches_numpy_and_k_is_the_smallest_reaching_the_threshold(fitted, matrix):
    _, _, report = fitted
    expected = numpy_explained_variance(matrix)
    np.testing.assert_allclose(report["explained_variance"], expected[:12], atol=1e-5)
    k = report["components"]
    cumulative = np.cumsum(expected)
    assert cumulative[k - 1] >= 0.8 > cumulative[k - 2]
    assert report["cumulative_variance_at_k"] == pytest.approx(cumulative[k - 1], abs=1e-5)
    assert report["threshold_reached"] is True
    assert report["image_count"] == 40
    assert report["feature_count"] == 12
    assert report["components_fitted"] == 12


def test_the_cap_limits_k_and_the_report_says_the_threshold_was_missed(spark, matrix):
    _, report = fit_pca(features_frame(spark, matrix), {**REDUCE, "max_components": 1})
    assert report["components"] == report["components_fitted"] == 1
    assert report["threshold_reached"] is False


def test_too_few_images_gives_a_clear_message(spark, matrix):
    with pytest.raises(
        ValueError, match="PCA needs at least 2 featurized images; the data holds 1"
    ):
        fit_pca(features_frame(spark, matrix[:1]), REDUCE)


def test_projection_has_one_row_per_image_and_k_components(fitted, matrix):
    image_features, model, report = fitted
    projected = project_features(image_features, model, report)
    k = report["components"]
    assert list(projected.columns) == ["path", "label", *[f"pc_{i}" for i in range(1, k + 1)]]
    assert len(projected) == len(matrix)
    # Scores of the standardized data on the components: centred, variances in falling order.
    scores = projected[[f"pc_{i}" for i in range(1, k + 1)]].to_numpy()
    np.testing.assert_allclose(scores.mean(axis=0), 0, atol=1e-6)
    assert np.all(np.diff(scores.var(axis=0)) <= 1e-9)


def test_plot_shows_the_curve_the_threshold_and_k(fitted):
    _, _, report = fitted
    figure = plot_cumulative_variance(report)
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    labels = [line.get_label() for line in axes.get_lines()]
    assert labels == ["cumulative", "threshold", f"k = {report['components']}"]
    np.testing.assert_allclose(
        axes.get_lines()[0].get_ydata(), report["cumulative_explained_variance"]
    )
