"""The production record: what staging commits, once it has promoted a version, for production to run.

It is a ModelPromotion that pins exactly what staging proved (the registered version, never a
retraining; the image digest the preview ran, never a rebuild) and says why, with the evidence, in
its annotations and in the commit message a reviewer reads before merging `staging` into `main`.
Rendering is pure (this module); committing it is `promoter.gitops.repository`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from promoter.promotion.engine import record_path
from promoter.promotion.spec import ModelPromotion
from promoter.promotion.status import PromotionStatus

MODEL_LABEL = "mlops.promoter.dev/model"
# Where the evidence is, on the record itself (`kubectl get mp -o yaml` in production shows it).
PROVEN_BY_ANNOTATION = "mlops.promoter.dev/proven-by"  # NAMESPACE/NAME of the promotion that proved it
PROVEN_AT_COMMIT_ANNOTATION = "mlops.promoter.dev/proven-at-commit"  # the commit that promotion came from
GATE_REPORT_ANNOTATION = "mlops.promoter.dev/gate-report"
LOAD_TEST_ANNOTATION = "mlops.promoter.dev/load-test"
MLFLOW_RUN_ANNOTATION = "mlops.promoter.dev/mlflow-run"


@dataclass(frozen=True)
class RenderedRecord:
    """A production record as committed (its state in a promotion's status is status.ProductionRecord)."""

    path: str  # relative to the records directory
    document: dict[str, Any]
    message: str  # the commit message: what, why, evidence

    def text(self) -> str:
        return yaml.safe_dump(self.document, sort_keys=False)


def load_test_summary(status: PromotionStatus) -> str:
    result = status.load_test
    if result is None:
        return "no load test (the promotion has no rollout)"
    return (
        f"p95 {result.p95_ms:.1f} ms, {result.rps:.0f} rps, errors {result.error_rate:.4f} "
        f"({result.requests} requests in {result.duration_seconds:.0f} s)"
    )


def production_record(
    promotion: ModelPromotion, version: str, status: PromotionStatus, image: str | None
) -> RenderedRecord:
    """The record of `promotion`, promoted as `version` running `image`."""
    spec = promotion.spec
    manifest = promotion.to_manifest()
    manifest_spec: dict[str, Any] = manifest["spec"]
    manifest_spec["source"] = {"modelVersion": version}
    if "rollout" in manifest_spec and image is not None:
        manifest_spec["rollout"]["image"] = image
    proven_by = "/".join(filter(None, (promotion.metadata.namespace, promotion.metadata.name)))
    annotations = {
        PROVEN_BY_ANNOTATION: proven_by,
        LOAD_TEST_ANNOTATION: load_test_summary(status),
    }
    if status.git_commit:
        annotations[PROVEN_AT_COMMIT_ANNOTATION] = status.git_commit
    if status.gates is not None and status.gates.report_uri:
        annotations[GATE_REPORT_ANNOTATION] = status.gates.report_uri
    if status.run_id:
        annotations[MLFLOW_RUN_ANNOTATION] = status.run_id
    document = {
        "apiVersion": manifest["apiVersion"],
        "kind": manifest["kind"],
        "metadata": {
            "name": promotion.metadata.name,
            "labels": {MODEL_LABEL: spec.model},
            "annotations": annotations,
        },
        "spec": manifest_spec,
    }
    return RenderedRecord(
        record_path(promotion), document, _message(promotion, version, status, image, proven_by)
    )


def _message(
    promotion: ModelPromotion, version: str, status: PromotionStatus, image: str | None, proven_by: str
) -> str:
    model = promotion.spec.model
    served = f" in image {image}" if image else ""
    origin = f" (from git {status.git_commit})" if status.git_commit else ""
    gates = status.gates
    if gates is None:
        gate_line = "no gate report"
    elif gates.outcome == "inconclusive":
        names = ", ".join(g.name for g in gates.inconclusive)
        gate_line = f"inconclusive ({names}), approved by {status.approved_by or 'nobody'}"
    else:
        gate_line = "passed" if gates.outcome == "pass" else "FAILED"
    if gates is not None and gates.advisory_failures:
        gate_line += f"; advisory failures: {', '.join(g.name for g in gates.advisory_failures)}"
    if gates is not None and gates.report_uri:
        gate_line += f"; report {gates.report_uri}"
    budgets = _budgets(promotion)
    lines = [
        f"promote {model} version {version} to production",
        "",
        f"What: a ModelPromotion {promotion.metadata.name} that deploys {model} version {version}",
        f"(models:/{model}/{version}){served}: the version and image staging proved, not a rebuild.",
        f"Why: {proven_by}{origin} passed its gates and its load test,",
        "and staging serves that version now.",
        "Evidence:",
        f"- gates: {gate_line}",
        f"- load test in staging: {load_test_summary(status)}{budgets}",
    ]
    if status.run_id:
        lines.append(f"- MLflow run: {status.run_id}")
    lines += [
        "",
        "Merge staging into main to promote it in production: production gates it again against",
        "@champion and load-tests its own preview before @champion moves. Revert the merge to roll back.",
    ]
    return "\n".join(lines) + "\n"


def _budgets(promotion: ModelPromotion) -> str:
    rollout = promotion.spec.rollout
    if rollout is None:
        return ""
    load_test = rollout.load_test
    budgets = [
        f"p95 <= {load_test.max_p95_ms:g} ms" if load_test.max_p95_ms is not None else "",
        f"errors <= {load_test.max_error_rate:g}" if load_test.max_error_rate is not None else "",
        f"rps >= {load_test.min_rps:g}" if load_test.min_rps is not None else "",
    ]
    shown = ", ".join(b for b in budgets if b)
    return f"; budgets: {shown}" if shown else ""
