"""MobileNetV2's own ImageNet head as a prior on the classifier's answers.

The head the feature model drops was trained on real photos: its 1000 probabilities are
`softmax(f @ kernel + bias)` of the 1280 features `f` every row already holds. For each label the
classifier knows, q(label) is the probability of that label's ImageNet classes (`Granny Smith`
for apple, `banana`, `orange`); labels without one share what the others leave, equally. The
answer is the label with the highest `margin / T + beta log q`: the classifier's calibrated log
probability moved towards what ImageNet saw in real photos (docs/real-photos.md).
"""

import base64
from dataclasses import dataclass
from typing import Any

import numpy as np

from fruit_pipeline.contracts import IMAGENET_CLASSES
from fruit_pipeline.core import feature_model

# The head's layer in Keras' MobileNetV2 weights file (with its top).
HEAD_LAYER = "predictions"
# No label's prior is below this: an ImageNet class at zero must not veto what the photo shows.
PROBABILITY_FLOOR = 1e-6


@dataclass(frozen=True)
class ImagenetHead:
    """The ImageNet classifier of the feature model: features (n, 1280) -> 1000 logits."""

    kernel: np.ndarray  # (features, 1000): MobileNetV2's has 1280 features
    bias: np.ndarray  # (1000,)

    def __post_init__(self) -> None:
        if (
            self.kernel.ndim != 2
            or self.kernel.shape[1] != IMAGENET_CLASSES
            or self.bias.shape != (IMAGENET_CLASSES,)
        ):
            raise ValueError(
                f"An ImageNet head maps features to {IMAGENET_CLASSES} classes: this one has a "
                f"kernel {self.kernel.shape} and a bias {self.bias.shape}."
            )

    @property
    def feature_size(self) -> int:
        """How many features it takes (the embedding's first ones)."""
        return self.kernel.shape[0]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """(n, 1280) features -> (n, 1000) ImageNet probabilities."""
        # In float32, the head's own type: a float64 product would copy the 5 MB kernel each call.
        logits = (np.asarray(features, dtype=np.float32) @ self.kernel + self.bias).astype(
            np.float64
        )
        logits -= logits.max(axis=1, keepdims=True)
        exponentials = np.exp(logits)
        return exponentials / exponentials.sum(axis=1, keepdims=True)


def head_of_weights(source: str) -> ImagenetHead:
    """The head of the weights `featurize.weights` names: `imagenet`, a .h5 path or URL."""
    with feature_model.weights_file(source) as path:
        return read_head(str(path))


def read_head(path: str) -> ImagenetHead:
    """The head from a MobileNetV2 weights file with its top (Keras' .h5 layout)."""
    import h5py  # noqa: PLC0415

    with h5py.File(path, "r") as weights:
        if HEAD_LAYER not in weights:
            raise ValueError(
                f"{path} has no {HEAD_LAYER!r} layer: the ImageNet prior needs the weights file "
                "with its top (..._1.0_224.h5, not ..._no_top.h5)."
            )
        layer = weights[HEAD_LAYER]
        named = [
            name.decode() if isinstance(name, bytes) else name
            for name in layer.attrs["weight_names"]
        ]
        kernel, bias = (
            layer[next(name for name in named if name.endswith(suffix))][()]
            for suffix in ("kernel", "bias")
        )
    return ImagenetHead(np.asarray(kernel, dtype=np.float32), np.asarray(bias, dtype=np.float32))


@dataclass(frozen=True)
class ImagenetPrior:
    """`beta log q(label)` for each of a classifier's labels, from an image's features."""

    head: ImagenetHead
    label_classes: tuple[tuple[int, ...], ...]  # each label's ImageNet classes, in its order
    beta: float

    def offsets(self, features: np.ndarray, columns: int | None = None) -> np.ndarray:
        """(n, 1280) features -> (n, columns) `beta log q`, added to the calibrated margins.

        Columns past the labels (Spark's label indexer keeps one for labels it never saw, never
        an answer) get the floor."""
        imagenet = self.head.probabilities(features)
        width = len(self.label_classes) if columns is None else columns
        prior = np.full((len(features), width), PROBABILITY_FLOOR)
        for label, classes in enumerate(self.label_classes):
            prior[:, label] = imagenet[:, list(classes)].sum(axis=1)
        uncovered = [label for label, classes in enumerate(self.label_classes) if not classes]
        if uncovered:
            covered = sorted({c for classes in self.label_classes for c in classes})
            rest = 1.0 - imagenet[:, covered].sum(axis=1)
            prior[:, uncovered] = (rest / len(uncovered))[:, None]
        return self.beta * np.log(np.maximum(prior, PROBABILITY_FLOOR))

    def to_document(self) -> dict[str, Any]:
        """JSON-ready: the head's float32 numbers in base64 (1.3 million of them)."""
        return {
            "beta": self.beta,
            "label_classes": [list(classes) for classes in self.label_classes],
            "kernel": _encoded(self.head.kernel),
            "bias": _encoded(self.head.bias),
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "ImagenetPrior":
        """From `to_document`'s form."""
        head = ImagenetHead(
            _decoded(document["kernel"], (-1, IMAGENET_CLASSES)),
            _decoded(document["bias"], (IMAGENET_CLASSES,)),
        )
        classes = tuple(tuple(int(c) for c in label) for label in document["label_classes"])
        return cls(head=head, label_classes=classes, beta=float(document["beta"]))


def _encoded(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def _decoded(text: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4").reshape(shape).astype(np.float32)
