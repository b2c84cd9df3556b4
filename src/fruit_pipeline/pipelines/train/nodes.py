"""Nodes of the train pipeline."""

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import (
    IndexToString,
    PCAModel,
    StandardScalerModel,
    StringIndexer,
    VarianceThresholdSelectorModel,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import (
    ARRAY_OF_VECTOR,
    COLOUR_VECTOR,
    COMPONENTS,
    DESCRIPTORS,
    ENGINE,
    FOLDER_ABOVE_SPLIT,
    FRAMING,
    FRUIT,
    IMAGE_SOURCE,
    LABEL,
    LABEL_INDEX,
    LABELLED_FILE,
    PREDICTED_LABEL,
    PREDICTION_INDEX,
    RAW_PREDICTION,
    SCALED,
    SPLIT,
    SPLIT_FOLDER,
    TEST,
    TRAIN,
    UNRECORDED_FRAMING,
    VALIDATION,
    VARIETY,
    VECTOR,
    WEIGHTS_SHA256,
)
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.calibration import fit_temperature, log_loss, reliability, softmax
from fruit_pipeline.core.classifier_export import ExportedClassifier
from fruit_pipeline.core.figures import finish_line_chart
from fruit_pipeline.core.fruit_names import FruitNames
from fruit_pipeline.core.imagenet_prior import ImagenetHead, ImagenetPrior, head_of_weights
from fruit_pipeline.parameters import (
    INPUTS,
    Candidate,
    ImagenetPriorSettings,
    SelectionSettings,
    TrainSettings,
)
from fruit_pipeline.spark.feature_table import version_of
from fruit_pipeline.spark.imagenet_prior import prior_offsets
from fruit_pipeline.spark.ml_stages import stage
from fruit_pipeline.spark.pca import as_vectors, fit_scaled_pca, fit_standardizer
from fruit_pipeline.spark.views import with_views, without_views

logger = logging.getLogger(__name__)


def name_fruits(
    image_features: DataFrame, fruit_names: FruitNames, train: TrainSettings
) -> DataFrame:
    """Give each image its fruit, its variety and its source; `label` becomes the level train
    learns."""
    examples = {
        row[LABEL]: row["path"]
        for row in image_features.groupBy(LABEL).agg(F.min("path").alias("path")).collect()
    }
    fruits = fruit_names.fruits_of(examples)
    fruit_of = F.create_map(*(F.lit(value) for pair in fruits.items() for value in pair))
    named = image_features.withColumn(VARIETY, F.col(LABEL)).withColumn(
        FRUIT, fruit_of[F.col(LABEL)]
    )
    above_label = F.regexp_extract("path", SPLIT_FOLDER, 1)
    split_folders = [train.split_folders.train, train.split_folders.test]
    source = F.when(
        above_label.isin(split_folders), F.regexp_extract("path", FOLDER_ABOVE_SPLIT, 1)
    ).otherwise(above_label)
    return named.withColumn(
        LABEL, F.col(FRUIT if train.label_level == "fruit" else VARIETY)
    ).withColumn(IMAGE_SOURCE, source)


def assign_split(image_features: DataFrame, train: TrainSettings) -> DataFrame:
    """Add `split`: test from the data set's folders (else seeded), validation carved from train
    (or every image of `train.selection.validation_source`)."""
    held_out = train.selection.validation_source
    rest = image_features
    if held_out is not None:
        check_validation_source(image_features, held_out)
        rest = image_features.where(F.col(IMAGE_SOURCE) != held_out)
    split_folder = F.regexp_extract("path", SPLIT_FOLDER, 1)
    folders = train.split_folders
    from_folders = F.when(split_folder == folders.train, TRAIN).when(
        split_folder == folders.test, TEST
    )
    sides = {row[0] for row in rest.select(from_folders).distinct().collect()}
    if sides == {TRAIN, TEST}:
        split = from_folders
    else:
        logger.info(
            "The images do not all sit under %s/ and %s/ with both present: splitting at random "
            "(seed %s, %.0f%% train).",
            folders.train,
            folders.test,
            train.seed,
            100 * train.train_ratio,
        )
        split = F.when(_draw(train.seed) < train.train_ratio, TRAIN).otherwise(TEST)
    if held_out is None:
        # Another draw (seed + 1) sets the validation images apart, inside the training side.
        validation = (split == TRAIN) & (_draw(train.seed + 1) < train.selection.validation_ratio)
    else:
        validation = F.col(IMAGE_SOURCE) == held_out
    return image_features.withColumn(SPLIT, F.when(validation, VALIDATION).otherwise(split))


def check_validation_source(image_features: DataFrame, held_out: str) -> None:
    """Refuse a validation source that has no images, or that leaves no other to fit on."""
    sources = sorted(row[0] for row in image_features.select(IMAGE_SOURCE).distinct().collect())
    if held_out not in sources:
        raise ValueError(
            f"train.selection.validation_source {held_out!r} is not a source of the images: "
            f"they come from {sources}."
        )
    if len(sources) == 1:
        raise ValueError(
            f"train.selection.validation_source {held_out!r} is the images' only source: "
            "nothing would be left to fit the candidates on. Add images of another source or "
            "set it to null."
        )


def _draw(seed: int) -> Column:
    # A hash of the class folder and file name, not rand() nor the whole path: each image keeps
    # its split whatever the partitioning and wherever the images live (a folder, a bucket).
    image = F.regexp_extract("path", LABELLED_FILE, 1)
    return F.abs(F.xxhash64(image, F.lit(seed))) % 1_000_000 / 1_000_000


@dataclass(frozen=True)
class PriorHead:
    """The ImageNet head the prior uses, or None: no prior. Kedro hands no None from one node to
    the next, so "no prior" travels in this wrapper too."""

    head: ImagenetHead | None = None


NO_PRIOR = PriorHead()


def load_imagenet_head(
    training_feature_model: dict[str, Any], fruit_names: FruitNames, train: TrainSettings
) -> PriorHead:
    """The ImageNet head of the features' weights file, for the prior (none: no prior)."""
    # A fruit the names file does not give would never meet a label: its classes, silently unused.
    unknown = sorted(set(train.imagenet_prior.classes) - set(fruit_names.root))
    if unknown:
        raise ValueError(
            f"train.imagenet_prior.classes names {unknown}, which conf/base/"
            "parameters_fruit_names.yml does not list as fruits: use the fruits' names there "
            f"({', '.join(sorted(fruit_names.root)[:5])}, ...)."
        )
    if train.imagenet_prior.beta == 0:
        logger.info("train.imagenet_prior.beta is 0: the classifier answers alone.")
        return NO_PRIOR
    source, checksum = training_feature_model["weights"], training_feature_model["weights_sha256"]
    if checksum is None:
        logger.warning(
            "The features come from random weights (featurize.weights null): they have no "
            "ImageNet head, the classifier answers without the prior."
        )
        return NO_PRIOR
    if source is None:
        raise ValueError(
            "train.imagenet_prior needs the weights file the features were made with, which the "
            f"featurize summary does not name (weights SHA-256 {checksum}): run `kedro run "
            "--pipelines featurize` with those weights, or set train.imagenet_prior.beta to 0."
        )
    return PriorHead(head_of_weights(source))


def select_classifier(
    split_features: DataFrame, train: TrainSettings, imagenet_head: PriorHead = NO_PRIOR
) -> dict[str, Any]:
    """Fit each candidate on train, score it on validation (with the ImageNet prior, if any);
    keep the best, fit its calibration."""
    selection = train.selection
    prior_record = imagenet_prior_record(split_features, imagenet_head.head, train.imagenet_prior)
    training = as_vectors(with_views(split_features.where(F.col(SPLIT) == TRAIN))).persist()
    validation = as_vectors(without_views(split_features.where(F.col(SPLIT) == VALIDATION)))
    validation = validation.persist()
    if validation.isEmpty():
        raise ValueError(
            "No validation images: raise train.selection.validation_ratio or add training images."
        )
    inputs_by_kind: dict[tuple[str, bool], tuple[PipelineModel, str, dict[str, Any]]] = {}
    candidates, margins = [], {}
    for candidate in selection.candidates:
        started = time.perf_counter()
        kind = (candidate.inputs, candidate.colour)
        if kind not in inputs_by_kind:
            inputs_by_kind[kind] = fit_inputs(training, *kind, train)
        model, report = fit_classifier(training, inputs_by_kind[kind], candidate, selection)
        prior = label_prior(model, imagenet_head.head, prior_record)
        scored = score(model, validation, prior)
        name = candidate.name()
        margins[name] = scored
        candidates.append(
            {
                "name": name,
                **candidate.model_dump(),
                **report,
                "validation_accuracy": float(np.mean(scored.predicted() == scored.labels)),
                "validation_log_loss": log_loss(scored.margins, scored.labels, 1.0, scored.offsets),
                "seconds": time.perf_counter() - started,
            }
        )
        logger.info(
            "Candidate %s: %s",
            name,
            {k: candidates[-1][k] for k in ("validation_accuracy", "converged")},
        )
    training.unpersist()
    validation.unpersist()
    best = max(candidates, key=lambda c: (c["validation_accuracy"], -c["validation_log_loss"]))
    chosen_candidate = selection.candidates[candidates.index(best)]
    chosen = margins[best["name"]]
    errors = int(np.sum(chosen.predicted() != chosen.labels))
    # Without errors on validation, log loss falls as T -> 0: a fit would only make every
    # answer "certain". Then the margins are kept as they are (T = 1).
    fitted = errors >= selection.calibration_min_errors
    temperature = fit_temperature(chosen.margins, chosen.labels, chosen.offsets) if fitted else 1.0
    calibrated = chosen.probabilities(temperature)
    top, correct = calibrated.max(axis=1), chosen.predicted(temperature) == chosen.labels
    if train.answer_precision is None:
        unknown = unknown_threshold(top, correct, train.keep_correct)
    else:
        unknown = precision_threshold(top, correct, train.answer_precision)
    return {
        "candidates": candidates,
        "chosen": {"name": best["name"], **chosen_candidate.model_dump()},
        "validation_images": len(chosen.labels),
        "validation_errors": errors,
        "temperature": temperature,
        "temperature_fitted": fitted,
        "validation_log_loss_calibrated": log_loss(
            chosen.margins, chosen.labels, temperature, chosen.offsets
        ),
        "validation_accuracy_without_imagenet_prior": float(
            np.mean(chosen.margins.argmax(axis=1) == chosen.labels)
        ),
        "imagenet_prior": prior_record,
        "validation_source": selection.validation_source,
        "unknown_threshold": unknown["threshold"],
        "unknown_rule": unknown,
    }


def train_classifier(
    split_features: DataFrame, classifier_selection: dict[str, Any], train: TrainSettings
) -> tuple[PipelineModel, dict[str, Any]]:
    """Refit the chosen candidate on every training image (validation included) and its views."""
    photos = split_features.where(F.col(SPLIT).isin(TRAIN, VALIDATION))
    training = as_vectors(with_views(photos)).persist()
    chosen = classifier_selection["chosen"]
    candidate = Candidate.model_validate({k: v for k, v in chosen.items() if k != "name"})
    inputs = fit_inputs(training, candidate.inputs, candidate.colour, train)
    model, report = fit_classifier(training, inputs, candidate, train.selection)
    training.unpersist()
    return model, {
        **inputs[2],
        **report,
        "chosen": chosen["name"],
        "train_images": photos.count(),
    }


def fit_inputs(
    training: DataFrame, kind: str, colour: bool, train: TrainSettings
) -> tuple[PipelineModel, str, dict[str, Any]]:
    """The classifier's input stages: the embedding (with the colour histogram if asked)
    assembled, then standardization and PCA (`pca`), standardization only (`features`) or
    centring only (`embedding`)."""
    if colour and COLOUR_VECTOR not in training.columns:
        raise ValueError(
            "A candidate asks for the colour histogram but image_features has no `colour` "
            "column (it predates it): run `kedro run --pipelines featurize --params "
            "featurize.full_refresh=true`, or drop `colour: true` from the candidates."
        )
    assembler = VectorAssembler(
        inputCols=[VECTOR, COLOUR_VECTOR] if colour else [VECTOR], outputCol=DESCRIPTORS
    )
    assembled = assembler.transform(training)
    if kind == "pca":
        fit = fit_scaled_pca(assembled, train.variance_threshold, train.max_components, DESCRIPTORS)
        return (
            PipelineModel([assembler, *fit.model.stages]),
            COMPONENTS,
            {
                "inputs": "pca",
                "colour": colour,
                "components": fit.components,
                "constant_features_dropped": fit.constant_features,
                "explained_variance": [float(share) for share in fit.explained_variance],
                "training_rows": fit.image_count,
            },
        )
    if kind in ("features", "embedding"):
        standardizer = fit_standardizer(assembled, DESCRIPTORS, scale=kind == "features")
        return (
            PipelineModel([assembler, *standardizer.stages]),
            SCALED,
            {
                "inputs": kind,
                "colour": colour,
                "components": None,
                "training_rows": training.count(),
            },
        )
    raise ValueError(f"train.selection candidate inputs {kind!r}: use one of {', '.join(INPUTS)}.")


def fit_classifier(
    training: DataFrame,
    inputs: tuple[PipelineModel, str, dict[str, Any]],
    candidate: Candidate,
    selection: SelectionSettings,
) -> tuple[PipelineModel, dict[str, Any]]:
    """Label indexer, input stages, multinomial logistic regression and label names, fitted."""
    input_model, input_column, _ = inputs
    labels = StringIndexer(inputCol=LABEL, outputCol=LABEL_INDEX, handleInvalid="keep")
    label_indexer = labels.fit(training)
    stages: list[Any] = [label_indexer, *input_model.stages]
    regression = LogisticRegression(
        featuresCol=input_column,
        labelCol=LABEL_INDEX,
        predictionCol=PREDICTION_INDEX,
        family="multinomial",
        maxIter=selection.max_iter,
        tol=selection.tol,
        regParam=candidate.reg_param,
        elasticNetParam=selection.elastic_net_param,
        maxBlockSizeInMB=selection.block_size_mb,
        # Spark's default weighs the L2 penalty on standardized coefficients: `embedding`
        # candidates take the penalty on the features' own scale.
        standardization=candidate.inputs != "embedding",
    ).fit(PipelineModel(stages).transform(training))
    iterations = regression.summary.totalIterations
    names = IndexToString(
        inputCol=PREDICTION_INDEX, outputCol=PREDICTED_LABEL, labels=label_indexer.labels
    )
    report = {"iterations": iterations, "converged": iterations < selection.max_iter}
    return PipelineModel([*stages, regression, names]), report


def imagenet_prior_record(
    split_features: DataFrame, head: ImagenetHead | None, settings: ImagenetPriorSettings
) -> dict[str, Any] | None:
    """The prior's weight and each label's ImageNet classes, through its fruit (None: no prior;
    a label is its own fruit where the rows name none)."""
    if head is None:
        return None
    fruit = F.col(FRUIT) if FRUIT in split_features.columns else F.col(LABEL)
    fruit_of = dict(split_features.select(LABEL, fruit).distinct().collect())
    return {
        "beta": settings.beta,
        "label_classes": {
            label: list(settings.classes_of(fruit)) for label, fruit in sorted(fruit_of.items())
        },
    }


def label_prior(
    model: PipelineModel, head: ImagenetHead | None, record: dict[str, Any] | None
) -> ImagenetPrior | None:
    """The ImageNet prior on a fitted classifier's labels, in their order (None: none)."""
    if head is None or record is None:
        return None
    labels = stage(model, IndexToString).getLabels()
    classes = tuple(tuple(record["label_classes"][label]) for label in labels)
    return ImagenetPrior(head=head, label_classes=classes, beta=record["beta"])


@dataclass(frozen=True)
class Scored:
    """A model's margins for labelled images, as numpy arrays on the driver."""

    margins: np.ndarray  # (images, classes)
    offsets: np.ndarray | float  # the ImageNet prior's `beta log q` (images, classes), or 0
    truth: list[str]  # the true label of each image
    labels: np.ndarray  # index of each true label in the model's labels, -1 if unknown to it
    sources: list[str]  # each image's source (empty where the images have none)

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """The answers' probabilities: the margins / T and the prior's offsets, softmaxed."""
        return softmax(self.margins, temperature, self.offsets)

    def predicted(self, temperature: float = 1.0) -> np.ndarray:
        """The index of each image's answer."""
        return self.probabilities(temperature).argmax(axis=1)


def score(model: PipelineModel, images: DataFrame, prior: ImagenetPrior | None) -> Scored:
    """The raw margins of a fitted classifier for labelled images, and the prior's offsets."""
    known = list(stage(model, IndexToString).getLabels())
    source = F.col(IMAGE_SOURCE) if IMAGE_SOURCE in images.columns else F.lit("")
    columns = stage(model, LogisticRegressionModel).numClasses
    offsets = F.lit(None) if prior is None else prior_offsets(prior, columns)
    rows = (
        model.transform(images)
        .select(
            LABEL,
            source.alias(IMAGE_SOURCE),
            vector_to_array(RAW_PREDICTION).alias("margins"),
            offsets.alias("offsets"),
        )
        .toPandas()
    )
    margins = np.stack(rows["margins"]) if len(rows) else np.zeros((0, len(known)))
    index = {label: i for i, label in enumerate(known)}
    labels = np.array([index.get(label, -1) for label in rows[LABEL]], dtype=np.int64)
    return Scored(
        margins=margins,
        offsets=np.stack(rows["offsets"]) if prior is not None and len(rows) else 0.0,
        truth=list(rows[LABEL]),
        labels=labels,
        sources=list(rows[IMAGE_SOURCE]),
    )


def true_label_probability(probabilities: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The probability given to each true label (0 for a label the classifier does not know)."""
    picked = probabilities[np.arange(len(labels)), np.maximum(labels, 0)]
    return np.where(labels >= 0, picked, 0.0)


def evaluate_classifier(
    split_features: DataFrame,
    classifier: PipelineModel,
    classifier_inputs: dict[str, Any],
    classifier_selection: dict[str, Any],
    imagenet_head: PriorHead = NO_PRIOR,
) -> dict[str, Any]:
    """Test-image metrics of the chosen classifier (with the ImageNet prior, if any): accuracy,
    F1, calibration, unknown answers."""
    test_images = without_views(split_features.where(F.col(SPLIT) == TEST))
    prior = label_prior(classifier, imagenet_head.head, classifier_selection.get("imagenet_prior"))
    scored = score(classifier, as_vectors(test_images), prior)
    if not len(scored.labels):
        raise ValueError("No test images: the split left every image in training.")
    names = list(stage(classifier, IndexToString).getLabels())
    temperature = classifier_selection["temperature"]
    predicted = scored.predicted(temperature)
    counts = (
        pd.DataFrame({"label": scored.truth, "predicted_label": [names[i] for i in predicted]})
        .value_counts()
        .rename("count")
        .reset_index()
    )
    calibrated, raw = scored.probabilities(temperature), scored.probabilities()
    true_probability = true_label_probability(calibrated, scored.labels)
    correct = predicted == scored.labels
    without_prior = scored.margins.argmax(axis=1) == scored.labels
    answered = calibrated.max(axis=1) >= classifier_selection["unknown_threshold"]
    source = classifier_selection["validation_source"]
    chosen_on = "validation images" + (f" (source {source})" if source else "")
    return {
        **classification_metrics(counts),
        "log_loss": log_loss(scored.margins, scored.labels, temperature, scored.offsets),
        "log_loss_uncalibrated": log_loss(scored.margins, scored.labels, 1.0, scored.offsets),
        "mean_true_label_probability": float(true_probability.mean()),
        "calibration": {
            "temperature": temperature,
            "fitted_on": chosen_on,
            **reliability(calibrated, scored.labels),
            "expected_calibration_error_uncalibrated": reliability(raw, scored.labels)[
                "expected_calibration_error"
            ],
        },
        "unknown_answer": {
            "threshold": classifier_selection["unknown_threshold"],
            "chosen_on": chosen_on,
            **{
                key: value
                for key, value in classifier_selection["unknown_rule"].items()
                if key in UNKNOWN_RULE
            },
            "answered_share": float(answered.mean()),
            "answered_accuracy": float(correct[answered].mean()) if answered.any() else None,
        },
        "accuracy_without_imagenet_prior": float(without_prior.mean()),
        "per_source": per_source(scored.sources, correct, answered, without_prior),
        "selection": classifier_selection,
        "features_version": version_of(split_features),
        "train_images": classifier_inputs["train_images"],
        "training_rows": classifier_inputs["training_rows"],
        "inputs": classifier_inputs["inputs"],
        "colour": classifier_inputs["colour"],
        "pca_components": classifier_inputs["components"],
        "pca_explained_variance": classifier_inputs.get("explained_variance"),
        "constant_features_dropped": classifier_inputs.get("constant_features_dropped"),
        "converged": classifier_inputs["converged"],
    }


# What the "not sure" threshold was chosen for.
UNKNOWN_RULE = ("keep_correct", "answer_precision", "precision_reached")


def per_source(
    sources: list[str], correct: np.ndarray, answered: np.ndarray, without_prior: np.ndarray
) -> dict[str, Any]:
    """Each source's test images: accuracy (and without the ImageNet prior), "right" (a "not
    sure" counts as not right), the share answered and the accuracy of the answers."""
    origin = np.asarray(sources)
    report = {}
    for source in sorted(set(sources)):
        mine = origin == source
        right, sure = correct[mine], answered[mine]
        report[source] = {
            "images": int(mine.sum()),
            "accuracy": float(right.mean()),
            "accuracy_without_imagenet_prior": float(without_prior[mine].mean()),
            "right": float((right & sure).mean()),
            "answered_share": float(sure.mean()),
            "answered_accuracy": float(right[sure].mean()) if sure.any() else None,
        }
    return report


def unknown_threshold(top: np.ndarray, correct: np.ndarray, keep_correct: float) -> dict[str, Any]:
    """The lowest top probability that still answers `keep_correct` of the correct predictions."""
    correct_tops = np.sort(top[correct])[::-1]
    if not len(correct_tops):
        raise ValueError("No image is classified correctly: no threshold can be chosen.")
    threshold = float(correct_tops[max(math.ceil(keep_correct * len(correct_tops)) - 1, 0)])
    return threshold_report(threshold, top, correct, keep_correct=keep_correct)


def precision_threshold(top: np.ndarray, correct: np.ndarray, precision: float) -> dict[str, Any]:
    """The lowest top probability above which the answers are right `precision` of the time (if
    none is, the one whose answers are right most often)."""
    order = np.argsort(-top, kind="stable")
    ranked_top, ranked_correct = top[order], correct[order]
    accuracy = np.cumsum(ranked_correct) / np.arange(1, len(top) + 1)
    # A threshold answers every image whose top probability reaches it: only the last of
    # equal probabilities is a place to cut.
    cuts = np.append(ranked_top[1:] != ranked_top[:-1], True)
    reaching = np.flatnonzero(cuts & (accuracy >= precision))
    reached = bool(len(reaching))
    if reached:
        last = reaching[-1]
    else:
        at_cuts = np.flatnonzero(cuts)
        last = at_cuts[np.flatnonzero(accuracy[at_cuts] == accuracy[at_cuts].max())[-1]]
        logger.warning(
            "No threshold gives validation answers right %.3f of the time: the best, %.3f, "
            "answers %d of %d images.",
            precision,
            accuracy[last],
            last + 1,
            len(top),
        )
    return threshold_report(
        float(ranked_top[last]),
        top,
        correct,
        answer_precision=precision,
        precision_reached=reached,
    )


def threshold_report(
    threshold: float, top: np.ndarray, correct: np.ndarray, **rule: float | bool
) -> dict[str, Any]:
    """A threshold, the rule that chose it, and what it does to the validation answers."""
    answered = top >= threshold
    return {
        "threshold": threshold,
        **rule,
        "images": len(top),
        "answered_share": float(answered.mean()),
        "answered_accuracy": float(correct[answered].mean()),
        "accuracy_without_threshold": float(correct.mean()),
    }


def identify_feature_model(
    split_features: DataFrame, featurize_summary: dict[str, Any]
) -> dict[str, Any]:
    """The feature model of the rows the classifier learns from, as the export names it."""
    framing = F.col(FRAMING) if FRAMING in split_features.columns else F.lit(UNRECORDED_FRAMING)
    models = split_features.select(WEIGHTS_SHA256, ENGINE, framing).distinct().collect()
    if len(models) != 1:
        raise ValueError(
            f"The features read were made by {len(models)} feature models, not one: "
            f"{[tuple(row) for row in models]} (weights SHA-256, engine, framing)."
        )
    checksum, engine, framing = models[0]
    summarized = featurize_summary.get("feature_model") or {}
    # The weights' source (`imagenet`, a path) is known only from the featurize run that made
    # these rows: an earlier table version (`features_version`) may hold other weights.
    source = summarized.get("weights") if summarized.get("weights_sha256") == checksum else None
    return feature_model.described(source, checksum, engine, framing)


def export_classifier(
    classifier: PipelineModel,
    classification_metrics: dict[str, Any],
    training_feature_model: dict[str, Any],
    imagenet_head: PriorHead = NO_PRIOR,
) -> dict[str, Any]:
    """The fitted classifier as plain numbers, with the ImageNet prior it answers with, the
    feature model it expects and its metrics."""
    pca = [candidate for candidate in classifier.stages if isinstance(candidate, PCAModel)]
    scaler = stage(classifier, StandardScalerModel)
    regression = stage(classifier, LogisticRegressionModel)
    selector = stage(classifier, VarianceThresholdSelectorModel)
    assembler = stage(classifier, VectorAssembler)
    selection = classification_metrics["selection"]
    exported_metrics = (
        "accuracy",
        "macro_f1",
        "log_loss",
        "test_images",
        "train_images",
        "classes",
    )
    return ExportedClassifier(
        labels=list(stage(classifier, IndexToString).getLabels()),
        descriptors=[ARRAY_OF_VECTOR[column] for column in assembler.getInputCols()],
        selected_features=np.asarray(selector.selectedFeatures),
        mean=scaler.mean.toArray(),
        std=scaler.std.toArray() if scaler.getWithStd() else np.ones(scaler.std.size),
        components=pca[0].pc.toArray() if pca else None,
        coefficients=regression.coefficientMatrix.toArray(),
        intercepts=regression.interceptVector.toArray(),
        temperature=selection["temperature"],
        prior=label_prior(classifier, imagenet_head.head, selection.get("imagenet_prior")),
        unknown_threshold=selection["unknown_threshold"],
        feature_model=training_feature_model,
        metrics={key: classification_metrics[key] for key in exported_metrics}
        | {
            "expected_calibration_error": classification_metrics["calibration"][
                "expected_calibration_error"
            ],
            "unknown_answer": classification_metrics["unknown_answer"],
        },
    ).to_document()


def classification_metrics(counts: pd.DataFrame) -> dict[str, Any]:
    """Metrics from (label, predicted_label, count) rows: one row per pair that occurred."""
    classes = sorted(set(counts["label"]) | set(counts["predicted_label"]))
    confusion = (
        counts.pivot_table(
            index="label", columns="predicted_label", values="count", aggfunc="sum", fill_value=0
        )
        .reindex(index=classes, columns=classes, fill_value=0)
        .to_numpy()
    )
    true_positives = np.diag(confusion)
    support = confusion.sum(axis=1)
    predicted = confusion.sum(axis=0)
    precision = np.divide(
        true_positives, predicted, out=np.zeros(len(classes)), where=predicted > 0
    )
    recall = np.divide(true_positives, support, out=np.zeros(len(classes)), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(len(classes)), where=total > 0)
    has_support = support > 0
    return {
        "accuracy": float(true_positives.sum() / confusion.sum()),
        "macro_f1": float(f1[has_support].mean()),
        "test_images": int(confusion.sum()),
        "classes": int(has_support.sum()),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(classes)
        },
        "confusion_matrix": {"labels": classes, "counts": confusion.tolist()},
    }


def plot_confusion_matrix(classification_metrics: dict[str, Any]) -> Figure:
    """Row-normalised confusion matrix, classes sorted by name, readable up to hundreds of them."""
    labels = classification_metrics["confusion_matrix"]["labels"]
    counts = np.asarray(classification_metrics["confusion_matrix"]["counts"], dtype=float)
    support = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    size = max(6.0, 0.12 * len(labels) + 3)
    font = max(3.0, min(10.0, 500 / len(labels)))
    figure = Figure(figsize=(size, size * 0.9))
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=90, fontsize=font)
    axes.set_yticks(range(len(labels)), labels, fontsize=font)
    axes.set_xlabel("predicted label")
    axes.set_ylabel("true label")
    if len(labels) <= 30:
        for row, column in zip(*np.nonzero(counts), strict=True):
            axes.text(
                column,
                row,
                f"{shares[row, column]:.2f}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if shares[row, column] > 0.5 else "black",
            )
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04, label="share of the true label")
    axes.set_title(
        f"Test accuracy {classification_metrics['accuracy']:.3f}, macro F1 "
        f"{classification_metrics['macro_f1']:.3f} ({classification_metrics['test_images']} images)"
    )
    figure.tight_layout()
    return figure


def plot_reliability(classification_metrics: dict[str, Any]) -> Figure:
    """Accuracy against confidence on the test images, per bin of top probability."""
    calibration = classification_metrics["calibration"]
    bins = [b for b in calibration["bins"] if b["images"]]
    figure = Figure(figsize=(6, 6))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfectly calibrated")
    axes.plot(
        [b["mean_confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        marker="o",
        label=f"temperature {calibration['temperature']:.2f}",
    )
    for b in bins:
        axes.annotate(str(b["images"]), (b["mean_confidence"], b["accuracy"]), fontsize=7)
    title = (
        f"Test images: ECE {calibration['expected_calibration_error']:.3f} "
        f"(uncalibrated {calibration['expected_calibration_error_uncalibrated']:.3f})"
    )
    labels = ("mean top probability in the bin", "accuracy in the bin")
    finish_line_chart(axes, labels, title, "upper left", (0, 1.02), x_limits=(0, 1.02))
    return figure
