"""Classification quality, computed once and named the same everywhere (MLflow, gates, reports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless everywhere: CLI, pods, tests

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# scikit-learn and matplotlib's figures are imported where used: validating a spec reads the names
# below, and must not pay seconds of imports for it.

# The metrics the held-out evaluation logs and gates may name: declared once, and the report is built
# from these names, so a gate can be checked before training against exactly what will be produced.
OVERALL_METRICS = ("accuracy", "macro_f1")
PER_CLASS_METRICS = ("precision", "recall", "f1", "ap")
CLASS_METRIC_PREFIX = "class/"


def class_metric_key(class_name: str, metric: str) -> str:
    return f"{CLASS_METRIC_PREFIX}{class_name}/{metric}"


@dataclass(frozen=True)
class ClassificationReport:
    class_names: tuple[str, ...]
    y_true: npt.NDArray[np.int64]
    probabilities: npt.NDArray[np.float32]
    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: npt.NDArray[np.int64]

    @property
    def y_pred(self) -> npt.NDArray[np.int64]:
        return np.asarray(self.probabilities.argmax(axis=1), dtype=np.int64)

    def flat(self) -> dict[str, float]:
        """The metric names that MLflow logs and gates refer to."""
        flat = {metric: float(getattr(self, metric)) for metric in OVERALL_METRICS}
        for name, metrics in self.per_class.items():
            flat.update({class_metric_key(name, key): value for key, value in metrics.items()})
        return flat


def classification_report(
    y_true: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float32], class_names: tuple[str, ...]
) -> ClassificationReport:
    from sklearn.metrics import average_precision_score, confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    # AP is undefined for a class absent from the split; 0 keeps the report total and honest.
    ap = np.array(
        [
            float(average_precision_score(y_true == index, probabilities[:, index]))
            if (y_true == index).any()
            else 0.0
            for index in labels
        ]
    )
    columns = {"precision": precision, "recall": recall, "f1": f1, "ap": ap}
    per_class = {
        name: {metric: float(columns[metric][index]) for metric in PER_CLASS_METRICS}
        for index, name in enumerate(class_names)
    }
    return ClassificationReport(
        class_names=class_names,
        y_true=y_true,
        probabilities=probabilities,
        accuracy=float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        macro_f1=float(np.mean(f1)),
        per_class=per_class,
        confusion=confusion_matrix(y_true, y_pred, labels=labels).astype(np.int64),
    )


def confusion_matrix_figure(report: ClassificationReport) -> Figure:
    from matplotlib.figure import Figure

    n = len(report.class_names)
    figure = Figure(figsize=(1.0 + 0.55 * n, 0.8 + 0.55 * n), dpi=100)
    axes = figure.subplots()
    axes.imshow(report.confusion, cmap="Blues")
    axes.set_xticks(range(n), report.class_names, rotation=45, ha="right")
    axes.set_yticks(range(n), report.class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = report.confusion.max() / 2 if report.confusion.size else 0
    for i in range(n):
        for j in range(n):
            value = int(report.confusion[i, j])
            axes.text(
                j,
                i,
                str(value),
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
                fontsize=8,
            )
    axes.set_title(f"accuracy {report.accuracy:.4f}")
    figure.tight_layout()
    return figure


def pr_curves_figure(report: ClassificationReport) -> Figure:
    from matplotlib.figure import Figure
    from sklearn.metrics import precision_recall_curve

    figure = Figure(figsize=(7, 5), dpi=100)
    axes = figure.subplots()
    for index, name in enumerate(report.class_names):
        positives = report.y_true == index
        if not positives.any():
            continue
        precision, recall, _ = precision_recall_curve(positives, report.probabilities[:, index])
        axes.plot(recall, precision, label=f"{name} (AP {report.per_class[name]['ap']:.3f})", linewidth=1)
    axes.set_xlabel("recall")
    axes.set_ylabel("precision")
    axes.set_xlim(0, 1.01)
    axes.set_ylim(0, 1.01)
    axes.legend(fontsize=7, loc="lower left", ncol=2)
    axes.set_title("per-class precision-recall")
    figure.tight_layout()
    return figure
