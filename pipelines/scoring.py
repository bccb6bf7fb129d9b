"""A packaged model scored on rows of a data set: how an evaluation, and a reproduction, read a model.

Both go through the graphs the server runs (`ModelBundle.predict_proba` on a loaded, compiled
bundle), so what a gate judges is what production would answer.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from promoter.pipelines.data import Dataset, SplitName
from promoter.pipelines.metrics import ClassificationReport, classification_report
from promoter.pipelines.packaging import ModelBundle

# The split every model is judged on: chosen by the data's content hash, so a candidate and the
# champion always meet on the same rows.
HELD_OUT_SPLIT: SplitName = "test"
RowIndex = npt.NDArray[np.int64]


class EvaluationError(RuntimeError):
    pass


def score_bundle(
    bundle: ModelBundle, dataset: Dataset, name: str, rows: RowIndex | None = None
) -> ClassificationReport:
    """The classification report of a loaded model on `rows` (the held-out split by default);
    `name` says which model, in an error."""
    if rows is None:
        rows = dataset.split()[HELD_OUT_SPLIT]
    try:
        probabilities = bundle.predict_proba(dataset.features[rows])
    except ValueError as exc:
        raise EvaluationError(f"{name} cannot score {dataset.name}@{dataset.version}: {exc}") from None
    return classification_report(dataset.labels[rows], probabilities, dataset.class_names)
