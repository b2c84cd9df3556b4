"""The ImageNet prior's offsets (fruit_pipeline.core.imagenet_prior) computed in the workers.

Each image's `beta log q` per label comes from its 1280 features, which stay in Spark: only the
offsets, one number a label, reach the driver (train) or the predictions (predict).
The head (5 MB) travels in the UDF's closure: PySpark broadcasts a pickled UDF over 1 MB rather
than send it with every task.
"""

import numpy as np
import pandas as pd
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column
from pyspark.sql import functions as F

from fruit_pipeline.contracts import VECTOR
from fruit_pipeline.core.imagenet_prior import ImagenetPrior


def prior_offsets(prior: ImagenetPrior, columns: int) -> Column:
    """Each row's offsets (array<double>, one per margin of the classifier, in their order) from
    its embedding vector."""

    @F.pandas_udf("array<double>")
    def offsets(features: pd.Series) -> pd.Series:
        if features.empty:
            return pd.Series([], dtype=object)
        computed = prior.offsets(np.stack(features.to_numpy()).astype(np.float32), columns)
        return pd.Series(list(computed), index=features.index)

    return offsets(vector_to_array(VECTOR))
