"""The catalog's own datasets, for what kedro-datasets does not have: fitted Spark ML pipelines,
the features table, and any file dataset saved atomically."""
