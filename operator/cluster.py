"""Where a promotion lives in the cluster, and what every object it creates carries.

Everything the operator creates (Workflows, load-test Jobs) is owned by its ModelPromotion, so the
garbage collector removes it with the promotion, and labelled with it, so `kubectl get -l` finds it.
Settings that are the cluster's, not the promotion's (images, tracking server, service accounts),
come from the operator's environment, set by its Deployment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from promoter.crd import GROUP, VERSION
from promoter.pipelines.workflow import PROMOTION_LABEL, ClusterSettings
from promoter.promotion.spec import KIND

# How the operator reaches a Service. In the cluster: its DNS name. From outside (a laptop, a test
# bed without pod networking), point it at a proxy, e.g. `kubectl proxy`'s service proxy path.
DEFAULT_SERVICE_URL = "http://{service}.{namespace}.svc:{port}"


@dataclass(frozen=True)
class PromotionRef:
    namespace: str
    name: str
    uid: str

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def labels(self) -> dict[str, str]:
        return {PROMOTION_LABEL: self.name}

    def label_selector(self) -> str:
        """Selects everything this promotion created (`kubectl get -l` takes the same string)."""
        return ",".join(f"{key}={value}" for key, value in self.labels().items())

    def stamp(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """The manifest, in this promotion's namespace, labelled with it and owned by it."""
        metadata = manifest.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        metadata["labels"] = {**metadata.get("labels", {}), **self.labels()}
        metadata["ownerReferences"] = [self.owner_reference()]
        return manifest


@dataclass(frozen=True)
class OperatorSettings:
    workflows: ClusterSettings = field(default_factory=ClusterSettings)
    load_test_service_account: str = "promoter-loadtest"
    service_url: str = DEFAULT_SERVICE_URL
    reconcile_seconds: float = 5.0

    @property
    def image(self) -> str:
        return self.workflows.image

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OperatorSettings:
        """PROMOTER_IMAGE, MLFLOW_TRACKING_URI, PROMOTER_PIPELINE_SERVICE_ACCOUNT,
        PROMOTER_LOADTEST_SERVICE_ACCOUNT, PROMOTER_SERVICE_URL, PROMOTER_RECONCILE_SECONDS; and the
        Vault variables, which are handed to pipeline steps as they are (never a secret itself)."""
        env = dict(os.environ if env is None else env)
        defaults, workflow_defaults = cls(), ClusterSettings()
        vault = {k: env[k] for k in ("VAULT_ADDR", "VAULT_ROLE", "VAULT_SECRET_PATH") if env.get(k)}
        workflows = ClusterSettings(
            image=env.get("PROMOTER_IMAGE", workflow_defaults.image),
            service_account=env.get("PROMOTER_PIPELINE_SERVICE_ACCOUNT", workflow_defaults.service_account),
            tracking_uri=env.get("MLFLOW_TRACKING_URI", workflow_defaults.tracking_uri),
            env=vault,
        )
        return cls(
            workflows=workflows,
            load_test_service_account=env.get(
                "PROMOTER_LOADTEST_SERVICE_ACCOUNT", defaults.load_test_service_account
            ),
            service_url=env.get("PROMOTER_SERVICE_URL", defaults.service_url),
            reconcile_seconds=float(env.get("PROMOTER_RECONCILE_SECONDS", defaults.reconcile_seconds)),
        )


def not_found(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 404


def already_exists(exc: Exception) -> bool:
    return getattr(exc, "status", None) == 409
