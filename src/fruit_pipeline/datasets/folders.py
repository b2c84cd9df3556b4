"""Putting a folder in another's place, on a local disk or an object store."""

import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem


def replace_folder(filesystem: fsspec.AbstractFileSystem, staged: str, target: str) -> None:
    """Put a staged folder in the target's place.

    On a local disk, two renames: the old folder stays whole until the new one is in place. On
    an object store, which has no rename, the old files are deleted and the staged ones copied
    (s3fs's recursive move failed on the files Spark writes, so they are copied one by one).
    """
    if isinstance(filesystem, LocalFileSystem):
        if filesystem.exists(target):
            previous = f"{target.rstrip('/')}.{uuid.uuid4().hex}.previous"
            filesystem.mv(target, previous, recursive=True)
            filesystem.mv(staged, target, recursive=True)
            filesystem.rm(previous, recursive=True)
        else:
            filesystem.mv(staged, target, recursive=True)
        return
    # Spark wrote these files behind fsspec's back: forget any listing it keeps.
    filesystem.invalidate_cache()
    if filesystem.exists(target):
        filesystem.rm(target, recursive=True)
    files = filesystem.find(staged)
    filesystem.copy(files, [target + file.removeprefix(staged) for file in files])
    filesystem.rm(staged, recursive=True)
