"""Invalid ModelPromotions, each with the field its refusal must name: one table shared by every entry
point that validates (`promoter run`, `render`, `train`, the operator, the admission webhook).

Each entry starts from the shipped example and changes one thing, so the refusal can only come from
that change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits" / "promotion.yaml"


def example() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return document


@dataclass(frozen=True)
class InvalidSpec:
    id: str
    change: Callable[[dict[str, Any]], None]  # mutates a copy of the example
    field: str  # the field path the error must name, as written in YAML

    def document(self, name: str | None = None) -> dict[str, Any]:
        document = copy.deepcopy(example())
        self.change(document)
        if name is not None and isinstance(document.get("metadata"), dict):
            document["metadata"]["name"] = name
        return document


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A change that sets `path` (dots; created where missing) to `value`."""

    def change(document: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value

    return change


INVALID_SPECS: list[InvalidSpec] = [
    InvalidSpec(
        "unknown-pipeline", _set("spec.source.train.pipeline", "digitz"), "spec.source.train.pipeline"
    ),
    InvalidSpec("rollout-name-upper", _set("spec.rollout.name", "Digits"), "spec.rollout.name"),
]
