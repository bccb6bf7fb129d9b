"""Workflow step entrypoints, run by Hera's runner: `python -m hera.workflows.runner -e MODULE:FN ARGS`.

The same functions run in an Argo pod and, through the local executor, as subprocesses here, so the
code that is tested is the code in the image. Inputs are plain strings (the promotion manifest as
JSON); outputs are annotated parameters that the runner writes where Argo (or the local executor)
reads them. Progress goes to stderr: stdout belongs to the runner. No `from __future__ import
annotations` here: Hera reads these annotations at runtime.
"""

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from hera.workflows import Parameter

from promoter.promotion.spec import ModelPromotion, parse_promotion

if TYPE_CHECKING:
    from promoter.promotion.gates import GateReport

WORKDIR_ENV = "PROMOTER_WORKDIR"
log = logging.getLogger("promoter.steps")


def _setup() -> Path:
    from promoter.secrets import load_process_secrets

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    load_process_secrets()  # a Vault role and path come in the environment, never a secret value
    workdir = Path(os.environ.get(WORKDIR_ENV, "/tmp/promoter"))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def _promotion(manifest: str) -> ModelPromotion:
    """The promotion, checked as `promoter.validation` checks it (that module sits above this package,
    so the steps call the same checks directly). A refused spec ends the step with the fields named
    and exit status 2, not with a traceback from deep inside training."""
    from promoter.pipelines.preflight import check_promotion_or_raise

    origin = "workflow parameter 'promotion'"
    try:
        return check_promotion_or_raise(parse_promotion(json.loads(manifest), origin=origin), origin)
    except ValueError as exc:  # SpecError, and a parameter that is not JSON
        log.error("%s", exc)
        raise SystemExit(2) from None


def train(promotion: str) -> Annotated[str, Parameter(name="run-id")]:
    """Train the candidate; the MLflow run id is the step's output."""
    workdir = _setup()
    spec = _promotion(promotion)  # first: a refused spec costs no MLflow import

    from promoter.pipelines.train import train_candidate

    candidate = train_candidate(
        spec,
        workdir,
        on_epoch=lambda m: log.info("epoch %d val/accuracy %.4f", m.epoch, m.val_accuracy),
        reuse_finished=True,
    )
    verb = "trained" if candidate.result is not None else "reused finished"
    log.info("%s run %s (%s)", verb, candidate.run_id, candidate.model_uri)
    return candidate.run_id


def evaluate(promotion: str, run_id: str) -> Annotated[str, Parameter(name="decision")]:
    """Evaluate candidate and champion and gate; outputs `pass`, `fail` or `inconclusive` (a gate
    decision, not a crash)."""
    workdir = _setup()
    spec = _promotion(promotion)

    from promoter.pipelines.evaluate import evaluate_candidate

    evaluation = evaluate_candidate(spec, run_id, workdir)
    _log_decision(evaluation.report)
    return evaluation.report.decision


def evaluate_version(
    promotion: str,
) -> tuple[Annotated[str, Parameter(name="decision")], Annotated[str, Parameter(name="run-id")]]:
    """Evaluate the registered version the promotion names and gate it; outputs the decision and the
    MLflow run the gate report was recorded in (the version's own training run is left as it was)."""
    from promoter.pipelines.evaluate import evaluate_version as evaluate_registered

    workdir = _setup()
    evaluation = evaluate_registered(_promotion(promotion), workdir)
    _log_decision(evaluation.report)
    return evaluation.report.decision, evaluation.run_id


def _log_decision(report: "GateReport") -> None:
    for gate in [*report.blocking_failures, *report.inconclusive]:
        log.info("gate %s %s: %s (%s)", gate.name, gate.verdict, gate.actual, gate.detail)
    log.info("decision: %s", report.decision)
