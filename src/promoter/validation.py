"""One validation of a ModelPromotion, run before anything else by every entry point.

`promoter run`, `render`, `train`, the operator and its admission webhook all call
`validate_document` (or `check_promotion` on an already parsed spec), so a spec that one of them
accepts is accepted by all, and a bad one is refused before any training starts, with the field
named (`spec.source.train.params.epochs: ...`).

The schema (pydantic, and the CRD generated from it) catches what a spec says on its own; this
module adds what needs the world: the pipeline catalogue, the data versions, git.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from promoter.promotion.spec import ModelPromotion, SpecError, parse_promotion


@dataclass(frozen=True)
class Problem:
    """One reason a spec is refused: the field's path as written in YAML, and why."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidPromotion(SpecError):
    """A spec refused by `check_promotion`; `problems` lists every field at fault."""

    def __init__(self, origin: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"{origin}: invalid ModelPromotion", *(f"  {problem}" for problem in problems)]
        super().__init__("\n".join(lines))


def check_promotion(promotion: ModelPromotion) -> list[Problem]:
    """Every problem of an already parsed spec that needs more than the schema to see."""
    return []


def validate_promotion(promotion: ModelPromotion, *, origin: str = "<input>") -> ModelPromotion:
    problems = check_promotion(promotion)
    if problems:
        raise InvalidPromotion(origin, problems)
    return promotion


def validate_document(document: Any, *, origin: str = "<input>") -> ModelPromotion:
    """Parse and check: the one call for a spec that arrives as YAML/JSON (a file, an admission
    review). Raises SpecError (InvalidPromotion when the schema passed) naming each field."""
    return validate_promotion(parse_promotion(document, origin=origin), origin=origin)
