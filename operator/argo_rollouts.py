"""Blue/green through an Argo `Rollout` (blueGreen, autoPromotionEnabled: false), never around it.

The candidate's exact model version (and, where the promotion pins one, its image digest) is written
into the Rollout's pod template; the Rollouts controller brings up the preview ReplicaSet and pauses.
Only the server container's PROMOTER_MODEL_URI and image are written, each in place: a rollback
writes the previous version's values back (its image read from its ReplicaSet), which makes the pod
template what it was, so the controller finds that ReplicaSet, still hot, by its pod-template hash
(an extra annotation or a reordered env list would make a new one, cold).
The preview counts as ready only when the controller says so AND the preview Service answers with
the candidate's version: the Service can lag behind the selector and still reach old pods
(argoproj/argo-rollouts#2488). Promotion and abort are the same status patches `kubectl argo
rollouts promote` and `abort` make.
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.operator.cluster import not_found
from promoter.promotion.engine import PreviewObservation
from promoter.promotion.ports import RolloutNotFound
from promoter.serving.client import served_version

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
MODEL_URI_ENV = "PROMOTER_MODEL_URI"  # what `promoter serve` reads
SERVER_CONTAINER = "server"  # the container to set; else the pod's first container


class RolloutError(RuntimeError):
    """The Rollout cannot take part in a promotion as it is (e.g. it is not blue/green)."""


class ServiceProbe(Protocol):
    def version(self, namespace: str, service: str) -> str | None:
        """The model version the Service answers with now; None if nothing answers."""


class HttpServiceProbe:
    """Asks the Service's `/metadata`, at an address built from a template (see cluster.py)."""

    def __init__(self, api: client.ApiClient, url_template: str) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.url_template = url_template

    def address(self, namespace: str, service: str) -> str:
        port = service_port(self.core, namespace, service)
        return self.url_template.format(namespace=namespace, service=service, port=port)

    def version(self, namespace: str, service: str) -> str | None:
        return served_version(self.address(namespace, service))


def service_port(core: Any, namespace: str, service: str) -> int:
    """The Service's first port: the one `promoter serve` listens behind."""
    return int(core.read_namespaced_service(service, namespace).spec.ports[0].port)


def model_uri(model: str, version: str) -> str:
    return f"models:/{model}/{version}"


def _server(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec.get("containers") or []
    if not containers:
        raise RolloutError("the Rollout's pod template has no containers")
    return next((c for c in containers if c.get("name") == SERVER_CONTAINER), containers[0])


def _paused_for_promotion(status: dict[str, Any]) -> bool:
    return any(c.get("reason") == "BlueGreenPause" for c in status.get("pauseConditions") or [])


def _preview_on_current(status: dict[str, Any]) -> bool:
    """The preview Service selects the ReplicaSet of the current pod template."""
    return bool((status.get("blueGreen") or {}).get("previewSelector") == status.get("currentPodHash"))


def _preview_service(rollout: dict[str, Any]) -> str:
    service = rollout["spec"]["strategy"]["blueGreen"].get("previewService")
    if not service:
        name = rollout["metadata"]["name"]
        raise RolloutError(f"Rollout {name} has no previewService to test the candidate through")
    return str(service)


def blue_green_rollout(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The Rollout as stored. RolloutNotFound (naming it and its namespace) when there is none yet:
    the promotion waits for it; RolloutError when it cannot take part as it is."""
    objects: Any = client.CustomObjectsApi(api)
    try:
        rollout: dict[str, Any] = objects.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
    except ApiException as exc:
        if not_found(exc):
            raise RolloutNotFound(f"Rollout {name} not found in namespace {namespace}") from None
        raise
    if "blueGreen" not in rollout["spec"].get("strategy", {}):
        raise RolloutError(f"Rollout {name} does not use the blueGreen strategy")
    return rollout


class ArgoRollouts:
    def __init__(self, api: client.ApiClient, namespace: str, probe: ServiceProbe) -> None:
        self.objects: Any = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.probe = probe

    def get(self, name: str) -> dict[str, Any]:
        return blue_green_rollout(self.objects.api_client, self.namespace, name)

    def template_uri(self, rollout: dict[str, Any]) -> str | None:
        env = _server(rollout["spec"]["template"]["spec"]).get("env") or []
        return next((e.get("value") for e in env if e.get("name") == MODEL_URI_ENV), None)

    def serving_image(self, rollout: str) -> str | None:
        image = _server(self.get(rollout)["spec"]["template"]["spec"]).get("image")
        return str(image) if image else None

    def image_of_version(self, rollout: dict[str, Any], uri: str) -> str | None:
        """The image the model at `uri` ran in on this Rollout: its newest ReplicaSet's (none: None)."""
        apps: Any = client.AppsV1Api(self.objects.api_client)
        labels = rollout["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        replica_sets = apps.list_namespaced_replica_set(self.namespace, label_selector=selector).items
        name = rollout["metadata"]["name"]
        ran = []
        for rs in replica_sets:
            if not any(o.kind == "Rollout" and o.name == name for o in rs.metadata.owner_references or []):
                continue
            containers = rs.spec.template.spec.containers
            server = next((c for c in containers if c.name == SERVER_CONTAINER), containers[0])
            if any(e.name == MODEL_URI_ENV and e.value == uri for e in server.env or []):
                ran.append((rs.metadata.creation_timestamp, str(server.image)))
        return max(ran)[1] if ran else None

    def deploy_preview(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        current = self.get(rollout)
        wanted = model_uri(model, version)
        server_now = _server(current["spec"]["template"]["spec"])
        image = image or self.image_of_version(current, wanted) or server_now.get("image")
        if self.template_uri(current) == wanted and server_now.get("image") == image:
            if (current.get("status") or {}).get("abort"):
                # The same version again after an abort: what `kubectl argo rollouts retry` does.
                self.objects.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, PLURAL, rollout, {"status": {"abort": False}}
                )
            return
        template = copy.deepcopy(current["spec"]["template"])
        server = _server(template["spec"])
        env = server.setdefault("env", [])
        entry = next((e for e in env if e.get("name") == MODEL_URI_ENV), None)
        if entry is None:
            env.append({"name": MODEL_URI_ENV, "value": wanted})
        else:
            entry["value"] = wanted  # in place: the template must be what it was for this version
        if image:
            server["image"] = image
        # resourceVersion: if anyone changed the Rollout since we read it, the patch fails and is retried
        patch = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "spec": {"template": template},
        }
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, rollout, patch)

    def preview(self, rollout: str) -> PreviewObservation | None:
        current = self.get(rollout)
        status = current.get("status") or {}
        if str(status.get("observedGeneration")) != str(current["metadata"]["generation"]):
            return PreviewObservation(None, ready=False)  # the controller has not seen the change yet
        if status.get("phase") == "Degraded" and not status.get("abort"):
            return PreviewObservation(
                None, ready=False, failure=f"Rollout {rollout}: {status.get('message')}"
            )
        first_revision = (status.get("blueGreen") or {}).get("activeSelector") == status.get("currentPodHash")
        # Paused with the new ReplicaSet fully available; or a first revision, which never pauses.
        if not (_preview_on_current(status) and (_paused_for_promotion(status) or first_revision)):
            return PreviewObservation(None, ready=False)
        return PreviewObservation(self.probe.version(self.namespace, _preview_service(current)), ready=True)

    def active_version(self, rollout: str) -> str | None:
        service = self.get(rollout)["spec"]["strategy"]["blueGreen"]["activeService"]
        return self.probe.version(self.namespace, service)

    def preview_address(self, rollout: str) -> tuple[str, int]:
        """The preview Service's in-cluster name and port, for the load-test Job."""
        service = _preview_service(self.get(rollout))
        port = service_port(client.CoreV1Api(self.objects.api_client), self.namespace, service)
        return f"{service}.{self.namespace}.svc", port

    def promote(self, rollout: str, model: str, version: str, image: str | None = None) -> None:
        current = self.get(rollout)
        running = _server(current["spec"]["template"]["spec"]).get("image")
        if self.template_uri(current) != model_uri(model, version) or (image and running != image):
            # A rollback: the previous version becomes a new revision again (its ReplicaSet is still
            # hot, so it is available at once), which pauses like any other; the next call promotes.
            self.deploy_preview(rollout, model, version, image)
            return
        status = current.get("status") or {}
        if _paused_for_promotion(status) and _preview_on_current(status):
            self.objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, rollout, {"status": {"pauseConditions": None}}
            )
        if current["spec"].get("paused"):
            self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, rollout, {"spec": {"paused": False}}
            )

    def abort(self, rollout: str) -> None:
        if not (self.get(rollout).get("status") or {}).get("abort"):
            self.objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, rollout, {"status": {"abort": True}}
            )
