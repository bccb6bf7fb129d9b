"""Training and evaluation pipelines; `get_pipeline` is the catalogue the CLI, steps and server use."""

from __future__ import annotations

from promoter.pipelines.contract import Pipeline
from promoter.promotion.spec import SpecError


def catalogue() -> dict[str, type[Pipeline]]:
    from promoter.pipelines.digits import DigitsPipeline
    from promoter.pipelines.wine import WinePipeline

    return {cls.name: cls for cls in (DigitsPipeline, WinePipeline)}


def get_pipeline(name: str) -> Pipeline:
    known = catalogue()
    try:
        return known[name]()
    except KeyError:
        raise SpecError(
            f"spec.source.train.pipeline: unknown pipeline {name!r} (known: {', '.join(sorted(known))})"
        ) from None


__all__ = ["Pipeline", "catalogue", "get_pipeline"]
