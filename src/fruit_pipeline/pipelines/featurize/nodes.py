"""Nodes of the featurize pipeline (and of predict, which featurizes its new images whole)."""

from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import (
    COLOUR,
    ENGINE,
    FEATURES,
    FILE_VERSION,
    FRAMING,
    LABEL,
    LABEL_FOLDER,
    WEIGHTS_SHA256,
)
from fruit_pipeline.core import feature_model
from fruit_pipeline.core.images import EMPTY_FILE_REASON
from fruit_pipeline.parameters import FeaturizeSettings
from fruit_pipeline.spark import feature_table
from fruit_pipeline.spark.embedding import EMBEDDING_SCHEMA, embed_images
from fruit_pipeline.spark.feature_table import FeatureTableUpdate
from fruit_pipeline.spark.input_files import unread_files

# How each listed file (or table row) compares with the features table.
NEW, CHANGED, UNCHANGED, REMOVED = "new", "changed", "unchanged", "removed"
CHANGE = "change"
SOURCE = tuple(FILE_VERSION)


def label_images(raw_images: DataFrame, images_root: str) -> DataFrame:
    """Label each image file with the name of the folder that holds it."""
    if not raw_images.inputFiles():
        raise ValueError(
            f"No image files found under {images_root} (images_root): it must hold one folder "
            "per class of .jpg files. Point it elsewhere with `--params images_root=...`."
        )
    return raw_images.select("path", _folder_name("path").alias(LABEL), *SOURCE, "content")


def plan_featurization(
    labelled_images: DataFrame, feature_table_state: DataFrame, featurize: FeaturizeSettings
) -> DataFrame:
    """Compare the listed files with the features table: new, changed, unchanged or removed."""
    if not featurize.full_refresh:
        _refuse_another_feature_model(feature_table_state, featurize)
    # Only the files' metadata is read: in as many tasks as cores, not one per ~30 files.
    spark = labelled_images.sparkSession
    listed = labelled_images.select("path", LABEL, *SOURCE).coalesce(
        spark.sparkContext.defaultParallelism
    )
    in_table = feature_table_state.select(
        "path", *[F.col(column).alias(f"table_{column}") for column in SOURCE]
    )
    same_file = (F.col("length") == F.col("table_length")) & (
        F.col("modificationTime") == F.col("table_modificationTime")
    )
    change = (
        F.when(F.col("table_length").isNull(), NEW)
        .when(F.col("length").isNull(), REMOVED)
        .when(same_file, UNCHANGED)
        .otherwise(CHANGED)
    )
    # Computed now and cut from its sources: the table changes when this run commits.
    return (
        listed.join(in_table, "path", "full_outer")
        .select("path", LABEL, *SOURCE, change.alias(CHANGE))
        .localCheckpoint()
    )


def featurize_changes(
    labelled_images: DataFrame, featurization_plan: DataFrame, featurize: FeaturizeSettings
) -> tuple[FeatureTableUpdate, pd.DataFrame]:
    """Embed the new and changed files (all with full_refresh); the table's update and rejects."""
    wanted = [NEW, CHANGED, UNCHANGED] if featurize.full_refresh else [NEW, CHANGED]
    to_embed = featurization_plan.where(F.col(CHANGE).isin(wanted)).select("path", *SOURCE)
    images = labelled_images.join(to_embed, ["path", *SOURCE], "left_semi")
    embedded = _embed(images, to_embed.count(), featurize)
    identity = _feature_model(featurize)
    rows = embedded.where(F.col("reason").isNull()).select(
        "path",
        LABEL,
        *SOURCE,
        FEATURES,
        COLOUR,
        F.lit(identity["weights_sha256"]).cast("string").alias(WEIGHTS_SHA256),
        F.lit(identity["engine"]).alias(ENGINE),
        F.lit(identity["framing"]).alias(FRAMING),
    )
    # A changed file that no longer decodes leaves the table with the gone ones.
    removed = (
        featurization_plan.where(F.col(CHANGE) == REMOVED)
        .select("path")
        .unionByName(embedded.where(F.col("reason").isNotNull()).select("path"))
    )
    update = FeatureTableUpdate(rows=rows, removed=removed, replace_all=featurize.full_refresh)
    listed = featurization_plan.where(F.col(CHANGE) != REMOVED)
    return update, _rejects(labelled_images, listed, embedded)


def summarize_table_update(
    labelled_images: DataFrame,
    featurization_plan: DataFrame,
    image_features: DataFrame,
    image_rejects: pd.DataFrame,
    featurize: FeaturizeSettings,
) -> dict[str, Any]:
    """Count what the run found and did; fail unless each listed file is in the table or the
    rejects, once."""
    listed = len(labelled_images.inputFiles())
    changes = dict.fromkeys((NEW, CHANGED, UNCHANGED, REMOVED), 0) | {
        row[CHANGE]: row["count"] for row in featurization_plan.groupBy(CHANGE).count().collect()
    }
    wanted = [NEW, CHANGED, UNCHANGED] if featurize.full_refresh else [NEW, CHANGED]
    # Each table row with what the plan said of its file (one plan row per path), counted in
    # one pass: rows, paths, rows of files not listed, rows embedded by this run.
    change = F.col(CHANGE)
    table_rows, table_paths, unlisted, featurized = (
        image_features.select("path")
        .join(featurization_plan.select("path", CHANGE), "path", "left")
        .select(
            F.count("*"),
            F.count_distinct("path"),
            F.count_if(change.isNull() | (change == REMOVED)),
            F.count_if(change.isin(wanted)),
        )
        .head()
    )
    rejected = len(image_rejects)
    if table_rows != table_paths or unlisted or table_rows + rejected != listed:
        raise RuntimeError(
            f"{listed} files were listed, but the features table holds {table_rows} rows "
            f"({table_paths} paths, {unlisted} of files not listed) and {rejected} were "
            "rejected: each listed file must be in the table or the rejects, once."
        )
    return {
        "files_listed": listed,
        **{f"files_{change}": count for change, count in changes.items()},
        "full_refresh": featurize.full_refresh,
        "featurized": featurized,
        "rejected": rejected,
        "rejected_by_reason": _reasons(image_rejects),
        "table_rows": table_rows,
        "table_version": feature_table.version_of(image_features),
        "images_by_label": _images_by_label(image_features),
        # What made the features: the classifier trained on them expects the same.
        "feature_model": _feature_model(featurize),
    }


def featurize_images(
    labelled_images: DataFrame, featurize: FeaturizeSettings
) -> tuple[DataFrame, pd.DataFrame]:
    """Embed every image with MobileNetV2, describe its colour; set apart the unreadable files."""
    embedded = _embed(labelled_images, labelled_images.count(), featurize)
    image_features = embedded.where(F.col("reason").isNull()).select(
        "path", LABEL, FEATURES, COLOUR
    )
    return image_features, _rejects(labelled_images, labelled_images, embedded)


def summarize_featurization(
    raw_images: DataFrame,
    image_features: DataFrame,
    image_rejects: pd.DataFrame,
    featurize: FeaturizeSettings,
) -> dict[str, Any]:
    """Count listed, featurized and rejected files (fail if any went missing); name the model."""
    listed = len(raw_images.inputFiles())
    images_by_label = _images_by_label(image_features)
    featurized = sum(images_by_label.values())
    rejected = len(image_rejects)
    if featurized + rejected != listed:
        raise RuntimeError(
            f"{listed} files were listed but {featurized} featurized + {rejected} rejected "
            f"= {featurized + rejected}: files were lost or counted twice."
        )
    return {
        "files_listed": listed,
        "featurized": featurized,
        "rejected": rejected,
        "rejected_by_reason": _reasons(image_rejects),
        "images_by_label": images_by_label,
        "feature_model": _feature_model(featurize),
    }


def _embed(images: DataFrame, total: int, featurize: FeaturizeSettings) -> DataFrame:
    # With nothing to embed, no model is loaded and no inference engine starts.
    if not total:
        return images.sparkSession.createDataFrame([], EMBEDDING_SCHEMA)
    return embed_images(images, featurize, total)


def _rejects(labelled_images: DataFrame, rows: DataFrame, embedded: DataFrame) -> pd.DataFrame:
    # Spark lists files of 0 bytes but yields no row for them (`rows`): they are rejected here.
    unread = unread_files(labelled_images, rows.select("path")).select(
        "path", _folder_name("path").alias(LABEL), F.lit(EMPTY_FILE_REASON).alias("reason")
    )
    return (
        embedded.where(F.col("reason").isNotNull())
        .select("path", LABEL, "reason")
        .unionByName(unread)
        .orderBy("path")
        .toPandas()
    )


def _feature_model(featurize: FeaturizeSettings) -> dict[str, Any]:
    return feature_model.identity(featurize.weights, featurize.engine, featurize.framing)


def _refuse_another_feature_model(
    feature_table_state: DataFrame, featurize: FeaturizeSettings
) -> None:
    re_embed = "re-embed every image with `--params featurize.full_refresh=true`"
    if FRAMING not in feature_table_state.columns:
        raise ValueError(
            "The features table predates featurize.framing (its photos were squashed to a "
            f"square, this run frames them by {featurize.framing!r}): {re_embed}."
        )
    expected = _feature_model(featurize)
    models = feature_table_state.select(WEIGHTS_SHA256, FRAMING).distinct().collect()
    weights = {row[WEIGHTS_SHA256] for row in models}
    if weights - {expected["weights_sha256"]}:
        raise ValueError(
            f"The features table holds features of other weights (SHA-256 "
            f"{sorted(map(str, weights))}) than this run's featurize.weights="
            f"{featurize.weights!r} (SHA-256 {expected['weights_sha256']}). Features of "
            f"different weights cannot be mixed: {re_embed}, or set featurize.weights back."
        )
    framings = {row[FRAMING] for row in models}
    if framings - {featurize.framing}:
        raise ValueError(
            f"The features table holds features of photos framed by {sorted(framings)}, this "
            f"run's featurize.framing is {featurize.framing!r}. Features of different framings "
            f"cannot be mixed: {re_embed}, or set featurize.framing back."
        )


def _images_by_label(image_features: DataFrame) -> dict[str, int]:
    return {
        row[LABEL]: row["count"]
        for row in image_features.groupBy(LABEL).count().orderBy(LABEL).collect()
    }


def _reasons(image_rejects: pd.DataFrame) -> dict[str, int]:
    return {reason: int(count) for reason, count in image_rejects["reason"].value_counts().items()}


def _folder_name(path: str) -> Column:
    return F.regexp_extract(path, LABEL_FOLDER, 1)
