"""Datasets addressed by a version and the SHA-256 of their content, split deterministically.

A `DataSource` is the seam for a user's own data (files, object storage): anything that can turn
a version string into arrays plugs in. The split depends on the content hash only, never on the
training seed, so a candidate and the champion are always evaluated on the same held-out rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

SplitName = Literal["train", "val", "test"]
SPLIT_FRACTIONS: dict[SplitName, float] = {"train": 0.70, "val": 0.15, "test": 0.15}


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class Dataset:
    """Features already shaped for the model (float32) and integer labels."""

    name: str
    version: str
    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int64]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.features) != len(self.labels):
            raise DataError(
                f"{self.name}@{self.version}: {len(self.features)} rows but {len(self.labels)} labels"
            )
        if self.labels.min(initial=0) < 0 or self.labels.max(initial=0) >= len(self.class_names):
            raise DataError(f"{self.name}@{self.version}: labels outside 0..{len(self.class_names) - 1}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.features.shape[1:])

    @property
    def sha256(self) -> str:
        """Content address: shape, dtype and bytes of features and labels, and the class names."""
        digest = hashlib.sha256()
        for array in (self.features, self.labels):
            contiguous = np.ascontiguousarray(array)
            digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
            digest.update(contiguous.tobytes())
        digest.update("\0".join(self.class_names).encode())
        return digest.hexdigest()

    def split(self) -> dict[SplitName, npt.NDArray[np.int64]]:
        """Stratified row indices per split, a pure function of the content hash."""
        rng = np.random.default_rng(int(self.sha256[:16], 16))
        parts: dict[SplitName, list[npt.NDArray[np.int64]]] = {name: [] for name in SPLIT_FRACTIONS}
        for label in range(len(self.class_names)):
            rows = rng.permutation(np.flatnonzero(self.labels == label)).astype(np.int64)
            n_train = round(len(rows) * SPLIT_FRACTIONS["train"])
            n_val = round(len(rows) * SPLIT_FRACTIONS["val"])
            parts["train"].append(rows[:n_train])
            parts["val"].append(rows[n_train : n_train + n_val])
            parts["test"].append(rows[n_train + n_val :])
        return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


class DataSource(Protocol):
    """Turns a data version into a Dataset. Implementations must be deterministic per version."""

    def versions(self) -> tuple[str, ...]: ...

    def load(self, version: str) -> Dataset: ...


class InMemorySource:
    """Versions built by plain functions: bundled data sets and anything a test constructs."""

    def __init__(self, name: str, builders: dict[str, Callable[[], Dataset]]) -> None:
        self.name = name
        self._builders = builders

    def versions(self) -> tuple[str, ...]:
        return tuple(self._builders)

    def load(self, version: str) -> Dataset:
        try:
            build = self._builders[version]
        except KeyError:
            known = ", ".join(self._builders) or "none"
            raise DataError(f"data set {self.name!r} has no version {version!r} (known: {known})") from None
        return build()


def load_verified(source: DataSource, version: str, expected_sha256: str | None) -> Dataset:
    """Load a version and refuse it if a pinned content hash does not match."""
    dataset = source.load(version)
    if expected_sha256 is not None and dataset.sha256 != expected_sha256:
        raise DataError(
            f"spec.source.train.data.sha256 pins {expected_sha256[:12]}… but {dataset.name}@{version} "
            f"now hashes to {dataset.sha256[:12]}…: the data changed under the same version"
        )
    return dataset
