"""The image files under a folder: listed without Spark, read by Spark only when asked.

Listing a folder is all a featurize run with nothing new needs; the JVM starts only for a run
that has images to read. The listing follows Spark's own rules for a `binaryFile` read with
`pathGlobFilter` and `recursiveFileLookup` (Hadoop's path form, its hidden-file rule, file
times in milliseconds), so a file has one key, whichever side listed it.
"""

import fnmatch
import logging
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from kedro.io import AbstractDataset
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame

from fruit_pipeline.spark import session

logger = logging.getLogger(__name__)

LISTING_COLUMNS = ("path", "length", "modificationTime")


@dataclass(frozen=True)
class ImageFiles:
    """A folder's image files, listed or read when asked (as PartitionedDataset loads lazily):
    loading the catalog entry touches no file."""

    root: str  # a folder or URL, searched recursively
    glob: str  # Hadoop's glob of the file names that count: `*.{jpg,png}`

    def listing(self) -> pd.DataFrame:
        """`path` (Hadoop's form, as Spark names the file), `length` and `modificationTime`
        (UTC, milliseconds) of every image file, sorted by path; no Spark."""
        filesystem, root = fsspec.core.url_to_fs(self.root)
        patterns = _expand_braces(self.glob)
        if isinstance(filesystem, LocalFileSystem):
            files = _local_files(root)
        else:
            files = _stored_files(filesystem, root, self.root.split("://", 1)[0])
        rows = sorted(
            (path, length, modified)
            for path, relative, length, modified in files
            if _listed(relative, patterns)
        )
        listing = pd.DataFrame(rows, columns=list(LISTING_COLUMNS))
        return listing.astype({"length": "int64"}).assign(
            modificationTime=pd.to_datetime(
                listing["modificationTime"].astype("int64"), unit="ms", utc=True
            )
        )

    def contents(self, paths: list[str]) -> Iterator[bytes]:
        """The bytes of some listed files (`path` as the listing gives it), read on the driver
        without Spark."""
        filesystem, _ = fsspec.core.url_to_fs(self.root)
        for path in paths:
            local = path.removeprefix("file:") if isinstance(filesystem, LocalFileSystem) else path
            yield filesystem.cat_file(local)

    def read(self, paths: list[str] | None = None) -> DataFrame:
        """Every image file, or only `paths` (named as the listing names them), as Spark's
        binaryFile rows (path, modificationTime, length, content), the Spark session started
        if it was not.

        Named files are all Spark lists and reads: a run that embeds a tenth of the images
        does not read the other nine tenths. When Spark refuses a name (the file is gone since
        it was listed, or its name holds `[`, which Hadoop's paths do not take literally), the
        folder is read instead.
        """
        reader = session.spark().read.format("binaryFile")
        folder = reader.option("pathGlobFilter", self.glob).option("recursiveFileLookup", "true")
        if paths is None:
            return folder.load(self.root)
        try:
            # Names are files, not globs: a `*` in a file name is its own (a `[` is refused).
            return reader.option("globPaths", "false").load(paths)
        except AnalysisException as error:
            if error.getErrorClass() != "PATH_NOT_FOUND":
                raise
            logger.info("Reading every file under %s: %s", self.root, error)
            return folder.load(self.root)


class ImageFilesDataset(AbstractDataset[None, ImageFiles]):
    """Image files under `filepath` (a folder or URL, searched recursively) whose names match
    `glob` (Hadoop's glob: `*.{jpg,png}`), as an `ImageFiles`. Read-only.

        raw_images:
          type: fruit_pipeline.datasets.image_files.ImageFilesDataset
          filepath: data/01_raw/images
          glob: "*.{jpg,jpeg,png}"
    """

    # Its `read` gives Spark DataFrames, which cannot be handed to another process.
    _SINGLE_PROCESS = True

    def __init__(self, *, filepath: str, glob: str, metadata: dict[str, Any] | None = None) -> None:
        self._files = ImageFiles(root=str(filepath), glob=glob)
        self.metadata = metadata

    def load(self) -> ImageFiles:
        return self._files

    def save(self, data: None) -> None:
        raise NotImplementedError("ImageFilesDataset is read-only: images are put there by hand.")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._files.root, "glob": self._files.glob}


def _listed(relative: str, patterns: list[str]) -> bool:
    parts = [part for part in relative.split("/") if part]
    # Spark skips every file or folder named `_...` (unless it holds `=`) or `.…`.
    if any(_hidden(part) for part in parts):
        return False
    return any(fnmatch.fnmatchcase(parts[-1], pattern) for pattern in patterns)


def _hidden(name: str) -> bool:
    # Hadoop's InMemoryFileIndex.shouldFilterOutPathName, for file and folder names.
    return (
        (name.startswith("_") and "=" not in name)
        or name.startswith(".")
        or name.endswith("._COPYING_")
    )


def _expand_braces(glob: str) -> list[str]:
    # Hadoop's glob alternatives `{a,b}` as fnmatch patterns (fnmatch has none).
    match = re.search(r"\{([^{}]*)\}", glob)
    if match is None:
        return [glob]
    head, tail = glob[: match.start()], glob[match.end() :]
    return [
        pattern
        for option in match.group(1).split(",")
        for pattern in _expand_braces(head + option + tail)
    ]


def _local_files(root: str) -> Iterator[tuple[str, str, int, int]]:
    # As Hadoop's local file system lists: links followed, each file's own size and time.
    if not os.path.isdir(root):
        return
    for folder, subfolders, names in os.walk(root, followlinks=True):
        subfolders[:] = [name for name in subfolders if not _hidden(name)]
        for name in names:
            path = os.path.join(folder, name)
            try:
                status = os.stat(path)
            except FileNotFoundError:  # a broken link, or deleted while listed
                continue
            if stat.S_ISREG(status.st_mode):
                # Java's File.lastModified: milliseconds, truncated.
                modified = status.st_mtime_ns // 1_000_000
                relative = os.path.relpath(path, root)
                yield f"file:{os.path.abspath(path)}", relative, status.st_size, modified


def _stored_files(
    filesystem: fsspec.AbstractFileSystem, root: str, scheme: str
) -> Iterator[tuple[str, str, int, int]]:
    # An object store's keys (`bucket/key`) under the folder, named as Hadoop names them.
    if not filesystem.isdir(root):
        return
    for name, info in filesystem.find(root, detail=True).items():
        if info["type"] == "file":
            modified = int(pd.Timestamp(info["LastModified"]).timestamp() * 1000)
            yield f"{scheme}://{name}", name.removeprefix(root), info["size"], modified
