"""One validation of a ModelPromotion, run before anything else by every entry point.

`promoter run`, `render`, `train`, `evaluate`, the operator and its admission webhook all call
`validate_document` (or `check_promotion` on an already parsed spec), so a spec that one of them
accepts is accepted by all, and a bad one is refused before any training starts, with the field
named (`spec.source.train.params.epochs: ...`).

The schema (pydantic, and the CRD generated from it) catches what a spec says on its own; this
module adds what needs the world (`promoter.pipelines.preflight`): the pipeline catalogue and its
params, the data versions and their hashes, git, and the metrics the evaluation produces.
"""

from __future__ import annotations

from typing import Any

from promoter.pipelines.preflight import check_promotion_or_raise, promotion_problems
from promoter.promotion.spec import InvalidPromotion, ModelPromotion, Problem, SpecError, parse_promotion

__all__ = [
    "InvalidPromotion",
    "Problem",
    "SpecError",
    "check_promotion",
    "validate_document",
    "validate_promotion",
]


def check_promotion(promotion: ModelPromotion) -> list[Problem]:
    """Every problem of an already parsed spec that needs more than the schema to see."""
    return promotion_problems(promotion)


def validate_promotion(promotion: ModelPromotion, *, origin: str = "<input>") -> ModelPromotion:
    """The promotion itself, or InvalidPromotion listing every problem `check_promotion` found."""
    return check_promotion_or_raise(promotion, origin)


def validate_document(document: Any, *, origin: str = "<input>") -> ModelPromotion:
    """Parse and check: the one call for a spec that arrives as YAML/JSON (a file, an admission
    review). Raises SpecError (InvalidPromotion when the schema passed) naming each field."""
    return validate_promotion(parse_promotion(document, origin=origin), origin=origin)
