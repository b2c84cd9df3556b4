"""Nodes of the featurize pipeline."""

from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from fruit_pipeline import feature_model
from fruit_pipeline.embedding import EmbeddingSettings, embed_images
from fruit_pipeline.images import EMPTY_FILE_REASON
from fruit_pipeline.input_files import unread_files


def label_images(raw_images: DataFrame, images_root: str) -> DataFrame:
    """Label each image file with the name of the folder that holds it."""
    if not raw_images.inputFiles():
        raise ValueError(
            f"No image files found under {images_root} (images_root): it must hold one folder "
            "per class of .jpg files. Point it elsewhere with `--params images_root=...`."
        )
    return raw_images.select("path", _folder_name("path").alias("label"), "content")


def featurize_images(
    labelled_images: DataFrame, featurize: dict[str, Any]
) -> tuple[DataFrame, pd.DataFrame]:
    """Embed every image with MobileNetV2; set apart the files that could not be read."""
    settings = EmbeddingSettings.from_parameters(featurize)
    embedded = embed_images(labelled_images, settings, len(labelled_images.inputFiles()))
    image_features = embedded.where(F.col("reason").isNull()).select("path", "label", "features")
    unread = unread_files(labelled_images, embedded).select(
        "path", _folder_name("path").alias("label"), F.lit(EMPTY_FILE_REASON).alias("reason")
    )
    image_rejects = (
        embedded.where(F.col("reason").isNotNull())
        .select("path", "label", "reason")
        .unionByName(unread)
        .orderBy("path")
        .toPandas()
    )
    return image_features, image_rejects


def summarize_featurization(
    raw_images: DataFrame,
    image_features: DataFrame,
    image_rejects: pd.DataFrame,
    featurize: dict[str, Any],
) -> dict[str, Any]:
    """Count listed, featurized and rejected files (fail if any went missing); name the model."""
    listed = len(raw_images.inputFiles())
    images_by_label = {
        row["label"]: row["count"]
        for row in image_features.groupBy("label").count().orderBy("label").collect()
    }
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
        "rejected_by_reason": {
            reason: int(count) for reason, count in image_rejects["reason"].value_counts().items()
        },
        "images_by_label": images_by_label,
        # What made the features: the classifier trained on them expects the same.
        "feature_model": feature_model.identity(featurize["weights"], featurize["engine"]),
    }


def _folder_name(path: str) -> Column:
    return F.regexp_extract(path, r"([^/]+)/[^/]+$", 1)
