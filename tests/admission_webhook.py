"""The operator's admission webhook, live in the test bed: a real `promoter operator` process serving
HTTPS on loopback, and the webhook configurations the chart (charts/promoter) renders, pointing the
real API server at it (by URL, with the test's CA as caBundle).

The configurations only cover the namespaces listed here, so the other tests' promotions (and a
failed webhook) never meet them; they are removed when the session ends.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from promoter.local.rollout import free_port

REPO = Path(__file__).resolve().parents[1]
PROMOTER = Path(sys.executable).parent / "promoter"
# The namespace the webhook's operator also reconciles in, and the one test_rbac.py's RBAC lives in.
NAMESPACE = "promoter-admission"
ADMITTED_NAMESPACES = (NAMESPACE, "promoter")


@dataclass(frozen=True)
class Webhook:
    namespace: str
    kubeconfig: Path
    log: Path

    def kubectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The real kubectl against the test bed (as the admin unless `--as` is given)."""
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def webhook_configurations(url: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """The shipped configurations, pointed at `url` instead of the in-cluster Service, and limited
    to the test's namespaces."""
    from .chart import render

    kinds = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    # A release name of its own: the configurations are cluster-scoped, and test_chart's server-side
    # dry run of the default release ("promoter") must not merge into these url-based ones.
    documents = [d for d in render(release="admission-test", namespace="promoter") if d["kind"] in kinds]
    assert len(documents) == 2, documents
    for document in documents:
        for webhook in document["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}
            webhook["namespaceSelector"] = {
                "matchExpressions": [
                    {
                        "key": "kubernetes.io/metadata.name",
                        "operator": "In",
                        "values": list(ADMITTED_NAMESPACES),
                    }
                ]
            }
    return documents


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _wait(what: str, check: Any, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if process.poll() is not None:
            raise RuntimeError(f"the operator exited: {log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}; operator log: {log.read_text()[-3000:]}")
        time.sleep(0.5)


def _apply_configurations(kube: Any, documents: list[dict[str, Any]]) -> None:
    from kubernetes import client

    registration: Any = client.AdmissionregistrationV1Api(kube)
    for document in documents:
        if document["kind"] == "MutatingWebhookConfiguration":
            registration.create_mutating_webhook_configuration(document)
        else:
            registration.create_validating_webhook_configuration(document)


def _delete_configurations(kube: Any, documents: list[dict[str, Any]]) -> None:
    from kubernetes import client

    registration: Any = client.AdmissionregistrationV1Api(kube)
    for document in documents:
        name = document["metadata"]["name"]
        if document["kind"] == "MutatingWebhookConfiguration":
            registration.delete_mutating_webhook_configuration(name)
        else:
            registration.delete_validating_webhook_configuration(name)


def _webhook_answers(kube: Any) -> bool:
    """The API server has picked the configurations up: an invalid spec meets the webhook."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from .invalid_specs import example

    document = example()
    document["metadata"]["name"] = "webhook-probe"
    document["spec"]["gates"]["absolute"]["accuracy"] = "high"  # only the webhook refuses this
    try:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            "mlops.promoter.dev", "v1alpha1", NAMESPACE, "modelpromotions", document, dry_run="All"
        )
    except ApiException as exc:
        return "admission webhook" in (exc.body or "")
    return False


@pytest.fixture(scope="session")
def admission_webhook(
    kube: Any, control_plane: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Webhook]:
    """`promoter operator --webhook-port` for the session, in charge of NAMESPACE, with its webhook
    configured in the API server for ADMITTED_NAMESPACES."""
    from kubernetes import client

    from promoter.operator.webhook_certificates import issue_webhook_certificate
    from promoter.pipelines.tracking import tracking_uri

    core: Any = client.CoreV1Api(kube)
    for namespace in ADMITTED_NAMESPACES:
        if not core.list_namespace(field_selector=f"metadata.name={namespace}").items:
            core.create_namespace({"metadata": {"name": namespace}})
    workdir = tmp_path_factory.mktemp("admission")
    certificate = issue_webhook_certificate(["127.0.0.1"])
    certificate.write(workdir / "tls")
    port, liveness = free_port(), free_port()
    log = workdir / "operator.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "KUBECONFIG": str(control_plane.kubeconfig),
        "MLFLOW_TRACKING_URI": tracking_uri(workdir),
    }
    env["PROMOTER_OPERATOR_SERVICE_URL"] = "http://127.0.0.1:9/{namespace}/{service}"  # nothing serves here
    env["PROMOTER_OPERATOR_RECONCILE_SECONDS"] = "0.5"
    env["PROMOTER_OPERATOR_IMAGE"] = "promoter:test"
    process = subprocess.Popen(
        [
            str(PROMOTER), "operator", "--namespace", NAMESPACE, "--peering", "", "--host", "127.0.0.1",
            "--liveness-port", str(liveness), "--metrics-port", str(free_port()),
            "--webhook-port", str(port),
            "--webhook-cert", str(workdir / "tls" / "tls.crt"),
            "--webhook-key", str(workdir / "tls" / "tls.key"),
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    documents = webhook_configurations(f"https://127.0.0.1:{port}", certificate.ca_pem)
    try:
        _wait("the webhook server", lambda: _listening(port), process, log)
        _apply_configurations(kube, documents)
        try:
            _wait("the API server to call the webhook", lambda: _webhook_answers(kube), process, log)
            yield Webhook(NAMESPACE, control_plane.kubeconfig, log)
        finally:
            _delete_configurations(kube, documents)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
