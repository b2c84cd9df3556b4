"""The pipelines' parameters as typed settings, one class per `conf/*/parameters_*.yml` block.

A node names its settings class in its signature; Kedro builds it from the run's parameters
before any node runs, so a mistyped, missing or mistyped-value key stops every run at its start
(even one with nothing to do) with the key's name, never half-way through.
"""

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fruit_pipeline.contracts import IMAGENET_CLASSES, INT8_ENGINE


class Settings(BaseModel):
    """Parameters that are exactly these keys, of these types, and never change during a run."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# `onnxruntime-int8`: the ONNX model quantized to INT8 (fruit_pipeline.core.quantization).
Engine = Literal["onnxruntime", INT8_ENGINE, "keras"]
# How a photo that is not square becomes the model's square input: `pad` (the whole photo, the
# margins in its mean colour), `crop` (its centre square) or `squash` (resized out of shape).
Framing = Literal["pad", "crop", "squash"]
FRAMINGS: tuple[str, ...] = get_args(Framing)
# What a classifier candidate takes: `pca`, PCA components of the standardized features;
# `features`, the standardized features; `embedding`, the features as they are (centred only),
# the L2 weight on their own scale.
Inputs = Literal["pca", "features", "embedding"]
INPUTS: tuple[str, ...] = get_args(Inputs)


class AugmentSettings(Settings):
    """`featurize.augment`: views of each photo that train learns from beside the photo itself."""

    copies: int = Field(ge=0)  # views of each photo (0: none)
    seed: int  # with the file's folder and name, draws each view: the same views on every run
    min_side: int = Field(gt=0)  # photos with a shorter side get no views (studio frames)
    min_scale: float = Field(gt=0, le=1)  # each view's side, as a share of the photo's...
    max_scale: float = Field(gt=0, le=1)  # ...drawn between these
    jitter: float = Field(ge=0, lt=1)  # colour and brightness scaled by 1 +- up to this

    @model_validator(mode="after")
    def _scales_in_order(self) -> "AugmentSettings":
        if self.min_scale > self.max_scale:
            raise ValueError(
                f"featurize.augment: min_scale {self.min_scale} is above max_scale "
                f"{self.max_scale}."
            )
        return self

    def name(self) -> str:
        """What the table records: `none`, or every setting that draws the views."""
        if not self.copies:
            return "none"
        return (
            f"crops {self.copies}, seed {self.seed}, min side {self.min_side}, "
            f"scale {self.min_scale}-{self.max_scale}, jitter {self.jitter}"
        )


class FeaturizeSettings(Settings):
    """`featurize`: how images become features (the featurize and predict pipelines)."""

    full_refresh: bool  # embed every file, not only the new or changed ones
    weights: str | None  # `imagenet`, a .h5 path or URL, or None (random)
    engine: Engine  # ONNX Runtime FP32 (the default) or INT8, or Keras for comparison
    model_cache: str  # folder or URL of the converted ONNX models
    batch_size: int = Field(gt=0)  # images per model call
    max_image_pixels: int = Field(gt=0)  # larger images are rejected before decoding
    framing: Framing  # how a photo that is not square becomes the square input
    threads_per_worker: int = Field(gt=0)  # engine threads in each Spark Python worker
    images_per_task: int = Field(gt=0)  # inference tasks of about this many images...
    partitions: int | None = Field(gt=0)  # ...unless set: this many tasks
    augment: AugmentSettings  # views of each photo for training, embedded beside it


class ReduceSettings(Settings):
    """`reduce`: the PCA of the standardized embeddings."""

    variance_threshold: float = Field(gt=0, le=1)  # the smallest k whose share reaches this
    max_components: int = Field(gt=0)  # components fitted at most


class Candidate(Settings):
    """One classifier to try: its inputs, with or without the colour histogram, its L2 weight."""

    inputs: Inputs
    colour: bool
    reg_param: float = Field(ge=0)

    @model_validator(mode="after")
    def _colour_standardized(self) -> "Candidate":
        # Spark fits in standardized space: on their own scale the histogram's rare bins (variances
        # near 0) weigh the L2 penalty up by 1/variance. On the 95-class subset the fit stopped at
        # max_iter with 0.10 of the validation images right.
        if self.inputs == "embedding" and self.colour:
            raise ValueError(
                "train.selection candidate {inputs: embedding, colour: true}: the colour "
                "histogram cannot be learnt on its own scale (its rare bins keep the fit from "
                "converging); use `inputs: features` with the histogram, or `colour: false`."
            )
        return self

    def name(self) -> str:
        """What it takes and its regularization, e.g. `features + colour, reg_param 0.001`."""
        return f"{self.inputs}{' + colour' if self.colour else ''}, reg_param {self.reg_param}"


class SelectionSettings(Settings):
    """`train.selection`: the candidates, scored on validation images, and their fitting."""

    validation_ratio: float = Field(gt=0, lt=1)
    # The source whose images are the validation images (then no image of it is fitted on or
    # tested), or None: validation images drawn from every source's training images.
    validation_source: str | None = Field(min_length=1)
    candidates: tuple[Candidate, ...] = Field(min_length=1)
    max_iter: int = Field(gt=0)
    tol: float = Field(gt=0)
    elastic_net_param: float = Field(ge=0, le=1)
    block_size_mb: float = Field(gt=0)
    calibration_min_errors: int = Field(ge=0)


class SplitFolders(Settings):
    """Fruits-360's own split: the folders that hold the training and the test images."""

    train: str
    test: str


class ImagenetPriorSettings(Settings):
    """`train.imagenet_prior`: MobileNetV2's ImageNet head as a prior on the classifier's fruits."""

    beta: float = Field(ge=0)  # the prior's weight (0: the classifier alone)
    classes: dict[str, tuple[int, ...]]  # each fruit's ImageNet classes, by index in the head

    @model_validator(mode="after")
    def _classes_of_the_head(self) -> "ImagenetPriorSettings":
        for fruit, indices in self.classes.items():
            outside = [index for index in indices if not 0 <= index < IMAGENET_CLASSES]
            if outside or not indices:
                raise ValueError(
                    f"train.imagenet_prior.classes: {fruit!r} needs ImageNet class indices from "
                    f"0 to {IMAGENET_CLASSES - 1}, not {list(indices)}."
                )
        return self

    def classes_of(self, fruit: str) -> tuple[int, ...]:
        """The ImageNet classes of a fruit (none: it shares what the others leave)."""
        return self.classes.get(fruit, ())


class TrainSettings(Settings):
    """`train`: what it learns, the split, the PCA of the `pca` candidates, the selection, the
    "not sure" rule."""

    label_level: Literal["fruit", "variety"]  # the fruit (fruit_names) or the folder's name
    split_folders: SplitFolders
    seed: int
    train_ratio: float = Field(gt=0, lt=1)
    variance_threshold: float = Field(gt=0, le=1)
    max_components: int = Field(gt=0)
    selection: SelectionSettings
    keep_correct: float = Field(gt=0, le=1)  # share of right answers kept above the threshold...
    answer_precision: float | None = Field(gt=0, le=1)  # ...or, if set, the answers' accuracy
    imagenet_prior: ImagenetPriorSettings


class PredictSettings(Settings):
    """`predict`: what the batch predictions list."""

    top_labels: int = Field(gt=0)


class MaintainSettings(Settings):
    """`maintain`: how long the features table keeps files no current version uses."""

    retain_hours: float = Field(ge=0)
