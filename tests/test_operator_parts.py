"""The operator's pure parts, without a cluster: what it reads from Kubernetes objects and what it
writes into logs and Events. The whole operator runs against the test bed in test_operator_cluster."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

from promoter.operator.argo_workflows import task_outputs
from promoter.operator.cluster import PromotionRef
from promoter.operator.events import event_manifest
from promoter.operator.json_logs import JsonFormatter
from promoter.operator.promotion_resource import APPROVED_BY_ANNOTATION, ROLLBACK_ANNOTATION, status_of
from promoter.promotion.engine import refuse_spec
from promoter.promotion.status import PromotionStatus, Transition
from promoter.redaction import RedactingFilter, register_secret_value

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_only_finished_tasks_give_outputs_named_task_dot_parameter() -> None:
    status = {
        "nodes": {
            "wf-1": {"displayName": "train", "phase": "Succeeded", "outputs": {"parameters": [
                {"name": "run-id", "value": "abc"}]}},
            "wf-2": {"displayName": "evaluate", "phase": "Running", "outputs": {"parameters": [
                {"name": "decision", "value": "pass"}]}},
            "wf-3": {"displayName": "promote", "phase": "Succeeded"},
        }
    }  # fmt: skip
    assert task_outputs(status) == {"train.run-id": "abc"}
    assert task_outputs({}) == {}


def test_annotations_approve_or_roll_back_only_in_the_phase_that_waits_for_them() -> None:
    annotations = {APPROVED_BY_ANNOTATION: "alice", ROLLBACK_ANNOTATION: "bob"}

    def folded(phase: str) -> PromotionStatus:
        return status_of({"metadata": {"annotations": annotations}, "status": {"phase": phase}})

    assert folded("AwaitingApproval").approved_by == "alice"
    assert folded("AwaitingApproval").rollback_requested_by is None
    assert folded("Promoted").rollback_requested_by == "bob"
    assert folded("LoadTesting").approved_by is None  # an early approval does not skip the load test
    assert status_of({"metadata": {}}).phase == "Pending"


def test_an_invalid_spec_fails_the_promotion_once() -> None:
    first = refuse_spec(PromotionStatus(), "spec.gates.absolute.accuracy: not a number", NOW).status
    again = refuse_spec(first, "spec.gates.absolute.accuracy: not a number", NOW).status

    assert (first.phase, first.reason) == ("Failed", "InvalidSpec")
    assert "accuracy" in first.message
    assert again == first and len(again.history) == 1


def test_events_are_named_by_their_place_in_the_history_and_warn_on_failure() -> None:
    ref = PromotionRef("ns", "digits-1", "uid-1")
    rejected = Transition(phase="Rejected", at=NOW, reason="GatesFailed", message="accuracy 0.5")
    event = event_manifest(ref, 7, rejected)

    assert event["metadata"]["name"] == "digits-1.007-rejected"  # the same name after a restart
    assert (event["type"], event["reason"]) == ("Warning", "GatesFailed")
    assert event["involvedObject"]["uid"] == "uid-1"
    assert event_manifest(ref, 0, Transition(phase="Training", at=NOW, reason="X"))["type"] == "Normal"


def test_log_lines_are_json_with_context_and_without_secrets() -> None:
    register_secret_value("s3cr3t-operator-token")
    record = logging.LogRecord(
        "promoter", logging.INFO, __file__, 1, "token is %s", ("s3cr3t-operator-token",), None
    )
    record.promotion = "digits-1"
    record.settings = object()  # kopf attaches its settings: never worth a log line
    RedactingFilter().filter(record)

    line = json.loads(JsonFormatter().format(record))

    assert line["level"] == "info" and line["promotion"] == "digits-1"
    assert "s3cr3t" not in json.dumps(line)
    assert "settings" not in line


def test_mlflow_log_lines_are_json_too() -> None:
    """MLflow's logger has a plain-text handler of its own (set at import): registering a version over
    REST logs through it, a line that broke the operator's one-JSON-object-per-line log."""
    program = (
        "import logging\n"
        "from promoter.operator.json_logs import adopt_library_loggers, configure_json_logging\n"
        "configure_json_logging()\n"
        "import mlflow.store.model_registry.abstract_store\n"
        "adopt_library_loggers()\n"
        "logging.getLogger('mlflow.store.model_registry.abstract_store').info('Waiting up to 300 seconds')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, check=True
    )

    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["message"] for line in lines] == ["Waiting up to 300 seconds"], done.stderr
