"""What Spark listed for a file source against what it read."""

from urllib.parse import unquote, urlsplit

from pyspark.sql import DataFrame


def unread_files(images: DataFrame, embedded: DataFrame) -> DataFrame:
    """Paths that Spark listed for a file source but never read (it skips files of 0 bytes)."""
    listed = [(_spark_path(uri),) for uri in images.inputFiles()]
    listed_files = images.sparkSession.createDataFrame(listed, "path string")
    # The embedded rows are persisted: comparing with them reads no image file again.
    return listed_files.join(embedded.select("path"), "path", "left_anti")


def _spark_path(uri: str) -> str:
    # inputFiles() gives percent-encoded URIs; the path column holds Hadoop's plain form.
    parts = urlsplit(uri)
    authority = f"//{parts.netloc}" if parts.netloc else ""
    return f"{parts.scheme}:{authority}{unquote(parts.path)}"
