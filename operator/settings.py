"""The operator's settings: `PROMOTER_OPERATOR_*`, plus MLflow's and Vault's own variables.

Settings that are the cluster's, not a promotion's (the image its pods run, the tracking server,
how to reach a Service), come from the operator's environment, set by its Deployment. What the
operator hands the pods it starts is decided here, and the rule is: each pod gets its OWN
component's Vault role and path, from the platform's layout (manifests/vault/roles.yaml, shipped
in the package), never the operator's. The operator's own VAULT_ROLE and VAULT_SECRET_PATH are read
by `promoter.secrets` for the operator alone; a Workflow step that carried them would log in as the
operator and read its secrets. Service accounts come from the same layout, because Vault binds each
role to its component's service account: a step under any other account could not log in.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import yaml
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from promoter.pipelines.workflow import ClusterSettings
from promoter.promotion.names import CHAMPION_ALIAS
from promoter.settings import EnvSettings
from promoter.vault_setup import (
    LOADTESTER,
    TRAINER,
    PodIdentity,
    VaultLayout,
    load_layout,
    packaged_layout_directory,
)

# How the operator reaches a Service. In the cluster: its DNS name. From outside (a laptop, a test
# bed without pod networking), point it at a proxy, e.g. `kubectl proxy`'s service proxy path.
DEFAULT_SERVICE_URL = "http://{service}.{namespace}.svc:{port}"
_WORKFLOW_DEFAULTS = ClusterSettings()


class OperatorSettings(EnvSettings):
    model_config = SettingsConfigDict(env_prefix="PROMOTER_OPERATOR_")

    image: str = _WORKFLOW_DEFAULTS.image  # what Workflow steps and load-test Jobs run
    tracking_uri: str = Field(_WORKFLOW_DEFAULTS.tracking_uri, validation_alias="MLFLOW_TRACKING_URI")
    service_url: str = DEFAULT_SERVICE_URL
    reconcile_seconds: float = Field(5.0, gt=0)
    # The Vault the operator's pods log in to: the operator's own. Unset: they get no Vault at all.
    vault_addr: str = Field("", validation_alias="VAULT_ADDR")
    # A directory like manifests/vault (e.g. a mounted ConfigMap); unset: the packaged layout.
    vault_layout: Path | None = Field(None, validate_default=True)
    # The registry alias this environment promotes to: `champion` in production; staging has its own
    # (`staging`), so one registry tells environments apart (see promoter.registry).
    champion_alias: str = Field(CHAMPION_ALIAS, pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
    # GitOps: the Argo CD Application whose synced promotions this operator acts on, and nothing
    # else (a promotion applied by hand fails, NotFromGit). Empty: whatever is applied is acted on.
    gitops_application: str = ""
    gitops_namespace: str = "argocd"
    # Where this environment commits the production record once it has promoted (empty: none).
    record_repository: str = ""
    record_branch: str = "staging"
    record_directory: str = "environments/production/promotions"

    @field_validator("vault_layout")
    @classmethod
    def _a_layout_with_the_operators_workloads(cls, directory: Path | None) -> Path | None:
        """Read at start, so that a bad layout stops the operator before it starts a single pod."""
        layout = _read_layout(directory)
        for name in (TRAINER, LOADTESTER):
            layout.component(name)
        return directory

    @cached_property
    def layout(self) -> VaultLayout:
        return _read_layout(self.vault_layout)

    @property
    def workflows(self) -> ClusterSettings:
        """Workflow steps run as the trainer: its service account, its Vault role and path."""
        trainer = self.layout.pod(TRAINER, self.vault_addr)
        return ClusterSettings(
            image=self.image,
            service_account=trainer.service_account,
            tracking_uri=self.tracking_uri,
            env=trainer.env,
            volumes=trainer.volumes,
            volume_mounts=trainer.volume_mounts,
        )

    @property
    def load_test_pod(self) -> PodIdentity:
        """Load-test Jobs run as the load tester: its service account, its Vault role and path."""
        return self.layout.pod(LOADTESTER, self.vault_addr)


def _read_layout(directory: Path | None) -> VaultLayout:
    where = directory or packaged_layout_directory()
    try:
        return load_layout(where)
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ValueError(f"no usable Vault layout in {where}: {exc}") from None
