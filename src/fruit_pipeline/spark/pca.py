"""Standardization + PCA, shared by the reduce and train pipelines (and what predict reuses).

Why the decomposition is not Spark ML's `PCA` estimator: it decomposes the d x d covariance
with whatever LAPACK the JVM finds. Without a native one (a laptop, a CI runner, a cluster
node as they come) netlib's pure-Java fallback is used, and on some real inputs it returned a
silently wrong decomposition (first explained-variance ratio 0.024 instead of 0.169 on the
328 training images of the sample split, 90 components for 80 % instead of 50). So:

- Spark ML fits what scales with the number of images: `VarianceThresholdSelector` drops the
  constant features, `StandardScaler` standardizes the rest, and `Correlation` computes their
  d x d covariance (of standardized features, their correlation) in one distributed pass;
- numpy decomposes that small matrix on the driver (`eigh`, with the LAPACK numpy ships);
- the kept eigenvectors become an ordinary Spark `PCAModel`, so the fitted stages are one
  Spark ML `PipelineModel` that Spark saves, loads and applies (no LAPACK is needed to project);
- every fit is checked on the driver: the components are orthonormal and the variance of the
  data along each, from the covariance, equals its eigenvalue. A violation stops the run.
"""

import logging
from dataclasses import dataclass

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.common import _py2java
from pyspark.ml.feature import (
    PCAModel,
    StandardScaler,
    VarianceThresholdSelector,
    VarianceThresholdSelectorModel,
)
from pyspark.ml.functions import array_to_vector
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.ml.stat import Correlation
from pyspark.sql import DataFrame

from fruit_pipeline.contracts import (
    ARRAY_OF_VECTOR,
    COMPONENTS,
    INFORMATIVE,
    SCALED,
    VECTOR,
)
from fruit_pipeline.spark.ml_stages import stage

logger = logging.getLogger(__name__)

# Largest deviation allowed by the check of a fit, in units of the total variance.
CHECK_TOLERANCE = 1e-8


class PCACheckFailed(RuntimeError):
    """A fitted decomposition that is not a PCA of the data: the run must stop."""


@dataclass(frozen=True)
class ScaledPCA:
    """A fitted standardization + PCA and what it says about the data."""

    model: PipelineModel  # selector, scaler and PCA with the k kept components
    explained_variance: np.ndarray  # share of the variance of each fitted component
    components: int  # k: the smallest number reaching the threshold (or all fitted)
    image_count: int
    feature_count: int
    constant_features: int


def as_vectors(image_features: DataFrame) -> DataFrame:
    """The embedding (and colour histogram, if any) arrays as ML vector columns, others kept."""
    vectors = image_features
    for vector, array in ARRAY_OF_VECTOR.items():
        if array in image_features.columns:
            vectors = vectors.withColumn(vector, array_to_vector(array)).drop(array)
    return vectors


def fit_scaled_pca(
    vectors: DataFrame, variance_threshold: float, max_components: int, input_column: str = VECTOR
) -> ScaledPCA:
    """Drop constant features, standardize, keep the principal components reaching the threshold."""
    image_count = vectors.count()
    if image_count < 2:
        raise ValueError(
            f"PCA needs at least 2 featurized images; the data holds {image_count}. "
            "Add images (see featurize_summary.json and image_rejects.csv for what was rejected)."
        )
    standardizer = fit_standardizer(vectors, input_column)
    selector = stage(standardizer, VarianceThresholdSelectorModel)
    feature_count = vectors.first()[input_column].size
    informative = len(selector.selectedFeatures)
    covariance = Correlation.corr(standardizer.transform(vectors), SCALED).head()[0].toArray()
    eigenvalues, eigenvectors = decompose(covariance)
    shares = eigenvalues / eigenvalues.sum()
    # n images span at most n - 1 directions once centred: more components explain nothing.
    fitted = min(max_components, informative, image_count - 1)
    k = choose_components(shares[:fitted], variance_threshold)
    check_decomposition(covariance, eigenvectors[:, :k], eigenvalues[:k])
    pca = _pca_model(vectors, eigenvectors[:, :k], shares[:k])
    return ScaledPCA(
        model=PipelineModel([*standardizer.stages, pca]),
        explained_variance=shares[:fitted],
        components=k,
        image_count=image_count,
        feature_count=feature_count,
        constant_features=feature_count - informative,
    )


def fit_standardizer(
    vectors: DataFrame, input_column: str = VECTOR, scale: bool = True
) -> PipelineModel:
    """Drop the features that are constant over the images, standardize the others (centre
    them only, `scale=False`)."""
    selector = VarianceThresholdSelector(
        featuresCol=input_column, outputCol=INFORMATIVE, varianceThreshold=0.0
    ).fit(vectors)
    if not selector.selectedFeatures:
        raise ValueError("Every feature is constant over the images: there is nothing to learn.")
    scaler = StandardScaler(inputCol=INFORMATIVE, outputCol=SCALED, withMean=True, withStd=scale)
    return PipelineModel([selector, scaler.fit(selector.transform(vectors))])


def decompose(covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (largest first, never negative) and unit eigenvectors with a fixed sign."""
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues = np.clip(eigenvalues[order], 0.0, None)
    eigenvectors = eigenvectors[:, order]
    # Any LAPACK may return -v for v: the largest loading of each component is made positive.
    largest = eigenvectors[np.argmax(np.abs(eigenvectors), axis=0), np.arange(len(order))]
    return eigenvalues, eigenvectors * np.where(largest < 0, -1.0, 1.0)


def check_decomposition(
    covariance: np.ndarray, components: np.ndarray, eigenvalues: np.ndarray
) -> None:
    """Stop unless the components are orthonormal and the variance along each is its eigenvalue."""
    total = np.trace(covariance)
    gram = components.T @ components
    orthonormality = float(np.max(np.abs(gram - np.eye(gram.shape[0]))))
    if orthonormality > CHECK_TOLERANCE:
        raise PCACheckFailed(
            f"The {components.shape[1]} principal components are not orthonormal: "
            f"|C^T C - I| reaches {orthonormality:.3g} (tolerance {CHECK_TOLERANCE})."
        )
    variances = np.einsum("ij,ik,kj->j", components, covariance, components)
    worst = int(np.argmax(np.abs(variances - eigenvalues)))
    deviation = float(abs(variances[worst] - eigenvalues[worst]) / total)
    if deviation > CHECK_TOLERANCE:
        raise PCACheckFailed(
            f"The variance of the data along component {worst + 1} is {variances[worst]:.6g} "
            f"but its eigenvalue is {eigenvalues[worst]:.6g}: the decomposition is wrong "
            f"(difference {deviation:.3g} of the total variance, tolerance {CHECK_TOLERANCE})."
        )


def choose_components(explained_variance: np.ndarray, threshold: float) -> int:
    """Smallest k whose cumulative explained variance reaches the threshold, else all of them."""
    # A tolerance so that a share summing to exactly the threshold counts as reaching it.
    reached = np.flatnonzero(np.cumsum(explained_variance) >= threshold - 1e-12)
    return int(reached[0]) + 1 if reached.size else len(explained_variance)


def _pca_model(vectors: DataFrame, components: np.ndarray, shares: np.ndarray) -> PCAModel:
    # Spark's PCAModel has no public constructor from a matrix in Python; its Scala one takes
    # (uid, principal components d x k, explained variance) and is what Spark's reader calls.
    context = vectors.sparkSession.sparkContext
    rows, columns = components.shape
    java_model = context._jvm.org.apache.spark.ml.feature.PCAModel(
        PCAModel._randomUID(),
        _py2java(context, DenseMatrix(rows, columns, components.ravel(order="F").tolist())),
        _py2java(context, DenseVector(shares.tolist())),
    )
    model = PCAModel(java_model)
    model._set(inputCol=SCALED, outputCol=COMPONENTS, k=columns)
    model._transfer_params_to_java()
    return model
