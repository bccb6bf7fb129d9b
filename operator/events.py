"""One Kubernetes Event per transition, so `kubectl describe mp` tells the promotion's story.

Event names are derived from the transition's place in the history: a transition reported twice
(after a restart between saving the status and posting) is one Event, not two.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from promoter.crd import GROUP, VERSION
from promoter.operator.cluster import PromotionRef, already_exists
from promoter.promotion.spec import KIND
from promoter.promotion.status import Transition

# Phases a user should look at: `kubectl get events --field-selector type=Warning`.
WARNING_PHASES = {"Rejected", "Failed"}
COMPONENT = "promoter-operator"


def event_manifest(
    ref: PromotionRef, index: int, transition: Transition, git_commit: str | None = None
) -> dict[str, Any]:
    """`git_commit`: the commit the promotion was synced from (GitOps), named in every Event."""
    kind = "Warning" if transition.phase in WARNING_PHASES else "Normal"
    message = f"{transition.phase}: {transition.message}" if transition.message else transition.phase
    if git_commit:
        message += f" [git {git_commit}]"
    name = f"{ref.name}.{index:03d}-{transition.phase.lower()}"
    return _manifest(ref, name, kind, transition.reason, message, transition.at)


def _manifest(
    ref: PromotionRef, name: str, kind: str, reason: str, message: str, at_time: datetime
) -> dict[str, Any]:
    at = at_time.isoformat()
    return {
        "metadata": {"name": name, "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "type": kind,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
    }


class EventRecorder:
    def __init__(self, api: client.ApiClient, ref: PromotionRef) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.ref = ref

    def record(self, index: int, transition: Transition, git_commit: str | None = None) -> None:
        self._create(event_manifest(self.ref, index, transition, git_commit))

    def record_wait(self, index: int, reason: str, message: str, at: datetime) -> None:
        """A Warning for a wait that is not a transition (e.g. RolloutNotFound), named after the
        history entry it happened after: once per wait, not once per round."""
        self._create(
            _manifest(
                self.ref, f"{self.ref.name}.{index:03d}-{reason.lower()}", "Warning", reason, message, at
            )
        )

    def _create(self, manifest: dict[str, Any]) -> None:
        try:
            self.core.create_namespaced_event(self.ref.namespace, manifest)
        except ApiException as exc:
            if not already_exists(exc):
                raise
