"""Spark adapters: the session, the embedding UDF, the features table, the PCA, Spark ML stages."""
