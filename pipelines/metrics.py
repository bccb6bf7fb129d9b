"""Classification quality, computed once and named the same everywhere (MLflow, gates, reports)."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # headless everywhere: CLI, pods, tests

import numpy as np
import numpy.typing as npt
from matplotlib.figure import Figure
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    precision_recall_fscore_support,
)

PER_CLASS_METRICS = ("precision", "recall", "f1", "ap")


def class_metric_key(class_name: str, metric: str) -> str:
    return f"class/{class_name}/{metric}"


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
        flat = {"accuracy": self.accuracy, "macro_f1": self.macro_f1}
        for name, metrics in self.per_class.items():
            flat.update({class_metric_key(name, key): value for key, value in metrics.items()})
        return flat


def classification_report(
    y_true: npt.NDArray[np.int64], probabilities: npt.NDArray[np.float32], class_names: tuple[str, ...]
) -> ClassificationReport:
    labels = list(range(len(class_names)))
    y_pred = probabilities.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class: dict[str, dict[str, float]] = {}
    for index, name in enumerate(class_names):
        positives = y_true == index
        # AP is undefined for a class absent from the split; 0 keeps the report total and honest.
        ap = float(average_precision_score(positives, probabilities[:, index])) if positives.any() else 0.0
        per_class[name] = {
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "ap": ap,
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
