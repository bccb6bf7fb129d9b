"""Train -> evaluate (or evaluate only, for a registered version) as Argo `Workflow` objects,
created through the Kubernetes API.

The operator needs no Argo Server: it creates the object Hera renders and reads back the phase and
the output parameters the Argo controller writes into `.status.nodes`.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.operator.cluster import PromotionRef, already_exists, not_found
from promoter.pipelines.workflow import ClusterSettings, build_workflow
from promoter.promotion.engine import WorkflowObservation
from promoter.promotion.spec import ModelPromotion

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "workflows"
_PHASES = {"Pending": "Pending", "Running": "Running", "Succeeded": "Succeeded", "Failed": "Failed"}


class ArgoWorkflows:
    def __init__(self, api: client.ApiClient, owner: PromotionRef, settings: ClusterSettings) -> None:
        self.objects: Any = client.CustomObjectsApi(api)
        self.owner = owner
        self.settings = settings

    def manifest(self, promotion: ModelPromotion, name: str) -> dict[str, Any]:
        workflow = build_workflow(promotion, self.settings).to_dict()
        workflow["metadata"]["name"] = name
        return self.owner.stamp(workflow)

    def run(self, promotion: ModelPromotion, name: str) -> None:
        try:
            self.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.owner.namespace, PLURAL, self.manifest(promotion, name)
            )
        except ApiException as exc:
            if not already_exists(exc):  # the name is deterministic: a second create is a repeat
                raise

    def observe(self, promotion: ModelPromotion, name: str) -> WorkflowObservation | None:
        try:
            workflow = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.owner.namespace, PLURAL, name
            )
        except ApiException as exc:
            if not_found(exc):
                return None
            raise
        status = workflow.get("status") or {}
        # Argo's "Error" (the workflow could not run, e.g. a pod was deleted) is a failure too.
        phase = _PHASES.get(status.get("phase") or "Pending", "Failed")
        return WorkflowObservation(phase, task_outputs(status), status.get("message") or "")  # type: ignore[arg-type]

    def delete_all(self) -> None:
        self.objects.delete_collection_namespaced_custom_object(
            GROUP, VERSION, self.owner.namespace, PLURAL, label_selector=self.owner.label_selector()
        )


def task_outputs(status: dict[str, Any]) -> dict[str, str]:
    """Output parameters of the DAG's finished tasks, as "<task>.<parameter>" (what the engine reads)."""
    outputs: dict[str, str] = {}
    for node in (status.get("nodes") or {}).values():
        if node.get("phase") != "Succeeded":
            continue
        for parameter in (node.get("outputs") or {}).get("parameters") or []:
            if parameter.get("value") is not None:
                outputs[f"{node.get('displayName')}.{parameter['name']}"] = str(parameter["value"])
    return outputs
