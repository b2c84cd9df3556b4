"""The views of each photo (fruit_pipeline.core.augmentation) as rows train can learn from.

The features table keeps a photo's views in its own row, so a file stays one row (one MERGE key,
one split). Only training rows are unfolded: validation and test images are photos as they come.
"""

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from fruit_pipeline.contracts import COLOUR, FEATURES, VIEW_COLOURS, VIEWS

_VIEW = "_view"


def with_views(photos: DataFrame) -> DataFrame:
    """Each photo's row, then one row per view of it (the view's features and colour histogram,
    the photo's other columns); the view columns dropped."""
    if VIEWS not in photos.columns:
        return photos
    kept = [column for column in photos.columns if column not in (FEATURES, COLOUR)]
    views = photos.select(*kept, F.explode(F.arrays_zip(VIEWS, VIEW_COLOURS)).alias(_VIEW)).select(
        *kept,
        F.col(f"{_VIEW}.{VIEWS}").alias(FEATURES),
        F.col(f"{_VIEW}.{VIEW_COLOURS}").alias(COLOUR),
    )
    return without_views(photos.unionByName(views))


def without_views(photos: DataFrame) -> DataFrame:
    """The photos alone: their view columns dropped (if the table has them)."""
    return photos.drop(VIEWS, VIEW_COLOURS)
