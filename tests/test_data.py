from __future__ import annotations

import numpy as np
import pytest

from promoter.pipelines.data import DataError, Dataset, InMemorySource, load_verified
from promoter.pipelines.digits import load_digits_v1


def test_digits_v1_is_the_bundled_data_and_hashes_stably() -> None:
    first, second = load_digits_v1(), load_digits_v1()
    assert first.features.shape == (1797, 1, 8, 8) and first.features.dtype == np.float32
    assert first.sha256 == second.sha256
    assert len(first.sha256) == 64


def test_the_hash_changes_when_any_content_changes() -> None:
    base = load_digits_v1()
    relabelled = base.labels.copy()
    relabelled[0] = (relabelled[0] + 1) % 10
    pixel = base.features.copy()
    pixel[5, 0, 3, 3] += 1
    renamed = (*base.class_names[:-1], "nine")
    variants = [
        Dataset("digits", "v1", base.features, relabelled, base.class_names),
        Dataset("digits", "v1", pixel, base.labels, base.class_names),
        Dataset("digits", "v1", base.features, base.labels, renamed),
    ]
    assert len({base.sha256, *(v.sha256 for v in variants)}) == 4


def test_split_is_deterministic_disjoint_complete_and_stratified() -> None:
    data = load_digits_v1()
    split = data.split()
    assert {k: v.tolist() for k, v in split.items()} == {
        k: v.tolist() for k, v in load_digits_v1().split().items()
    }
    rows = np.concatenate(list(split.values()))
    assert len(rows) == len(np.unique(rows)) == len(data.labels)
    for label in range(10):
        share = (data.labels[split["test"]] == label).mean()
        overall = (data.labels == label).mean()
        assert abs(share - overall) < 0.01
    assert 0.14 < len(split["test"]) / len(rows) < 0.16


def test_unknown_version_names_the_known_ones() -> None:
    source = InMemorySource("digits", {"v1": load_digits_v1})
    with pytest.raises(DataError, match=r"no version 'v2' \(known: v1\)"):
        source.load("v2")


def test_a_pinned_hash_refuses_changed_data() -> None:
    source = InMemorySource("digits", {"v1": load_digits_v1})
    good = load_digits_v1().sha256
    assert load_verified(source, "v1", good).sha256 == good
    with pytest.raises(DataError, match="the data changed under the same version"):
        load_verified(source, "v1", "0" * 64)


def test_inconsistent_arrays_are_refused() -> None:
    with pytest.raises(DataError, match="3 rows but 2 labels"):
        Dataset("x", "v1", np.zeros((3, 2), np.float32), np.zeros(2, np.int64), ("a",))
    with pytest.raises(DataError, match=r"labels outside 0\.\.1"):
        Dataset("x", "v1", np.zeros((2, 2), np.float32), np.array([0, 2]), ("a", "b"))
