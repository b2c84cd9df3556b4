"""The trained classifier without Spark: numbers in a JSON document, probabilities with numpy.

The `train` pipeline writes it (`classifier_export`) from the fitted Spark `PipelineModel`; the
prediction service reads it. It holds, in the order they apply: the descriptors assembled into
one vector (the 1280-d embedding, then the colour histogram if the classifier takes it), the
indices of the features kept (constant ones dropped), the scaler's mean and standard deviation,
the kept PCA components (none when the classifier takes the scaled features), the multinomial
logistic regression's coefficients and intercepts, the temperature that divides its margins
(fitted on validation images) and the ImageNet prior added to them (none when trained without).
Besides: the label of each class, the threshold under which the answer is "unknown", the
feature model it expects (weights checksum, engine, framing) and the training metrics.
"""

import json
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np

from fruit_pipeline.contracts import COLOUR, FEATURES, UNRECORDED_FRAMING
from fruit_pipeline.core.calibration import softmax
from fruit_pipeline.core.colour import colour_histogram
from fruit_pipeline.core.imagenet_prior import ImagenetPrior

FORMAT = "fruit_pipeline.classifier_export/3"


@dataclass(frozen=True)
class Answer:
    """A label (None: not sure enough), its probability and the best candidates."""

    label: str | None
    probability: float
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class ExportedClassifier:
    """Probabilities of the classes for feature vectors, as the Spark model computes them."""

    labels: list[str]
    descriptors: list[str]  # FEATURES (the embedding), then COLOUR if taken
    selected_features: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    components: np.ndarray | None
    coefficients: np.ndarray
    intercepts: np.ndarray
    temperature: float
    unknown_threshold: float
    feature_model: dict[str, Any]
    metrics: dict[str, Any]
    prior: ImagenetPrior | None = None

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "ExportedClassifier":
        """From the JSON document `train` writes; another format is refused."""
        if document.get("format") != FORMAT:
            raise ValueError(
                f"Not a classifier export of format {FORMAT}: {document.get('format')}. "
                "Run `kedro run --pipelines train` again to write one."
            )
        components, prior = document["pca_components"], document["imagenet_prior"]
        return cls(
            labels=list(document["labels"]),
            descriptors=list(document["descriptors"]),
            selected_features=np.asarray(document["selected_features"], dtype=np.int64),
            mean=np.asarray(document["scaler_mean"]),
            std=np.asarray(document["scaler_std"]),
            components=None if components is None else np.asarray(components),
            coefficients=np.asarray(document["coefficients"]),
            intercepts=np.asarray(document["intercepts"]),
            temperature=float(document["temperature"]),
            unknown_threshold=float(document["unknown_threshold"]),
            feature_model=dict(document["feature_model"]),
            metrics=dict(document["metrics"]),
            prior=None if prior is None else ImagenetPrior.from_document(prior),
        )

    def to_document(self) -> dict[str, Any]:
        """The JSON document `from_document` reads (plain lists and numbers)."""
        return {
            "format": FORMAT,
            "labels": list(self.labels),
            "descriptors": list(self.descriptors),
            "selected_features": np.asarray(self.selected_features).tolist(),
            "scaler_mean": np.asarray(self.mean).tolist(),
            "scaler_std": np.asarray(self.std).tolist(),
            "pca_components": None if self.components is None else self.components.tolist(),
            "coefficients": np.asarray(self.coefficients).tolist(),
            "intercepts": np.asarray(self.intercepts).tolist(),
            "temperature": float(self.temperature),
            "unknown_threshold": float(self.unknown_threshold),
            "feature_model": dict(self.feature_model),
            "metrics": dict(self.metrics),
            "imagenet_prior": None if self.prior is None else self.prior.to_document(),
        }

    @classmethod
    def load(cls, url: str) -> "ExportedClassifier":
        """Read an export from a path or URL (s3://...)."""
        with fsspec.open(url, "r") as file:
            return cls.from_document(json.load(file))

    @property
    def framing(self) -> str:
        """How the photos it learnt from were framed to a square: the service frames its own so."""
        return self.feature_model.get("framing", UNRECORDED_FRAMING)

    def descriptor_vector(self, embedding: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """One image's input to the classifier: its embedding, then its colour histogram if used."""
        computed = {FEATURES: lambda: embedding, COLOUR: lambda: colour_histogram(pixels)}
        return np.concatenate([computed[name]() for name in self.descriptors])

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, descriptors) assembled descriptor vectors -> (n, classes) probabilities."""
        scaled = (features[:, self.selected_features] - self.mean) / np.where(
            self.std > 0, self.std, 1.0
        )
        inputs = scaled if self.components is None else scaled @ self.components
        margins = inputs @ self.coefficients.T + self.intercepts
        # The embedding comes first in the descriptors: the prior's input.
        offsets = (
            0.0
            if self.prior is None
            else self.prior.offsets(features[:, : self.prior.head.feature_size], margins.shape[1])
        )
        return softmax(margins, self.temperature, offsets)

    def answer(self, features: np.ndarray, top: int = 3) -> Answer:
        """The answer for one image's descriptor vector: its label, or None below the threshold."""
        probabilities = self.probabilities(features.reshape(1, -1))[0]
        order = np.argsort(probabilities)[::-1][:top]
        best = float(probabilities[order[0]])
        return Answer(
            label=self.labels[order[0]] if best >= self.unknown_threshold else None,
            probability=best,
            top=[(self.labels[i], float(probabilities[i])) for i in order],
        )
