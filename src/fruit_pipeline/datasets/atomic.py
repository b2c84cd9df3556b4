"""Any one-file dataset saved beside its path, then renamed onto it."""

import uuid
from typing import Any

import fsspec
from kedro.io import AbstractDataset


class AtomicDataset(AbstractDataset[Any, Any]):
    """A one-file dataset (CSV, JSON, plot) saved beside its path, then renamed onto it.

    A run killed while saving leaves the previous file whole, never half of a new one: a rename
    within a folder is atomic on a local disk, and an S3 object is only ever seen whole. With
    `missing_as_none`, loading a file that is not there yet gives None.
    """

    def __init__(
        self,
        *,
        filepath: str,
        dataset: dict[str, Any],
        missing_as_none: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._filepath = str(filepath)
        self._dataset = dataset
        self._target = self._at(self._filepath)
        self._missing_as_none = missing_as_none
        self.metadata = metadata

    def _at(self, filepath: str) -> AbstractDataset:
        return AbstractDataset.from_config(filepath, {**self._dataset, "filepath": filepath})

    def load(self) -> Any:
        if self._missing_as_none and not self._target.exists():
            return None
        return self._target.load()

    def save(self, data: Any) -> None:
        folder, _, name = self._filepath.rpartition("/")
        partial = f"{folder}/.{name}.{uuid.uuid4().hex}.partial"
        filesystem, target = fsspec.core.url_to_fs(self._filepath)
        _, partial_path = fsspec.core.url_to_fs(partial)
        try:
            self._at(partial).save(data)
            filesystem.mv(partial_path, target)
        finally:
            if filesystem.exists(partial_path):
                filesystem.rm(partial_path)

    def _exists(self) -> bool:
        return self._target.exists()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "dataset": self._dataset.get("type")}
