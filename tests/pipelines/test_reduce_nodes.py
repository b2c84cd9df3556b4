import numpy as np
import pytest
from matplotlib.figure import Figure

from fruit_pipeline.parameters import ReduceSettings
from fruit_pipeline.pipelines.reduce.nodes import (
    fit_pca,
    plot_cumulative_variance,
    project_features,
)
from fruit_pipeline.spark.pca import (
    PCACheckFailed,
    check_decomposition,
    choose_components,
    decompose,
)
from tests.support.helpers import numpy_pca_shares

REDUCE = ReduceSettings(variance_threshold=0.8, max_components=50)


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


def test_choose_components_takes_the_smallest_k_reaching_the_threshold():
    assert choose_components(np.array([0.5, 0.2, 0.1, 0.1, 0.1]), 0.8) == 3
    assert choose_components(np.array([0.9, 0.1]), 0.8) == 1
    assert choose_components(np.array([0.3, 0.3]), 0.8) == 2


def test_variance_matches_numpy_and_k_is_the_smallest_reaching_the_threshold(fitted, matrix):
    _, _, report = fitted
    expected = numpy_pca_shares(matrix)
    np.testing.assert_allclose(report["explained_variance"], expected[:12], rtol=0, atol=1e-9)
    k = report["components"]
    cumulative = np.cumsum(expected)
    assert cumulative[k - 1] >= 0.8 > cumulative[k - 2]
    assert report["cumulative_variance_at_k"] == pytest.approx(cumulative[k - 1], abs=1e-5)
    assert report["threshold_reached"] is True
    assert report["image_count"] == 40
    assert report["feature_count"] == 12
    assert report["components_fitted"] == 12
    assert report["constant_features_dropped"] == 0


def test_constant_features_are_dropped_and_counted(spark, matrix):
    # A dead channel (always 0) and a saturated one (always 6), as ReLU6 features have.
    with_constants = np.hstack(
        [matrix, np.zeros((len(matrix), 1)), np.full((len(matrix), 1), 6.0)]
    ).astype(np.float32)
    _, report = fit_pca(features_frame(spark, with_constants), REDUCE)
    assert report["feature_count"] == 14
    assert report["constant_features_dropped"] == 2
    assert report["components_fitted"] == 12
    np.testing.assert_allclose(
        report["explained_variance"], numpy_pca_shares(matrix), rtol=0, atol=1e-9
    )


def test_the_cap_limits_k_and_the_report_says_the_threshold_was_missed(spark, matrix):
    _, report = fit_pca(
        features_frame(spark, matrix), REDUCE.model_copy(update={"max_components": 1})
    )
    assert report["components"] == report["components_fitted"] == 1
    assert report["threshold_reached"] is False


def test_too_few_images_gives_a_clear_message(spark, matrix):
    with pytest.raises(
        ValueError, match="PCA needs at least 2 featurized images; the data holds 1"
    ):
        fit_pca(features_frame(spark, matrix[:1]), REDUCE)


def test_projection_has_one_row_per_image_and_k_components(fitted, matrix):
    image_features, model, report = fitted
    projected = project_features(image_features, model)
    k = report["components"]
    assert list(projected.columns) == ["path", "label", *[f"pc_{i}" for i in range(1, k + 1)]]
    assert len(projected) == len(matrix)
    # Scores of the standardized data on the components: centred, variances in falling order.
    scores = projected[[f"pc_{i}" for i in range(1, k + 1)]].to_numpy()
    np.testing.assert_allclose(scores.mean(axis=0), 0, atol=1e-6)
    # The variance of the scores is each component's share of the total (12 unit variances).
    shares = np.asarray(report["explained_variance"][:k])
    np.testing.assert_allclose(scores.var(axis=0, ddof=1) / 12, shares, rtol=1e-6)
    # The same scores as numpy's projection onto its own eigenvectors (up to their sign).
    standardized = (matrix - matrix.mean(axis=0)) / matrix.std(axis=0, ddof=1)
    eigenvectors = np.linalg.eigh(np.cov(standardized.astype(np.float64), rowvar=False))[1]
    expected = standardized @ eigenvectors[:, ::-1][:, :k]
    # The CSV is sorted by path: put numpy's rows in the same order.
    order = np.argsort([f"file:/img/c{i % 3}/{i}.jpg" for i in range(len(matrix))])
    expected = expected[order]
    np.testing.assert_allclose(np.abs(scores), np.abs(expected), atol=1e-4)


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


def test_decompose_orders_the_components_and_fixes_their_sign():
    covariance = np.array([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    eigenvalues, eigenvectors = decompose(covariance)
    np.testing.assert_allclose(eigenvalues, [5.0, 2.0, 1.0])
    np.testing.assert_allclose(eigenvectors, [[0, 1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    random = np.corrcoef(np.random.default_rng(2).normal(size=(30, 8)), rowvar=False)
    vectors = decompose(random)[1]
    largest = vectors[np.argmax(np.abs(vectors), axis=0), np.arange(8)]
    assert (largest > 0).all()


def test_the_check_stops_a_wrong_decomposition(matrix):
    covariance = np.corrcoef(matrix.astype(np.float64), rowvar=False)
    eigenvalues, eigenvectors = decompose(covariance)
    check_decomposition(covariance, eigenvectors[:, :3], eigenvalues[:3])
    # Right vectors, wrong eigenvalues: what a broken LAPACK returned.
    with pytest.raises(PCACheckFailed, match="variance of the data along component 1"):
        check_decomposition(covariance, eigenvectors[:, :3], eigenvalues[:3] * 0.2)
    # Vectors that are not orthonormal.
    with pytest.raises(PCACheckFailed, match="not orthonormal"):
        check_decomposition(covariance, eigenvectors[:, :3] * 1.01, eigenvalues[:3])
    # Orthonormal vectors that are not eigenvectors: a rotation inside the first three.
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    with pytest.raises(PCACheckFailed, match="the decomposition is wrong"):
        check_decomposition(covariance, eigenvectors[:, :3] @ rotation, eigenvalues[:3])
