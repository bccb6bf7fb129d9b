"""The load test in the cluster: a Job running `promoter load-test` against the preview Service.

Its result comes back through the container's termination message (the kubelet copies it into the
pod's status), so the operator needs no shared storage and the Job needs no API rights. A Job that
failed, or finished without writing a result, is a failed load test, never a pass: Argo Rollouts
once promoted after a pre-promotion Job whose pod crashed (argoproj/argo-rollouts#3724).
"""

from __future__ import annotations

import json
import math
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from promoter.operator.argo_rollouts import ArgoRollouts
from promoter.operator.cluster import PromotionRef, already_exists, not_found
from promoter.promotion.engine import LoadTestObservation
from promoter.promotion.spec import LoadTest
from promoter.promotion.status import LoadTestResult
from promoter.vault_setup import PodIdentity

CONTAINER = "locust"
# Time for the image to start and Locust to ramp up and stop, beyond the profile's duration.
START_AND_STOP_SECONDS = 300


def job_name(key: str) -> str:
    return f"{key}-loadtest"[:63].rstrip("-.")


class JobLoadTests:
    def __init__(
        self,
        api: client.ApiClient,
        owner: PromotionRef,
        image: str,
        pod: PodIdentity,
        rollouts: ArgoRollouts,
    ) -> None:
        """`pod`: the load tester's service account and Vault login (`OperatorSettings.load_test_pod`)."""
        self.batch: Any = client.BatchV1Api(api)
        self.core: Any = client.CoreV1Api(api)
        self.owner = owner
        self.image = image
        self.pod = pod
        self.rollouts = rollouts

    def manifest(self, key: str, rollout: str, profile: LoadTest) -> dict[str, Any]:
        host, port = self.rollouts.preview_address(rollout)
        command = [
            "promoter", "load-test",
            "--host", f"http://{host}:{port}",
            "--profile", json.dumps(profile.model_dump(mode="json", by_alias=True), sort_keys=True),
            "--result-file", "/dev/termination-log",
        ]  # fmt: skip
        container = {
            "name": CONTAINER,
            "image": self.image,
            "command": command,
            "env": [{"name": name, "value": value} for name, value in sorted(self.pod.env.items())],
            "terminationMessagePolicy": "File",
            "securityContext": {"runAsNonRoot": True, "readOnlyRootFilesystem": True},
            # /tmp: Locust's CSV files (the root filesystem is read-only)
            "volumeMounts": [{"name": "scratch", "mountPath": "/tmp"}, *self.pod.volume_mounts],
        }
        return self.owner.stamp(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": job_name(key)},
                "spec": {
                    "backoffLimit": 0,  # a crashed load test is a verdict, not something to retry
                    "activeDeadlineSeconds": math.ceil(profile.duration_seconds) + START_AND_STOP_SECONDS,
                    "template": {
                        "metadata": {"labels": self.owner.labels()},
                        "spec": {
                            "restartPolicy": "Never",
                            "serviceAccountName": self.pod.service_account,
                            "containers": [container],
                            "volumes": [{"name": "scratch", "emptyDir": {}}, *self.pod.volumes],
                        },
                    },
                },
            }
        )

    def run(self, key: str, rollout: str, profile: LoadTest) -> None:
        try:
            self.batch.create_namespaced_job(self.owner.namespace, self.manifest(key, rollout, profile))
        except ApiException as exc:
            if not already_exists(exc):
                raise

    def observe(self, key: str) -> LoadTestObservation | None:
        name = job_name(key)
        try:
            job = self.batch.read_namespaced_job(name, self.owner.namespace)
        except ApiException as exc:
            if not_found(exc):
                return None
            raise
        pods = self.core.list_namespaced_pod(self.owner.namespace, label_selector=f"job-name={name}").items
        for pod in pods:
            for container in pod.status.container_statuses or []:
                ended = container.state.terminated if container.state else None
                if (
                    container.name == CONTAINER
                    and ended is not None
                    and ended.exit_code == 0
                    and ended.message
                ):
                    try:
                        return LoadTestObservation(LoadTestResult.model_validate_json(ended.message))
                    except ValidationError:
                        return LoadTestObservation(None, error=f"load-test job {name} wrote no valid result")
        conditions = {c.type: c for c in job.status.conditions or [] if c.status == "True"}
        if "Failed" in conditions:
            failed = conditions["Failed"]
            return LoadTestObservation(
                None, error=f"load-test job {name} failed: {failed.reason}: {failed.message}"
            )
        if "Complete" in conditions:
            return LoadTestObservation(None, error=f"load-test job {name} finished without a result")
        return None  # still running

    def delete_all(self) -> None:
        self.batch.delete_collection_namespaced_job(
            self.owner.namespace,
            label_selector=self.owner.label_selector(),
            propagation_policy="Background",
        )
