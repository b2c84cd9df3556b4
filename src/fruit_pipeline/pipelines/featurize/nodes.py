"""Nodes of the featurize pipeline (and of predict, which featurizes its new images whole).

featurize compares the listing with the table's index in pandas: a run with nothing new,
changed or removed reads no image and starts no Spark session.
"""

from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import (
    AUGMENTATION,
    COLOUR,
    DESCRIPTION,
    ENGINE,
    FEATURES,
    FILE_VERSION,
    FRAMING,
    INT8_ENGINE,
    LABEL,
    LABEL_FOLDER,
    WEIGHTS_SHA256,
)
from fruit_pipeline.core import feature_model, quantization
from fruit_pipeline.core.feature_model import INPUT_SIZE
from fruit_pipeline.core.images import EMPTY_FILE_REASON, ImageRejected, decode_image
from fruit_pipeline.datasets.feature_table import FeatureTableIndex
from fruit_pipeline.datasets.image_files import ImageFiles
from fruit_pipeline.parameters import FeaturizeSettings
from fruit_pipeline.spark.embedding import EMBEDDING_SCHEMA, embed_images
from fruit_pipeline.spark.feature_table import FeatureTableUpdate
from fruit_pipeline.spark.input_files import unread_files

# How each listed file (or table row) compares with the features table; a file the last run
# rejected, unchanged since, is not read again.
NEW, CHANGED, UNCHANGED, REMOVED = "new", "changed", "unchanged", "removed"
REJECTED_BEFORE = "rejected_before"
CHANGES = (NEW, CHANGED, UNCHANGED, REMOVED, REJECTED_BEFORE)
CHANGE = "change"
SOURCE = tuple(FILE_VERSION)
# featurize's rejects say which version of the file was rejected: the next run compares it.
REJECT_COLUMNS = ["path", LABEL, "reason", *SOURCE]
# A listed file that Spark's read did not yield (gone or replaced since it was listed).
NOT_READ_REASON = "listed but not read: removed or renamed while the run read the images"


def label_listed_images(raw_images: ImageFiles, images_root: str) -> pd.DataFrame:
    """List the image files (no Spark) and label each with the name of its folder."""
    listing = raw_images.listing()
    if listing.empty:
        raise _no_images(images_root)
    labels = listing["path"].str.extract(LABEL_FOLDER, expand=False)
    return listing[["path"]].assign(**{LABEL: labels}).join(listing[list(SOURCE)])


def label_images(raw_images: DataFrame, images_root: str) -> DataFrame:
    """Label each image file (Spark's binaryFile rows) with the name of its folder."""
    if not raw_images.inputFiles():
        raise _no_images(images_root)
    return raw_images.select("path", _folder_name("path").alias(LABEL), *SOURCE, "content")


def plan_featurization(
    labelled_images: pd.DataFrame,
    feature_table_state: FeatureTableIndex,
    previous_image_rejects: pd.DataFrame | None,
    featurize: FeaturizeSettings,
) -> pd.DataFrame:
    """Compare the listed files with the features table and the last run's rejects: new,
    changed, unchanged, removed or rejected before."""
    table = feature_table_state.rows
    if not featurize.full_refresh:
        _refuse_another_feature_model(table, featurize)
    in_table = table[["path", *SOURCE]].rename(columns={c: f"table_{c}" for c in SOURCE})
    both = labelled_images.merge(in_table, on="path", how="outer", indicator=True)
    both = both.merge(_rejected_versions(previous_image_rejects), on="path", how="left")
    listed_only, in_both = both["_merge"] == "left_only", both["_merge"] == "both"
    rejected_before = listed_only & _same_version(both, "rejected")
    change = np.select(
        [both["_merge"] == "right_only", in_both & _same_version(both, "table"), rejected_before],
        [REMOVED, UNCHANGED, REJECTED_BEFORE],
        np.where(listed_only, NEW, CHANGED),
    )
    both["reason"] = both["reason"].where(rejected_before)
    return both[["path", LABEL, *SOURCE, "reason"]].assign(**{CHANGE: change})


def featurize_changes(
    raw_images: ImageFiles, featurization_plan: pd.DataFrame, featurize: FeaturizeSettings
) -> tuple[FeatureTableUpdate, pd.DataFrame]:
    """Embed the new and changed files (all with full_refresh); the table's update and rejects."""
    plan = featurization_plan
    to_embed = plan[plan[CHANGE].isin(_wanted(featurize))]
    # Spark yields no row for a file of 0 bytes: it is rejected here, unread.
    empty = to_embed["length"] == 0
    rejects = [
        plan.loc[plan[CHANGE] == REJECTED_BEFORE, ["path", "reason"]],
        to_embed.loc[empty, ["path"]].assign(reason=EMPTY_FILE_REASON),
    ]
    to_read = to_embed[~empty]
    rows = None
    if not to_read.empty:
        listed = int((plan[CHANGE] != REMOVED).sum())
        rows, read_rejects = _embed_listed(raw_images, to_read, listed, featurize)
        rejects.append(read_rejects)
    rejected = (
        pd.concat(rejects, ignore_index=True)
        .merge(plan[["path", LABEL, *SOURCE]], on="path")
        .astype({"length": "int64"})
        .sort_values("path", ignore_index=True)
    )
    # A changed file that no longer decodes leaves the table with the gone ones.
    in_table = plan[CHANGE].isin([CHANGED, UNCHANGED])
    rejected_rows = plan["path"].isin(rejected["path"]) & in_table
    removed = tuple(plan.loc[(plan[CHANGE] == REMOVED) | rejected_rows, "path"])
    update = FeatureTableUpdate(rows=rows, removed=removed, replace_all=featurize.full_refresh)
    return update, rejected[REJECT_COLUMNS]


def summarize_table_update(
    featurization_plan: pd.DataFrame,
    image_rejects: pd.DataFrame,
    committed_feature_table: FeatureTableIndex,
    featurize: FeaturizeSettings,
) -> dict[str, Any]:
    """Count what the run found and did; fail unless each listed file is in the table or the
    rejects, once."""
    plan = featurization_plan
    changes = dict.fromkeys(CHANGES, 0) | {
        change: int(count) for change, count in plan[CHANGE].value_counts().items()
    }
    listed = len(plan) - changes[REMOVED]
    # Each table row with what the plan said of its file (one plan row per path).
    table = committed_feature_table.rows[["path", LABEL]]
    said = table.merge(plan[["path", CHANGE]].drop_duplicates("path"), on="path", how="left")
    table_rows, table_paths = len(table), table["path"].nunique()
    unlisted = int((said[CHANGE].isna() | (said[CHANGE] == REMOVED)).sum())
    featurized = int(said[CHANGE].isin(_wanted(featurize)).sum())
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
        "table_version": committed_feature_table.version,
        "images_by_label": {
            label: int(count) for label, count in table[LABEL].value_counts().sort_index().items()
        },
        # What made the features: the classifier trained on them expects the same.
        "feature_model": _feature_model(featurize),
        # What drew the views of the photos that train learns from beside them.
        "augmentation": featurize.augment.name(),
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


def _no_images(images_root: str) -> ValueError:
    return ValueError(
        f"No image files found under {images_root} (images_root): it must hold one folder "
        "per class of .jpg files. Point it elsewhere with `--params images_root=...`."
    )


def _feature_model(featurize: FeaturizeSettings) -> dict[str, Any]:
    return feature_model.identity(
        featurize.weights, featurize.engine, featurize.framing, featurize.model_cache
    )


def _calibration_pixels(
    raw_images: ImageFiles, to_read: pd.DataFrame, featurize: FeaturizeSettings
) -> np.ndarray:
    # The INT8 model's calibration: a seeded sample of the files this run embeds, decoded as
    # the workers decode them; a file that does not decode is left to the workers to reject.
    count = min(quantization.CALIBRATION_IMAGES, len(to_read))
    sample = to_read["path"].sample(n=count, random_state=quantization.CALIBRATION_SEED)
    pixels = []
    for content in raw_images.contents(sorted(sample)):
        try:
            pixels.append(
                decode_image(content, INPUT_SIZE, featurize.max_image_pixels, featurize.framing)
            )
        except ImageRejected:
            continue
    return (
        np.stack(pixels).astype(np.float32)
        if pixels
        else np.zeros((0, INPUT_SIZE, INPUT_SIZE, 3), np.float32)
    )


def _embed_listed(
    raw_images: ImageFiles, to_read: pd.DataFrame, listed: int, featurize: FeaturizeSettings
) -> tuple[DataFrame, pd.DataFrame]:
    # Spark reads the planned files (the folder when they are most of it, as in a first run)
    # and keeps them; their label is the plan's.
    names = None if len(to_read) > listed / 2 else list(to_read["path"])
    images = raw_images.read(names)
    planned = images.sparkSession.createDataFrame(to_read[["path", LABEL]])
    embedded = embed_images(
        images.join(planned, "path"),
        featurize,
        len(to_read),
        lambda: _calibration_pixels(raw_images, to_read, featurize),
    )
    identity = _feature_model(featurize)
    rows = embedded.where(F.col("reason").isNull()).select(
        "path",
        LABEL,
        *SOURCE,
        *DESCRIPTION,
        F.lit(identity["weights_sha256"]).cast("string").alias(WEIGHTS_SHA256),
        F.lit(identity["engine"]).alias(ENGINE),
        F.lit(identity["framing"]).alias(FRAMING),
        F.lit(featurize.augment.name()).alias(AUGMENTATION),
    )
    outcome = embedded.select("path", "reason").toPandas()
    not_read = to_read.loc[~to_read["path"].isin(outcome["path"]), ["path"]]
    rejects = pd.concat(
        [outcome[outcome["reason"].notna()], not_read.assign(reason=NOT_READ_REASON)],
        ignore_index=True,
    )
    return rows, rejects


def _wanted(featurize: FeaturizeSettings) -> list[str]:
    # What a run embeds: a full refresh tries every listed file again.
    if featurize.full_refresh:
        return [NEW, CHANGED, UNCHANGED, REJECTED_BEFORE]
    return [NEW, CHANGED]


def _same_version(both: pd.DataFrame, other: str) -> pd.Series:
    # The listed file has the size and modification time the `other`_ columns say.
    return (both["length"] == both[f"{other}_length"]) & (
        both["modificationTime"] == both[f"{other}_modificationTime"]
    )


def _rejected_versions(previous_image_rejects: pd.DataFrame | None) -> pd.DataFrame:
    # The file versions the last run rejected, and why (none before the first run, or from a
    # rejects file that does not say the versions).
    columns = ["path", *SOURCE, "reason"]
    rejects = previous_image_rejects
    if rejects is None or not set(columns) <= set(rejects.columns):
        rejects = pd.DataFrame({column: [] for column in columns})
    return pd.DataFrame(
        {
            "path": rejects["path"].astype(object),
            "rejected_length": rejects["length"].astype("int64"),
            "rejected_modificationTime": pd.to_datetime(rejects["modificationTime"], utc=True),
            "reason": rejects["reason"].astype(object),
        }
    )


def _refuse_another_feature_model(table: pd.DataFrame, featurize: FeaturizeSettings) -> None:
    if table.empty:
        return
    re_embed = "re-embed every image with `--params featurize.full_refresh=true`"
    if FRAMING not in table.columns:
        raise ValueError(
            "The features table predates featurize.framing (its photos were squashed to a "
            f"square, this run frames them by {featurize.framing!r}): {re_embed}."
        )
    engines = set(table[ENGINE].unique())
    if {engine == INT8_ENGINE for engine in engines} != {featurize.engine == INT8_ENGINE}:
        raise ValueError(
            f"The features table holds features of the engine(s) {sorted(engines)}, this run's "
            f"featurize.engine is {featurize.engine!r}: INT8 features are close to FP32 ones, "
            f"not the same, and cannot be mixed with them: {re_embed}, or set "
            "featurize.engine back."
        )
    expected = _feature_model(featurize)
    weights = {None if pd.isna(w) else w for w in table[WEIGHTS_SHA256].unique()}
    if weights - {expected["weights_sha256"]}:
        raise ValueError(
            f"The features table holds features of other weights (SHA-256 "
            f"{sorted(map(str, weights))}) than this run's featurize.weights="
            f"{featurize.weights!r} (SHA-256 {expected['weights_sha256']}). Features of "
            f"different weights cannot be mixed: {re_embed}, or set featurize.weights back."
        )
    framings = set(table[FRAMING].unique())
    if framings - {featurize.framing}:
        raise ValueError(
            f"The features table holds features of photos framed by {sorted(framings)}, this "
            f"run's featurize.framing is {featurize.framing!r}. Features of different framings "
            f"cannot be mixed: {re_embed}, or set featurize.framing back."
        )
    if AUGMENTATION not in table.columns:
        raise ValueError(
            "The features table predates featurize.augment (its rows hold no views of the "
            f"photos): {re_embed}."
        )
    augmentations = set(table[AUGMENTATION].unique())
    if augmentations - {featurize.augment.name()}:
        raise ValueError(
            f"The features table holds photos with the views {sorted(augmentations)}, this "
            f"run's featurize.augment draws {featurize.augment.name()!r}. Photos with other "
            f"views would be learnt unevenly: {re_embed}, or set featurize.augment back."
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
