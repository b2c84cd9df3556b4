import h5py
import numpy as np
import pytest

from fruit_pipeline.contracts import IMAGENET_CLASSES
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.feature_model import INPUT_SIZE
from fruit_pipeline.core.imagenet_prior import (
    PROBABILITY_FLOOR,
    ImagenetHead,
    ImagenetPrior,
    read_head,
)
from fruit_pipeline.core.images import decode_image
from tests.support.helpers import TEST1, WEIGHTS_FILE

FEATURES = 4


def head(seed: int = 0) -> ImagenetHead:
    """A random head of four features."""
    rng = np.random.default_rng(seed)
    return ImagenetHead(
        rng.normal(size=(FEATURES, IMAGENET_CLASSES)).astype(np.float32),
        rng.normal(size=IMAGENET_CLASSES).astype(np.float32),
    )


def test_a_label_gets_its_classes_and_labels_without_share_what_is_left():
    prior = ImagenetPrior(head(), label_classes=((948,), (950, 951), (), ()), beta=1.0)
    features = np.random.default_rng(1).normal(size=(5, FEATURES))
    imagenet = prior.head.probabilities(features)
    np.testing.assert_allclose(imagenet.sum(axis=1), 1.0)
    q = np.exp(prior.offsets(features))
    np.testing.assert_allclose(q[:, 0], imagenet[:, 948], rtol=1e-12)
    np.testing.assert_allclose(q[:, 1], imagenet[:, 950] + imagenet[:, 951], rtol=1e-12)
    rest = 1 - imagenet[:, [948, 950, 951]].sum(axis=1)
    np.testing.assert_allclose(q[:, 2], rest / 2, rtol=1e-9)
    np.testing.assert_allclose(q[:, 3], rest / 2, rtol=1e-9)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, rtol=1e-9)


def test_beta_weighs_the_log_prior_and_a_class_at_zero_is_floored():
    certain = ImagenetHead(np.zeros((FEATURES, IMAGENET_CLASSES)), np.zeros(IMAGENET_CLASSES))
    certain.bias[954] = 100.0  # every image is a banana to ImageNet
    features = np.ones((2, FEATURES))
    half = ImagenetPrior(certain, label_classes=((954,), (948,)), beta=0.5).offsets(features)
    np.testing.assert_allclose(half[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose(half[:, 1], 0.5 * np.log(PROBABILITY_FLOOR))
    assert not ImagenetPrior(certain, ((954,), (948,)), beta=0.0).offsets(features).any()


def test_the_prior_survives_its_document_bit_for_bit():
    prior = ImagenetPrior(head(), label_classes=((948,), ()), beta=0.5)
    again = ImagenetPrior.from_document(prior.to_document())
    assert again.label_classes == prior.label_classes and again.beta == 0.5
    np.testing.assert_array_equal(again.head.kernel, prior.head.kernel)
    np.testing.assert_array_equal(again.head.bias, prior.head.bias)


def test_a_head_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match="to 1000 classes"):
        ImagenetHead(np.zeros((FEATURES, 10)), np.zeros(10))


def keras_weights_file(path, with_top: bool):
    """A weights file in Keras' .h5 layout: a group per layer, its weights named in an attribute."""
    expected = head(2)
    with h5py.File(path, "w") as weights:
        conv = weights.create_group("Conv1")
        conv.attrs["weight_names"] = [b"Conv1/kernel"]
        conv.create_dataset("Conv1/kernel", data=np.ones((3, 3, 3, 32)))
        if with_top:
            layer = weights.create_group("predictions")
            layer.attrs["weight_names"] = [b"predictions/kernel", b"predictions/bias"]
            layer.create_dataset("predictions/kernel", data=expected.kernel)
            layer.create_dataset("predictions/bias", data=expected.bias)
    return expected


def test_the_head_is_read_from_the_weights_file_with_its_top(tmp_path):
    expected = keras_weights_file(tmp_path / "top.h5", with_top=True)
    found = read_head(str(tmp_path / "top.h5"))
    np.testing.assert_array_equal(found.kernel, expected.kernel)
    np.testing.assert_array_equal(found.bias, expected.bias)


def test_a_weights_file_without_its_top_is_refused_with_what_to_use(tmp_path):
    keras_weights_file(tmp_path / "no_top.h5", with_top=False)
    with pytest.raises(ValueError, match=r"with its top \(\.\.\._1\.0_224\.h5"):
        read_head(str(tmp_path / "no_top.h5"))


@pytest.mark.shared
def test_the_head_on_the_features_gives_keras_own_imagenet_probabilities():
    if not WEIGHTS_FILE.is_file() or not TEST1.is_dir():
        pytest.skip(f"needs the weights file at {WEIGHTS_FILE} and the images at {TEST1}")
    import keras  # noqa: PLC0415

    photos = sorted(TEST1.rglob("*.jpg"))[::5]
    pixels = np.stack(
        [decode_image(photo.read_bytes(), INPUT_SIZE, 25_000_000, "pad") for photo in photos]
    ).astype(np.float32)
    features = feature_model.build_feature_model(str(WEIGHTS_FILE)).predict(pixels, verbose=0)
    # Keras' whole network, its own classifier on top, its own preprocessing.
    whole = keras.applications.MobileNetV2(weights=str(WEIGHTS_FILE), include_top=True)
    expected = whole.predict(keras.applications.mobilenet_v2.preprocess_input(pixels), verbose=0)
    found = read_head(str(WEIGHTS_FILE)).probabilities(features)
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-5)
    assert found.max(axis=1).min() > 0.05  # confident somewhere: not a flat, wrong reading
