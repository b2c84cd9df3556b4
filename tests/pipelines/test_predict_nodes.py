import numpy as np
import pytest

from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.pipelines.predict.nodes import featurize_like_the_classifier
from tests.support.settings import FEATURIZE


def export(**feature_model) -> dict:
    """A one-feature, two-label classifier export of this feature model."""
    return ExportedClassifier(
        labels=["kiwi", "lemon"],
        descriptors=["features"],
        selected_features=np.array([0]),
        mean=np.zeros(1),
        std=np.ones(1),
        components=None,
        coefficients=np.array([[1.0], [-1.0]]),
        intercepts=np.zeros(2),
        temperature=1.0,
        unknown_threshold=0.5,
        feature_model={
            "weights": None,
            "weights_sha256": None,
            "engine": "onnxruntime",
            **feature_model,
        },
        metrics={},
    ).to_document()


@pytest.mark.parametrize(("recorded", "framing"), [({"framing": "crop"}, "crop"), ({}, "squash")])
def test_new_images_are_framed_as_the_classifiers_were(recorded, framing):
    assert FEATURIZE.framing == "pad"
    settings = featurize_like_the_classifier(export(**recorded), FEATURIZE)
    assert settings == FEATURIZE.model_copy(update={"framing": framing})


def test_other_weights_than_the_classifiers_are_refused():
    with pytest.raises(ValueError, match="not the weights the classifier learnt from"):
        featurize_like_the_classifier(export(weights_sha256="a" * 64), FEATURIZE)
