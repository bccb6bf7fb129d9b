"""Training and evaluation pipelines; `get_pipeline` is the catalogue the CLI, steps and server use."""

from __future__ import annotations

from promoter.pipelines.contract import Pipeline
from promoter.spec import SpecError


def _catalogue() -> dict[str, type[Pipeline]]:
    from promoter.pipelines.digits import DigitsPipeline
    from promoter.pipelines.wine import WinePipeline

    return {cls.name: cls for cls in (DigitsPipeline, WinePipeline)}


def get_pipeline(name: str) -> Pipeline:
    catalogue = _catalogue()
    try:
        return catalogue[name]()
    except KeyError:
        raise SpecError(
            f"spec.source.train.pipeline: unknown pipeline {name!r} (known: {', '.join(sorted(catalogue))})"
        ) from None


__all__ = ["Pipeline", "get_pipeline"]
