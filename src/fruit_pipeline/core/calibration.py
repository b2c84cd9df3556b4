"""Probabilities that mean what they say: temperature scaling and how far from calibrated they are.

Temperature scaling divides the classifier's margins by one number T fitted on held-out images
(the validation split) by minimum log loss: alone, it changes no predicted label, only how sure
the probabilities are. With the ImageNet prior (fruit_pipeline.core.imagenet_prior), its offsets
are added to the margins divided by T, so T also weighs the classifier against the prior, and it
is fitted on the answers they give together. The expected calibration error (ECE) compares, in
bins of the top probability, the mean confidence with the accuracy.
"""

import numpy as np

# Golden-section search of log T over this range, to this precision.
_LOG_T_RANGE = (np.log(0.05), np.log(20.0))
_TOLERANCE = 1e-4
CALIBRATION_BINS = 15


def softmax(
    margins: np.ndarray, temperature: float = 1.0, offsets: np.ndarray | float = 0.0
) -> np.ndarray:
    """Row-wise softmax of margins / temperature + offsets."""
    scaled = margins / temperature + offsets
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def log_loss(
    margins: np.ndarray,
    labels: np.ndarray,
    temperature: float = 1.0,
    offsets: np.ndarray | float = 0.0,
) -> float:
    """Mean negative log probability of the true labels (-1: a label the model does not know)."""
    scaled = margins / temperature + offsets
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_normalizer = np.log(np.exp(shifted).sum(axis=1))
    losses = log_normalizer - shifted[np.arange(len(labels)), np.maximum(labels, 0)]
    # An unknown label has probability 0, counted as 1e-15 like any probability.
    return float(np.mean(np.where(labels >= 0, np.minimum(losses, -np.log(1e-15)), -np.log(1e-15))))


def fit_temperature(
    margins: np.ndarray, labels: np.ndarray, offsets: np.ndarray | float = 0.0
) -> float:
    """The temperature of least log loss on these margins (log loss is unimodal in log T)."""
    low, high = _LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    inner_low, inner_high = high - ratio * (high - low), low + ratio * (high - low)
    loss_low = log_loss(margins, labels, np.exp(inner_low), offsets)
    loss_high = log_loss(margins, labels, np.exp(inner_high), offsets)
    while high - low > _TOLERANCE:
        if loss_low < loss_high:
            high, inner_high, loss_high = inner_high, inner_low, loss_low
            inner_low = high - ratio * (high - low)
            loss_low = log_loss(margins, labels, np.exp(inner_low), offsets)
        else:
            low, inner_low, loss_low = inner_low, inner_high, loss_high
            inner_high = low + ratio * (high - low)
            loss_high = log_loss(margins, labels, np.exp(inner_high), offsets)
    return float(np.exp((low + high) / 2))


def reliability(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = CALIBRATION_BINS
) -> dict[str, object]:
    """Expected calibration error and, per bin of top probability: count, confidence, accuracy."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds (edges[i], edges[i + 1]]; a confidence of exactly 0 goes to the first.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    mean_confidence = np.bincount(index, weights=confidence, minlength=bins)
    accuracy = np.bincount(index, weights=correct.astype(float), minlength=bins)
    filled = counts > 0
    mean_confidence[filled] /= counts[filled]
    accuracy[filled] /= counts[filled]
    gaps = np.abs(accuracy - mean_confidence) * counts / max(len(labels), 1)
    return {
        "expected_calibration_error": float(gaps.sum()),
        "bins": [
            {
                "upper_edge": float(edges[i + 1]),
                "images": int(counts[i]),
                "mean_confidence": float(mean_confidence[i]),
                "accuracy": float(accuracy[i]),
            }
            for i in range(bins)
        ],
    }
