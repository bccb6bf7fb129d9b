"""`promoter operator`: kopf, wired with JSON logs, Prometheus metrics, a liveness probe and peering.

Peering (a KopfPeering object; the chart creates it) makes sure two replicas never act at
once: the one with the lower priority pauses while another is alive. With `--webhook-port` it also
serves the admission webhook (admission.py); every replica does: the webhook holds no state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client, config
from prometheus_client import start_http_server

from promoter.operator.json_logs import adopt_library_loggers, configure_json_logging
from promoter.operator.settings import OperatorSettings
from promoter.secrets import load_process_secrets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookOptions:
    """Where the admission webhook listens, and the certificate it serves (the API server only calls
    webhooks over HTTPS, checking the certificate against the configuration's caBundle)."""

    port: int
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: tuple[str, ...] = ()  # empty: every namespace (cluster-wide)
    peering: str | None = "promoter"  # None: standalone, for a single replica
    priority: int = 0
    peering_lifetime: int = 60  # seconds a silent replica counts as alive (kopf's default)
    liveness_port: int = 8080
    metrics_port: int = 9090
    host: str = "0.0.0.0"
    webhook: WebhookOptions | None = None  # None: no admission webhook (see admission.py)


def kubernetes_api() -> client.ApiClient:
    """In a pod, the ServiceAccount; elsewhere, KUBECONFIG (as kubectl does)."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        return client.ApiClient()
    except config.ConfigException:
        api: client.ApiClient = config.new_client_from_config()  # type: ignore[no-untyped-call]
        return api


def _say_what_peering_waits_for(api: client.ApiClient, options: OperatorOptions) -> None:
    """kopf's mandatory peering waits silently, forever, for a peering object that is not there: say
    which object is missing and how to create it (or to run standalone)."""
    assert options.peering is not None
    objects = client.CustomObjectsApi(api)
    where = (
        [
            (f"KopfPeering {options.peering!r} in namespace {namespace!r}", namespace)
            for namespace in options.namespaces
        ]
        if options.namespaces
        else [(f"ClusterKopfPeering {options.peering!r}", None)]
    )
    for description, namespace in where:
        try:
            if namespace is None:
                objects.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", options.peering)
            else:
                objects.get_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", options.peering
                )
        except client.ApiException as exc:
            if exc.status != 404:
                continue  # e.g. not allowed to read it: kopf will say what it can
            log.warning(
                f"waiting for the {description}: nothing is reconciled until it exists. Create it "
                "(the Helm chart charts/promoter does), "
                "or run a single replica with --peering ''",
                extra={"waiting_for": description},
            )


def run_operator(options: OperatorOptions, settings: OperatorSettings | None = None) -> None:
    configure_json_logging()
    # imported once logging is JSON: MLflow warns on import, and that line must be JSON too
    from promoter.operator.handlers import cluster_platform, register

    adopt_library_loggers()  # MLflow, imported just now, logs through its own plain-text handler

    load_process_secrets()  # MLflow credentials, if this deployment keeps them in Vault
    settings = settings or OperatorSettings.load()
    platform = cluster_platform(kubernetes_api(), settings)
    registry = kopf.OperatorRegistry()
    register(registry, platform)
    if options.webhook is not None:
        from promoter.operator.admission import register_admission

        register_admission(registry, platform.api)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # the same credentials as our own client: in-cluster ServiceAccount, else KUBECONFIG
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # kopf keeps its bookkeeping in annotations: `.status` belongs to the promotion alone.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="promoter.kopf.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="promoter.kopf.dev")
        settings.posting.level = logging.WARNING  # our own Events tell the story; kopf's only on trouble
        settings.peering.mandatory = options.peering is not None
        settings.peering.lifetime = options.peering_lifetime
        if options.webhook is not None:
            # Served only: the webhook configurations are installed with the manifests, so the
            # operator needs no right to rewrite the cluster's admission chain.
            settings.admission.server = kopf.WebhookServer(
                addr=options.host,
                port=options.webhook.port,
                certfile=str(options.webhook.cert_file),
                pkeyfile=str(options.webhook.key_file),
            )

    if options.peering is not None:
        _say_what_peering_waits_for(kubernetes_api(), options)
    start_http_server(options.metrics_port, addr=options.host)
    log.info(
        "promoter operator starting",
        extra={"namespaces": list(options.namespaces) or "all", "peering": options.peering},
    )
    kopf.run(
        registry=registry,
        clusterwide=not options.namespaces,
        namespaces=options.namespaces,
        standalone=options.peering is None,
        peering_name=options.peering,
        priority=options.priority,
        liveness_endpoint=f"http://{options.host}:{options.liveness_port}/healthz",
    )
