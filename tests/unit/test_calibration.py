"""Temperature scaling and the expected calibration error on known cases."""

import numpy as np
import pytest

from fruit_pipeline.core.calibration import fit_temperature, log_loss, reliability, softmax


def test_log_loss_is_the_mean_negative_log_probability_of_the_true_labels():
    margins = np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 2])
    probabilities = np.exp(margins) / np.exp(margins).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probabilities[[0, 1], [0, 2]]))
    assert log_loss(margins, labels) == pytest.approx(expected)
    np.testing.assert_allclose(softmax(margins, 2.0), softmax(margins / 2.0))
    # A label the model does not know (-1) has probability 0, clipped like any other to 1e-15.
    unknown = log_loss(margins, np.array([0, -1]))
    assert unknown == pytest.approx((-np.log(probabilities[0, 0]) - np.log(1e-15)) / 2)


def test_the_fitted_temperature_undoes_overconfidence():
    rng = np.random.default_rng(0)
    true_margins = rng.normal(scale=2.0, size=(20_000, 5))
    cumulative = softmax(true_margins).cumsum(axis=1)
    labels = (rng.random((20_000, 1)) > cumulative).sum(axis=1)
    # A classifier three times too sure of itself: the fitted temperature is about 3.
    temperature = fit_temperature(3.0 * true_margins, labels)
    assert temperature == pytest.approx(3.0, rel=0.05)
    assert log_loss(3.0 * true_margins, labels, temperature) < log_loss(3.0 * true_margins, labels)


def test_expected_calibration_error_of_a_known_case():
    probabilities = np.array([[0.9, 0.1], [0.95, 0.05], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    result = reliability(probabilities, labels, bins=2)
    # Bin (0.5, 1]: all four, confidence (0.9 + 0.95 + 0.6 + 0.7) / 4, accuracy 3 / 4.
    assert result["bins"][1]["images"] == 4
    assert result["bins"][1]["accuracy"] == pytest.approx(0.75)
    assert result["expected_calibration_error"] == pytest.approx(abs(0.75 - 3.15 / 4))
    assert result["bins"][0]["images"] == 0
