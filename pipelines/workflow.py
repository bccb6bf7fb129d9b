"""The train -> evaluate DAG, defined once with Hera and rendered for Argo Workflows.

A promotion of a registered version (`source.modelVersion`) gets the same DAG without its train
step: the evaluate step then takes the version (from the promotion) instead of a training run.

Scheduling of the train step (GPUs, node selector, tolerations) comes from the promotion's spec;
everything the cluster needs that is not part of a promotion (image, tracking server, service
account) comes from `ClusterSettings`. Secrets are never parameters: steps get a Vault role and path.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from hera.workflows import DAG, Env, Parameter, Resources, Script, Task, Workflow
from hera.workflows.models import Toleration as ArgoToleration
from hera.workflows.models import Volume, VolumeMount
from hera.workflows.script import RunnerScriptConstructor

from promoter import __version__
from promoter.pipelines import steps
from promoter.promotion.engine import workflow_name
from promoter.promotion.spec import ModelPromotion, TrainSource

PROMOTION_LABEL = "mlops.promoter.dev/promotion"
MODEL_LABEL = "mlops.promoter.dev/model"


@dataclass(frozen=True)
class ClusterSettings:
    image: str = f"ghcr.io/promoter/promoter:{__version__}"
    namespace: str | None = None
    service_account: str = "promoter-pipeline"
    tracking_uri: str = "http://mlflow.mlflow.svc.cluster.local:5000"
    env: dict[str, str] = field(default_factory=dict)  # e.g. VAULT_ADDR, VAULT_ROLE, VAULT_SECRET_PATH
    # Kubernetes volumes of every step, as manifests (e.g. the projected token Vault logs in with)
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()


def _script(fn: Any, name: str, settings: ClusterSettings, **kwargs: Any) -> Script:
    env = [
        Env(name="MLFLOW_TRACKING_URI", value=settings.tracking_uri),
        Env(name=steps.WORKDIR_ENV, value="/tmp/promoter"),
    ]
    env += [Env(name=key, value=value) for key, value in sorted(settings.env.items())]
    return Script(
        name=name,
        source=fn,
        constructor=RunnerScriptConstructor(),
        image=settings.image,
        command=["python"],
        env=env,
        volume_mounts=[VolumeMount.model_validate(mount) for mount in settings.volume_mounts] or None,
        **kwargs,
    )


def build_workflow(promotion: ModelPromotion, settings: ClusterSettings | None = None) -> Workflow:
    settings = settings or ClusterSettings()
    with Workflow(
        name=workflow_name(promotion),
        namespace=settings.namespace,
        entrypoint="promote",
        service_account_name=settings.service_account,
        labels={PROMOTION_LABEL: promotion.metadata.name, MODEL_LABEL: promotion.spec.model},
        arguments=[Parameter(name="promotion", value=json.dumps(promotion.to_manifest(), sort_keys=True))],
        volumes=[Volume.model_validate(volume) for volume in settings.volumes] or None,
    ) as workflow:
        if promotion.spec.source.train is None:
            _evaluate_version_dag(settings)
        else:
            _train_and_evaluate_dag(promotion.spec.source.train, settings)
    return workflow


def _train_and_evaluate_dag(source: TrainSource, settings: ClusterSettings) -> None:
    resources = source.resources
    train_resources: dict[str, Any] = {}
    if resources.gpu:
        train_resources["gpus"] = resources.gpu
    if resources.cpu:
        train_resources["cpu_request"] = resources.cpu
    if resources.memory:
        train_resources["memory_request"] = resources.memory
    train_template = _script(
        steps.train,
        "train",
        settings,
        resources=Resources(**train_resources) if train_resources else None,
        node_selector=dict(resources.node_selector) or None,
        tolerations=[ArgoToleration(**t.model_dump(exclude_none=True)) for t in resources.tolerations]
        or None,
    )
    evaluate_template = _script(steps.evaluate, "evaluate", settings)
    with DAG(name="promote"):
        train_task = Task(
            name="train",
            template=train_template,
            arguments={"promotion": "{{workflow.parameters.promotion}}"},
        )
        evaluate_task = Task(
            name="evaluate",
            template=evaluate_template,
            arguments={
                "promotion": "{{workflow.parameters.promotion}}",
                "run_id": train_task.get_parameter("run-id"),
            },
        )
        train_task >> evaluate_task


def _evaluate_version_dag(settings: ClusterSettings) -> None:
    """One task, still named `evaluate` so that its outputs read as the train DAG's do."""
    template = _script(steps.evaluate_version, "evaluate-version", settings)
    with DAG(name="promote"):
        Task(name="evaluate", template=template, arguments={"promotion": "{{workflow.parameters.promotion}}"})
