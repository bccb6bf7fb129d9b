"""Admission of ModelPromotions by the real API server of the test bed, calling the operator's webhook
over TLS on loopback (tests/admission_webhook.py), driven with the real kubectl."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from promoter.crd import GROUP, PLURAL, VERSION
from promoter.operator.argo_rollouts import MODEL_URI_ENV

from .admission_webhook import Webhook
from .conftest import run_cli
from .invalid_specs import INVALID_SPECS, InvalidSpec, example

# Admitted by the webhook, not reconciled by its operator: admission alone is under test there.
QUIET_NAMESPACE = "promoter"


def _manifest(document: dict[str, Any], namespace: str) -> str:
    document["metadata"]["namespace"] = namespace
    return yaml.safe_dump(document)


def _get(kube: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    objects: Any = client.CustomObjectsApi(kube)
    try:
        found: dict[str, Any] = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _created(webhook: Webhook, name: str, namespace: str = QUIET_NAMESPACE) -> str:
    document = example()
    document["metadata"]["name"] = name
    applied = webhook.kubectl("apply", "-f", "-", stdin=_manifest(document, namespace))
    assert applied.returncode == 0, applied.stderr
    return applied.stderr


def _json_representable(document: dict[str, Any]) -> bool:
    try:
        json.dumps(document, allow_nan=False)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("case", INVALID_SPECS, ids=[case.id for case in INVALID_SPECS])
def test_kubectl_apply_of_an_invalid_spec_is_refused_naming_the_field(
    kube: Any, admission_webhook: Webhook, case: InvalidSpec
) -> None:
    """Refused by the webhook (promoter.validation) or, for what the schema alone sees, by the API
    server before it (the CRD's schema, its rules for metadata.name): either way `kubectl apply`
    fails, names the field and stores nothing. Two kinds of entry never reach a webhook: a resource
    type the API server does not serve (apiVersion, kind), refused naming what it does not serve;
    and NaN or infinity, which JSON cannot carry, refused by kubectl itself."""
    document = case.document()
    if document["metadata"]["name"] == example()["metadata"]["name"]:
        document["metadata"]["name"] = f"invalid-{case.id}"[:63]  # each case its own, should one pass
    name = document["metadata"]["name"]
    applied = admission_webhook.kubectl("apply", "-f", "-", stdin=_manifest(document, QUIET_NAMESPACE))
    assert applied.returncode != 0, f"admitted: {applied.stderr}"
    if not _json_representable(document):
        assert "unsupported value" in applied.stderr, applied.stderr
    elif case.field in ("apiVersion", "kind"):
        served = f'kind "{document["kind"]}" in version "{document["apiVersion"]}"'
        assert f"no matches for {served}" in applied.stderr, applied.stderr
    else:
        assert case.field in applied.stderr, applied.stderr
    if isinstance(name, str) and name:
        assert _get(kube, QUIET_NAMESPACE, name) is None


def test_a_malformed_gate_value_is_refused_at_admission(kube: Any, admission_webhook: Webhook) -> None:
    """A gate is a number or {min, enforce}: the CRD's structural schema cannot say so, the webhook
    does (this was a known gap: such a spec used to be stored, and failed only in the operator)."""
    document = example()
    document["metadata"]["name"] = "gate-word"
    document["spec"]["gates"]["absolute"]["accuracy"] = "high"
    applied = admission_webhook.kubectl("apply", "-f", "-", stdin=_manifest(document, QUIET_NAMESPACE))
    assert applied.returncode != 0
    assert 'admission webhook "validate.modelpromotions.mlops.promoter.dev" denied' in applied.stderr
    assert "spec.gates.absolute.accuracy" in applied.stderr, applied.stderr
    assert _get(kube, QUIET_NAMESPACE, "gate-word") is None


def test_a_promotion_whose_rollout_does_not_exist_yet_is_admitted_with_a_warning(
    admission_webhook: Webhook,
) -> None:
    """GitOps may apply the promotion before its Rollout: a warning, not a refusal."""
    warnings = _created(admission_webhook, "early-bird")
    assert f"Warning: Rollout digits-serving not found in namespace {QUIET_NAMESPACE}" in warnings, warnings


def test_the_spec_is_immutable_but_metadata_and_status_still_change(
    kube: Any, admission_webhook: Webhook
) -> None:
    from kubernetes import client

    _created(admission_webhook, "frozen")
    patch = {"spec": {"gates": {"absolute": {"accuracy": 0.5}}}}
    edited = admission_webhook.kubectl(
        "-n", QUIET_NAMESPACE, "patch", "mp", "frozen", "--type=merge", "-p", json.dumps(patch)
    )
    assert edited.returncode != 0
    assert "spec is immutable" in edited.stderr and "spec.gates.absolute.accuracy" in edited.stderr
    stored = _get(kube, QUIET_NAMESPACE, "frozen")
    assert stored is not None and stored["spec"]["gates"]["absolute"]["accuracy"] == 0.95

    labelled = admission_webhook.kubectl("-n", QUIET_NAMESPACE, "label", "mp", "frozen", "team=vision")
    assert labelled.returncode == 0, labelled.stderr
    status = {"status": {"phase": "Training", "reason": "WorkflowSubmitted"}}
    client.CustomObjectsApi(kube).patch_namespaced_custom_object_status(
        GROUP, VERSION, QUIET_NAMESPACE, PLURAL, "frozen", status
    )
    stored = _get(kube, QUIET_NAMESPACE, "frozen")
    assert stored is not None
    assert stored["metadata"]["labels"] == {"team": "vision"} and stored["status"]["phase"] == "Training"


def _rollout(name: str) -> dict[str, Any]:
    server = {
        "name": "server",
        "image": "promoter:test",
        "env": [{"name": MODEL_URI_ENV, "value": "models:/digits/1"}],
    }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [server]}},
            "strategy": {
                "blueGreen": {
                    "activeService": f"{name}-active",
                    "previewService": f"{name}-preview",
                    "autoPromotionEnabled": False,
                }
            },
        },
    }


def _service(name: str, app: str) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": {"app": app}, "ports": [{"port": 8080}]}}


def _until(what: str, check: Any, webhook: Webhook, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"timed out waiting for {what}; operator log: {webhook.log.read_text()[-3000:]}")


def _at_deploying(version: str) -> dict[str, Any]:
    """The status of a promotion whose candidate passed its gates and is to be deployed now."""
    from promoter.promotion.status import utc_now

    entered = {"phase": "Deploying", "at": utc_now().isoformat(), "reason": "GatesPassed", "message": "gated"}
    return {
        "status": {
            "phase": "Deploying",
            "reason": "GatesPassed",
            "message": "gated",
            "runId": "run-1",
            "modelVersion": version,
            "history": [entered],
        }
    }


def test_the_operator_waits_for_a_missing_rollout_and_deploys_once_it_exists(
    kube: Any, admission_webhook: Webhook
) -> None:
    """A promotion about to deploy to a Rollout that is not there (applied before it, or deleted):
    a status and a Warning Event that say which Rollout is missing where, not a traceback every
    round; once the Rollout exists, the candidate is deployed to it."""
    from kubernetes import client

    namespace, name = admission_webhook.namespace, "waits-for-rollout"
    objects: Any = client.CustomObjectsApi(kube)
    document = example()
    document["metadata"]["name"] = name
    document["spec"]["rollout"]["name"] = "late-serving"
    applied = admission_webhook.kubectl("apply", "-f", "-", stdin=_manifest(document, namespace))
    assert applied.returncode == 0, applied.stderr
    # Whatever the operator did with it meanwhile, it resumes from the status: Deploying version 2.
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, _at_deploying("2"))

    def status() -> dict[str, Any]:
        found = _get(kube, namespace, name) or {}
        return dict(found.get("status") or {})

    _until(
        "the RolloutNotFound status", lambda: status().get("reason") == "RolloutNotFound", admission_webhook
    )
    assert status()["phase"] == "Deploying"
    assert status()["message"] == f"Rollout late-serving not found in namespace {namespace}"
    core: Any = client.CoreV1Api(kube)
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    warnings = [e for e in events if (e.type, e.reason) == ("Warning", "RolloutNotFound")]
    assert (
        len(warnings) == 1
        and f"Rollout late-serving not found in namespace {namespace}" in warnings[0].message
    )
    time.sleep(2)  # a few more rounds: still waiting, quietly
    assert status()["reason"] == "RolloutNotFound"
    assert "Traceback" not in admission_webhook.log.read_text()

    core.create_namespaced_service(namespace, _service("late-serving-active", "late-serving"))
    core.create_namespaced_service(namespace, _service("late-serving-preview", "late-serving"))
    objects.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", namespace, "rollouts", _rollout("late-serving")
    )

    def deployed() -> bool:
        rollout = objects.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", namespace, "rollouts", "late-serving"
        )
        env = rollout["spec"]["template"]["spec"]["containers"][0].get("env") or []
        return {"name": MODEL_URI_ENV, "value": "models:/digits/2"} in env

    _until("the candidate on the Rollout's preview", deployed, admission_webhook)
    assert (status()["phase"], status()["reason"]) == ("Deploying", "GatesPassed")


# --- the webhook's certificate and options, without a cluster


def test_webhook_cert_issues_a_ca_and_a_certificate_it_signs_for_each_host(tmp_path: Path) -> None:
    from cryptography import x509

    made = run_cli("webhook-cert", "--host", "promoter-operator-webhook.promoter.svc", "--host", "127.0.0.1",
                   "--out", tmp_path / "tls")  # fmt: skip
    assert made.returncode == 0, made.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "tls" / "ca.crt").read_bytes())
    served = x509.load_pem_x509_certificate((tmp_path / "tls" / "tls.crt").read_bytes())
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["promoter-operator-webhook.promoter.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert (tmp_path / "tls" / "tls.key").stat().st_mode & 0o077 == 0  # the key is its owner's only


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--webhook-port", "9443"], "--webhook-cert and --webhook-key"),
        (["--webhook-port", "9443", "--webhook-cert", "missing.crt", "--webhook-key", "missing.key"],
         "--webhook-cert: missing.crt"),
    ],
    ids=["no-certificate", "missing-files"],
)  # fmt: skip
def test_the_operator_refuses_a_webhook_it_cannot_serve(
    tmp_path: Path, options: list[str], named: str
) -> None:
    refused = run_cli("operator", *options, cwd=tmp_path)
    assert refused.returncode == 2
    assert named in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
